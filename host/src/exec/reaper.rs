//! Reaping what nobody else waits for. The host is a child subreaper, so a
//! process that escapes its step (double fork and `setsid`) is re-parented to
//! the host when its parent dies, and when it exits it is the host's zombie.
//! tokio reaps only the children it spawned, so this module reaps the rest: on
//! every SIGCHLD (and every few seconds) it waits for each zombie child that no
//! spawner of this module owns. Every process this host spawns goes through
//! [`start_owned`], which records the child under the same lock the reaper
//! takes, so the reaper never steals an exit status a spawner waits for.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Children some spawner will wait for.
static OWNED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// How often the reaper looks even without a SIGCHLD.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A child spawned by [`start_owned`]; the reaper leaves it alone until this is
/// dropped (after its spawner waited for it).
pub struct Owned(Option<i32>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            OWNED.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
        }
    }
}

/// Runs `spawn` (which returns the child and its pid), recording the child as
/// owned before the reaper can see it.
pub fn start_owned<T>(spawn: impl FnOnce() -> std::io::Result<(T, i32)>) -> std::io::Result<(T, Owned)> {
    let mut owned = OWNED.lock().unwrap_or_else(|p| p.into_inner());
    let (child, pid) = spawn()?;
    owned.insert(pid);
    Ok((child, Owned(Some(pid))))
}

/// Starts reaping adopted orphans (call inside the runtime, once the process
/// is a subreaper).
pub fn start() {
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut children = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGCHLD; reaping adopted orphans every few seconds only");
                None
            }
        };
        loop {
            match children.as_mut() {
                Some(s) => {
                    tokio::select! {
                        _ = s.recv() => {}
                        _ = tokio::time::sleep(SWEEP_EVERY) => {}
                    }
                }
                None => tokio::time::sleep(SWEEP_EVERY).await,
            }
            reap_orphans();
        }
    });
}

/// Waits for every zombie child nobody owns.
pub fn reap_orphans() {
    let owned = OWNED.lock().unwrap_or_else(|p| p.into_inner());
    for pid in children().into_iter().filter(|pid| !owned.contains(pid)) {
        if is_zombie(pid) {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// This process's children, from every thread's `children` list in /proc.
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
