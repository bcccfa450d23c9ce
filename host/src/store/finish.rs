//! How runs end. Finishing a run, in the same transaction: when it failed or
//! timed out and its task's retry policy allows another attempt, the next attempt
//! of the same slot is queued with a backoff (`not_before`) and the runs waiting
//! for this one wait for the new attempt instead; otherwise, when it did not
//! succeed, the queued runs that depend on it are skipped (transitively). Runs
//! whose host stopped renewing their lease are finished as `host_lost` the same way.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use rand::Rng;
use serde::Serialize;

use super::models::RunRow;
use super::runs::{add_event, task_of, RunEnd};
use super::schema::runs;
use super::StoreResult;
use crate::spec::RetryPolicy;

/// Reason stored on a run skipped because a run it depends on did not succeed.
pub const DEPENDENCY_FAILED: &str = "dependency_failed";

/// Failure type of a run whose host stopped renewing its lease.
pub const HOST_LOST: &str = "host_lost";

/// What finishing a run set in motion.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Finished {
    /// False when the run was no longer running: another host already finished
    /// it (its lease had expired), and nothing was changed.
    pub recorded: bool,
    /// The next attempt, when one was queued.
    pub retry: Option<ScheduledRetry>,
    /// Queued runs skipped because this one did not succeed, transitively.
    pub skipped: Vec<i64>,
}

/// A queued next attempt of a failed run.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledRetry {
    /// The new run.
    pub run_id: i64,
    /// Its attempt number.
    pub attempt: i32,
    /// When it may start.
    pub not_before: DateTime<Utc>,
}

/// A run finished as `host_lost` by [`recover_expired`].
#[derive(Debug, Clone, Serialize)]
pub struct RecoveredRun {
    /// The run.
    pub run_id: i64,
    /// Its task.
    pub task_id: i64,
    /// The host whose lease expired (`<hostname>-<pid>`).
    pub host_id: Option<String>,
    /// The process group that host recorded last, if any.
    pub process_group: Option<i32>,
    /// The next attempt, when the task's policy asked for one.
    pub retry: Option<ScheduledRetry>,
}

/// The delay before attempt `attempt + 1` after attempt `attempt` failed:
/// exponential backoff `min(backoff_ms * 2^(attempt-1), max_backoff_ms)`, of
/// which a random half is jitter (the delay lies between half of it and all of it).
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, rng: &mut impl Rng) -> std::time::Duration {
    let doublings = attempt.saturating_sub(1).min(63);
    let base = policy
        .backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_backoff_ms);
    let half = base / 2;
    std::time::Duration::from_millis(half + rng.gen_range(0..=base - half))
}

/// Finishes a running run with `end` and logs it; then queues its next attempt
/// when `retry` allows one, or skips the runs that depended on it. A run that is
/// no longer running is left alone (`recorded: false`).
pub fn finish_run(
    conn: &mut PgConnection,
    run_id: i64,
    end: &RunEnd,
    retry: Option<&RetryPolicy>,
) -> StoreResult<Finished> {
    let run: Option<RunRow> = diesel::update(runs::table.find(run_id))
        .filter(runs::status.eq("running"))
        .set((
            runs::status.eq(&end.status),
            runs::failure_type.eq(&end.failure_type),
            runs::error.eq(&end.error),
            runs::finished_at.eq(end.finished_at),
            runs::lease_expires_at.eq(None::<DateTime<Utc>>),
            runs::process_group.eq(None::<i32>),
        ))
        .returning(RunRow::as_returning())
        .get_result(conn)
        .optional()?;
    let Some(run) = run else {
        return Ok(Finished::default());
    };
    add_event(
        conn,
        run_id,
        "finished",
        serde_json::json!({
            "status": end.status,
            "failure_type": end.failure_type,
            "attempt": run.attempt,
        }),
    )?;
    let mut finished = Finished {
        recorded: true,
        ..Finished::default()
    };
    if run.status == "succeeded" {
        return Ok(finished);
    }
    let retryable = matches!(run.status.as_str(), "failed" | "timed_out");
    if let Some(policy) = retry.filter(|p| retryable && (run.attempt.max(0) as u32) < p.max_attempts) {
        finished.retry = schedule_retry(conn, &run, policy, end.finished_at)?;
        if finished.retry.is_some() {
            return Ok(finished);
        }
    }
    finished.skipped = skip_dependents(conn, run_id, end.finished_at)?;
    Ok(finished)
}

