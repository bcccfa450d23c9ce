//! The dispatcher: takes as many queued runs as this host has free slots, in
//! one transaction per batch, and executes each. A run whose stored definition
//! cannot be decoded fails right there, with the reason, and the queue moves on.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::spec::{RunOverrides, TaskSpec};
use crate::store::finish::RunEnd;
use crate::store::models::RunRow;
use crate::store::queue::ClaimedRun;
use crate::store::{hosts, queue, StoreError, Tx};

use super::journal::{Entry, Recorded};
use super::settle::{self, Ending};
use super::{lifecycle, policy, Runner};

/// How often an idle dispatcher looks at the queue without being woken
/// (runs whose `not_before` has come, runs queued by another replica).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Failure type of a run whose stored definition cannot be read.
pub const DEFINITION_UNREADABLE: &str = "definition";

/// A run taken from the queue, ready to execute.
#[derive(Debug, Clone)]
pub(super) struct Taken {
    /// The run, now `running` on this host.
    pub run: RunRow,
    /// Plugin name.
    pub plugin: String,
    /// The definition it executes.
    pub task: TaskSpec,
    /// A manual run's chosen input (empty for every other run).
    pub overrides: RunOverrides,
}

/// Dispatches until `shutdown` or until the host drains.
pub(super) async fn run(runner: Arc<Runner>, shutdown: CancellationToken) {
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&runner.slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
            _ = runner.stop_claiming.cancelled() => return,
        };
        if runner.stop_claiming.is_cancelled() {
            return;
        }
        // Every slot is held before anything is claimed, so a run taken from
        // the queue always has a slot to run in.
        let mut permits = vec![first];
        while let Ok(p) = Arc::clone(&runner.slots).try_acquire_owned() {
            permits.push(p);
        }
        let taken = match claim(&runner, permits.len()).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "could not take runs from the queue");
                Vec::new()
            }
        };
        let idle = taken.is_empty();
        for (run, permit) in taken.into_iter().zip(permits.drain(..)) {
            let me = Arc::clone(&runner);
            tokio::spawn(async move { execute(me, run, permit).await });
        }
        drop(permits);
        if idle {
            tokio::select! {
                _ = runner.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => return,
                _ = runner.stop_claiming.cancelled() => return,
            }
        }
    }
}

/// Serverless mode: takes and executes runs until none can start and none
/// executes here any more (a run that ends may let the next one start).
pub(super) async fn until_idle(runner: Arc<Runner>) {
    let mut executing = tokio::task::JoinSet::new();
    loop {
        let mut permits = Vec::new();
        while let Ok(p) = Arc::clone(&runner.slots).try_acquire_owned() {
            permits.push(p);
        }
        let taken = match permits.len() {
            0 => Vec::new(),
            free => claim(&runner, free).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not take runs from the queue");
                Vec::new()
            }),
        };
        let started = !taken.is_empty();
        for (run, permit) in taken.into_iter().zip(permits.drain(..)) {
            executing.spawn(execute(Arc::clone(&runner), run, permit));
        }
        drop(permits);
        if !started && executing.join_next().await.is_none() {
            return;
        }
    }
}

/// One transaction (see [`take`]).
async fn claim(runner: &Runner, limit: usize) -> Result<Vec<Taken>, StoreError> {
    let host = runner.config.host_id.clone();
    let now = runner.db.clock().now();
    let room = runner.room();
    let taken = runner.db.run(move |tx| take(tx, &host, limit, room, now)).await?;
    for t in &taken {
        crate::metrics::run_started(t.run.lateness_ms);
        runner.reserve(t.task.reservation.as_ref(), 1);
    }
    Ok(taken)
}

