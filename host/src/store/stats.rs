//! Statistics read from the aggregates PostgreSQL keeps itself: a trigger on
//! `runs` counts every run that reaches a final status into `run_stats` (per
//! task, hour of finishing and status, with log-scale histograms of duration
//! and lateness) and `task_marks` (latest success and failure). A stats call
//! reads at most one row per hour and status, whatever the size of history.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Float8, Int8, Nullable, Text, Timestamptz};
use serde::Serialize;

use super::{StoreResult, Tx};

/// Number of histogram buckets (see the migration: bucket `k` holds values
/// in (1.25^(k-2), 1.25^(k-1)] milliseconds, bucket 1 everything up to 1 ms).
const BUCKETS: usize = 100;
/// Ratio between consecutive bucket bounds.
const GROWTH: f64 = 1.25;

/// Durations or lateness of the counted runs, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Spread {
    /// Runs that had a value.
    pub count: i64,
    /// Median, estimated from the histogram (within 12%).
    pub p50_ms: Option<f64>,
    /// 95th percentile, estimated from the histogram (within 12%).
    pub p95_ms: Option<f64>,
    /// Largest value (exact; durations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
}

/// A run that marks a task's latest success or failure.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Mark {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// The run.
    pub run_id: i64,
}

/// Statistics of one task, or of all tasks, over a window of whole hours.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Runs counted finished at or after this instant (the window, rounded
    /// out to the start of its first hour).
    pub since: DateTime<Utc>,
    /// Runs that reached a final status in the window.
    pub runs: i64,
    /// Runs by final status (every final status present, zero or not).
    pub counts: BTreeMap<String, i64>,
    /// succeeded / (succeeded + failed + timed_out); None without any of them.
    pub success_rate: Option<f64>,
    /// How long runs took from start to finish.
    pub duration: Spread,
    /// How late runs started against their scheduled time.
    pub lateness: Spread,
    /// Latest success (ever, not only in the window).
    pub last_success: Option<Mark>,
    /// Latest failure or timeout (ever).
    pub last_failure: Option<Mark>,
}

/// Counted rows of the given tasks (`[0]`: all tasks together) since an
/// instant: the aggregates plus the runs not yet rolled up, in one statement
/// (one snapshot, so a rollup committing meanwhile counts nothing twice).
const ROWS: &str = "\
    SELECT task_id, status, runs, duration_count, duration_max_ms, duration_hist, lateness_count, lateness_hist, \
        NULL::float8 AS lateness_ms \
    FROM run_stats WHERE task_id = ANY ($1) AND hour >= date_trunc('hour', $2) \
    UNION ALL \
    SELECT CASE WHEN 0 = ANY ($1) THEN 0 ELSE task_id END, status, 1::int8, \
        (duration_ms IS NOT NULL)::int4::int8, duration_ms, '{}'::int8[], (lateness_ms IS NOT NULL)::int4::int8, \
        '{}'::int8[], lateness_ms \
    FROM run_stats_pending WHERE (0 = ANY ($1) OR task_id = ANY ($1)) AND at >= $2";

/// Latest success and failure of the given tasks (`[0]`: of all), rolled up or not.
const MARKS: &str = "\
    SELECT k AS task_id, max(sa) AS success_at, max(sr) AS success_run, max(fa) AS failure_at, \
        max(fr) AS failure_run FROM ( \
        SELECT CASE WHEN 0 = ANY ($1) THEN 0 ELSE task_id END AS k, last_success_at AS sa, \
            last_success_run AS sr, last_failure_at AS fa, last_failure_run AS fr \
        FROM task_marks WHERE 0 = ANY ($1) OR task_id = ANY ($1) \
        UNION ALL \
        SELECT CASE WHEN 0 = ANY ($1) THEN 0 ELSE task_id END, \
            CASE WHEN status = 'succeeded' THEN at END, CASE WHEN status = 'succeeded' THEN run_id END, \
            CASE WHEN status IN ('failed', 'timed_out') THEN at END, \
            CASE WHEN status IN ('failed', 'timed_out') THEN run_id END \
        FROM run_stats_pending WHERE 0 = ANY ($1) OR task_id = ANY ($1)) x \
    GROUP BY k";

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Int8)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Int8)]
    runs: i64,
    #[diesel(sql_type = Int8)]
    duration_count: i64,
    #[diesel(sql_type = Nullable<Float8>)]
    duration_max_ms: Option<f64>,
    #[diesel(sql_type = Array<Int8>)]
    duration_hist: Vec<i64>,
    #[diesel(sql_type = Int8)]
    lateness_count: i64,
    #[diesel(sql_type = Array<Int8>)]
    lateness_hist: Vec<i64>,
    /// A pending run's lateness (its histograms are empty: it is bucketed here).
    #[diesel(sql_type = Nullable<Float8>)]
    lateness_ms: Option<f64>,
}

