//! Watching this host's runs from the database's side: a cancel request stored
//! by any replica reaches the run within a second, and a run the database says
//! runs here but this host has no record of (its claim's answer was lost with
//! the connection) is finished and retried instead of staying `running`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::finish;
use crate::store::runs;

use super::recovery;
use super::settle::{self, Ending};
use super::Runner;

/// How often running runs look for cancel requests.
const CANCEL_POLL: Duration = Duration::from_secs(1);
/// How often this host compares the runs it executes with the database's view.
const RECONCILE_EVERY: Duration = Duration::from_secs(15);

/// Watches until `shutdown`.
pub(super) async fn run(runner: Arc<Runner>, shutdown: CancellationToken) {
    let mut since_reconcile = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CANCEL_POLL) => {}
            _ = shutdown.cancelled() => return,
        }
        since_reconcile += CANCEL_POLL;
        if !runner.local_runs().is_empty() {
            cancel_requested(&runner).await;
        }
        if since_reconcile >= RECONCILE_EVERY {
            since_reconcile = Duration::ZERO;
            if let Err(e) = reconcile(&runner).await {
                tracing::warn!(error = %e, "could not compare this host's runs with the database");
            }
        }
    }
}

async fn cancel_requested(runner: &Runner) {
    let host = runner.config.host_id.clone();
    match runner.db.run(move |tx| runs::cancel_requests(tx, &host)).await {
        Ok(ids) => {
            for id in ids {
                if runner.cancel_local(id) {
                    tracing::info!(run.id = id, "cancel requested");
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not look for cancel requests"),
    }
}

/// Finishes runs recorded as running here (for longer than a lease) that this
/// host does not execute.
async fn reconcile(runner: &Runner) -> Result<(), crate::store::StoreError> {
    let host = runner.config.host_id.clone();
    let settle_ms = runner.config.lease.as_millis() as i64;
    let recorded = {
        let host = host.clone();
        runner
            .db
            .run(move |tx| runs::running_on(tx, &host, settle_ms))
            .await?
    };
    let local = runner.local_runs();
    let orphans: Vec<i64> = recorded.into_iter().filter(|id| !local.contains(id)).collect();
    if orphans.is_empty() {
        return Ok(());
    }
    tracing::error!(runs = ?orphans, "runs recorded as running on this host that it does not execute: finishing them as host_lost");
    let now = runner.db.clock().now();
    runner
        .db
        .run(move |tx| {
            let error = format!("host_lost: host {host} has no record of executing the run");
            let endings: Vec<Ending> = finish::running_with_definitions(tx, &orphans)?
                .iter()
                .map(|s| recovery::host_lost(s, &host, error.clone(), now))
                .collect();
            settle::finish(tx, &endings).map(|_| ())
        })
        .await?;
    runner.wake();
    Ok(())
}
