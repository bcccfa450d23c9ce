//! Serverless mode: nothing runs between requests, so a pulse does the
//! work itself before it answers. It registers this host again (between
//! requests it does not heartbeat, and may have been declared lost, which
//! costs nothing: it has no runs then), heartbeats and watches for cancel
//! requests while it works, finishes lost hosts' runs, sweeps, deletes old
//! history when that is due, and executes every run it can start until
//! none is left (runs that wait for a later time wait for a later pulse).

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{dispatch, heartbeat, retention, watch, Runner};

impl Runner {
    /// One request's work in serverless mode (see the module doc).
    pub async fn work_now(self: &Arc<Self>) {
        let _one = self.working.lock().await;
        if let Err(e) = heartbeat::register(self).await {
            tracing::warn!(error = %e, "cannot register this host; no runs executed by this request");
            return;
        }
        let stop = CancellationToken::new();
        let _stop_when_done = stop.clone().drop_guard();
        tokio::spawn(heartbeat::run(Arc::clone(self), stop.clone()));
        tokio::spawn(watch::run(Arc::clone(self), stop.clone()));
        self.housekeeping().await;
        let due = {
            let mut last = self.retention_pass.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= self.config.retention.every);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            retention::pass(self, self.config.retention).await;
        }
        dispatch::until_idle(Arc::clone(self)).await;
    }
}
