//! Starting a confined process and waiting for it: the host's side of
//! [`super::child`]. The host clones init with `CLONE_VM` onto a stack of its
//! own (no page tables copied), learns from a close-on-exec pipe whether the
//! program started, and waits for init through a pidfd in its async runtime.

use std::ffi::{c_void, CString, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use nix::libc;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use super::child::{self, Launch, Stage};
use super::Confinement;

/// A program to start confined.
#[derive(Debug)]
pub struct Command {
    /// The file to execute (a path with a `/`).
    pub program: PathBuf,
    /// Its arguments, `argv[0]` first.
    pub argv: Vec<OsString>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory (entered inside its namespaces).
    pub working_dir: PathBuf,
    /// Its stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
}

/// Init's stack, and the program's (which uses it only until it execs).
const STACK_BYTES: usize = 256 * 1024;

/// Anonymous memory used as the stack of a process started with `CLONE_VM`,
/// with an inaccessible page below it so an overflow faults instead of writing
/// into the host's memory.
pub(super) struct Stack {
    base: *mut c_void,
    len: usize,
}

// SAFETY: a Stack is only a mapping's address and length; the memory is used
// by the process it was given to, never through this value.
unsafe impl Send for Stack {}
unsafe impl Sync for Stack {}

impl Stack {
    #[allow(unsafe_code)]
    fn new(len: usize) -> io::Result<Stack> {
        use rustix::mm::{mmap_anonymous, mprotect, MapFlags, MprotectFlags, ProtFlags};
        let page = rustix::param::page_size();
        // SAFETY: a fresh private mapping, then its own lowest page protected.
        unsafe {
            let base = mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK,
            )?;
            mprotect(base, page, MprotectFlags::empty())?;
            Ok(Stack { base, len })
        }
    }

    /// The lowest address above the guard page, and the length from there to
    /// the top (for `clone3`, which takes the stack as a region).
    pub(super) fn usable(&self) -> (*mut c_void, usize) {
        let page = rustix::param::page_size();
        ((self.base as usize + page) as *mut c_void, self.len - page)
    }

    /// The initial stack pointer (stacks grow down), 16-byte aligned.
    pub(super) fn top(&self) -> *mut c_void {
        let end = self.base as usize + self.len;
        (end & !15) as *mut c_void
    }
}

impl Drop for Stack {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and whoever ran on it has exited.
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// A confined process that started; waiting for it waits until its init
/// reports the program's exit status (in a PID namespace of its own, where
/// init's exit, which tears the namespaces down, can follow on its own time),
/// or until init has exited.
pub struct Started {
    /// Read end of the start-up pipe, until [`Started::await_exec`] read it.
    ready: Option<OwnedFd>,
    pid: i32,
    pidfd: Option<OwnedFd>,
    exited: Option<AsyncFd<OwnedFd>>,
    /// Read end of the pipe init writes to once it stored the program's status.
    done: Option<OwnedFd>,
    reporting: Option<AsyncFd<OwnedFd>>,
    /// The program's status, as init reported it before exiting.
    reported: Option<ExitStatus>,
    /// Init reads the launch and runs on this stack until it has exited
    /// (taken only by `drop`).
    memory: Option<InitMemory>,
    reaped: Option<ExitStatus>,
}

/// The memory init runs on and reads: it must outlive init.
pub(super) struct InitMemory {
    pub launch: Box<Launch>,
    pub _strings: Vec<CString>,
    pub _stack: Stack,
}

impl Started {
    /// Init's process id, which is also the process group of everything in it.
    pub fn id(&self) -> i32 {
        self.pid
    }

    /// Whether everything the program started lives in init's PID namespace
    /// and dies with it: nothing of it is the host's to reap.
    pub fn namespace_reaps(&self) -> bool {
        self.done.is_some() || self.reporting.is_some()
    }

