//! Keeps one service running on this host while it holds the lease: each
//! start is an incarnation (a run of the service's task, with its hooks,
//! limits and environment); an incarnation that ends is restarted after a
//! delay that doubles from the service's `restart-backoff-ms` up to its
//! `max-restart-backoff-ms`, and goes back to the first delay once an
//! incarnation has stayed up `stable-after-ms`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::spec::{Schedule, ServiceSpec};
use crate::store::{finish, services};

use super::dispatch::{self, Taken};
use super::journal::{Entry, Recorded};
use super::recovery::{self, Leftover};
use super::settle::{self, Ending};
use super::{lifecycle, Runner};

/// Wait after an incarnation could not even be recorded (database trouble).
const RETRY_RECORDING: Duration = Duration::from_secs(1);

/// Wait after a definition that cannot be read (until a new version comes).
const RETRY_UNREADABLE: Duration = Duration::from_secs(60);

/// Longest wait for an incarnation's end to be written.
const WRITE_WAIT: Duration = Duration::from_secs(30);

/// The task a service runs and its definition: a change restarts it.
pub(super) type Definition = (i64, i64);

/// How an incarnation ended, for the next delay.
struct Ended {
    uptime: Duration,
    /// Stopped because its definition changed: start the new one at once.
    replaced: bool,
    service: Option<ServiceSpec>,
}

/// Keeps service `id` running until `stop`; then gives its lease up if
/// `release` says so.
pub(super) async fn keep(
    runner: Arc<Runner>,
    id: i64,
    mut task: watch::Receiver<Definition>,
    stop: CancellationToken,
    release: Arc<AtomicBool>,
) {
    let mut delay: Option<Duration> = None;
    let mut previous_delay: Option<Duration> = None;
    while !stop.is_cancelled() {
        if let Some(wait) = delay {
            if !back_off(&runner, id, wait, &mut task, &stop).await {
                break;
            }
        }
        take_over(&runner, id).await;
        let ended = match incarnation(&runner, id, &mut task, &stop).await {
            Ok(Some(ended)) => ended,
            Ok(None) => break,
            Err(()) => {
                delay = Some(RETRY_RECORDING);
                continue;
            }
        };
        if ended.replaced {
            delay = None;
            continue;
        }
        let Some(service) = ended.service else {
            delay = Some(RETRY_UNREADABLE);
            continue;
        };
        let first = Duration::from_millis(service.restart_backoff_ms);
        let next = match previous_delay {
            Some(d) if ended.uptime < Duration::from_millis(service.stable_after_ms) => {
                (d * 2).min(Duration::from_millis(service.max_restart_backoff_ms))
            }
            _ => first,
        };
        delay = Some(next);
        previous_delay = Some(next);
    }
    if release.load(Ordering::SeqCst) {
        let host = runner.config.host_id.clone();
        if let Err(e) = runner
            .db
            .run(move |tx| services::release(tx, &host, Some(id)))
            .await
        {
            tracing::warn!(service = id, error = %e, "could not give the service's lease up; it runs out by itself");
        }
    }
}

/// Waits `wait` in state `backoff`; false when stopped meanwhile.
async fn back_off(
    runner: &Runner,
    id: i64,
    wait: Duration,
    task: &mut watch::Receiver<Definition>,
    stop: &CancellationToken,
) -> bool {
    let host = runner.config.host_id.clone();
    let until = runner.db.clock().now() + chrono::Duration::from_std(wait).unwrap_or_default();
    let recorded = runner
        .db
        .run(move |tx| services::set_state(tx, id, &host, "backoff", Some(until)))
        .await;
    if let Err(e) = recorded {
        tracing::debug!(service = id, error = %e, "backoff state not recorded");
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        changed = task.changed() => changed.is_ok(),
        _ = stop.cancelled() => false,
    }
}

/// Ends the previous incarnation when a host that lost the lease (it died,
/// or could not reach the database) still has it recorded as running, and
/// kills what it left on this machine.
async fn take_over(runner: &Runner, id: i64) {
    let host = runner.config.host_id.clone();
    let now = runner.db.clock().now();
    let found = runner
        .db
        .run(move |tx| {
            let Some(run) = services::stale_incarnation(tx, id, &host)? else {
                return Ok(Vec::new());
            };
            let stale = finish::running_with_definitions(tx, &[run])?;
            let endings: Vec<Ending> = stale
                .iter()
                .map(|l| {
                    let old = l.run.host_id.clone().unwrap_or_default();
                    let error = format!("host_lost: host {old} let the service's lease run out");
                    Ending {
                        retry: None,
                        ..recovery::host_lost(l, &old, error, now)
                    }
                })
                .collect();
            settle::finish(tx, &endings)?;
            Ok(stale.into_iter().map(Leftover::of).collect())
        })
        .await;
    match found {
        Ok(leftovers) => recovery::kill_leftovers(runner, leftovers),
        Err(e) => tracing::warn!(service = id, error = %e, "could not end the previous holder's incarnation"),
    }
}

