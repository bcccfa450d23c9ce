//! What a confined process's own processes do before its program runs.
//!
//! ```text
//! host
//!  └─ init     (PID 1 of the step's namespaces: mounts, enters the
//!      │        working directory, reaps, reports the status)
//!      └─ program  (resets signals, joins its cgroups, drops privileges,
//!                   execs the step)
//! ```
//!
//! Both are started with `CLONE_VM`, on stacks of their own in the host's
//! memory, so starting a step copies none of the host's page tables (a fork of
//! a large, multi-threaded host is what made a sandboxed step slow). The price
//! is discipline, kept by everything in this file:
//!
//! * init runs beside the host's threads, in the same memory and with the
//!   spawning thread's thread-local storage: it makes only raw system calls
//!   (rustix's and the `syscalls` crate's, which never write `errno`, the one
//!   exception noted where it is), allocates nothing, and reads only the
//!   [`Launch`] the host prepared and keeps alive until init is reaped;
//! * init keeps every signal blocked (the host blocks them around the clone),
//!   so none of the host's handlers can ever run in it; as PID 1 it ignores the
//!   polite signals a timeout sends to the group, and SIGKILL ends it and, with
//!   it, everything in the namespace;
//! * the program is a `CLONE_VFORK` child of init: init sleeps until it execs.
//!   It resets every signal disposition to the default before unblocking, so
//!   no host handler runs in it either.
//!
//! When the program exits, init stores its wait status in the launch and
//! exits; the kernel then kills whatever is left in the namespace, which is
//! what catches a daemon that double-forked and called `setsid`.

use std::ffi::{c_int, c_void, CStr, CString};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc;
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::{Resource, Rlimit, WaitOptions};

use syscalls::Sysno;

use super::clone3;
use super::raw::{close_from, enter_directory, loopback_up, write_file};
use super::spawn::Stack;
pub(super) use super::stage::Stage;

/// Everything the init process does for a confinement, prepared once.
#[derive(Debug, Default)]
pub(super) struct ChildSetup {
    /// Files the program writes `0` into to join its cgroups: v1 `tasks`
    /// (which moves only the writing thread, all there is before exec, and so
    /// skips the global lock a whole-process move waits on) and v2
    /// `cgroup.procs`.
    pub joins: Vec<Join>,
    /// The v2 cgroup init clones the program straight into, where the kernel
    /// can (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7); otherwise the
    /// program joins it through its `cgroup.procs`.
    pub clone_into: Option<CgroupEntry>,
    /// `(resource, limit)` pairs set as both soft and hard limit.
    pub rlimits: Vec<(Resource, u64)>,
    /// When the host is not root: the uid and gid maps of a user namespace
    /// (`"<id> <id> 1"`) that lets it create the other namespaces.
    pub user_namespace: Option<(CString, CString)>,
    /// A new PID namespace (with a fresh `/proc` when `mount_namespace`).
    pub pid_namespace: bool,
    /// A new network namespace with only loopback, up.
    pub network_namespace: bool,
    /// A new mount namespace (for `/proc` and a private `/tmp`).
    pub mount_namespace: bool,
    /// A fresh tmpfs on `/tmp` (needs `mount_namespace`).
    pub private_tmp: bool,
    /// `(uid, gid)` to become before exec; None keeps the host's.
    pub credentials: Option<(libc::uid_t, libc::gid_t)>,
}

/// A v2 cgroup, and how a process joins it by hand.
#[derive(Debug)]
pub(super) struct CgroupEntry {
    /// Its directory.
    pub dir: CString,
    /// The directory, open (the host's, inherited by init), or -1.
    pub fd: RawFd,
    /// Its `cgroup.procs`.
    pub procs: CString,
}

/// A control file the program writes `0` into to join a cgroup.
#[derive(Debug)]
pub(super) enum Join {
    /// Opened by its path.
    File(CString),
    /// Kept open by the host (init inherits it, exec closes it).
    Open(RawFd),
}

