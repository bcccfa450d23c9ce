//! The part of confinement that runs inside the forked child, between `fork`
//! and `exec`. The host is multi-threaded, so this code may only make
//! async-signal-safe calls: raw system calls on data prepared before the fork,
//! no allocation, no locks.
//!
//! With a PID namespace the child becomes three processes:
//!
//! ```text
//! keeper  (host's namespace; the process the host spawned and waits for)
//!  └─ init  (PID 1 of the new namespace: reaps, reports the program's status)
//!      └─ program  (PID 2: drops privileges and execs the step)
//! ```
//!
//! When the program exits, init reports its wait status to the keeper and
//! exits; the kernel then kills everything left in the namespace, which is
//! what catches a daemon that double-forked and called `setsid`. The keeper
//! exits the way the program did, so the host sees the program's exit code
//! or signal. A signal to the process group reaches keeper, init and program
//! alike: the keeper ignores the polite ones, init (PID 1) is immune to them,
//! SIGKILL ends all three and with init the namespace.

use std::ffi::CString;
use std::io;

use nix::libc;

/// Everything the child does, prepared before the fork.
#[derive(Debug, Default)]
pub(super) struct ChildSetup {
    /// `cgroup.procs` files to write `0` into (joins the cgroups).
    pub procs_files: Vec<CString>,
    /// `(resource, limit)` pairs set as both soft and hard limit.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
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

/// `close_range` flag: mark the descriptors close-on-exec instead of closing them.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Signals the keeper ignores: a signal to the group reaches the program directly.
const POLITE: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

impl ChildSetup {
    /// Applies the setup; returns only in the process that goes on to exec.
    ///
    /// # Safety
    /// Call only in a freshly forked child (a `pre_exec` hook).
    pub(super) unsafe fn enter(&self, working_dir: &std::ffi::CStr) -> io::Result<()> {
        for file in &self.procs_files {
            write_file(file, b"0")?;
        }
        for &(resource, limit) in &self.rlimits {
            let value = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            check(libc::setrlimit(resource, &value))?;
        }
        if let Some((uid_map, gid_map)) = &self.user_namespace {
            check(libc::unshare(libc::CLONE_NEWUSER))?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
        }
        let mut flags = 0;
        if self.pid_namespace {
            flags |= libc::CLONE_NEWPID;
        }
        if self.network_namespace {
            flags |= libc::CLONE_NEWNET;
        }
        if self.mount_namespace {
            flags |= libc::CLONE_NEWNS;
        }
        if flags != 0 {
            check(libc::unshare(flags))?;
        }
        if self.pid_namespace {
            self.split(working_dir)?;
        } else {
            self.prepare_namespaces(working_dir)?;
        }
        if let Some((uid, gid)) = self.credentials {
            check(libc::setgroups(1, &gid))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
        }
        // Whatever the host inherited from whoever started it closes at exec
        // (the spawner's own error pipe still reports a failed exec).
        libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC);
        Ok(())
    }

    /// Forks init (and from it the program); the keeper and init never return.
    unsafe fn split(&self, working_dir: &std::ffi::CStr) -> io::Result<()> {
        let mut status_pipe = [0; 2];
        check(libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC))?;
        let [read_end, write_end] = status_pipe;
        match check(libc::fork())? {
            0 => {}
            init => keeper(init, read_end, write_end),
        }
        libc::close(read_end);
        if let Err(e) = self.prepare_namespaces(working_dir) {
            // Told to the keeper as a failed program: the step fails with
            // exit code 125 (the convention for "the runner itself failed").
            report_and_exit(write_end, 125 << 8, e);
        }
        match check(libc::fork()) {
            Ok(0) => {
                libc::close(write_end);
                Ok(())
            }
            Ok(program) => init(program, write_end),
            Err(e) => report_and_exit(write_end, 125 << 8, e),
        }
    }

    /// Mounts and interfaces inside the new namespaces, and the working
    /// directory: entered after `/proc` is the namespace's own (so a step
    /// working in `/proc` sees its own processes) and before a private `/tmp`
    /// covers the shared one (a scratch directory under `/tmp` stays reachable).
    /// The host checked that the step user may enter it; it is entered without
    /// following links, so none can be swapped in since.
    unsafe fn prepare_namespaces(&self, working_dir: &std::ffi::CStr) -> io::Result<()> {
        if self.mount_namespace {
            let none = std::ptr::null();
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            if self.pid_namespace {
                let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                check(libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    flags,
                    std::ptr::null(),
                ))?;
            }
        }
        enter_directory(working_dir)?;
        if self.mount_namespace && self.private_tmp {
            {
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=1777".as_ptr().cast(),
                ))?;
            }
        }
        if self.network_namespace {
            loopback_up()?;
        }
        Ok(())
    }
}

