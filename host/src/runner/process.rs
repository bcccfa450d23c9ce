//! From a task's [`ExecSpec`] to a resolved [`ProcessSpec`] (environment,
//! interpreter, working directory, limits) and from its outcome to a stored row.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::exec::sandbox::{Limits, Plan, Policy};
use crate::exec::{self, Captured, ExitKind, ProcessOutcome, ProcessSpec};
use crate::schemas::{self, Violation};
use crate::spec::{ExecSpec, SandboxPolicy, StepLimits};
use crate::store::models::NewStepExecution;

use super::dispatch::Taken;
use super::groups::Groups;
use super::io_contract;
use super::Runner;

/// Where in the run a process belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Provision,
    Background,
    Step,
    Cleanup,
    /// A service's on-shutdown process.
    Shutdown,
}

impl Phase {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Phase::Provision => "provision",
            Phase::Background => "background",
            Phase::Step => "step",
            Phase::Cleanup => "cleanup",
            Phase::Shutdown => "shutdown",
        }
    }
}

/// One process of a run, identified for the environment and the record.
pub(super) struct Invocation<'a> {
    pub phase: Phase,
    pub index: i32,
    pub name: &'a str,
    pub spec: &'a ExecSpec,
    /// JSON piped from the previous step (the spec's `stdin-json` wins).
    pub piped_stdin: Option<Vec<u8>>,
    /// The run's chosen stdin (a manual run's first step): wins over both.
    pub chosen_stdin: Option<Vec<u8>>,
    /// Upper bound from the run's remaining time.
    pub budget: Duration,
}

/// How often a running process's new output is written for live viewers.
const LIVE_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The outcome of one process and the row to store for it.
pub(super) struct Executed {
    pub outcome: ProcessOutcome,
    pub stdout_json: Option<serde_json::Value>,
    /// What protected it (None when it never got as far as a plan).
    pub plan: Option<Plan>,
    /// How its stdin or stdout broke its JSON Schema (it failed for that).
    pub schema_errors: Option<Vec<Violation>>,
}

impl Executed {
    pub fn row(&self, run_id: i64, inv: &Invocation<'_>) -> NewStepExecution {
        let o = &self.outcome;
        let usage = o.usage.unwrap_or_default();
        NewStepExecution {
            run_id,
            phase: inv.phase.as_str().into(),
            step_index: inv.index,
            name: inv.name.into(),
            kind: inv.spec.kind.name().into(),
            status: o.kind.as_str().into(),
            exit_code: o.exit_code,
            signal: o.signal,
            stdout: o.stdout.bytes.clone(),
            stderr: o.stderr.bytes.clone(),
            stdout_bytes: o.stdout.total as i64,
            stderr_bytes: o.stderr.total as i64,
            stdout_truncated: o.stdout.truncated,
            stderr_truncated: o.stderr.truncated,
            stdout_json: self.stdout_json.clone(),
            error: o.error.clone(),
            started_at: o.started_at,
            finished_at: o.finished_at,
            duration_ms: o.duration.as_secs_f64() * 1000.0,
            plan: self.plan.as_ref().and_then(|p| serde_json::to_value(p).ok()),
            cpu_user_ms: usage.cpu_user_ms,
            cpu_system_ms: usage.cpu_system_ms,
            peak_memory_bytes: usage.peak_memory_bytes.map(|b| b as i64),
            peak_processes: usage.peak_processes.map(|n| n as i32),
            schema_errors: self
                .schema_errors
                .as_ref()
                .and_then(|v| serde_json::to_value(v).ok()),
        }
    }
}

/// Resolves and runs one process of `run`, recording its process group while
/// it runs; its stdin and stdout are checked against its JSON Schemas.
pub(super) async fn run_one(
    runner: &Runner,
    run: &Taken,
    workdir: &Path,
    inv: &Invocation<'_>,
    cancel: &tokio_util::sync::CancellationToken,
    groups: &Groups,
) -> Executed {
    let started = runner.db.clock().now();
    let stdin = io_contract::stdin_of(inv);
    if let Err(violations) = io_contract::checked(inv.spec.stdin_schema.as_deref(), "stdin", stdin.as_deref())
    {
        let error = schemas::summary("stdin", &violations);
        let mut refused = not_started(runner, started, error, String::new());
        refused.schema_errors = Some(violations);
        return refused;
    }
    let (outcome, plan) = match resolve(runner, run, workdir, inv, stdin).await {
        Ok(spec) => {
            let plan = spec.confinement.as_ref().map(|c| c.plan.clone());
            (
                observed(runner, run, inv, &spec, cancel, groups, started).await,
                plan,
            )
        }
        Err((error, output)) => return not_started(runner, started, error, output),
    };
    let stdout_json = (!outcome.stdout.truncated && !outcome.stdout.bytes.is_empty())
        .then(|| serde_json::from_slice(&outcome.stdout.bytes).ok())
        .flatten();
    let mut done = Executed {
        outcome,
        stdout_json,
        plan,
        schema_errors: None,
    };
    io_contract::check_stdout(&mut done, inv.spec.stdout_schema.as_deref());
    done
}