    /// Blocks until the program has exec'd; the error of whatever failed
    /// before (init is reaped then, and nothing is left running).
    pub fn await_exec(&mut self) -> io::Result<()> {
        let Some(ready) = self.ready.take() else {
            return Ok(());
        };
        let failure = startup_failure(ready)?;
        // The program's change of user reset the dumpable flag of the memory
        // it shared with the host until it exec'd: the host is made
        // non-dumpable again.
        let _ = nix::sys::prctl::set_dumpable(false);
        match failure {
            None => Ok(()),
            Some(error) => {
                self.wait_blocking()?;
                Err(error)
            }
        }
    }

    /// Waits until init has reported the program's exit status or has
    /// exited; the program's status, or init's own when it was killed before
    /// the program ended.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(pidfd) = self.pidfd.take() {
            // SAFETY: the pidfd is owned by the AsyncFd from here on.
            self.exited = Some(unsafe { AsyncFd::register(pidfd) }?);
        }
        if let Some(done) = self.done.take() {
            // SAFETY: as above, for the pipe's read end.
            self.reporting = Some(unsafe { AsyncFd::register(done) }?);
        }
        loop {
            if let Some(status) = self.reaped.or(self.reported) {
                return Ok(status);
            }
            let Some(exited) = &self.exited else {
                return Err(io::Error::other("the process's pidfd is gone"));
            };
            let woke = match &self.reporting {
                Some(reporting) => tokio::select! {
                    biased;
                    ready = reporting.readable() => ready.map(|_| Woke::Reported)?,
                    ready = exited.readable() => Woke::exited(ready?, self.pid)?,
                },
                None => Woke::exited(exited.readable().await?, self.pid)?,
            };
            match woke {
                // End of file without a report: init died first; its exit says.
                Woke::Reported => match self.reported_status() {
                    Some(raw) => self.reported = Some(ExitStatus::from_raw(raw)),
                    None => self.reporting = None,
                },
                Woke::Exited(Some(init_status)) => self.reaped = Some(self.status_or(init_status)),
                Woke::Exited(None) => {}
            }
        }
    }

    /// Blocks until init has exited (outside an async runtime).
    pub fn wait_blocking(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        let status = self.status_or(raw_status(waitpid(Pid::from_raw(self.pid), None)?));
        self.reaped = Some(status);
        Ok(status)
    }

    /// The program's wait status, once init has stored it.
    fn reported_status(&self) -> Option<i32> {
        let launch = &self.memory.as_ref()?.launch;
        launch
            .reported
            .load(Ordering::SeqCst)
            .then(|| launch.status.load(Ordering::SeqCst))
    }

    fn status_or(&self, init_status: i32) -> ExitStatus {
        ExitStatus::from_raw(self.reported_status().unwrap_or(init_status))
    }
}

/// What woke a wait.
enum Woke {
    /// The report pipe is readable: a report, or end of file.
    Reported,
    /// Init's pidfd is readable: its wait status once reaped.
    Exited(Option<i32>),
}

impl Woke {
    /// Reaps init if it has exited (clearing the pidfd's readiness if not).
    fn exited(mut ready: tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>, pid: i32) -> io::Result<Woke> {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))? {
            ended @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                Ok(Woke::Exited(Some(raw_status(ended))))
            }
            _ => {
                ready.clear_ready();
                Ok(Woke::Exited(None))
            }
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        if self.reported.is_some() {
            // The program is done and init is on its way out: it is reaped,
            // and its stack and launch freed, off the caller's path.
            let exited = self
                .exited
                .take()
                .map(AsyncFd::into_inner)
                .or_else(|| self.pidfd.take());
            if let (Some(pidfd), Some(memory)) = (exited, self.memory.take()) {
                super::linger::reap_later(pidfd, memory);
                return;
            }
        }
        // Its memory is about to go: it must be gone first.
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
}