/// Queues attempt `attempt + 1` of `failed`'s slot and points the runs waiting
/// for `failed` at it. None when that attempt already exists.
fn schedule_retry(
    conn: &mut PgConnection,
    failed: &RunRow,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
) -> StoreResult<Option<ScheduledRetry>> {
    let delay = retry_delay(policy, failed.attempt.max(1) as u32, &mut rand::thread_rng());
    let not_before = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
    let attempt = failed.attempt + 1;
    let new_id: Option<i64> = diesel::insert_into(runs::table)
        .values((
            runs::slot_id.eq(failed.slot_id),
            runs::task_id.eq(failed.task_id),
            runs::plugin_version_id.eq(failed.plugin_version_id),
            runs::attempt.eq(attempt),
            runs::status.eq("queued"),
            runs::priority.eq(failed.priority),
            runs::scheduled_for.eq(failed.scheduled_for),
            runs::not_before.eq(not_before),
            runs::retry_of.eq(failed.id),
        ))
        .on_conflict_do_nothing()
        .returning(runs::id)
        .get_result(conn)
        .optional()?;
    let Some(new_id) = new_id else {
        return Ok(None);
    };
    diesel::sql_query(
        "UPDATE runs SET depends_on_runs = array_replace(depends_on_runs, $1, $2) \
         WHERE status = 'queued' AND depends_on_runs @> ARRAY[$1]::bigint[]",
    )
    .bind::<BigInt, _>(failed.id)
    .bind::<BigInt, _>(new_id)
    .execute(conn)?;
    add_event(
        conn,
        failed.id,
        "retry_scheduled",
        serde_json::json!({
            "next_run_id": new_id,
            "attempt": attempt,
            "not_before": not_before,
            "delay_ms": delay.as_millis() as u64,
        }),
    )?;
    add_event(
        conn,
        new_id,
        "queued",
        serde_json::json!({
            "retry_of": failed.id,
            "attempt": attempt,
            "reason": failed.error,
            "not_before": not_before,
        }),
    )?;
    Ok(Some(ScheduledRetry {
        run_id: new_id,
        attempt,
        not_before,
    }))
}

/// Skips every queued run that depends on `run_id`, and the queued runs that
/// depend on those, with reason [`DEPENDENCY_FAILED`]; returns their ids.
pub fn skip_dependents(conn: &mut PgConnection, run_id: i64, now: DateTime<Utc>) -> StoreResult<Vec<i64>> {
    let mut skipped = Vec::new();
    let mut frontier = vec![run_id];
    while !frontier.is_empty() {
        let next: Vec<(i64, Vec<i64>)> = diesel::update(
            runs::table
                .filter(runs::status.eq("queued"))
                .filter(runs::depends_on_runs.overlaps_with(&frontier)),
        )
        .set((
            runs::status.eq("skipped"),
            runs::skip_reason.eq(DEPENDENCY_FAILED),
            runs::finished_at.eq(now),
        ))
        .returning((runs::id, runs::depends_on_runs))
        .get_results(conn)?;
        for (id, depends_on) in &next {
            let failed: Vec<i64> = depends_on
                .iter()
                .copied()
                .filter(|d| frontier.contains(d))
                .collect();
            add_event(
                conn,
                *id,
                "skipped",
                serde_json::json!({ "reason": DEPENDENCY_FAILED, "dependencies": failed }),
            )?;
        }
        frontier = next.into_iter().map(|(id, _)| id).collect();
        skipped.extend_from_slice(&frontier);
    }
    Ok(skipped)
}

/// Finishes every running run whose lease expired before `now` (its host died or
/// lost the database) as `failed` with failure type [`HOST_LOST`], and retries
/// it when its task's policy says so. Replicas may call it at once: each
/// expired run is taken by one of them.
pub fn recover_expired(conn: &mut PgConnection, now: DateTime<Utc>) -> StoreResult<Vec<RecoveredRun>> {
    let expired: Vec<RunRow> = runs::table
        .filter(runs::status.eq("running"))
        .filter(
            runs::lease_expires_at
                .lt(now)
                .or(runs::lease_expires_at.is_null()),
        )
        .order(runs::id)
        .select(RunRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)?;
    let mut recovered = Vec::with_capacity(expired.len());
    for run in expired {
        let host = run.host_id.clone().unwrap_or_else(|| "unknown".into());
        let policy = match task_of(conn, &run) {
            Ok((_, task)) => task.retry,
            Err(e) => {
                tracing::warn!(run.id = run.id, error = %e, "cannot read the retry policy of a lost run");
                None
            }
        };
        add_event(
            conn,
            run.id,
            HOST_LOST,
            serde_json::json!({
                "host": host,
                "lease_expires_at": run.lease_expires_at,
                "process_group": run.process_group,
            }),
        )?;
        let end = RunEnd {
            status: "failed".into(),
            failure_type: Some(HOST_LOST.into()),
            error: Some(format!("host_lost: the lease of host {host} expired")),
            finished_at: now,
        };
        let finished = finish_run(conn, run.id, &end, policy.as_ref())?;
        recovered.push(RecoveredRun {
            run_id: run.id,
            task_id: run.task_id,
            host_id: run.host_id,
            process_group: run.process_group,
            retry: finished.retry,
        });
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff_ms: 200,
            max_backoff_ms: 1_000,
        }
    }

    #[test]
    fn the_delay_doubles_per_attempt_up_to_the_cap_with_at_most_half_of_it_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        for (attempt, base) in [(1, 200), (2, 400), (3, 800), (4, 1_000), (9, 1_000), (200, 1_000)] {
            for _ in 0..200 {
                let ms = retry_delay(&policy(), attempt, &mut rng).as_millis() as u64;
                assert!(
                    (base / 2..=base).contains(&ms),
                    "attempt {attempt}: {ms} ms outside {}..={base}",
                    base / 2
                );
            }
        }
    }

    #[test]
    fn the_jitter_spreads_the_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<_> =
            (0..50).map(|_| retry_delay(&policy(), 3, &mut rng)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
