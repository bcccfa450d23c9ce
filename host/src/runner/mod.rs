//! Runs: a dispatcher takes queued runs from PostgreSQL in batches (never
//! from memory, so a restart loses none), at most `max_concurrent_runs` at
//! once, and executes each one's lifecycle (see [`lifecycle`]). Everything a
//! run records goes through the [`journal`]. Beside it the host heartbeats
//! ([`heartbeat`]), finishes the runs of hosts that stopped heartbeating
//! ([`recovery`]), sweeps what no cascade caught ([`settle::sweep`]), and on
//! shutdown drains (see [`Runner::drain`]). The rules are in [`policy`].

mod dispatch;
mod groups;
mod heartbeat;
mod io_contract;
mod journal;
mod keeper;
mod lifecycle;
pub mod policy;
mod process;
mod program;
mod recovery;
mod retention;
mod serverless;
mod services;
pub mod settle;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::exec::python::VenvCache;
use crate::store::{hosts, Db, StoreError};

pub use recovery::RecoveredRun;
pub use retention::Retention;

/// Batches of finished runs one housekeeping round rolls up into the statistics at most.
const ROLLUP_BATCHES_PER_ROUND: usize = 20;

/// How often the sweeper and the recovery of lost hosts run.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Identifies this host (`<machine>-<pid>-<random>`).
    pub host_id: String,
    /// This host's machine (hostname).
    pub machine: String,
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
    pub binary_dirs: crate::exec::BinaryDirs,
    /// How long this host may stay silent before others declare it lost.
    pub lease: Duration,
    /// Consecutive failures of one hook type that pause a task.
    pub hook_failures_before_pause: u32,
    /// How long history and venvs are kept.
    pub retention: retention::Retention,
    /// How processes are confined on this machine.
    pub sandbox: Arc<crate::exec::sandbox::Sandbox>,
    /// Limits of every process of every run.
    pub step_limits: crate::exec::sandbox::Limits,
    /// What runs executing here may reserve together.
    pub capacity: policy::Room,
    /// Where processes' remote files are cached.
    pub resources: crate::exec::resources::ResourceCache,
    /// The lease of the services this host runs; None: it runs none
    /// (serverless mode).
    pub service_lease: Option<Duration>,
    /// Serverless mode: no tickers; requests do the work ([`Runner::work_now`]).
    pub serverless: bool,
}

/// Executes queued runs.
pub struct Runner {
    db: Db,
    config: RunnerConfig,
    venvs: VenvCache,
    /// Woken when runs may have become claimable.
    wake: Arc<Notify>,
    /// Runs this host is responsible for until their end is written.
    running: Mutex<HashMap<i64, CancellationToken>>,
    /// One permit per run executing here; all of them free means none is.
    slots: Arc<Semaphore>,
    /// Cancelled when the host drains: no run is taken any more.
    stop_claiming: CancellationToken,
    /// Parent of every run's token: cancelling it cancels every run, even one
    /// whose claim was in flight.
    cancel_all: CancellationToken,
    journal: journal::Journal,
    /// Memory and CPU reserved by the runs executing here.
    reserved: Mutex<policy::Room>,
    /// The services this host keeps running.
    services: services::Keepers,
    /// Serverless mode: one request works at a time.
    working: tokio::sync::Mutex<()>,
    /// Serverless mode: when history retention last ran.
    retention_pass: Mutex<Option<std::time::Instant>>,
}

impl Runner {
    /// A runner over `db` (call inside a tokio runtime); [`Runner::start`] begins.
    pub fn new(db: Db, config: RunnerConfig, python: String) -> Arc<Self> {
        // pip needs the index, room to resolve and the build directory's
        // absolute path (which a private /tmp could hide): builds get the
        // operator's process, open-file and file-size limits only.
        let build_limits = crate::exec::sandbox::Limits {
            processes: config.step_limits.processes,
            open_files: config.step_limits.open_files,
            file_size_bytes: config.step_limits.file_size_bytes,
            ..crate::exec::sandbox::Limits::default()
        };
        let venvs = VenvCache::new(
            config.data_dir.join("venvs"),
            python,
            Arc::clone(&config.sandbox),
            build_limits,
        );
        let wake = Arc::new(Notify::new());
        let journal =
            journal::Journal::start(db.clone(), config.hook_failures_before_pause, Arc::clone(&wake));
        Arc::new(Runner {
            db,
            venvs,
            wake,
            running: Mutex::default(),
            slots: Arc::new(Semaphore::new(config.max_concurrent_runs)),
            stop_claiming: CancellationToken::new(),
            cancel_all: CancellationToken::new(),
            journal,
            reserved: Mutex::new(policy::Room {
                memory_bytes: 0,
                cpu_millicores: 0,
            }),
            services: services::Keepers::default(),
            working: tokio::sync::Mutex::new(()),
            retention_pass: Mutex::new(None),
            config,
        })
    }

    /// What runs may still reserve on this host.
    fn room(&self) -> policy::Room {
        let reserved = *self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        policy::Room {
            memory_bytes: self.config.capacity.memory_bytes - reserved.memory_bytes,
            cpu_millicores: self.config.capacity.cpu_millicores - reserved.cpu_millicores,
        }
    }

    /// Adds (`sign` 1) or gives back (`sign` -1) a run's reservation.
    fn reserve(&self, reservation: Option<&crate::spec::Reservation>, sign: i64) {
        let Some(r) = reservation else { return };
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        reserved.memory_bytes += sign * r.memory_bytes as i64;
        reserved.cpu_millicores += sign * i64::from(r.cpu_millicores);
    }

