//! Settling runs inside one transaction: finishing them, queueing the next
//! attempts the retry policy asks for, and skipping every queued run that
//! waited (directly or not) for a run that ended without success. Callers are
//! the journal (runs this host finished), recovery (runs of lost hosts), the
//! dispatcher (runs whose definition cannot be read, deadlines that passed),
//! cancellation, pulses and the sweeper — so the invariant "no run stays
//! queued behind a finished, unsuccessful run" holds after every one of them.

use crate::spec::RetryPolicy;
use crate::store::finish::{self, RetryRequest, RunEnd, ScheduledRetry};
use crate::store::{deps, queue, StoreResult, Tx};

use super::policy;

/// Skip reason of a run whose dependency ended without success.
pub const DEPENDENCY_FAILED: &str = "dependency_failed";

/// A run's end and the retry policy of the definition it executed.
#[derive(Debug, Clone)]
pub struct Ending {
    /// How it ended.
    pub end: RunEnd,
    /// Its task's retry policy.
    pub retry: Option<RetryPolicy>,
    /// A step asked for a delayed retry: the retry waits at least this long,
    /// and so do the runs sharing the key.
    pub rate_limited: Option<RateLimited>,
}

/// A rate-limited run's requested delay and its task's concurrency key.
#[derive(Debug, Clone)]
pub struct RateLimited {
    /// Milliseconds from now.
    pub delay_ms: u64,
    /// Held as long, when the task names one.
    pub key: Option<String>,
}

/// What settling runs set in motion.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// Runs finished now (the others were no longer running on their host).
    pub recorded: Vec<i64>,
    /// How each of them ended: (run, status, milliseconds from start to finish).
    pub outcomes: Vec<(i64, String, Option<f64>)>,
    /// Next attempts queued.
    pub retries: Vec<ScheduledRetry>,
    /// Queued runs skipped because something they waited for failed.
    pub skipped: Vec<i64>,
}

/// Finishes `endings`, queues retries, and cascades failures to waiting runs.
pub fn finish(tx: &mut Tx<'_>, endings: &[Ending]) -> StoreResult<Settled> {
    let ends: Vec<RunEnd> = endings.iter().map(|e| e.end.clone()).collect();
    let finished = finish::finish_runs(tx, &ends)?;
    let mut rng = rand::thread_rng();
    let requests: Vec<RetryRequest> = finished
        .iter()
        .filter_map(|f| {
            let ending = endings.iter().find(|e| e.end.run_id == f.id)?;
            let delay = policy::next_attempt(ending.retry.as_ref(), &f.status, f.attempt, &mut rng)?;
            let asked = ending.rate_limited.as_ref().map_or(0, |r| r.delay_ms);
            Some(RetryRequest {
                failed: f.id,
                delay_ms: (delay.as_millis() as u64).max(asked) as i64,
                reason: ending.end.error.clone(),
            })
        })
        .collect();
    for limited in endings.iter().filter_map(|e| e.rate_limited.as_ref()) {
        if let Some(key) = &limited.key {
            queue::hold_key(tx, key, limited.delay_ms as i64)?;
        }
    }
    let retries = finish::queue_retries(tx, &requests)?;
    let roots: Vec<i64> = finished
        .iter()
        .filter(|f| f.status != "succeeded" && !retries.iter().any(|r| r.retry_of == f.id))
        .map(|f| f.id)
        .collect();
    let skipped = cascade(tx, &roots)?;
    Ok(Settled {
        recorded: finished.iter().map(|f| f.id).collect(),
        outcomes: finished
            .iter()
            .map(|f| (f.id, f.status.clone(), f.duration_ms))
            .collect(),
        retries,
        skipped,
    })
}

/// Skips the queued runs that wait, transitively, for any of `roots` when
/// those ended without success; returns the runs skipped.
pub fn cascade(tx: &mut Tx<'_>, roots: &[i64]) -> StoreResult<Vec<i64>> {
    let waiting = deps::waiting_on(tx, roots)?;
    let skips = policy::cascade(&waiting);
    deps::skip_waiting(tx, &skips, DEPENDENCY_FAILED)
}

/// Repairs whatever got past the cascades (an older version's data, a crash
/// between two writes): queued runs past their starting deadline become
/// `missed`, and queued runs behind an unsuccessful run are skipped. Returns
/// the runs it changed.
pub fn sweep(tx: &mut Tx<'_>) -> StoreResult<Vec<i64>> {
    deps::follow_retries(tx)?;
    let mut changed = queue::expire_deadlines(tx)?;
    let waiting = deps::all_waiting(tx)?;
    let skips = policy::cascade(&waiting);
    changed.extend(deps::skip_waiting(tx, &skips, DEPENDENCY_FAILED)?);
    Ok(changed)
}
