//! One run's lifecycle: provision -> background started -> steps in order ->
//! background stopped -> cleanup (always), under a run-level timeout. Every
//! process is recorded as it finishes.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::dispatch::Taken;
use super::groups::Groups;
use super::journal::Entry;
use super::process::{run_one, Executed, Invocation, Phase};
use super::Runner;
use crate::exec::ExitKind;
use crate::spec::{ExecSpec, Schedule, ServiceSpec};
use crate::store::finish::RunEnd;

/// Failure type of a run whose process exceeded its memory limit.
pub const MEMORY_LIMIT: &str = "memory_limit";

/// Failure type of a run whose process's stdin or stdout broke its JSON Schema.
pub const SCHEMA: &str = "schema";

/// A service runs until it is stopped; this only keeps the deadline finite.
const SERVICE_HORIZON: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Cleanup gets its own budget: it must run even when the run's time is up.
const CLEANUP_BUDGET: Duration = Duration::from_secs(300);

/// Failure type of a run whose step asked to be retried later (exit code 75
/// with `{"retry_after_ms": N}` on stdout).
pub const RATE_LIMITED: &str = "rate_limited";

/// The exit code with which a step asks for a delayed retry (`EX_TEMPFAIL`).
const EXIT_TEMPFAIL: i32 = 75;

/// Why a run did not succeed.
struct Failure {
    status: &'static str,
    failure_type: &'static str,
    error: String,
    /// A step asked to be retried not before this many milliseconds.
    retry_after_ms: Option<u64>,
}

/// How a run ended, with the delay a rate-limited step asked for.
pub(super) struct Finished {
    /// What is recorded.
    pub end: RunEnd,
    /// Not before this many milliseconds may it be retried, nor may runs
    /// sharing its concurrency key start.
    pub retry_after_ms: Option<u64>,
}

/// Executes every phase of `claimed` and says how the run ended.
pub(super) async fn execute(runner: &Runner, claimed: &Taken, cancel: &CancellationToken) -> Finished {
    let groups = &Groups::new(claimed.run.id, runner.journal.clone());
    let task = &claimed.task;
    let timeout = match &task.schedule {
        Schedule::Service(_) => SERVICE_HORIZON,
        _ => task
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(runner.config.default_run_timeout),
    };
    let deadline = Instant::now() + timeout;
    let workdir = match prepare_workdir(runner, claimed).await {
        Ok(dir) => dir,
        Err(failed) => return end(runner, claimed, Some(failed)),
    };
    let ctx = Ctx {
        runner,
        claimed,
        workdir: workdir.path(),
        cancel,
        deadline,
        groups,
    };

    let mut failed = None;
    if let Some(spec) = &task.hooks.provision {
        let done = ctx
            .process(Phase::Provision, 0, "provision", spec, None, None)
            .await;
        failed = judge(&done, "provision");
        ctx.record_hook("provision", failed.as_ref());
    }
    if failed.is_none() {
        failed = ctx.steps_with_background().await;
    }
    if let Some(spec) = &task.hooks.cleanup {
        let cleanup_token = CancellationToken::new();
        let cleanup = Ctx {
            cancel: &cleanup_token,
            deadline: Instant::now() + CLEANUP_BUDGET,
            ..ctx
        };
        let done = cleanup
            .process(Phase::Cleanup, 0, "cleanup", spec, None, None)
            .await;
        let cleanup_failed = judge(&done, "cleanup");
        cleanup.record_hook("cleanup", cleanup_failed.as_ref());
        failed = failed.or(cleanup_failed);
    }
    runner.config.sandbox.forget_run(claimed.run.id);
    end(runner, claimed, failed)
}

/// The run's fresh scratch directory, the step user's own, with the task's
/// remote files in place.
async fn prepare_workdir(runner: &Runner, claimed: &Taken) -> Result<tempfile::TempDir, Failure> {
    let workdir = tempfile::Builder::new()
        .prefix(&format!("run-{}-", claimed.run.id))
        .tempdir_in(ensure_dir(&runner.config.data_dir.join("work")))
        .map_err(|e| {
            failure(
                "failed",
                "internal",
                format!("cannot create the run's scratch directory: {e}"),
            )
        })?;
    hand_over(workdir.path(), runner).map_err(|e| {
        failure(
            "failed",
            "internal",
            format!("cannot give the run's scratch directory to the step user: {e}"),
        )
    })?;
    fetch_resources(runner, &claimed.task, workdir.path())
        .await
        .map_err(|e| failure("failed", RESOURCES, e))?;
    Ok(workdir)
}