impl ChildSetup {
    /// The host's descriptors init must keep open for the program.
    pub(super) fn inherited(&self) -> impl Iterator<Item = RawFd> + '_ {
        let joins = self.joins.iter().filter_map(|join| match join {
            Join::Open(fd) => Some(*fd),
            Join::File(_) => None,
        });
        let cgroup = self.clone_into.as_ref().map(|entry| entry.fd);
        joins.chain(cgroup).filter(|fd| *fd >= 0)
    }
}

impl ChildSetup {
    /// The namespace flags of the clone that starts init.
    pub(super) fn clone_flags(&self) -> c_int {
        let mut flags = 0;
        let wanted = [
            (self.user_namespace.is_some(), libc::CLONE_NEWUSER),
            (self.pid_namespace, libc::CLONE_NEWPID),
            (self.network_namespace, libc::CLONE_NEWNET),
            (self.mount_namespace, libc::CLONE_NEWNS),
        ];
        for (on, flag) in wanted {
            if on {
                flags |= flag;
            }
        }
        flags
    }
}

/// What init and the program read, prepared and owned by the host until init
/// has been reaped. The pointers point into its own strings.
pub(super) struct Launch {
    /// What init and the program do, shared with the confinement (never its
    /// cgroups: dropping a launch late, after init, kills nothing).
    pub setup: std::sync::Arc<ChildSetup>,
    pub program: CString,
    pub argv: Vec<*const u8>,
    pub envp: Vec<*const u8>,
    pub working_dir: CString,
    /// The child's ends of stdin, stdout and stderr (closed by init once the
    /// program has them).
    pub stdio: [RawFd; 3],
    /// Write end of the pipe that tells the host whether the program started:
    /// end of file when it did, a [`Failure`] when not.
    pub ready: RawFd,
    /// Write end of the pipe init writes one byte to once `status` holds the
    /// program's (so the host need not wait for the namespaces to be torn
    /// down); -1 when the host waits for init's exit instead.
    pub done: RawFd,
    /// Descriptors above stderr init keeps (the two pipes', the setup's
    /// inherited ones), in ascending order.
    pub keep: Vec<RawFd>,
    pub program_stack: Stack,
    /// The program's wait status, stored by init before it exits.
    pub status: AtomicI32,
    /// Whether `status` holds the program's status.
    pub reported: AtomicBool,
    /// Whether the program was cloned into `clone_into`'s cgroup (set by init
    /// before it starts the program, read by the program).
    pub cloned_into_cgroup: AtomicBool,
}

// SAFETY: the raw pointers point into CStrings the launch itself keeps (held
// by the caller of `spawn` alongside it), and are only read.
unsafe impl Send for Launch {}
unsafe impl Sync for Launch {}

type Failure = (Stage, Errno);

/// Init: sets the process up, starts the program, waits for it, reports.
///
/// Only for `clone`: `arg` is a `Launch` that outlives this process, which
/// starts with `CLONE_VM` and every signal blocked (see the module's
/// documentation).
pub(super) extern "C" fn init(arg: *mut c_void) -> c_int {
    // SAFETY: as the host promises (see above).
    unsafe { run_init(&*(arg as *const Launch)) }
}

unsafe fn run_init(launch: &Launch) -> ! {
    if let Err((stage, errno)) = prepare(launch) {
        report(launch.ready, stage, errno);
        libc::_exit(125);
    }
    let program = match start_program(launch) {
        Ok(pid) => pid,
        Err(errno) => {
            report(launch.ready, Stage::StartProgram, errno);
            libc::_exit(125);
        }
    };
    // The program has exec'd (or failed and said so): the host's start-up
    // read ends, and the output pipes close when the program's side does.
    for fd in [launch.ready, 0, 1, 2] {
        rustix::io::close(fd);
    }
    loop {
        match rustix::process::waitpid(None, WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == program => {
                launch.status.store(status.as_raw(), Ordering::SeqCst);
                launch.reported.store(true, Ordering::SeqCst);
                if launch.done >= 0 {
                    let _ = rustix::io::write(BorrowedFd::borrow_raw(launch.done), b"1");
                }
                libc::_exit(0);
            }
            Ok(_) | Err(Errno::INTR) => {}
            // Lost track of the program: fail the step (125: the runner failed).
            Err(_) => libc::_exit(125),
        }
    }
}

