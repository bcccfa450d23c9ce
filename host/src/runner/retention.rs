//! The retention pass, on every host: history older than the retention is
//! deleted in batches (one replica at a time, see `store::retention`), and
//! this host's venvs unused for as long are removed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use tokio_util::sync::CancellationToken;

use super::Runner;
use crate::store::retention::{self, Deleted};

/// Pause between two batches, so retention never crowds out live work.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// How long history is kept, and how often it is trimmed.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days runs, slots and pulses are kept.
    pub days: u32,
    /// Days `missed` runs are kept (at most `days`).
    pub missed_days: u32,
    /// Time between two passes (the first comes at start).
    pub every: Duration,
}

/// Runs a pass at start and then every `retention.every` until `shutdown`.
pub(super) async fn run(runner: Arc<Runner>, retention: Retention, shutdown: CancellationToken) {
    loop {
        pass(&runner, retention).await;
        tokio::select! {
            _ = tokio::time::sleep(retention.every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deletes history older than `retention`, in batches.
pub(super) async fn pass(runner: &Runner, retention: Retention) {
    let now = runner.db.clock().now();
    let cutoff = now - Span::days(i64::from(retention.days));
    let missed_cutoff = now - Span::days(i64::from(retention.missed_days));
    let mut total = Deleted::default();
    loop {
        match runner
            .db
            .run(move |tx| retention::delete_batch(tx, cutoff, missed_cutoff))
            .await
        {
            Ok(Some(batch)) if batch.total() > 0 => {
                for (table, n) in batch.by_table() {
                    crate::metrics::retention_deleted(table, n);
                }
                total = add(total, batch);
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "retention stopped for this pass");
                break;
            }
        }
    }
    if total.total() > 0 {
        tracing::info!(
            runs = total.runs,
            step_executions = total.step_executions,
            run_events = total.run_events,
            slots = total.slots,
            pulses = total.pulses,
            run_stats = total.run_stats,
            "retention deleted history older than {} days ({} for missed runs)",
            retention.days,
            retention.missed_days
        );
    }
    let unused = Duration::from_secs(u64::from(retention.days) * 86_400);
    let removed = runner.venvs.remove_unused(unused);
    if removed > 0 {
        crate::metrics::retention_deleted("venvs", removed);
        tracing::info!(
            venvs = removed,
            "retention removed venvs unused for {} days",
            retention.days
        );
    }
}

fn add(a: Deleted, b: Deleted) -> Deleted {
    Deleted {
        runs: a.runs + b.runs,
        step_executions: a.step_executions + b.step_executions,
        run_events: a.run_events + b.run_events,
        slots: a.slots + b.slots,
        pulses: a.pulses + b.pulses,
        run_stats: a.run_stats + b.run_stats,
    }
}
