//! Runs: a dispatcher takes queued runs from PostgreSQL (never only from
//! memory, so a restart loses none), at most `max_concurrent_runs` at once, and
//! executes each one's lifecycle (see [`lifecycle`]) while renewing its lease.
//! Alongside, it finishes the runs of hosts that died (see [`recovery`]); on
//! shutdown it drains (see [`Runner::drain`]).

mod groups;
mod lifecycle;
mod process;
mod recovery;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::exec::python::VenvCache;
use crate::store::finish::{self, RecoveredRun};
use crate::store::runs::{self, ClaimedRun};
use crate::store::{Db, StoreError};

pub use recovery::{machine_of, recover_expired_runs};

/// How often an idle dispatcher looks at the queue without being woken
/// (runs whose `not_before` has come, runs queued by another replica).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often a running run checks whether another replica asked to cancel it.
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// How often the runner looks for runs whose host's lease expired.
const RECOVERY_EVERY: Duration = Duration::from_secs(5);

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
    /// One permit per run executing here; all of them free means none is.
    slots: Arc<Semaphore>,
    /// Cancelled when the host drains: no run is taken any more.
    stop_claiming: CancellationToken,
    /// Parent of every run's token: cancelling it cancels every run, even one
    /// that starts afterwards.
    cancel_all: CancellationToken,
}

impl Runner {
    /// A runner over `db`; call [`Runner::start`] to begin dispatching.
    pub fn new(db: Db, config: RunnerConfig, python: String) -> Arc<Self> {
        let venvs = VenvCache::new(config.data_dir.join("venvs"), python);
        Arc::new(Runner {
            db,
            venvs,
            wake: Notify::new(),
            running: Mutex::default(),
            slots: Arc::new(Semaphore::new(config.max_concurrent_runs)),
            stop_claiming: CancellationToken::new(),
            cancel_all: CancellationToken::new(),
            config,
        })
    }

    /// Starts the dispatcher, and beside it the recovery of runs whose host's
    /// lease expired, every [`RECOVERY_EVERY`]; both stop when `shutdown` is
    /// cancelled. The handle is the dispatcher's.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RECOVERY_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                if let Err(e) = me.recover().await {
                    tracing::warn!(error = %e, "could not look for runs of lost hosts");
                }
            }
        });
        let me = Arc::clone(self);
        tokio::spawn(async move { me.dispatch(shutdown).await })
    }

    /// Finishes every run whose lease expired as `failed`/`host_lost` (retrying
    /// it by policy), kills the process groups such runs left on this machine,
    /// and cancels any of them that still executes here (this host lost its
    /// lease, say through a database outage). Called at start-up and every
    /// [`RECOVERY_EVERY`].
    pub async fn recover(&self) -> Result<Vec<RecoveredRun>, StoreError> {
        let recovered = recover_expired_runs(&self.db, &self.config.host_id).await?;
        for run in &recovered {
            if run.host_id.as_deref() == Some(self.config.host_id.as_str()) {
                self.cancel_local(run.run_id);
            }
        }
        if recovered.iter().any(|r| r.retry.is_some()) {
            self.wake();
        }
        Ok(recovered)
    }

    /// Graceful shutdown: takes no more runs, lets the running ones finish for
    /// up to `grace`, then cancels the rest (their cleanup hooks still run) and
    /// returns once every run executing here is recorded.
    pub async fn drain(&self, grace: Duration) {
        self.stop_claiming.cancel();
        let all = self.config.max_concurrent_runs as u32;
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).len();
        tracing::info!(
            running,
            grace_ms = grace.as_millis() as u64,
            "draining: no new runs"
        );
        match tokio::time::timeout(grace, self.slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("every run finished"),
            Err(_) => {
                let left = self.running.lock().unwrap_or_else(|p| p.into_inner()).len();
                tracing::warn!(
                    runs = left,
                    "shutdown grace over; cancelling the runs still going"
                );
                self.cancel_all.cancel();
                let _ = self.slots.acquire_many(all).await;
                tracing::info!("cancelled runs recorded");
            }
        }
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
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
                _ = self.stop_claiming.cancelled() => return,
            };
            if self.stop_claiming.is_cancelled() {
                return;
            }
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
                _ = self.stop_claiming.cancelled() => return,
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
        let cancel = self.cancel_all.child_token();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id, cancel.clone());
        let watcher = self.watch(run_id, cancel.clone());
        tracing::info!(run.id = run_id, plugin = %claimed.plugin, task = %claimed.task.name, attempt = claimed.run.attempt, "run started");
        let (groups, group_writer) = groups::Groups::start(self.db.clone(), run_id);
        let end = lifecycle::execute(self, &claimed, &cancel, &groups).await;
        drop(groups);
        let _ = group_writer.await;
        watcher.cancel();
        tracing::info!(run.id = run_id, status = %end.status, error = ?end.error, "run finished");
        let policy = claimed.task.retry;
        let finished = persist(&self.db, move |conn| {
            finish::finish_run(conn, run_id, &end, policy.as_ref())
        })
        .await;
        match finished {
            Some(f) if !f.recorded => tracing::warn!(
                run.id = run_id,
                "the run had already been finished by another host (its lease expired); its outcome here is not recorded"
            ),
            Some(f) => {
                if let Some(retry) = &f.retry {
                    tracing::info!(run.id = run_id, next_run = retry.run_id, attempt = retry.attempt, not_before = %retry.not_before, "retry scheduled");
                }
                if !f.skipped.is_empty() {
                    tracing::info!(run.id = run_id, skipped = ?f.skipped, "dependent runs skipped");
                }
            }
            None => {}
        }
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run_id);
        // Runs that waited for this one may start now.
        self.wake();
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
                    match renewed {
                        Ok(true) => {}
                        Ok(false) if !run.is_cancelled() => {
                            tracing::warn!(
                                run.id = run_id,
                                "lease lost: another host finished the run; stopping it here"
                            );
                            run.cancel();
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(run.id = run_id, error = %e, "lease renewal failed"),
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