/// Starts init for `command` in `confinement`; [`Started::await_exec`] then
/// tells whether the program started.
#[allow(unsafe_code)]
pub(super) fn start(confinement: &Arc<Confinement>, command: Command) -> io::Result<Started> {
    let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Init may report the program's exit before its own when the namespace
    // dies with it: nothing of the step outlives init's exit then.
    let report = if confinement.setup.pid_namespace {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    let strings = strings(&command)?;
    let (argv, envp) = pointers(&strings, command.argv.len());
    let done = report.1.as_ref().map_or(-1, |fd| fd.as_raw_fd());
    let mut keep: Vec<i32> = [ready_write.as_raw_fd(), done]
        .into_iter()
        .chain(confinement.setup.inherited())
        .filter(|fd| *fd >= 0)
        .collect();
    keep.sort_unstable();
    let launch = Box::new(Launch {
        setup: Arc::clone(&confinement.setup),
        program: c_string(command.program.as_os_str().as_bytes())?,
        argv,
        envp,
        working_dir: c_string(command.working_dir.as_os_str().as_bytes())?,
        stdio: command.stdio.each_ref().map(|fd| fd.as_raw_fd()),
        ready: ready_write.as_raw_fd(),
        done,
        keep,
        program_stack: Stack::new(STACK_BYTES)?,
        status: AtomicI32::new(0),
        reported: AtomicBool::new(false),
        cloned_into_cgroup: AtomicBool::new(false),
    });
    let init_stack = Stack::new(STACK_BYTES)?;
    let flags = libc::CLONE_VM | libc::CLONE_PIDFD | confinement.setup.clone_flags() | libc::SIGCHLD;
    let mut pidfd: libc::c_int = -1;
    // No host signal handler may run in init: it starts with every signal blocked.
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut previous))?;
    // SAFETY: init runs `child::init` on its own stack, reading `launch`,
    // which `Started` keeps (and the stack) until init has been reaped.
    let pid = unsafe {
        libc::clone(
            child::init,
            init_stack.top(),
            flags,
            &*launch as *const Launch as *mut c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_error = io::Error::last_os_error();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    // The child's copies are init's now; the host's must close for the
    // start-up pipe and the output pipes to end.
    drop(ready_write);
    drop(report.1);
    drop(command.stdio);
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor there.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut started = Started {
        ready: None,
        pid,
        pidfd: Some(pidfd),
        exited: None,
        done: report.0,
        reporting: None,
        reported: None,
        memory: Some(InitMemory {
            launch,
            _strings: strings,
            _stack: init_stack,
        }),
        reaped: None,
    };
    started.ready = Some(ready_read);
    Ok(started)
}

/// Reads the start-up pipe to its end: nothing when the program exec'd, or
/// the stage and error that stopped it.
fn startup_failure(ready_read: OwnedFd) -> io::Result<Option<io::Error>> {
    let mut report = Vec::new();
    std::fs::File::from(ready_read).read_to_end(&mut report)?;
    if report.len() < 8 {
        return Ok(None);
    }
    let stage = i32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    let cause = io::Error::from_raw_os_error(errno);
    let what = Stage::from_raw(stage).map_or("starting it", Stage::describe);
    Ok(Some(io::Error::new(cause.kind(), format!("{what}: {cause}"))))
}

/// `argv` then `KEY=value` for each variable, as C strings.
fn strings(command: &Command) -> io::Result<Vec<CString>> {
    let argv = command.argv.iter().map(|a| c_string(a.as_bytes()));
    let env = command
        .env
        .iter()
        .map(|(k, v)| c_string(format!("{k}={v}").as_bytes()));
    argv.chain(env).collect()
}

/// Null-terminated pointer arrays into `strings`: the first `argc` are argv.
fn pointers(strings: &[CString], argc: usize) -> (Vec<*const u8>, Vec<*const u8>) {
    let terminated = |part: &[CString]| {
        part.iter()
            .map(|s| s.as_ptr().cast::<u8>())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    (terminated(&strings[..argc]), terminated(&strings[argc..]))
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument, variable or path holds a NUL byte",
        )
    })
}

/// A wait status as the kernel encodes it (an exit code in the second byte,
/// or the signal), for `ExitStatus::from_raw`.
fn raw_status(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code << 8,
        WaitStatus::Signaled(_, signal, _) => signal as i32,
        // Only exits and deaths are waited for.
        _ => 0,
    }
}
