//! Runs: a dispatcher takes queued runs from PostgreSQL (never only from
//! memory, so a restart loses none), at most `max_concurrent_runs` at once, and
//! executes each one's lifecycle (see [`lifecycle`]) while renewing its lease.

mod lifecycle;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::exec::python::VenvCache;
use crate::store::runs::{self, ClaimedRun};
use crate::store::{Db, StoreError};

/// How often an idle dispatcher looks at the queue without being woken
/// (runs whose `not_before` has come, runs queued by another replica).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often a running run checks whether another replica asked to cancel it.
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Identifies this host in leases.
    pub host_id: String,
    /// Where scratch directories and venvs live.
    pub data_dir: PathBuf,
    /// Runs at once on this host.
    pub max_concurrent_runs: usize,
    /// Run timeout when a task sets none.
    pub default_run_timeout: Duration,
    /// SIGTERM-to-SIGKILL grace.
    pub kill_grace: Duration,
    /// Bytes kept per stream.
    pub output_cap_bytes: usize,
    /// Host variables children may see.
    pub env_allow: Vec<String>,
    /// Directories binary steps must live under.
    pub binary_dirs: Vec<PathBuf>,
    /// Lease length.
    pub lease: Duration,
    /// Consecutive failures of one hook type that pause a task.
    pub hook_failures_before_pause: u32,
}

/// Executes queued runs.
pub struct Runner {
    db: Db,
    config: RunnerConfig,
    venvs: VenvCache,
    wake: Notify,
    running: Mutex<HashMap<i64, CancellationToken>>,
}

impl Runner {
    /// A runner over `db`; call [`Runner::start`] to begin dispatching.
    pub fn new(db: Db, config: RunnerConfig, python: String) -> Arc<Self> {
        let venvs = VenvCache::new(config.data_dir.join("venvs"), python);
        Arc::new(Runner {
            db,
            config,
            venvs,
            wake: Notify::new(),
            running: Mutex::default(),
        })
    }

    /// Starts the dispatcher; it stops when `shutdown` is cancelled.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.dispatch(shutdown).await })
    }

    /// Tells the dispatcher that runs were queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Cancels a run executing on this host; false if it is not running here.
    pub fn cancel_local(&self, run_id: i64) -> bool {
        match self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&run_id)
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    async fn dispatch(self: Arc<Self>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.max_concurrent_runs));
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            match self.claim().await {
                Ok(Some(claimed)) => {
                    let me = Arc::clone(&self);
                    tokio::spawn(async move {
                        me.execute(claimed).await;
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not take a run from the queue"),
            }
            drop(permit);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn claim(&self) -> Result<Option<ClaimedRun>, StoreError> {
        let host = self.config.host_id.clone();
        let lease = self.lease_duration();
        self.db
            .run(move |conn| {
                let now = Utc::now();
                runs::claim_next(conn, &host, now, now + lease)
            })
            .await
    }

    async fn execute(self: &Arc<Self>, claimed: ClaimedRun) {
        let run_id = claimed.run.id;
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id, cancel.clone());
        let watcher = self.watch(run_id, cancel.clone());
        tracing::info!(run.id = run_id, plugin = %claimed.plugin, task = %claimed.task.name, "run started");
        let end = lifecycle::execute(self, &claimed, &cancel).await;
        watcher.cancel();
        tracing::info!(run.id = run_id, status = %end.status, error = ?end.error, "run finished");
        persist(&self.db, move |conn| runs::finish_run(conn, run_id, &end)).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run_id);
    }

    /// Watches a running run until the returned token is cancelled: renews its
    /// lease every third of the lease length and turns a cancel request stored
    /// by any replica into cancellation of `run` within a second.
    fn watch(&self, run_id: i64, run: CancellationToken) -> CancellationToken {
        let stop = CancellationToken::new();
        let (db, host, lease, token) = (
            self.db.clone(),
            self.config.host_id.clone(),
            self.lease_duration(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let renew_every = (lease / 3).to_std().unwrap_or(Duration::from_secs(10));
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(CANCEL_POLL) => {}
                }
                if !run.is_cancelled()
                    && db
                        .run(move |c| runs::cancel_requested(c, run_id))
                        .await
                        .unwrap_or(false)
                {
                    tracing::info!(run.id = run_id, "cancel requested");
                    run.cancel();
                }
                if last_renewal.elapsed() >= renew_every {
                    last_renewal = tokio::time::Instant::now();
                    let host = host.clone();
                    let renewed = db
                        .run(move |c| runs::renew_lease(c, run_id, &host, Utc::now() + lease))
                        .await;
                    if let Err(e) = renewed {
                        tracing::warn!(run.id = run_id, error = %e, "lease renewal failed");
                    }
                }
            }
        });
        stop
    }

    fn lease_duration(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// Results of finished work are retried until written: a brief database outage
/// must not lose a step that already ran.
async fn persist<T, F>(db: &Db, f: F) -> Option<T>
where
    T: Send + 'static,
    F: Fn(&mut diesel::PgConnection) -> Result<T, StoreError> + Clone + Send + 'static,
{
    const ATTEMPTS: u32 = 30;
    for attempt in 1..=ATTEMPTS {
        match db.run(f.clone()).await {
            Ok(value) => return Some(value),
            Err(e @ StoreError::Unavailable(_)) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "database unavailable; retrying the write");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record a result");
                return None;
            }
        }
    }
    None
}