#[derive(QueryableByName)]
struct MarkRow {
    #[diesel(sql_type = Int8)]
    task_id: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    success_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Int8>)]
    success_run: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    failure_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Int8>)]
    failure_run: Option<i64>,
}

/// Statistics of `task_id` (None: every task) over the `hours` before `now`.
pub fn read(tx: &mut Tx<'_>, task_id: Option<i64>, hours: i64, now: DateTime<Utc>) -> StoreResult<Stats> {
    let key = task_id.unwrap_or(0);
    let mut many = read_many(tx, &[key], hours, now)?;
    Ok(many
        .remove(&key)
        .unwrap_or_else(|| summarize(window_start(now, hours), &[], (None, None))))
}

/// The start of the hour `hours - 1` hours before `now`'s hour: a window of
/// 24 h counts the current hour and the 23 whole hours before it.
pub fn window_start(now: DateTime<Utc>, hours: i64) -> DateTime<Utc> {
    let hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    hour - Duration::hours(hours.max(1) - 1)
}

/// Statistics of several tasks at once (`[0]`: all tasks together).
pub fn read_many(
    tx: &mut Tx<'_>,
    task_ids: &[i64],
    hours: i64,
    now: DateTime<Utc>,
) -> StoreResult<BTreeMap<i64, Stats>> {
    let since = window_start(now, hours);
    let rows: Vec<Row> = diesel::sql_query(ROWS)
        .bind::<Array<Int8>, _>(task_ids)
        .bind::<Timestamptz, _>(since)
        .load(tx.c())?;
    let marks: Vec<MarkRow> = diesel::sql_query(MARKS)
        .bind::<Array<Int8>, _>(task_ids)
        .load(tx.c())?;
    let mark = |at: Option<DateTime<Utc>>, run: Option<i64>| {
        Some(Mark {
            at: at?,
            run_id: run?,
        })
    };
    Ok(task_ids
        .iter()
        .map(|id| {
            let own: Vec<&Row> = rows.iter().filter(|r| r.task_id == *id).collect();
            let pair = marks.iter().find(|m| m.task_id == *id).map_or((None, None), |m| {
                (
                    mark(m.success_at, m.success_run),
                    mark(m.failure_at, m.failure_run),
                )
            });
            (*id, summarize(since, &own, pair))
        })
        .collect())
}

/// Runs one [`roll_up`] moves at most.
pub const ROLLUP_BATCH: i64 = 10_000;

/// Moves runs counted by the trigger into the aggregates (at most
/// [`ROLLUP_BATCH`]; one transaction at a time, the others return at once);
/// returns how many.
pub fn roll_up(tx: &mut Tx<'_>) -> StoreResult<i64> {
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = Int8)]
        moved: i64,
    }
    let moved: Moved =
        diesel::sql_query(format!("SELECT run_stats_rollup({ROLLUP_BATCH}) AS moved")).get_result(tx.c())?;
    Ok(moved.moved)
}

