//! The raw system calls init and the program make besides their own
//! sequence: entering a directory, closing descriptors, bringing up loopback,
//! writing a file. Like everything they run, these make only raw system calls
//! (rustix's and the `syscalls` crate's), allocate nothing and never panic.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::libc;
use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use rustix::process::Resource;
use syscalls::Sysno;

/// Enters `dir` without following symbolic links (`openat2` with
/// `RESOLVE_NO_SYMLINKS`; a plain `chdir` where the kernel lacks it).
pub(super) fn enter_directory(dir: &CStr) -> Result<(), Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(CWD, dir, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
        Ok(fd) => {
            let entered = rustix::process::fchdir(&fd);
            close_raw(fd);
            entered
        }
        Err(Errno::NOSYS) => rustix::process::chdir(dir),
        Err(e) => Err(e),
    }
}

/// Closes every descriptor from `first` up except those in `keep` (in
/// ascending order): one by one up to the open-files limit where the kernel
/// lacks `close_range` (Linux < 5.9).
pub(super) unsafe fn close_from(first: RawFd, keep: &[RawFd]) {
    for_each_range_around(first, keep, |low, high| {
        let closed = syscalls::syscall!(Sysno::close_range, low as u32, high as u32, 0);
        if closed == Err(syscalls::Errno::ENOSYS) {
            let limit = rustix::process::getrlimit(Resource::Nofile)
                .current
                .unwrap_or(65536);
            for fd in low..=high.min(limit.min(1 << 20) as RawFd) {
                rustix::io::close(fd);
            }
        }
    });
}

/// Calls `each(low, high)` for every range of descriptors from `first` up
/// without those in `keep` (ascending; negative ones ignored).
fn for_each_range_around(first: RawFd, keep: &[RawFd], mut each: impl FnMut(RawFd, RawFd)) {
    let mut low = first;
    for &kept in keep {
        if kept < low {
            continue;
        }
        if kept > low {
            each(low, kept - 1);
        }
        low = kept.saturating_add(1);
    }
    each(low, RawFd::MAX);
}

/// Brings `lo` up in a fresh network namespace.
pub(super) unsafe fn loopback_up() -> Result<(), Errno> {
    use rustix::ioctl::{ioctl, Setter, Updater};
    use rustix::net::{socket, AddressFamily, SocketType};
    let socket = socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut request: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo\0".iter().enumerate() {
        request.ifr_name[i] = *b as libc::c_char;
    }
    const GET: rustix::ioctl::Opcode = libc::SIOCGIFFLAGS as rustix::ioctl::Opcode;
    const SET: rustix::ioctl::Opcode = libc::SIOCSIFFLAGS as rustix::ioctl::Opcode;
    if let Err(e) = ioctl(&socket, Updater::<GET, libc::ifreq>::new(&mut request)) {
        close_raw(socket);
        return Err(e);
    }
    request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    let up = ioctl(&socket, Setter::<SET, libc::ifreq>::new(request));
    close_raw(socket);
    up
}

pub(super) fn write_file(path: &CStr, bytes: &[u8]) -> Result<(), Errno> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let written = rustix::io::write(&fd, bytes).map(|_| ());
    close_raw(fd);
    written
}

/// Closes `fd` with a raw system call (dropping it would call libc's `close`,
/// which touches the spawning thread's state).
pub(super) fn close_raw(fd: std::os::fd::OwnedFd) {
    use std::os::fd::IntoRawFd;
    // SAFETY: the descriptor is ours and closed once.
    unsafe { rustix::io::close(fd.into_raw_fd()) }
}

#[cfg(test)]
mod tests {
    use super::for_each_range_around;

    #[test]
    fn descriptors_are_closed_around_those_kept() {
        let all = |first, keep: &[i32]| {
            let mut ranges = Vec::new();
            for_each_range_around(first, keep, |low, high| ranges.push((low, high)));
            ranges
        };
        let max = i32::MAX;
        assert_eq!(all(3, &[5, 9]), [(3, 4), (6, 8), (10, max)]);
        assert_eq!(all(3, &[-1, 5]), [(3, 4), (6, max)]);
        assert_eq!(all(3, &[-1, -1]), [(3, max)]);
        assert_eq!(all(3, &[3, 4]), [(5, max)]);
        assert_eq!(all(3, &[7, 7]), [(3, 6), (8, max)]);
        assert_eq!(
            all(3, &[4, 6, 8, 20]),
            [(3, 3), (5, 5), (7, 7), (9, 19), (21, max)]
        );
        assert_eq!(all(3, &[]), [(3, max)]);
    }
}