/// Starts one incarnation and waits for its end. None when this host no
/// longer holds the lease; an error when it could not be recorded.
async fn incarnation(
    runner: &Arc<Runner>,
    id: i64,
    task: &mut watch::Receiver<Definition>,
    stop: &CancellationToken,
) -> Result<Option<Ended>, ()> {
    task.borrow_and_update();
    let host = runner.config.host_id.clone();
    let claimed = runner
        .db
        .run(move |tx| services::start_incarnation(tx, id, &host))
        .await
        .map_err(|e| tracing::warn!(service = id, error = %e, "could not start the service"))?;
    let Some(claimed) = claimed else {
        return Ok(None);
    };
    let run_id = claimed.run.id;
    let taken = match dispatch::decode(claimed) {
        Ok(taken) => taken,
        Err(bad) => {
            let (run, task_name, reason) = *bad;
            let now = runner.db.clock().now();
            let ending = dispatch::unreadable_ending(&run, &task_name, &runner.config.host_id, reason, now);
            settled(runner, id, run_id, ending, (!stop.is_cancelled(), false)).await;
            return Ok(Some(Ended {
                uptime: Duration::ZERO,
                replaced: false,
                service: None,
            }));
        }
    };
    let service = match &taken.task.schedule {
        Schedule::Service(s) => Some(s.clone()),
        _ => None,
    };
    tracing::info!(service = id, run.id = run_id, plugin = %taken.plugin, task = %taken.task.name, "service started");
    let started = Instant::now();
    let (end, replaced) = watch_over(runner, id, &taken, service.as_ref(), task, stop).await;
    let uptime = started.elapsed();
    tracing::info!(service = id, run.id = run_id, status = %end.status, error = ?end.error, "service ended");
    let ending = Ending {
        end,
        retry: None,
        rate_limited: None,
    };
    let stayed_up = service
        .as_ref()
        .is_some_and(|s| uptime >= Duration::from_millis(s.stable_after_ms));
    let restart = !stop.is_cancelled() && !replaced;
    settled(runner, id, run_id, ending, (restart, stayed_up)).await;
    Ok(Some(Ended {
        uptime,
        replaced,
        service,
    }))
}

/// Runs the incarnation, stopping it when the keeper is stopped or the
/// definition changes, and clears the flapping mark once it has stayed up.
async fn watch_over(
    runner: &Arc<Runner>,
    id: i64,
    taken: &Taken,
    service: Option<&ServiceSpec>,
    task: &mut watch::Receiver<Definition>,
    stop: &CancellationToken,
) -> (crate::store::finish::RunEnd, bool) {
    let run_id = taken.run.id;
    let cancel = runner.cancel_all.child_token();
    runner.track(run_id, cancel.clone());
    runner.reserve(taken.task.reservation.as_ref(), 1);
    let stable_after = Duration::from_millis(service.map_or(u64::MAX / 4, |s| s.stable_after_ms));
    let execution = lifecycle::execute(runner, taken, &cancel);
    tokio::pin!(execution);
    let stable = tokio::time::sleep(stable_after);
    tokio::pin!(stable);
    let (mut replaced, mut marked_stable) = (false, false);
    let finished = loop {
        tokio::select! {
            finished = &mut execution => break finished,
            _ = stop.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
            changed = task.changed(), if !cancel.is_cancelled() => {
                replaced = changed.is_ok();
                cancel.cancel();
            }
            _ = &mut stable, if !marked_stable => {
                marked_stable = true;
                let host = runner.config.host_id.clone();
                let db = runner.db.clone();
                tokio::spawn(async move { db.run(move |tx| services::stable(tx, id, &host)).await });
            }
        }
    };
    runner.reserve(taken.task.reservation.as_ref(), -1);
    runner.untrack(run_id);
    (finished.end, replaced)
}

/// Hands the incarnation's end to the journal, waits until it is written,
/// then records the exit on the service: whether it is restarted, and
/// whether it had stayed up past its stable-after.
async fn settled(runner: &Runner, id: i64, run_id: i64, ending: Ending, (restart, stayed_up): (bool, bool)) {
    let (sender, written) = tokio::sync::oneshot::channel();
    runner.journal.record(Entry::End {
        ending,
        settled: Some(sender),
    });
    // Bounded: a host shutting down while the database is away must not
    // wait for it forever (the run is then recovered as host_lost).
    match tokio::time::timeout(WRITE_WAIT, written).await {
        Ok(Ok(Recorded { recorded: true, .. })) => {}
        _ => tracing::warn!(
            service = id,
            run.id = run_id,
            "the incarnation's end was not recorded here"
        ),
    }
    let host = runner.config.host_id.clone();
    if let Err(e) = runner
        .db
        .run(move |tx| services::exited(tx, id, &host, run_id, restart, stayed_up))
        .await
    {
        tracing::warn!(service = id, error = %e, "could not record the service's exit");
    }
}
