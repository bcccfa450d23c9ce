//! This host's heartbeat: registered at start, renewed every third of the
//! lease (every second while the database does not answer), and judged by
//! PostgreSQL's clock. Each heartbeat also measures the database's clock.
//! A host that finds it was declared lost (it was silent past its lease, so
//! another host finished its runs and retried them) stops those runs here —
//! their other attempt is the one that counts — and registers again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::hosts::{self, Beat, HostRecord};
use crate::store::{runs, StoreError};

use super::Runner;

/// How often a host whose heartbeat failed tries again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

fn record(runner: &Runner) -> HostRecord {
    HostRecord {
        id: runner.config.host_id.clone(),
        machine: runner.config.machine.clone(),
        pid: std::process::id() as i32,
        lease_ms: runner.config.lease.as_millis() as i64,
    }
}

/// Registers this host as alive.
pub(super) async fn register(runner: &Runner) -> Result<(), StoreError> {
    let host = record(runner);
    runner
        .db
        .run_heartbeat(move |tx| hosts::register(tx, &host))
        .await
}

/// Heartbeats until `shutdown`.
pub(super) async fn run(runner: Arc<Runner>, shutdown: CancellationToken) {
    let every = (runner.config.lease / 3).max(Duration::from_millis(100));
    let mut wait = every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = match beat(&runner).await {
            Ok(Beat::Alive) => every,
            Ok(Beat::DeclaredLost) => {
                rejoin(&runner).await;
                every
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; this host keeps its runs and tries again");
                RETRY_EVERY.min(every)
            }
        };
    }
}

/// After another host declared this one lost: registers again, then stops
/// the local runs that host finished (their retry is the attempt that counts)
/// and keeps those the database still shows running here.
async fn rejoin(runner: &Runner) {
    if let Err(e) = register(runner).await {
        tracing::warn!(error = %e, "could not register again");
        return;
    }
    let host = runner.config.host_id.clone();
    let still_ours = match runner.db.run(move |tx| runs::running_on(tx, &host, 0)).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "could not tell which runs are still this host's");
            return;
        }
    };
    let taken: Vec<i64> = runner
        .local_runs()
        .into_iter()
        .filter(|id| !still_ours.contains(id))
        .collect();
    tracing::error!(
        runs = ?taken,
        "another host declared this one lost (it could not heartbeat for longer than its lease) and \
         retried its runs: stopping them here"
    );
    for run in taken {
        runner.cancel_local(run);
    }
}

async fn beat(runner: &Runner) -> Result<Beat, StoreError> {
    let (db, id) = (runner.db.clone(), runner.config.host_id.clone());
    runner
        .db
        .run_heartbeat(move |tx| hosts::heartbeat(tx, &id, db.clock()))
        .await
}
