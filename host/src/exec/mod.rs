//! One native process: the only module that spawns programs. A process runs in
//! its own process group with a cleared environment; on timeout or cancellation
//! the whole group gets SIGTERM, a grace period, then SIGKILL, and is reaped.
//! stdout and stderr are read concurrently up to a cap and drained past it, so
//! the child never blocks on a full pipe and the host never holds more than the cap.

mod binary;
mod capture;
pub mod python;
pub mod reaper;
pub mod resources;
pub mod sandbox;
mod seal;
mod spawned;
mod terminal;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

pub use binary::BinaryDirs;
pub use capture::{Captured, LiveOutput};

/// How long to keep reading a pipe after the process group is gone: only a
/// process that escaped the group (double fork + setsid) can still hold it.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// What to execute.
#[derive(Debug, Clone)]
pub enum Program {
    /// `/bin/sh -c <script> pulsehost <args…>`: args arrive as `$1…`, never pasted.
    Shell(String),
    /// An executable run directly.
    Executable(PathBuf),
    /// A binary step: `path` (resolved) runs, and sees `name` (as the task
    /// declared it) as its `argv[0]`.
    Binary {
        /// The resolved file.
        path: PathBuf,
        /// What the program is told it was called.
        name: String,
    },
}

/// A fully resolved process to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program.
    pub program: Program,
    /// Its arguments.
    pub args: Vec<String>,
    /// The complete environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: PathBuf,
    /// Bytes for stdin; None gives an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Bytes kept per stream.
    pub output_cap: usize,
    /// Keep the last `output_cap` bytes of each stream (a rolling log), not the first.
    pub rolling: bool,
    /// Its cgroups, namespaces, user and limits; None runs it in its process
    /// group only.
    pub confinement: Option<Arc<sandbox::Confinement>>,
    /// Under a pseudo-terminal: stdout and stderr both go to it, captured as stdout.
    pub terminal: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit, killed by a signal, or could not start.
    Failed,
    /// Hit its timeout and was killed.
    TimedOut,
    /// Cancelled and killed.
    Cancelled,
}

impl ExitKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitKind::Succeeded => "succeeded",
            ExitKind::Failed => "failed",
            ExitKind::TimedOut => "timed_out",
            ExitKind::Cancelled => "cancelled",
        }
    }
}

/// Everything observed about one process.
#[derive(Debug, Clone)]
pub struct ProcessOutcome {
    /// How it ended.
    pub kind: ExitKind,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal, when one ended it.
    pub signal: Option<i32>,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
    /// Why it could not start, or a note on how it ended.
    pub error: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: DateTime<Utc>,
    /// Wall-clock duration.
    pub duration: Duration,
    /// What it used, when it ran confined.
    pub usage: Option<sandbox::Usage>,
}

/// Runs one process to completion, timeout or cancellation.
pub async fn run(spec: &ProcessSpec, cancel: &CancellationToken) -> ProcessOutcome {
    run_observed(spec, cancel, |_, _| {}).await
}