/// Enters `dir` without following symbolic links (`openat2` with
/// `RESOLVE_NO_SYMLINKS`; a plain `chdir` where the kernel lacks it).
unsafe fn enter_directory(dir: &std::ffi::CStr) -> io::Result<()> {
    let mut how: libc::open_how = std::mem::zeroed();
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    let fd = libc::syscall(
        libc::SYS_openat2,
        libc::AT_FDCWD,
        dir.as_ptr(),
        &how as *const libc::open_how,
        std::mem::size_of::<libc::open_how>(),
    );
    if fd < 0 {
        if errno() == libc::ENOSYS {
            return check(libc::chdir(dir.as_ptr())).map(|_| ());
        }
        return Err(io::Error::last_os_error());
    }
    let entered = check(libc::fchdir(fd as libc::c_int));
    libc::close(fd as libc::c_int);
    entered.map(|_| ())
}

/// The keeper: waits for init, then ends the way the program did.
unsafe fn keeper(init: libc::pid_t, read_end: libc::c_int, write_end: libc::c_int) -> ! {
    libc::close(write_end);
    close_all_but(read_end);
    for signal in POLITE {
        libc::signal(signal, libc::SIG_IGN);
    }
    let mut status: libc::c_int = 0;
    let got = read_full(read_end, &mut status);
    let mut init_status = 0;
    while libc::waitpid(init, &mut init_status, 0) < 0 && errno() == libc::EINTR {}
    if !got {
        // init died without a report: killed with the namespace (SIGKILL to
        // the group). Die the same way.
        status = init_status;
    }
    exit_like(status)
}

/// PID 1 of the namespace: reaps every child; when the program ends, reports
/// its status and exits, which kills whatever is left in the namespace.
unsafe fn init(program: libc::pid_t, write_end: libc::c_int) -> ! {
    close_all_but(write_end);
    loop {
        let mut status = 0;
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid == program {
            let bytes = status.to_ne_bytes();
            libc::write(write_end, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(0);
        }
        if pid < 0 && errno() != libc::EINTR {
            libc::_exit(0);
        }
    }
}

/// Reports a wait status (and why, on stderr) to the keeper, then exits.
unsafe fn report_and_exit(write_end: libc::c_int, status: libc::c_int, error: io::Error) -> ! {
    let message = b"pulsehost: the step's sandbox could not be set up (errno ";
    libc::write(2, message.as_ptr().cast(), message.len());
    let mut digits = [0u8; 12];
    let text = format_number(error.raw_os_error().unwrap_or(0), &mut digits);
    libc::write(2, text.as_ptr().cast(), text.len());
    libc::write(2, b")\n".as_ptr().cast(), 2);
    let bytes = status.to_ne_bytes();
    libc::write(write_end, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(0)
}

/// Exits with `status`'s code, or dies of its signal.
unsafe fn exit_like(status: libc::c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal);
    }
    libc::_exit(libc::WEXITSTATUS(status))
}

/// Brings `lo` up in a fresh network namespace.
unsafe fn loopback_up() -> io::Result<()> {
    let socket = check(libc::socket(
        libc::AF_INET,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        0,
    ))?;
    let mut request: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo\0".iter().enumerate() {
        request.ifr_name[i] = *b as libc::c_char;
    }
    let result = (|| {
        check(libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request))?;
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(socket, libc::SIOCSIFFLAGS, &request))
    })();
    libc::close(socket);
    result.map(|_| ())
}

/// Closes every descriptor from 3 up except `keep`.
unsafe fn close_all_but(keep: libc::c_int) {
    let max = libc::c_uint::MAX;
    let keep = keep as libc::c_uint;
    if keep > 3 {
        libc::syscall(libc::SYS_close_range, 3, keep - 1, 0);
    }
    libc::syscall(libc::SYS_close_range, keep + 1, max, 0);
}

unsafe fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
    let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    let error = io::Error::last_os_error();
    libc::close(fd);
    if written < 0 {
        return Err(error);
    }
    Ok(())
}

unsafe fn read_full(fd: libc::c_int, status: &mut libc::c_int) -> bool {
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        let n = libc::read(fd, bytes[got..].as_mut_ptr().cast(), bytes.len() - got);
        if n > 0 {
            got += n as usize;
        } else if n == 0 || errno() != libc::EINTR {
            return false;
        }
    }
    *status = libc::c_int::from_ne_bytes(bytes);
    true
}

fn errno() -> libc::c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check<T: Copy + PartialOrd + Default>(result: T) -> io::Result<T> {
    if result < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Decimal digits of `n` into `buffer`, without allocating.
fn format_number(n: i32, buffer: &mut [u8; 12]) -> &[u8] {
    let mut at = buffer.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &buffer[at..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_format_without_allocating() {
        let mut buffer = [0u8; 12];
        assert_eq!(super::format_number(0, &mut buffer), b"0");
        assert_eq!(super::format_number(1234, &mut buffer), b"1234");
    }
}
