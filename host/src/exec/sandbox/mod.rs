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

pub mod cgroup;
// The only unsafe code of the host besides loading compiled plugins: how a
// confined process is started, and what its own processes do before exec.
#[allow(unsafe_code)]
mod child;
#[allow(unsafe_code)]
mod clone3;
mod linger;
pub mod plan;
pub mod probe;
#[allow(unsafe_code)]
mod raw;
#[allow(unsafe_code)]
mod spawn;
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

/// One process's confinement: its cgroups and what its child does before exec.
pub struct Confinement {
    cgroups: Vec<(PathBuf, cgroup::Powers, bool)>,
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
        spawn::start(self, command)
    }

    /// Kills every process left in its cgroups: through the one with
    /// `cgroup.kill` where there is one (each cgroup holds the same processes,
    /// which cannot move themselves out), otherwise through each in turn.
    pub fn kill_all(&self) {
        if let Some((dir, _, unified)) = self.cgroups.iter().find(|(_, powers, _)| powers.kill) {
            cgroup::kill_all(dir, *unified);
            return;
        }
        for (dir, _, unified) in &self.cgroups {
            cgroup::kill_all(dir, *unified);
        }
    }

    /// Processes still in its cgroups.
    pub fn members(&self) -> Vec<i32> {
        self.cgroups
            .iter()
            .flat_map(|(dir, _, _)| cgroup::members(dir))
            .collect()
    }

    /// What it used (call after it ended, before it is dropped).
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for (dir, powers, unified) in &self.cgroups {
            if powers.cpu_usage && usage.cpu_user_ms.is_none() {
                (usage.cpu_user_ms, usage.cpu_system_ms) = cpu_times(dir, *unified);
            }
            if powers.memory && usage.peak_memory_bytes.is_none() {
                let (peak, events, oom) = if *unified {
                    ("memory.peak", "memory.events", "oom_kill")
                } else {
                    ("memory.max_usage_in_bytes", "memory.oom_control", "oom_kill")
                };
                usage.peak_memory_bytes = cgroup::read_number(dir, peak);
                usage.memory_limit_hit = cgroup::read_key(dir, events, oom).is_some_and(|n| n > 0);
            }
            if powers.pids && usage.peak_processes.is_none() {
                usage.peak_processes = cgroup::read_number(dir, "pids.peak");
            }
        }
        usage
    }
}

impl Drop for Confinement {
    /// Kills what is left, then has the cgroups removed off the caller's path.
    fn drop(&mut self) {
        self.kill_all();
        let dirs = self.cgroups.drain(..).map(|(dir, _, _)| dir).collect();
        cgroup::remove_later(dirs);
    }
}

/// CPU user and system milliseconds: v2 `cpu.stat` (microseconds) or v1
/// `cpuacct.stat` (clock ticks).
fn cpu_times(dir: &Path, unified: bool) -> (Option<f64>, Option<f64>) {
    if unified {
        let ms = |key| cgroup::read_key(dir, "cpu.stat", key).map(|us| us as f64 / 1000.0);
        (ms("user_usec"), ms("system_usec"))
    } else {
        // cpuacct.stat counts USER_HZ ticks, 100 per second on every Linux.
        let ms = |key| cgroup::read_key(dir, "cpuacct.stat", key).map(|t| t as f64 * 10.0);
        (ms("user"), ms("system"))
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
