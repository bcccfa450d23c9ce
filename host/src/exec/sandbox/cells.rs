//! Cgroups kept and reused, one process after another ("cells"). Making a
//! cgroup is most of what confining a step costs, and removing one costs more
//! than it seems: the kernel frees it later, on other threads, holding the
//! lock the next step's cgroup operations wait for (a memory cgroup stays
//! alive, dying, while pages it was charged for remain). Two kinds are reused:
//!
//! * a v1 `memory` cgroup: given back once no task is left in it, it is
//!   emptied of its charges (when more than [`LEFT_OVER_BYTES`]), unlimited
//!   again, its peak reset and its out-of-memory kill count noted;
//! * a unified (v2) cgroup used only to kill and to measure CPU time: its CPU
//!   counters are noted, and the next process's time is what they grew by.
//!
//! A process's `pids` cgroup is always new (its peak cannot be reset) and is
//! named after its run: cells are used only beside one, through which crash
//! recovery kills a lost run's processes.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags};

use super::cgroup::{self, Hierarchy};

/// What a cell may still be charged for when it is handed out again: at most
/// this much of a process's peak memory can be the previous process's.
pub const LEFT_OVER_BYTES: u64 = 1 << 20;

/// A host's cells in one hierarchy.
#[derive(Debug)]
pub struct Cells {
    /// The hierarchy's base.
    pub base: PathBuf,
    /// Whether it is the unified hierarchy (otherwise v1 `memory`).
    unified: bool,
    /// `<base>/<host id>`: the cells are its `cell-<n>` children.
    parent: PathBuf,
    /// Fresh cells ready to be taken.
    free: Mutex<Vec<Cell>>,
    /// The number of the next cell made.
    next: AtomicU64,
}

/// One reusable cgroup, kept open: its control files are opened relative to
/// it, the program is born in it (unified) or joins it through the `tasks`
/// file kept open (v1), without resolving the hierarchy's path each time.
#[derive(Debug)]
pub struct Cell {
    /// Its directory.
    pub dir: PathBuf,
    /// The directory, open.
    pub fd: OwnedFd,
    /// Its v1 `tasks` file, open for writing (v1 only).
    pub tasks: Option<OwnedFd>,
    /// Its counters when it was handed out.
    pub before: Counters,
}

impl Cell {
    /// The directory, open, to read and write its control files through.
    pub fn at(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A cell's cumulative counters, which a process's usage is measured from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Processes the kernel killed for the memory limit.
    pub oom_kills: u64,
    /// CPU time in user mode, microseconds.
    pub cpu_user_us: u64,
    /// CPU time in the kernel, microseconds.
    pub cpu_system_us: u64,
}

impl Cells {
    /// Host `host_id`'s cells in `hierarchy`, when its cgroups can be reused:
    /// v1 `memory`, or the unified hierarchy when it offers no controller
    /// whose state a process leaves behind (memory, pids, a CPU quota).
    pub fn of(hierarchy: &Hierarchy, host_id: &str) -> Option<Cells> {
        let powers = hierarchy.powers;
        let reusable = if hierarchy.unified {
            !powers.memory && !powers.pids && !powers.cpu_quota
        } else {
            powers.memory && !powers.pids && !powers.cpu_quota && !powers.cpu_usage
        };
        reusable.then(|| Cells {
            base: hierarchy.base.clone(),
            unified: hierarchy.unified,
            parent: hierarchy.base.join(host_id),
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        })
    }

    /// A fresh cell: a free one that still exists (recovery on this machine
    /// may have removed the free cells of a host it declared lost), or a new one.
    pub fn take(&self) -> std::io::Result<Cell> {
        loop {
            let free = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match free {
                Some(cell) if cell.dir.exists() => return Ok(cell),
                Some(_) => continue,
                None => break,
            }
        }
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.parent.join(format!("cell-{number}"));
        std::fs::create_dir_all(&dir)?;
        let opened = self.open(&dir);
        let (fd, tasks) = opened.inspect_err(|_| cgroup::remove(&dir))?;
        let before = self.counters(fd.as_fd());
        Ok(Cell {
            dir,
            fd,
            tasks,
            before,
        })
    }

    /// A new cell's directory, and its v1 `tasks` file, open.
    fn open(&self, dir: &std::path::Path) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
        let directory = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(dir, directory, Mode::empty())?;
        let tasks = if self.unified {
            None
        } else {
            let write = OFlags::WRONLY | OFlags::CLOEXEC;
            Some(rustix::fs::openat(&fd, "tasks", write, Mode::empty())?)
        };
        Ok((fd, tasks))
    }

    /// Makes `cell` fresh for its next process and gives it back, once no
    /// task is left in it; returns it while one is (to try again later).
    pub fn recycle(&self, mut cell: Cell) -> Result<(), Cell> {
        let members = if self.unified { "cgroup.procs" } else { "tasks" };
        match cgroup::read_small(cell.at(), members) {
            Some(tasks) if tasks.trim().is_empty() => {}
            Some(_) => return Err(cell),
            // Gone (removed by recovery): nothing to give back.
            None => return Ok(()),
        }
        if !self.unified && !reset_memory(cell.at()) {
            // Charged for what it cannot give back (files in a tmpfs, with no
            // swap): a new process would start with it counted.
            cgroup::remove(&cell.dir);
            return Ok(());
        }
        cell.before = self.counters(cell.at());
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(cell);
        Ok(())
    }

    /// Removes every free cell (the host is stopping; a cell in use stays).
    pub fn remove_free(&self) {
        let free = std::mem::take(&mut *self.free.lock().unwrap_or_else(|e| e.into_inner()));
        for cell in free {
            cgroup::remove(&cell.dir);
        }
    }

    fn counters(&self, dir: BorrowedFd<'_>) -> Counters {
        if self.unified {
            let text = cgroup::read_small(dir, "cpu.stat").unwrap_or_default();
            let read = |key| cgroup::parse_key(&text, key).unwrap_or(0);
            Counters {
                cpu_user_us: read("user_usec"),
                cpu_system_us: read("system_usec"),
                ..Counters::default()
            }
        } else {
            Counters {
                oom_kills: cgroup::read_key(dir, "memory.oom_control", "oom_kill").unwrap_or(0),
                ..Counters::default()
            }
        }
    }
}

/// A v1 memory cgroup as a new one is: its charges left by the last process
/// (its files' page cache) gone when they are more than a little (emptying
/// drains every CPU's page lists), no limit, its peak from now on. False when
/// it could not be emptied.
fn reset_memory(dir: BorrowedFd<'_>) -> bool {
    let charged = || cgroup::read_number(dir, "memory.usage_in_bytes").unwrap_or(u64::MAX);
    if charged() > LEFT_OVER_BYTES {
        let _ = cgroup::set(dir, "memory.force_empty", "0");
        if charged() > LEFT_OVER_BYTES {
            return false;
        }
    }
    // The swap limit (which may not be below the memory limit) first.
    let _ = cgroup::set(dir, "memory.memsw.limit_in_bytes", "-1");
    let _ = cgroup::set(dir, "memory.limit_in_bytes", "-1");
    let _ = cgroup::set(dir, "memory.max_usage_in_bytes", "0");
    true
}