/// [`run`], telling `on_spawn` the id of the process group (the child's pid)
/// as soon as the child exists, before waiting for it: the runner records it
/// so that a host that dies mid-run leaves something the next host can kill.
/// `on_spawn` also gets the output captured so far, readable while it runs.
pub async fn run_observed(
    spec: &ProcessSpec,
    cancel: &CancellationToken,
    on_spawn: impl FnOnce(i32, LiveOutput),
) -> ProcessOutcome {
    let started_at = Utc::now();
    let clock = Instant::now();
    let not_started = |error: String| ProcessOutcome {
        kind: ExitKind::Failed,
        exit_code: None,
        signal: None,
        stdout: Captured::default(),
        stderr: Captured::default(),
        error: Some(error),
        started_at,
        finished_at: Utc::now(),
        duration: clock.elapsed(),
        usage: None,
    };
    let started = match spawned::start(spec) {
        Ok(started) => started,
        Err(error) => return not_started(error),
    };
    // `_owned` first: bindings drop in reverse, so the child (killed and
    // reaped when this future is dropped early) goes before the reaper may
    // take its pid.
    let spawned::Running {
        _owned,
        mut child,
        stdin,
        stdout,
        stderr,
    } = started;
    let group = child.group().map(Pid::from_raw);
    let stdout = stdout.map(|pipe| capture::start(pipe, spec.output_cap, spec.rolling));
    let stderr = stderr.map(|pipe| capture::start(pipe, spec.output_cap, spec.rolling));
    if let Some(pgid) = group {
        on_spawn(pgid.as_raw(), LiveOutput::of(stdout.as_ref(), stderr.as_ref()));
    }
    if let (Some(mut stdin), Some(bytes)) = (stdin, spec.stdin.clone()) {
        // A child that does not read its stdin must not block the host.
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }

    let (status, kind) = tokio::select! {
        status = child.wait() => (status, None),
        _ = tokio::time::sleep(spec.timeout) => (terminate(&mut child, group, spec.grace).await, Some(ExitKind::TimedOut)),
        _ = cancel.cancelled() => (terminate(&mut child, group, spec.grace).await, Some(ExitKind::Cancelled)),
    };
    // Whatever the leader left behind in its group, and in its cgroups, goes with it.
    signal_group(group, Signal::SIGKILL);
    if let Some(confinement) = &spec.confinement {
        confinement.kill_all();
    }
    if child.leaves_group_to_host() {
        reap_group(group).await;
    }
    let usage = spec.confinement.as_ref().map(|c| c.usage());
    let stdout = capture::finish(stdout, DRAIN_AFTER_EXIT).await;
    let stderr = capture::finish(stderr, DRAIN_AFTER_EXIT).await;

    let (kind, exit_code, signal, error) = judge(spec, status, kind, usage);
    ProcessOutcome {
        kind,
        exit_code,
        signal,
        stdout,
        stderr,
        error,
        started_at,
        finished_at: Utc::now(),
        duration: clock.elapsed(),
        usage,
    }
}

/// How a process ended, from its wait status, whether it was stopped (timed
/// out or cancelled) and whether it ran out of memory: kind, exit code, signal
/// and the error to record.
fn judge(
    spec: &ProcessSpec,
    status: std::io::Result<std::process::ExitStatus>,
    stopped: Option<ExitKind>,
    usage: Option<sandbox::Usage>,
) -> (ExitKind, Option<i32>, Option<i32>, Option<String>) {
    let (exit_code, signal, error) = match &status {
        Ok(s) => (s.code(), s.signal(), None),
        Err(e) => (None, None, Some(format!("waiting for the process failed: {e}"))),
    };
    let memory_limit_hit = usage.is_some_and(|u| u.memory_limit_hit);
    let kind = stopped.unwrap_or(match exit_code {
        Some(0) if !memory_limit_hit => ExitKind::Succeeded,
        _ => ExitKind::Failed,
    });
    let error = error.or_else(|| match kind {
        ExitKind::Succeeded => None,
        ExitKind::TimedOut => Some(format!("timed out after {} ms", spec.timeout.as_millis())),
        ExitKind::Cancelled => Some("cancelled".into()),
        ExitKind::Failed if memory_limit_hit => Some(MEMORY_LIMIT_EXCEEDED.into()),
        ExitKind::Failed => Some(match (exit_code, signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended without an exit status".into(),
        }),
    });
    (kind, exit_code, signal, error)
}

/// The error of a process the kernel stopped for exceeding its memory limit.
pub const MEMORY_LIMIT_EXCEEDED: &str =
    "exceeded its memory limit: the kernel killed it (out of memory in its cgroup)";

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL; reaps.
async fn terminate(
    child: &mut spawned::Child,
    group: Option<Pid>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(group, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(group, Signal::SIGKILL);
            child.wait().await
        }
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(pgid) = group {
        // ESRCH (the group is already gone) is the expected, harmless case.
        let _ = killpg(pgid, signal);
    }
}

/// Makes this process the reaper of its orphaned descendants, so a step's
/// grandchildren, once their parent dies, are ours to reap (see [`reap_group`])
/// instead of lingering as zombies under an init that may not reap.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphaned step processes are init's to reap");
    }
}

/// How long to wait for a killed group's members to be reapable.
const REAP_WINDOW: Duration = Duration::from_secs(1);

/// Reaps members of a killed process group that were re-parented to us. Only
/// this group's processes are waited for, so other steps' children (which tokio
/// reaps) are never touched.
async fn reap_group(group: Option<Pid>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let Some(pgid) = group else { return };
    let target = Pid::from_raw(-pgid.as_raw());
    let until = Instant::now() + REAP_WINDOW;
    loop {
        match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