/// Queued runs past their starting deadline become missed (and what waited
/// for them is skipped), then up to `limit` runs are started on `host`; those
/// whose definition cannot be decoded are failed on the spot.
fn take(
    tx: &mut Tx<'_>,
    host: &str,
    limit: usize,
    room: policy::Room,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Taken>, StoreError> {
    // A host declared lost takes nothing until it has registered again.
    if !hosts::may_claim(tx, host)? {
        return Ok(Vec::new());
    }
    let expired = queue::expire_deadlines(tx)?;
    settle::cascade(tx, &expired)?;
    // Twice the room: an exclusive task may have several runs queued, of which one starts.
    let candidates = queue::candidates(tx, limit * 2)?;
    let mut exclusive: Vec<i64> = candidates
        .iter()
        .filter(|c| c.exclusive)
        .map(|c| c.task_id)
        .collect();
    exclusive.sort_unstable();
    exclusive.dedup();
    let idle = queue::idle_tasks(tx, &exclusive)?;
    let mut keys: Vec<String> = candidates
        .iter()
        .filter_map(|c| c.concurrency_key.clone())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let budgets = queue::key_budgets(tx, &keys)?.into_iter().collect();
    let chosen = policy::choose(&candidates, &idle, &budgets, room, limit);
    let claimed = queue::start(tx, host, &chosen)?;
    let mut taken = Vec::with_capacity(claimed.len());
    let mut unreadable = Vec::new();
    for c in claimed {
        match decode(c) {
            Ok(t) => taken.push(t),
            Err(bad) => {
                let (run, task_name, reason) = *bad;
                unreadable.push(unreadable_ending(&run, &task_name, host, reason, now))
            }
        }
    }
    if !unreadable.is_empty() {
        settle::finish(tx, &unreadable)?;
    }
    Ok(taken)
}

/// The run with its definition and chosen input decoded; or the run, its
/// task's name and why it cannot be.
pub(super) fn decode(c: ClaimedRun) -> Result<Taken, Box<(RunRow, String, String)>> {
    let overrides = c
        .run
        .overrides
        .clone()
        .map(serde_json::from_value::<RunOverrides>)
        .transpose()
        .map_err(|e| format!("its chosen input (stdin_json, envs) does not decode: {e}"));
    match TaskSpec::decode(c.format, c.definition).and_then(|task| Ok((task, overrides?))) {
        Ok((task, overrides)) => Ok(Taken {
            overrides: overrides.unwrap_or_default(),
            run: c.run,
            plugin: c.plugin,
            task,
        }),
        Err(reason) => Err(Box::new((c.run, c.task_name, reason))),
    }
}

pub(super) fn unreadable_ending(
    run: &RunRow,
    task: &str,
    host: &str,
    reason: String,
    now: chrono::DateTime<chrono::Utc>,
) -> Ending {
    let error = format!(
        "the stored definition of task {task:?} (plugin version {}) cannot be read: {reason}",
        run.plugin_version_id
    );
    tracing::error!(run.id = run.id, %error, "run failed before it started");
    Ending {
        end: RunEnd {
            run_id: run.id,
            host_id: host.to_string(),
            status: "failed".into(),
            failure_type: Some(DEFINITION_UNREADABLE.into()),
            error: Some(error),
            finished_at: now,
        },
        retry: None,
        rate_limited: None,
    }
}

/// Executes one run, hands its end to the journal, frees its slot, and waits
/// for the end to be written before letting go of the run.
async fn execute(runner: Arc<Runner>, taken: Taken, permit: tokio::sync::OwnedSemaphorePermit) {
    let run_id = taken.run.id;
    let cancel = runner.cancel_all.child_token();
    runner.track(run_id, cancel.clone());
    tracing::info!(run.id = run_id, plugin = %taken.plugin, task = %taken.task.name, attempt = taken.run.attempt, "run started");
    let finished = lifecycle::execute(&runner, &taken, &cancel).await;
    let end = finished.end;
    tracing::info!(run.id = run_id, status = %end.status, error = ?end.error, "run finished");
    let (sender, written) = tokio::sync::oneshot::channel();
    runner.journal.record(Entry::End {
        ending: Ending {
            end,
            retry: taken.task.retry,
            rate_limited: finished.retry_after_ms.map(|delay_ms| settle::RateLimited {
                delay_ms,
                key: taken.task.concurrency.as_ref().map(|c| c.key.clone()),
            }),
        },
        settled: Some(sender),
    });
    runner.reserve(taken.task.reservation.as_ref(), -1);
    drop(permit);
    match written.await {
        Ok(Recorded { recorded: false, .. }) => tracing::warn!(
            run.id = run_id,
            "the run had already been finished by another host (this one was declared lost); its outcome here is not recorded"
        ),
        Ok(Recorded { retry: Some(retry), .. }) => {
            tracing::info!(run.id = run_id, next_run = retry.run_id, attempt = retry.attempt, not_before = %retry.not_before, "retry scheduled")
        }
        Ok(_) => {}
        Err(_) => tracing::error!(
            run.id = run_id,
            "the run's outcome could not be recorded; it stays running until recovered as host_lost"
        ),
    }
    runner.untrack(run_id);
}