    /// Registers this host, then starts the heartbeat, the watcher of cancel
    /// requests, the housekeeping (recovery of lost hosts' runs, the sweeper and
    /// the statistics rollup, every [`HOUSEKEEPING_EVERY`]), the services'
    /// supervisor (when it runs services) and the dispatcher; all stop when
    /// `shutdown` is cancelled. The handle is the dispatcher's. In serverless
    /// mode it only registers: requests do the work ([`Runner::work_now`]).
    pub async fn start(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        heartbeat::register(self).await?;
        if self.config.serverless {
            return Ok(tokio::spawn(async {}));
        }
        tokio::spawn(heartbeat::run(Arc::clone(self), shutdown.clone()));
        tokio::spawn(watch::run(Arc::clone(self), shutdown.clone()));
        tokio::spawn(retention::run(
            Arc::clone(self),
            self.config.retention,
            shutdown.clone(),
        ));
        let me = Arc::clone(self);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(HOUSEKEEPING_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                me.housekeeping().await;
            }
        });
        if let Some(lease) = self.config.service_lease {
            self.services.start(self, lease);
        }
        let me = Arc::clone(self);
        Ok(tokio::spawn(async move { dispatch::run(me, shutdown).await }))
    }

    /// Finishes the runs of hosts declared lost (see [`recovery`]) and sweeps.
    async fn housekeeping(&self) {
        if let Err(e) = self.recover().await {
            tracing::warn!(error = %e, "could not look for runs of lost hosts");
        }
        match self.db.run(settle::sweep).await {
            Ok(changed) if !changed.is_empty() => {
                tracing::warn!(runs = ?changed, "sweeper settled queued runs no cascade had reached");
                self.wake();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper could not run"),
        }
        // Statistics read what is not rolled up yet too; this keeps it short
        // (a burst is drained in batches, a bounded number per round).
        for _ in 0..ROLLUP_BATCHES_PER_ROUND {
            match self.db.run(crate::store::stats::roll_up).await {
                Ok(moved) if moved >= crate::store::stats::ROLLUP_BATCH => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "statistics could not be rolled up");
                    break;
                }
            }
        }
    }

    /// Finishes every run of a host that stopped heartbeating as
    /// `failed`/`host_lost` (retrying it by policy) and kills what such runs
    /// left on this machine. No verdict is given until this host has reached
    /// the database for a whole lease without interruption, so that after an
    /// outage every live host has had the time to heartbeat again.
    pub async fn recover(&self) -> Result<Vec<RecoveredRun>, StoreError> {
        let recovered = recovery::recover(self).await?;
        if recovered.iter().any(|r| r.retry.is_some()) {
            self.wake();
        }
        Ok(recovered)
    }

    /// Has this host's cgroups removed once empty (call when every run has
    /// ended, as the host stops).
    pub fn release_cgroups(&self) {
        self.config.sandbox.forget_host(&self.config.host_id);
    }

    /// Graceful shutdown: takes no more runs, lets the running ones finish for
    /// up to `grace`, then cancels the rest (their cleanup hooks still run),
    /// writes every record, and tells the database this host stopped.
    pub async fn drain(&self, grace: Duration) {
        self.stop_claiming.cancel();
        // Services stop beside the draining runs, each within its own grace.
        tokio::join!(self.services.stop_all(self), self.drain_runs(grace));
        if tokio::time::timeout(DRAIN_WRITE_LIMIT, self.journal.flushed())
            .await
            .is_err()
        {
            tracing::error!("the database did not take the last run records; other hosts will recover those runs as host_lost");
            return;
        }
        let id = self.config.host_id.clone();
        match self.db.run(move |tx| hosts::stopped(tx, &id)).await {
            Ok(()) => tracing::info!("every run recorded; host stopped"),
            Err(e) => tracing::warn!(error = %e, "could not record that this host stopped"),
        }
    }

    /// Lets the running runs finish for up to `grace`, then cancels the rest
    /// and waits until every one has ended.
    async fn drain_runs(&self, grace: Duration) {
        let all = self.config.max_concurrent_runs as u32;
        let running = self.local_runs().len();
        tracing::info!(
            running,
            grace_ms = grace.as_millis() as u64,
            "draining: no new runs"
        );
        if tokio::time::timeout(grace, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                runs = self.local_runs().len(),
                "shutdown grace over; cancelling the runs still going"
            );
            self.cancel_all.cancel();
            let _ = self.slots.acquire_many(all).await;
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

    /// Registers a run executing here, cancellable by `token`.
    fn track(&self, run_id: i64, token: CancellationToken) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id, token);
    }

    /// Forgets a run that no longer executes here.
    fn untrack(&self, run_id: i64) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run_id);
    }

    fn local_runs(&self) -> Vec<i64> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// The database (for callers composing their own transactions).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether this host runs services (server mode).
    pub fn runs_services(&self) -> bool {
        self.config.service_lease.is_some()
    }

    /// Whether requests do the work ([`Runner::work_now`]) rather than tickers.
    pub fn serverless(&self) -> bool {
        self.config.serverless
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.config.host_id
    }
}

/// How long a draining host waits for its last records to be written.
const DRAIN_WRITE_LIMIT: Duration = Duration::from_secs(30);