/// Runs the resolved process, publishing its process group and live output.
async fn observed(
    runner: &Runner,
    run: &Taken,
    inv: &Invocation<'_>,
    spec: &ProcessSpec,
    cancel: &tokio_util::sync::CancellationToken,
    groups: &Groups,
    started: chrono::DateTime<chrono::Utc>,
) -> ProcessOutcome {
    let group = AtomicI32::new(0);
    let live = std::sync::Mutex::new(None);
    let execution = exec::run_observed(spec, cancel, |pgid, output| {
        group.store(pgid, Ordering::Relaxed);
        groups.spawned(pgid);
        *live.lock().unwrap_or_else(|p| p.into_inner()) = Some(output);
    });
    let key = LiveKey {
        run_id: run.run.id,
        phase: inv.phase.as_str(),
        index: inv.index,
        name: inv.name,
        started,
    };
    let outcome = tokio::select! {
        outcome = execution => outcome,
        never = flush_live(runner, key, &live) => match never {},
    };
    match group.load(Ordering::Relaxed) {
        0 => {}
        pgid => groups.exited(pgid),
    }
    on_database_clock(outcome, started)
}

/// A process that failed before it started: `error`, and any tool output
/// (pip's) kept as its stderr.
fn not_started(
    runner: &Runner,
    started: chrono::DateTime<chrono::Utc>,
    error: String,
    output: String,
) -> Executed {
    let outcome = ProcessOutcome {
        kind: ExitKind::Failed,
        exit_code: None,
        signal: None,
        stdout: Captured::default(),
        stderr: Captured {
            total: output.len() as u64,
            bytes: output.into_bytes(),
            truncated: false,
        },
        error: Some(error),
        started_at: started,
        finished_at: runner.db.clock().now(),
        duration: Duration::ZERO,
        usage: None,
    };
    Executed {
        outcome,
        stdout_json: None,
        plan: None,
        schema_errors: None,
    }
}

/// Where a running process's output goes while it runs.
struct LiveKey<'a> {
    run_id: i64,
    phase: &'static str,
    index: i32,
    name: &'a str,
    started: chrono::DateTime<chrono::Utc>,
}

/// Writes what the process printed so far every [`LIVE_FLUSH_EVERY`] while
/// it has printed more; never returns (the caller drops it when the process
/// ends). A write that fails is retried at the next tick.
async fn flush_live(
    runner: &Runner,
    key: LiveKey<'_>,
    live: &std::sync::Mutex<Option<exec::LiveOutput>>,
) -> std::convert::Infallible {
    let mut written = (0, 0);
    loop {
        tokio::time::sleep(LIVE_FLUSH_EVERY).await;
        let output = live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((stdout, stderr)) = output.map(|o| o.snapshot()) else {
            continue;
        };
        if (stdout.total, stderr.total) == written {
            continue;
        }
        let row = crate::store::runs::LiveOutputRow {
            run_id: key.run_id,
            phase: key.phase.to_owned(),
            step_index: key.index,
            name: key.name.to_owned(),
            stdout_bytes: stdout.total as i64,
            stderr_bytes: stderr.total as i64,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            started_at: key.started,
        };
        match runner
            .db
            .run(move |tx| crate::store::runs::write_live(tx, &row))
            .await
        {
            Ok(()) => written = (stdout.total, stderr.total),
            Err(e) => tracing::debug!(run.id = key.run_id, error = %e, "live output not written"),
        }
    }
}

/// Puts a process's times on the database's clock: it started at `started`
/// (read from that clock) and lasted what the monotonic clock measured.
fn on_database_clock(mut outcome: ProcessOutcome, started: chrono::DateTime<chrono::Utc>) -> ProcessOutcome {
    outcome.started_at = started;
    outcome.finished_at = started + chrono::Duration::from_std(outcome.duration).unwrap_or_default();
    outcome
}

