//! `clone3` with `CLONE_INTO_CGROUP` for a `CLONE_VM` child on a stack of its
//! own, which neither glibc nor rustix offers. The child must begin in a
//! function on its new stack rather than return from the system call into its
//! parent's frames, so the call is a few instructions of assembly, written for
//! x86-64. Elsewhere it reports `ENOSYS`, and the caller falls back to `clone`
//! and a join by hand.
//!
//! Being born in a cgroup costs the kernel next to nothing, while moving a
//! process there afterwards waits for the global lock that every whole-process
//! move takes (a read-copy-update grace period).

use std::ffi::{c_int, c_void};
use std::os::fd::AsRawFd;

use nix::libc;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::child::CgroupEntry;
use super::spawn::Stack;

/// What the child runs: `entry(arg)`, and it exits with what that returns.
pub(super) type Entry = extern "C" fn(*mut c_void) -> c_int;

/// `CLONE_INTO_CGROUP` (a 64-bit flag only `clone3` takes).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args`, in the version that has `cgroup`.
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts `entry(arg)` as a `CLONE_VM | CLONE_VFORK` child (the caller sleeps
/// until it execs or exits) on `stack`, born in the v2 cgroup `cgroup`
/// (through its open descriptor when the host keeps one). Returns its
/// process id.
///
/// # Safety
///
/// As for `clone` with `CLONE_VM`: `entry` may make only raw system calls,
/// `arg` and `stack` outlive the child's use of them, and no signal handler of
/// the caller's may run in the child (its signals are blocked).
pub(super) unsafe fn into_cgroup(
    cgroup: &CgroupEntry,
    stack: &Stack,
    entry: Entry,
    arg: *mut c_void,
) -> Result<c_int, Errno> {
    let opened = if cgroup.fd >= 0 {
        None
    } else {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Some(rustix::fs::open(&*cgroup.dir, flags, Mode::empty())?)
    };
    let fd = opened.as_ref().map_or(cgroup.fd, |fd| fd.as_raw_fd());
    let (low, len) = stack.usable();
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: low as u64,
        stack_size: len as u64,
        cgroup: fd as u64,
        ..CloneArgs::default()
    };
    let started = raw_clone3(&args, entry, arg);
    if let Some(fd) = opened {
        super::raw::close_raw(fd);
    }
    started
}

/// The system call. In the child, which starts with the registers the caller
/// had but the new stack, it calls `entry(arg)` with no frame above it and
/// exits with the result; the caller gets the child's id or an error.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(args: &CloneArgs, entry: Entry, arg: *mut c_void) -> Result<c_int, Errno> {
    let returned: isize;
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "xor ebp, ebp",
        "mov rdi, r12",
        "call r13",
        "mov edi, eax",
        "mov eax, {exit}",
        "syscall",
        "ud2",
        "2:",
        exit = const libc::SYS_exit,
        inlateout("rax") libc::SYS_clone3 as isize => returned,
        in("rdi") args as *const CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") arg,
        in("r13") entry,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    if returned < 0 {
        Err(Errno::from_raw_os_error(-returned as i32))
    } else {
        Ok(returned as c_int)
    }
}

/// Not written for this architecture: the caller falls back.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(_: &CloneArgs, _: Entry, _: *mut c_void) -> Result<c_int, Errno> {
    Err(Errno::NOSYS)
}