fn summarize(since: DateTime<Utc>, rows: &[&Row], marks: (Option<Mark>, Option<Mark>)) -> Stats {
    let mut counts: BTreeMap<String, i64> = super::history::FINAL_STATUSES
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    let (mut duration, mut lateness) = (vec![0; BUCKETS], vec![0; BUCKETS]);
    let (mut duration_count, mut lateness_count, mut max) = (0, 0, None::<f64>);
    for row in rows {
        *counts.entry(row.status.clone()).or_default() += row.runs;
        duration_count += row.duration_count;
        lateness_count += row.lateness_count;
        max = match (max, row.duration_max_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        add(&mut duration, &row.duration_hist);
        add(&mut lateness, &row.lateness_hist);
        // A pending run: one value each, bucketed as the rollup would.
        if row.duration_hist.is_empty() && row.duration_count > 0 {
            if let Some(ms) = row.duration_max_ms {
                duration[bucket_of(ms)] += 1;
            }
        }
        if let Some(ms) = row.lateness_ms.filter(|_| row.lateness_hist.is_empty()) {
            lateness[bucket_of(ms)] += 1;
        }
    }
    let verdicts = counts["succeeded"] + counts["failed"] + counts["timed_out"];
    Stats {
        since,
        runs: counts.values().sum(),
        success_rate: (verdicts > 0).then(|| counts["succeeded"] as f64 / verdicts as f64),
        counts,
        duration: Spread {
            count: duration_count,
            p50_ms: percentile(&duration, 0.50).map(|v| max.map_or(v, |m| v.min(m))),
            p95_ms: percentile(&duration, 0.95).map(|v| max.map_or(v, |m| v.min(m))),
            max_ms: max,
        },
        lateness: Spread {
            count: lateness_count,
            p50_ms: percentile(&lateness, 0.50),
            p95_ms: percentile(&lateness, 0.95),
            max_ms: None,
        },
        last_success: marks.0,
        last_failure: marks.1,
    }
}

fn add(into: &mut [i64], hist: &[i64]) {
    for (a, b) in into.iter_mut().zip(hist) {
        *a += b;
    }
}

/// The 0-based bucket of `ms` (the migration's `run_stats_bucket` minus one).
fn bucket_of(ms: f64) -> usize {
    ((ms.max(1.0).ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
}

/// The `q`-quantile of a histogram in the stored layout: the geometric middle
/// of the bucket holding it (so within a factor of sqrt(1.25), 12%, of the
/// true value); None for an empty histogram.
pub fn percentile(hist: &[i64], q: f64) -> Option<f64> {
    let total: i64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
    let mut seen = 0;
    let bucket = hist.iter().position(|n| {
        seen += n;
        seen >= rank
    })?;
    // Bucket index 0 here is bucket 1 of the migration: up to 1 ms.
    Some(match bucket {
        0 => 1.0,
        k => GROWTH.powf(k as f64 - 0.5),
    })
}

/// What `/metrics` reports of the cluster: one row per task and status, the
/// live queue's size from its partial indexes, and the newest pulse.
pub fn cluster(tx: &mut Tx<'_>) -> StoreResult<crate::metrics::Cluster> {
    use super::schema::{hook_failures, plugins, runs, tasks};
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = Text)]
        plugin: String,
        #[diesel(sql_type = Text)]
        task: String,
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = Int8)]
        runs: i64,
    }
    // Rolled up and not yet, in one statement.
    let totals: Vec<Total> = diesel::sql_query(
        "SELECT p.name AS plugin, t.name AS task, x.status, sum(x.runs)::int8 AS runs FROM ( \
             SELECT task_id, status, runs FROM run_totals \
             UNION ALL SELECT task_id, status, count(*) FROM run_stats_pending GROUP BY 1, 2) x \
         JOIN tasks t ON t.id = x.task_id JOIN plugins p ON p.id = t.plugin_id \
         GROUP BY 1, 2, 3",
    )
    .load(tx.c())?;
    let runs_finished = totals
        .into_iter()
        .map(|t| (t.plugin, t.task, t.status, t.runs))
        .collect();
    let hook_failures = hook_failures::table
        .inner_join(tasks::table.inner_join(plugins::table))
        .select((
            plugins::name,
            tasks::name,
            hook_failures::hook,
            hook_failures::total,
        ))
        .load::<(String, String, String, i32)>(tx.c());
    let count = |tx: &mut Tx<'_>, status: &str| -> StoreResult<i64> {
        Ok(runs::table
            .filter(runs::status.eq(status))
            .count()
            .get_result(tx.c())?)
    };
    let (_, last_pulse_age_seconds) = super::health::last_pulse(tx)?;
    Ok(crate::metrics::Cluster {
        runs_finished,
        queued: count(tx, "queued")?,
        running: count(tx, "running")?,
        hook_failures: hook_failures?
            .into_iter()
            .map(|(p, t, h, n)| (p, t, h, i64::from(n)))
            .collect(),
        last_pulse_age_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_read_from_the_buckets_is_within_twelve_percent() {
        for ms in [1.5, 7.0, 250.0, 3_001.0, 61_000.0, 3_600_000.0] {
            let mut hist = vec![0; BUCKETS];
            hist[bucket_of(ms)] = 1;
            let estimate = percentile(&hist, 0.5).unwrap();
            assert!(
                (estimate / ms - 1.0).abs() < 0.12,
                "{ms} ms estimated as {estimate}"
            );
        }
    }

    #[test]
    fn the_p95_of_twenty_runs_is_the_nineteenth() {
        let mut hist = vec![0; BUCKETS];
        for ms in 1..=20 {
            hist[bucket_of(ms as f64 * 100.0)] += 1;
        }
        let p95 = percentile(&hist, 0.95).unwrap();
        assert!((p95 / 1_900.0 - 1.0).abs() < 0.12, "{p95}");
        assert_eq!(percentile(&vec![0; BUCKETS], 0.5), None);
    }
}
