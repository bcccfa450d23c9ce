//! Services: exactly one host runs each. Every third of a lease, each host
//! in server mode renews in PostgreSQL the leases of the services it runs
//! and takes those that are free or whose holder let the lease run out (by
//! the database's clock), so when a holder dies another host takes its
//! services over within two lease periods. A holder that cannot renew for a
//! whole lease stops its services before anyone may take them over. Each
//! held service is kept running by a keeper (see [`super::keeper`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::services::{self, Held};

use super::keeper;
use super::Runner;

/// The keepers of the services this host runs, by service id.
#[derive(Default)]
pub(super) struct Keepers {
    by_service: Mutex<HashMap<i64, Keeper>>,
    /// Keepers told to stop that may still be stopping.
    stopping: Mutex<Vec<JoinHandle<()>>>,
}

/// One service kept running here.
struct Keeper {
    /// The task (definition) it should run; a change restarts it on the new one.
    task: watch::Sender<i64>,
    /// Cancelled to stop it.
    stop: CancellationToken,
    /// Whether it gives its lease up once stopped (false when the lease is
    /// already someone else's).
    release: Arc<std::sync::atomic::AtomicBool>,
    done: JoinHandle<()>,
}

impl Keepers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Keeper>> {
        self.by_service.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every service (SIGTERM, on-shutdown, grace), gives their leases
    /// up so another host takes them at once, and waits until all are down.
    pub(super) async fn stop_all(&self) {
        let keepers: Vec<Keeper> = self.lock().drain().map(|(_, k)| k).collect();
        for k in &keepers {
            stop(k, true);
        }
        let stopping = std::mem::take(&mut *self.stopping.lock().unwrap_or_else(|p| p.into_inner()));
        for done in keepers.into_iter().map(|k| k.done).chain(stopping) {
            let _ = done.await;
        }
    }

    /// Tells `keeper` to stop and remembers it until it has.
    fn retire(&self, keeper: Keeper, release: bool) {
        stop(&keeper, release);
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        stopping.retain(|h| !h.is_finished());
        stopping.push(keeper.done);
    }
}

fn stop(keeper: &Keeper, release: bool) {
    keeper.release.store(release, std::sync::atomic::Ordering::SeqCst);
    keeper.stop.cancel();
}

/// Holds leases and keeps the held services running until `shutdown`.
pub(super) async fn supervise(runner: Arc<Runner>, lease: Duration, shutdown: CancellationToken) {
    let mut renewed: Option<Instant> = None;
    loop {
        let asked = Instant::now();
        let host = runner.config.host_id.clone();
        let lease_ms = lease.as_millis() as i64;
        match runner.db.run(move |tx| services::hold(tx, &host, lease_ms)).await {
            Ok((held, unwanted)) if !shutdown.is_cancelled() => {
                renewed = Some(asked);
                reconcile(&runner, held, &unwanted);
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the services' leases");
                // The lease was last renewed no later than `renewed`: before it
                // can run out, stop, so that no other host runs them beside us.
                if renewed.is_none_or(|at| at.elapsed() >= lease.mul_f64(0.9)) {
                    lost_all(&runner);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Starts keepers for newly held services, hands changed definitions to
/// running ones, stops those no longer wanted (giving the lease up) and
/// those whose lease another host took.
fn reconcile(runner: &Arc<Runner>, held: Vec<Held>, unwanted: &[i64]) {
    let mut keepers = runner.services.lock();
    let mut retired = Vec::new();
    for h in &held {
        match keepers.get(&h.id) {
            Some(k) => {
                k.task
                    .send_if_modified(|task| std::mem::replace(task, h.task_id) != h.task_id);
            }
            None => {
                tracing::info!(
                    service = h.id,
                    task = h.task_id,
                    "service lease taken: starting it here"
                );
                keepers.insert(h.id, spawn(runner, h));
            }
        }
    }
    let gone: Vec<i64> = keepers
        .keys()
        .copied()
        .filter(|id| !held.iter().any(|h| h.id == *id))
        .collect();
    for id in gone {
        let Some(k) = keepers.remove(&id) else { continue };
        let release = unwanted.contains(&id);
        retired.push((id, k, release));
        if release {
            tracing::info!(
                service = id,
                "service no longer wanted (disabled, paused or removed): stopping it"
            );
        } else {
            tracing::warn!(
                service = id,
                "service lease lost to another host: stopping it here"
            );
        }
    }
    let idle: Vec<i64> = unwanted
        .iter()
        .filter(|id| !keepers.contains_key(id) && !retired.iter().any(|(r, _, _)| r == *id))
        .copied()
        .collect();
    drop(keepers);
    for (_, k, release) in retired {
        runner.services.retire(k, release);
    }
    // Held by this host and not wanted, with no keeper here (its keeper
    // ended already): give those up.
    for id in idle {
        let me = Arc::clone(runner);
        tokio::spawn(async move {
            let host = me.config.host_id.clone();
            let _ = me
                .db
                .run(move |tx| services::release(tx, id, &host, "stopped"))
                .await;
        });
    }
}

/// The database could not be reached for a whole lease: every service here
/// is stopped, without giving up leases it can no longer vouch for.
fn lost_all(runner: &Runner) {
    let mut keepers = runner.services.lock();
    if !keepers.is_empty() {
        tracing::error!(
            services = keepers.len(),
            "service leases could not be renewed for a whole lease: stopping every service here"
        );
    }
    let all: Vec<Keeper> = keepers.drain().map(|(_, k)| k).collect();
    drop(keepers);
    for k in all {
        runner.services.retire(k, false);
    }
}

fn spawn(runner: &Arc<Runner>, held: &Held) -> Keeper {
    let (task, watched) = watch::channel(held.task_id);
    let stop = CancellationToken::new();
    let release = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let done = tokio::spawn(keeper::keep(
        Arc::clone(runner),
        held.id,
        watched,
        stop.clone(),
        Arc::clone(&release),
    ));
    Keeper {
        task,
        stop,
        release,
        done,
    }
}
