//! Inits whose program has ended and been reported, reaped off the step's
//! path. An init that is PID 1 of a namespace takes a while to exit (the
//! kernel tears the PID and mount namespaces down, waiting for RCU grace
//! periods); the step's end is recorded meanwhile. Init runs on memory of the
//! host's until it has exited, so that memory is freed only then.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{mpsc, OnceLock};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{waitid, WaitId, WaitIdOptions};

use super::spawn::InitMemory;

/// An init on its way out, and the memory it runs on.
struct Lingering {
    pidfd: OwnedFd,
    memory: InitMemory,
}

/// Reaps the init of `pidfd` once it has exited, then frees `memory`: on a
/// thread of the host's own (inline if that thread cannot be started).
pub(super) fn reap_later(pidfd: OwnedFd, memory: InitMemory) {
    static REAPER: OnceLock<Option<mpsc::Sender<Lingering>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Lingering>();
        let thread = std::thread::Builder::new().name("init-reaper".into());
        thread
            .spawn(move || receiver.into_iter().for_each(reap))
            .ok()
            .map(|_| sender)
    });
    let lingering = Lingering { pidfd, memory };
    let unsent = match reaper {
        Some(sender) => sender.send(lingering).err().map(|e| e.0),
        None => Some(lingering),
    };
    unsent.into_iter().for_each(reap);
}

/// Waits until the process is gone (its pidfd readable), reaps it unless the
/// host's reaper of orphans already did (the pidfd names this process, never
/// one that took its pid since), and drops its memory.
fn reap(lingering: Lingering) {
    let mut fds = [PollFd::new(&lingering.pidfd, PollFlags::IN)];
    while let Err(rustix::io::Errno::INTR) = poll(&mut fds, None) {}
    let _ = waitid(
        WaitId::PidFd(lingering.pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    );
    drop(lingering.memory);
}