/// Starts the program as a `CLONE_VFORK` child (init sleeps until it execs):
/// straight into its v2 cgroup where the kernel can, otherwise plainly, and
/// the program then joins that cgroup itself. Returns its process id.
unsafe fn start_program(launch: &Launch) -> Result<c_int, Errno> {
    let arg = launch as *const Launch as *mut c_void;
    if let Some(entry) = &launch.setup.clone_into {
        // Set before the clone: the program reads it before init runs again.
        launch.cloned_into_cgroup.store(true, Ordering::SeqCst);
        if let Ok(pid) = clone3::into_cgroup(entry, &launch.program_stack, program, arg) {
            return Ok(pid);
        }
        launch.cloned_into_cgroup.store(false, Ordering::SeqCst);
    }
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let pid = libc::clone(program, launch.program_stack.top(), flags, arg);
    if pid < 0 {
        // glibc's clone wrapper is the one call here that writes errno on
        // failure (when the process limit is reached).
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EAGAIN),
        ));
    }
    Ok(pid)
}

/// The program: signals back to their defaults, the step user, exec. Only
/// for `clone`, from init (whose `Launch` it reads).
extern "C" fn program(arg: *mut c_void) -> c_int {
    // SAFETY: init passes its own launch, alive while it waits for us.
    unsafe { run_program(&*(arg as *const Launch)) }
}

unsafe fn run_program(launch: &Launch) -> ! {
    reset_signals();
    // The program joins the cgroups, init does not: init shares the host's
    // memory, and a cgroup's out-of-memory killer that chose it (by the
    // host's size) would kill every process sharing that memory, the host
    // included. Until it execs, the program is a vfork child, which the
    // out-of-memory killer never chooses.
    let setup = &launch.setup;
    let by_hand = setup
        .clone_into
        .as_ref()
        .filter(|_| !launch.cloned_into_cgroup.load(Ordering::SeqCst))
        .map(|entry| write_file(&entry.procs, b"0"));
    let joins = setup.joins.iter().map(|join| match join {
        Join::File(path) => write_file(path, b"0"),
        Join::Open(fd) => rustix::io::pwrite(BorrowedFd::borrow_raw(*fd), b"0", 0).map(|_| ()),
    });
    for joined in joins.chain(by_hand) {
        if let Err(errno) = joined {
            report(launch.ready, Stage::Cgroups, errno);
            libc::_exit(127);
        }
    }
    if let Some((uid, gid)) = setup.credentials {
        let gid = rustix::process::Gid::from_raw(gid);
        let became = rustix::thread::set_thread_groups(&[gid])
            .and_then(|()| rustix::thread::set_thread_gid(gid))
            .and_then(|()| rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid)));
        if let Err(errno) = became {
            report(launch.ready, Stage::Credentials, errno);
            libc::_exit(127);
        }
    }
    let (path, argv, envp) = (
        launch.program.as_ptr(),
        launch.argv.as_ptr(),
        launch.envp.as_ptr(),
    );
    if let Err(errno) = syscalls::syscall!(Sysno::execve, path, argv, envp) {
        report(
            launch.ready,
            Stage::Exec,
            Errno::from_raw_os_error(errno.into_raw()),
        );
    }
    libc::_exit(127)
}