/// Failure type of a run whose remote files could not be fetched.
pub const RESOURCES: &str = "resources";

/// Fetches every remote file of every process of `task` and places them in
/// the fresh scratch directory `dir`, before anything runs in it.
async fn fetch_resources(runner: &Runner, task: &crate::spec::TaskSpec, dir: &Path) -> Result<(), String> {
    let hooks = &task.hooks;
    let processes = [&hooks.provision, &hooks.background, &hooks.cleanup]
        .into_iter()
        .flatten()
        .chain(task.steps.iter().map(|s| &s.exec));
    let files: Vec<crate::spec::RemoteFile> = processes.flat_map(|e| e.resources.iter().cloned()).collect();
    if files.is_empty() {
        return Ok(());
    }
    let cache = &runner.config.resources;
    cache.fetch_all(files.clone()).await?;
    let owner = runner.config.sandbox.run_as.as_ref().map(|u| (u.uid, u.gid));
    cache.place(&files, dir, owner)
}

/// Makes the scratch directory the step user's own (and only theirs).
fn hand_over(dir: &Path, runner: &Runner) -> std::io::Result<()> {
    if let Some(user) = &runner.config.sandbox.run_as {
        nix::unistd::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    runner: &'a Runner,
    claimed: &'a Taken,
    workdir: &'a Path,
    cancel: &'a CancellationToken,
    deadline: Instant,
    groups: &'a Groups,
}

impl Ctx<'_> {
    /// Runs the steps with the background hook alongside them.
    async fn steps_with_background(&self) -> Option<Failure> {
        let task = &self.claimed.task;
        let stop_background = self.cancel.child_token();
        let background = task.hooks.background.as_ref().map(|spec| {
            let token = stop_background.clone();
            let ctx = *self;
            async move {
                ctx.process(Phase::Background, 0, "background", spec, None, Some(&token))
                    .await
            }
        });
        let steps = self.steps();
        let (failed, background_done) = match background {
            None => (steps.await, None),
            Some(bg) => {
                tokio::pin!(bg);
                tokio::pin!(steps);
                tokio::select! {
                    failed = &mut steps => {
                        stop_background.cancel();
                        (failed, Some((bg.await, false)))
                    }
                    done = &mut bg => (steps.await, Some((done, true))),
                }
            }
        };
        let Some((done, exited_early)) = background_done else {
            return failed;
        };
        let background_failed = exited_early.then(|| {
            let how = done
                .outcome
                .error
                .clone()
                .unwrap_or_else(|| "exited with code 0".into());
            failure(
                "failed",
                "background",
                format!("the background process ended before the steps finished: {how}"),
            )
        });
        self.record_hook("background", background_failed.as_ref());
        if task.hooks.background_may_exit {
            failed
        } else {
            failed.or(background_failed)
        }
    }

    /// Counts a hook's outcome; enough consecutive failures pause the task.
    fn record_hook(&self, hook: &'static str, failed: Option<&Failure>) {
        self.runner.journal.record(Entry::Hook {
            task_id: self.claimed.run.task_id,
            run_id: self.claimed.run.id,
            hook,
            error: failed.map(|f| f.error.clone()),
        });
    }

    async fn steps(&self) -> Option<Failure> {
        let task = &self.claimed.task;
        if let Schedule::Service(service) = &task.schedule {
            return self.service(service).await;
        }
        let mut piped: Option<Vec<u8>> = None;
        for (i, step) in task.steps.iter().enumerate() {
            let done = self
                .process(Phase::Step, i as i32, &step.name, &step.exec, piped.take(), None)
                .await;
            if let Some(f) = judge(&done, "step") {
                return Some(Failure {
                    error: format!("step {:?}: {}", step.name, f.error),
                    ..f
                });
            }
            if task.pipe_json {
                piped = done.stdout_json.as_ref().map(|v| v.to_string().into_bytes());
            }
        }
        None
    }

    /// A service's one process, until it exits or the run is stopped: then
    /// it gets SIGTERM, its on-shutdown process runs beside it for up to the
    /// grace, and SIGKILL ends whatever is left of it.
    async fn service(&self, service: &ServiceSpec) -> Option<Failure> {
        let step = &self.claimed.task.steps[0];
        let stop = CancellationToken::new();
        let running = self.process(Phase::Step, 0, &step.name, &step.exec, None, Some(&stop));
        tokio::pin!(running);
        let done = tokio::select! {
            done = &mut running => done,
            _ = self.cancel.cancelled() => {
                stop.cancel();
                let grace = Duration::from_millis(service.shutdown_grace_ms);
                let on_shutdown = async {
                    let Some(spec) = &service.on_shutdown else { return };
                    let token = CancellationToken::new();
                    let ctx = Ctx { cancel: &token, deadline: Instant::now() + grace, ..*self };
                    ctx.process(Phase::Shutdown, 0, "on-shutdown", spec, None, None).await;
                };
                tokio::join!(running, on_shutdown).0
            }
        };
        judge(&done, "step").map(|f| Failure {
            error: format!("service {:?}: {}", step.name, f.error),
            ..f
        })
    }

    async fn process(
        &self,
        phase: Phase,
        index: i32,
        name: &str,
        spec: &ExecSpec,
        piped_stdin: Option<Vec<u8>>,
        token: Option<&CancellationToken>,
    ) -> Executed {
        let first_step = phase == Phase::Step && index == 0;
        let inv = Invocation {
            phase,
            index,
            name,
            spec,
            piped_stdin,
            chosen_stdin: first_step.then(|| self.claimed.overrides.stdin_bytes()).flatten(),
            budget: self.deadline.saturating_duration_since(Instant::now()),
        };
        let done = run_one(
            self.runner,
            self.claimed,
            self.workdir,
            &inv,
            token.unwrap_or(self.cancel),
            self.groups,
        )
        .await;
        let row = done.row(self.claimed.run.id, &inv);
        self.runner.journal.record(Entry::Step(Box::new(row)));
        done
    }
}