/// Builds the process: program, arguments, environment, stdin, limits. Errors
/// carry a message and any tool output (pip's) to keep.
async fn resolve(
    runner: &Runner,
    run: &Taken,
    workdir: &Path,
    inv: &Invocation<'_>,
    stdin: Option<Vec<u8>>,
) -> Result<ProcessSpec, (String, String)> {
    let config = &runner.config;
    let spec = inv.spec;
    let (program, args) = super::program::program(runner, workdir, inv).await?;
    let timeout = spec
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(inv.budget)
        .min(inv.budget);
    let name = format!("{}-{}", inv.phase.as_str(), inv.index);
    let service = match &run.task.schedule {
        crate::spec::Schedule::Service(service) if inv.phase == Phase::Step => Some(service),
        _ => None,
    };
    let limits = effective_limits(&spec.limits.or(&run.task.default_limits), &config.step_limits);
    let policy = match run.task.sandbox_policy {
        SandboxPolicy::Strict => Policy::Strict,
        SandboxPolicy::BestEffort => Policy::BestEffort,
    };
    let confinement = config
        .sandbox
        .confine(run.run.id, &name, &limits, policy)
        .map_err(|e| (e, String::new()))?;
    let working_dir = spec
        .working_dir
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| workdir.to_path_buf());
    let working_dir = config
        .sandbox
        .working_dir(&working_dir)
        .map_err(|e| (e, String::new()))?;
    Ok(ProcessSpec {
        program,
        args,
        env: environment(config, run, inv),
        working_dir,
        stdin,
        timeout,
        // A service's process gets its own grace, and its output is a
        // rolling log: what it printed last is what operators need.
        grace: service
            .map(|s| Duration::from_millis(s.shutdown_grace_ms))
            .unwrap_or(config.kill_grace),
        output_cap: config.output_cap_bytes,
        rolling: service.is_some(),
        confinement: Some(confinement),
        terminal: spec.terminal_output,
    })
}

/// A process's limits: what it (or its task) asks for, within the host's —
/// a plugin can only tighten what the operator set, never loosen it.
fn effective_limits(asked: &StepLimits, host: &Limits) -> Limits {
    fn tighter<T: Ord + Copy>(asked: Option<T>, host: Option<T>) -> Option<T> {
        match (asked, host) {
            (Some(a), Some(h)) => Some(a.min(h)),
            (a, h) => a.or(h),
        }
    }
    Limits {
        memory_bytes: tighter(asked.memory_bytes, host.memory_bytes),
        cpu_millicores: tighter(asked.cpu_millicores, host.cpu_millicores),
        processes: tighter(asked.processes, host.processes),
        open_files: tighter(asked.open_files, host.open_files),
        file_size_bytes: tighter(asked.file_size_bytes, host.file_size_bytes),
        no_network: host.no_network || asked.no_network.unwrap_or(false),
        private_tmp: host.private_tmp || asked.private_tmp.unwrap_or(false),
    }
}

/// The child's whole environment: allow-listed host variables, the task's own,
/// a manual run's chosen ones, then the run context (which neither can
/// override). `PULSEHOST_RUN_ID` and
/// `PULSEHOST_HOST_ID` together also mark the run's processes for recovery.
fn environment(config: &super::RunnerConfig, run: &Taken, inv: &Invocation<'_>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config
        .env_allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    env.extend(inv.spec.envs.iter().cloned());
    env.extend(run.overrides.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
    let r = &run.run;
    env.extend([
        ("PULSEHOST_RUN_ID".into(), r.id.to_string()),
        ("PULSEHOST_HOST_ID".into(), config.host_id.clone()),
        ("PULSEHOST_PLUGIN".into(), run.plugin.clone()),
        ("PULSEHOST_TASK".into(), run.task.name.clone()),
        ("PULSEHOST_SLOT_ID".into(), r.slot_id.to_string()),
        ("PULSEHOST_ATTEMPT".into(), r.attempt.to_string()),
        ("PULSEHOST_SCHEDULED_FOR".into(), r.scheduled_for.to_rfc3339()),
        ("PULSEHOST_STEP".into(), inv.name.to_string()),
        ("PULSEHOST_PHASE".into(), inv.phase.as_str().to_string()),
    ]);
    env
}