/// Every signal to its default disposition, then none blocked. The kernel's
/// `sigaction` is a handler, flags, (on most architectures) a restorer and a
/// mask: all zeros is the default handler, no flags, an empty mask.
unsafe fn reset_signals() {
    let default = [0usize; 4];
    let empty: u64 = 0;
    let mask_bytes = std::mem::size_of::<u64>();
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            let _ = syscalls::syscall!(Sysno::rt_sigaction, signal, default.as_ptr(), 0, mask_bytes);
        }
    }
    let _ = syscalls::syscall!(
        Sysno::rt_sigprocmask,
        libc::SIG_SETMASK,
        &empty as *const u64,
        0,
        mask_bytes
    );
}

/// Everything init does before it starts the program.
unsafe fn prepare(launch: &Launch) -> Result<(), Failure> {
    let setup = &launch.setup;
    if let Some((uid_map, gid_map)) = &setup.user_namespace {
        let at = |e| (Stage::UserNamespace, e);
        write_file(c"/proc/self/setgroups", b"deny").map_err(at)?;
        write_file(c"/proc/self/uid_map", uid_map.as_bytes()).map_err(at)?;
        write_file(c"/proc/self/gid_map", gid_map.as_bytes()).map_err(at)?;
    }
    // Its own process group, which the program inherits: the host signals it.
    rustix::process::setsid().map_err(|e| (Stage::Session, e))?;
    // The host's descriptors go before the open-files limit applies (they
    // would otherwise count against it).
    wire_descriptors(launch).map_err(|e| (Stage::Descriptors, e))?;
    for &(resource, limit) in &setup.rlimits {
        let value = Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        rustix::process::setrlimit(resource, value).map_err(|e| (Stage::Limits, e))?;
    }
    prepare_namespaces(setup, &launch.working_dir)
}

/// Mounts and interfaces inside the new namespaces, and the working
/// directory: entered after `/proc` is the namespace's own (so a step working
/// in `/proc` sees its own processes) and before a private `/tmp` covers the
/// shared one (a scratch directory under `/tmp` stays reachable). The host
/// checked that the step user may enter it; it is entered without following
/// links, so none can be swapped in since.
unsafe fn prepare_namespaces(setup: &ChildSetup, working_dir: &CStr) -> Result<(), Failure> {
    if setup.mount_namespace {
        let at = |e| (Stage::Mounts, e);
        let private = MountPropagationFlags::PRIVATE | MountPropagationFlags::REC;
        rustix::mount::mount_change(c"/", private).map_err(at)?;
        if setup.pid_namespace {
            let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            rustix::mount::mount(c"proc", c"/proc", c"proc", flags, None).map_err(at)?;
        }
    }
    enter_directory(working_dir).map_err(|e| (Stage::WorkingDirectory, e))?;
    if setup.mount_namespace && setup.private_tmp {
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        rustix::mount::mount(c"tmpfs", c"/tmp", c"tmpfs", flags, c"mode=1777")
            .map_err(|e| (Stage::PrivateTmp, e))?;
    }
    if setup.network_namespace {
        loopback_up().map_err(|e| (Stage::Network, e))?;
    }
    Ok(())
}

/// The child's ends as stdin, stdout and stderr; every other descriptor but
/// the start-up pipe closed (the host's sockets and files never reach a step).
unsafe fn wire_descriptors(launch: &Launch) -> Result<(), Errno> {
    let [stdin, stdout, stderr] = launch.stdio.map(|fd| BorrowedFd::borrow_raw(fd));
    rustix::stdio::dup2_stdin(stdin)?;
    rustix::stdio::dup2_stdout(stdout)?;
    rustix::stdio::dup2_stderr(stderr)?;
    for fd in 0..3 {
        // dup2 onto itself keeps close-on-exec: clear it either way.
        rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
    }
    close_from(3, &launch.keep);
    Ok(())
}

/// Tells the host where starting the program failed.
unsafe fn report(ready: RawFd, stage: Stage, errno: Errno) {
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&(stage as i32).to_ne_bytes());
    message[4..].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
    let _ = rustix::io::write(BorrowedFd::borrow_raw(ready), &message);
}
