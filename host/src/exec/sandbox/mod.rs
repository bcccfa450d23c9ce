//! Confinement of native processes. Plugin code (wasm) is sandboxed by
//! wasmtime; the processes a plugin describes are confined here:
//!
//! * they run as an unprivileged user ([`user`]), never as root;
//! * each lives in cgroups of its own under its run's ([`cgroup`]): limited
//!   (memory, CPU, processes), measured (CPU time, peak memory, peak process
//!   count) and killed as a whole at its end, with whatever it forked;
//! * where the machine allows, in PID, mount and network namespaces of its own
//!   ([`child`]): when the step's program exits, everything it left dies with
//!   the namespace, it sees only its own processes, and it may get a private
//!   `/tmp` and no network;
//! * with resource limits (open files, file size).
//!
//! What the machine offers is probed once at start-up ([`probe`]); before a
//! process starts, [`plan`] resolves which of the protections it asks for can
//! be given, and the plan is recorded with the process.
//!
//! This is hand-written rather than a container runtime crate: those build a
//! root file system of their own and run processes synchronously, while the
//! host needs the process's pipes in its async runtime, the host's existing
//! file system, and hybrid cgroup machines (v1 controllers beside v2's
//! `cgroup.kill`).

pub mod cells;
pub mod cgroup;
// The only unsafe code of the host besides loading compiled plugins: how a
// confined process is started, and what its own processes do before exec.
#[allow(unsafe_code)]
mod child;
#[allow(unsafe_code)]
mod clone3;
mod confine;
mod janitor;
mod linger;
pub mod plan;
pub mod probe;
#[allow(unsafe_code)]
mod raw;
#[allow(unsafe_code)]
mod spawn;
mod stage;
pub mod user;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use plan::{Plan, Policy, Protection};
pub use probe::{ProbeOptions, Sandbox};
pub use spawn::{Command, Started};

/// What a process may use; None is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Memory (resident, plus swap where it can be limited), bytes.
    pub memory_bytes: Option<u64>,
    /// CPU, thousandths of one core (1500 = one and a half cores).
    pub cpu_millicores: Option<u32>,
    /// Processes and threads at once.
    pub processes: Option<u32>,
    /// Open file descriptors.
    pub open_files: Option<u64>,
    /// Largest file it may write, bytes.
    pub file_size_bytes: Option<u64>,
    /// No network: only a loopback interface of its own.
    pub no_network: bool,
    /// A private, empty `/tmp`.
    pub private_tmp: bool,
}

/// What a process used, read from its cgroups when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    /// CPU time in user mode, milliseconds.
    pub cpu_user_ms: Option<f64>,
    /// CPU time in the kernel, milliseconds.
    pub cpu_system_ms: Option<f64>,
    /// Highest memory use, bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Most processes at once.
    pub peak_processes: Option<u64>,
    /// The kernel killed a process of it for exceeding its memory limit.
    pub memory_limit_hit: bool,
}

/// One of a process's cgroups: a new one, or one of the host's cells.
struct Joined {
    dir: PathBuf,
    powers: cgroup::Powers,
    unified: bool,
    /// When it is a cell: the cells it goes back to, and the cell.
    cell: Option<(std::sync::Arc<cells::Cells>, cells::Cell)>,
}

impl Joined {
    /// Where its control files are opened.
    fn at(&self) -> cgroup::At<'_> {
        match &self.cell {
            Some((_, cell)) => cgroup::At::Fd(cell.at()),
            None => cgroup::At::Path(&self.dir),
        }
    }

    /// Its counters before the process (zero in a new cgroup).
    fn before(&self) -> cells::Counters {
        self.cell
            .as_ref()
            .map(|(_, cell)| cell.before)
            .unwrap_or_default()
    }
}

/// One process's confinement: its cgroups and what its child does before exec.
pub struct Confinement {
    cgroups: Vec<Joined>,
    /// Whether everything in its cgroups was killed at once since its process
    /// started (with `cgroup.kill`, after which nothing can fork in them).
    killed: std::sync::atomic::AtomicBool,
    /// Whether `cgroup.kill` was ever written to its unified cgroup: a process
    /// the kernel clones into it afterwards is killed too (the cgroup's kill
    /// count differs from its parent's), so the cgroup is not reused.
    spent: std::sync::atomic::AtomicBool,
    setup: std::sync::Arc<child::ChildSetup>,
    /// What protects it, and what could not.
    pub plan: Plan,
}

impl std::fmt::Debug for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confinement").field("plan", &self.plan).finish()
    }
}