fn judge(done: &Executed, part: &'static str) -> Option<Failure> {
    let error = done.outcome.error.clone().unwrap_or_default();
    if let Some(ms) = retry_after(done) {
        return Some(Failure {
            retry_after_ms: Some(ms),
            ..failure(
                "failed",
                RATE_LIMITED,
                format!("{error}; asked to be retried after {ms} ms"),
            )
        });
    }
    if done.schema_errors.is_some() {
        return Some(failure("failed", SCHEMA, error));
    }
    match done.outcome.kind {
        ExitKind::Succeeded => None,
        ExitKind::Failed if done.outcome.usage.is_some_and(|u| u.memory_limit_hit) => {
            Some(failure("failed", MEMORY_LIMIT, error))
        }
        ExitKind::Failed => Some(failure("failed", part, error)),
        ExitKind::TimedOut => Some(failure("timed_out", part, error)),
        ExitKind::Cancelled => Some(failure("cancelled", part, error)),
    }
}

/// The delay a process asked for by exiting 75 with `{"retry_after_ms": N}`.
fn retry_after(done: &Executed) -> Option<u64> {
    (done.outcome.exit_code == Some(EXIT_TEMPFAIL))
        .then(|| done.stdout_json.as_ref()?.get("retry_after_ms")?.as_u64())
        .flatten()
}

fn failure(status: &'static str, failure_type: &'static str, error: String) -> Failure {
    Failure {
        status,
        failure_type,
        error,
        retry_after_ms: None,
    }
}

fn end(runner: &Runner, claimed: &Taken, failed: Option<Failure>) -> Finished {
    let retry_after_ms = failed.as_ref().and_then(|f| f.retry_after_ms);
    let (status, failure_type, error) = match failed {
        None => ("succeeded", None, None),
        Some(f) => (f.status, Some(f.failure_type.to_string()), Some(f.error)),
    };
    Finished {
        end: RunEnd {
            run_id: claimed.run.id,
            host_id: runner.config.host_id.clone(),
            status: status.into(),
            failure_type,
            error,
            finished_at: runner.db.clock().now(),
        },
        retry_after_ms,
    }
}

fn ensure_dir(dir: &Path) -> &Path {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create directory");
    }
    dir
}