impl Confinement {
    /// Starts `command` in this confinement: in its cgroups and namespaces,
    /// as the step user, in its working directory (entered inside them).
    /// Call [`Started::await_exec`] next to learn whether the program started.
    pub fn start(self: &std::sync::Arc<Self>, command: Command) -> std::io::Result<Started> {
        self.killed.store(false, std::sync::atomic::Ordering::SeqCst);
        spawn::start(self, command)
    }

    /// Kills every process left in its cgroups: through the one with
    /// `cgroup.kill` where there is one (each cgroup holds the same processes,
    /// which cannot move themselves out), otherwise through each in turn.
    pub fn kill_all(&self) {
        if let Some(killer) = self.cgroups.iter().find(|c| c.powers.kill) {
            // An empty cgroup has nothing to kill: it stays reusable.
            if cgroup::populated(killer.at()) != Some(false) {
                cgroup::kill_all(&killer.dir, true);
                self.spent.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.killed.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        for joined in &self.cgroups {
            cgroup::kill_all(&joined.dir, false);
        }
    }

    /// Processes still in its cgroups.
    pub fn members(&self) -> Vec<i32> {
        self.cgroups
            .iter()
            .flat_map(|joined| cgroup::members(&joined.dir))
            .collect()
    }

    /// What it used (call after it ended, before it is dropped).
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for joined in &self.cgroups {
            let (powers, at, before) = (joined.powers, joined.at(), joined.before());
            if powers.cpu_usage && usage.cpu_user_ms.is_none() {
                (usage.cpu_user_ms, usage.cpu_system_ms) = cpu_times(at, joined.unified, &before);
            }
            if powers.memory && usage.peak_memory_bytes.is_none() {
                let (peak, events, oom) = if joined.unified {
                    ("memory.peak", "memory.events", "oom_kill")
                } else {
                    ("memory.max_usage_in_bytes", "memory.oom_control", "oom_kill")
                };
                usage.peak_memory_bytes = cgroup::read_number(at, peak);
                // Without a limit of its own, nothing was killed for exceeding it.
                usage.memory_limit_hit = self.plan.applied.contains(&Protection::MemoryLimit)
                    && cgroup::read_key(at, events, oom).is_some_and(|n| n > before.oom_kills);
            }
            if powers.pids && usage.peak_processes.is_none() {
                usage.peak_processes = cgroup::read_number(at, "pids.peak");
            }
        }
        usage
    }
}

impl Drop for Confinement {
    /// Kills what is left, then has the cgroups removed (and its memory cell
    /// given back) off the caller's path.
    fn drop(&mut self) {
        if !*self.killed.get_mut() {
            self.kill_all();
        }
        let mut removed = Vec::new();
        let mut recycled = Vec::new();
        let spent = *self.spent.get_mut();
        let mut discarded = Vec::new();
        for joined in self.cgroups.drain(..) {
            match joined.cell {
                Some(cell) if !(spent && joined.unified) => recycled.push(cell),
                // Its tasks may still be leaving after `cgroup.kill`.
                Some(_) => discarded.push(joined.dir),
                None => removed.push(joined.dir),
            }
        }
        janitor::release_later(removed, discarded, recycled);
    }
}

/// CPU user and system milliseconds since `before`: v2 `cpu.stat`
/// (microseconds) or v1 `cpuacct.stat` (clock ticks, in a new cgroup).
fn cpu_times(dir: cgroup::At<'_>, unified: bool, before: &cells::Counters) -> (Option<f64>, Option<f64>) {
    let file = if unified { "cpu.stat" } else { "cpuacct.stat" };
    let Some(text) = cgroup::read_small(dir, file) else {
        return (None, None);
    };
    let value = |key| cgroup::parse_key(&text, key);
    if unified {
        let ms = |us: u64, since: u64| us.saturating_sub(since) as f64 / 1000.0;
        (
            value("user_usec").map(|us| ms(us, before.cpu_user_us)),
            value("system_usec").map(|us| ms(us, before.cpu_system_us)),
        )
    } else {
        // cpuacct.stat counts USER_HZ ticks, 100 per second on every Linux.
        let ms = |ticks: u64| ticks as f64 * 10.0;
        (value("user").map(ms), value("system").map(ms))
    }
}

/// A path as a C string for the child (paths never hold NUL bytes).
fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// The cgroup of one run, relative to each hierarchy's base.
pub fn run_cgroup(host_id: &str, run_id: i64) -> PathBuf {
    PathBuf::from(host_id).join(format!("run-{run_id}"))
}
