//! Services: exactly one host runs each. Every third of a lease, each host
//! in server mode renews in PostgreSQL the leases of the services it runs
//! and takes those that are free or whose holder let the lease run out (by
//! the database's clock), so when a holder dies another host takes its
//! services over within two lease periods. A holder that has not renewed
//! for 90% of a lease stops its services. Each held service is kept running
//! by a keeper (see [`super::keeper`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::services::{self, Held};

use super::keeper::{self, Definition};
use super::Runner;

/// Share of a lease after its last renewal at which a holder stops.
const STOP_AT: f64 = 0.9;

/// The services this host runs, and the supervisor that holds their leases.
#[derive(Default)]
pub(super) struct Keepers {
    state: Mutex<State>,
    /// Cancelled when the host drains: no lease is renewed or taken after.
    stop_holding: CancellationToken,
}

#[derive(Default)]
struct State {
    running: HashMap<i64, Keeper>,
    /// Keepers told to stop, by service, until they have.
    stopping: HashMap<i64, JoinHandle<()>>,
    supervisor: Option<JoinHandle<()>>,
}

/// One service kept running here.
struct Keeper {
    /// The definition it should run; a change restarts it on the new one.
    definition: watch::Sender<Definition>,
    /// Cancelled to stop it.
    stop: CancellationToken,
    /// Whether it gives its lease up once stopped (false when the lease is
    /// no longer this host's to give).
    release: Arc<AtomicBool>,
    done: JoinHandle<()>,
}

impl Keepers {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the supervisor (once).
    pub(super) fn start(&self, runner: &Arc<Runner>, lease: Duration) {
        let supervisor = tokio::spawn(supervise(Arc::clone(runner), lease, self.stop_holding.clone()));
        self.lock().supervisor = Some(supervisor);
    }

    /// Stops holding leases (waiting for a renewal in flight), stops every
    /// service (SIGTERM, on-shutdown, grace) and waits until all are down,
    /// then gives every lease up so another host takes them at once.
    pub(super) async fn stop_all(&self, runner: &Runner) {
        // Once this is cancelled (checked under the lock), the supervisor
        // starts no keeper: what the map holds now is everything.
        self.stop_holding.cancel();
        let (running, stopping, supervisor) = {
            let mut state = self.lock();
            let taken = (
                std::mem::take(&mut state.running),
                std::mem::take(&mut state.stopping),
            );
            (taken.0, taken.1, state.supervisor.take())
        };
        for k in running.values() {
            signal_stop(k, true);
        }
        let had_supervisor = supervisor.is_some();
        if let Some(s) = supervisor {
            let _ = s.await;
        }
        for done in running
            .into_values()
            .map(|k| k.done)
            .chain(stopping.into_values())
        {
            let _ = done.await;
        }
        if had_supervisor {
            Self::release_all(runner).await;
        }
    }

    /// Gives up every lease `host` still holds (a renewal that was in flight
    /// while the keepers stopped may have taken one back).
    pub(super) async fn release_all(runner: &Runner) {
        let host = runner.config.host_id.clone();
        if let Err(e) = runner.db.run(move |tx| services::release(tx, &host, None)).await {
            tracing::warn!(error = %e, "could not give the services' leases up; they run out by themselves");
        }
    }
}

fn signal_stop(keeper: &Keeper, release: bool) {
    keeper.release.store(release, Ordering::SeqCst);
    keeper.stop.cancel();
}

/// Holds leases and keeps the held services running until `stop`.
async fn supervise(runner: Arc<Runner>, lease: Duration, stop: CancellationToken) {
    let every = lease / 3;
    let mut renewed: Option<Instant> = None;
    loop {
        let asked = Instant::now();
        let host = runner.config.host_id.clone();
        let lease_ms = lease.as_millis() as i64;
        let held = runner.db.run(move |tx| services::hold(tx, &host, lease_ms));
        // A renewal that hangs counts as one that failed.
        match tokio::time::timeout(every, held).await {
            _ if stop.is_cancelled() => return,
            Ok(Ok((held, unwanted))) => {
                renewed = Some(asked);
                reconcile(&runner, held, &unwanted);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the services' leases"),
            Err(_) => tracing::warn!("renewing the services' leases took longer than a third of a lease"),
        }
        // Wake for the next renewal, or when the last one is too old to vouch
        // for the lease (it ran out at `renewed + lease` at the latest).
        let stop_at = renewed.map(|at| at + lease.mul_f64(STOP_AT));
        let wake = stop_at.map_or(every, |at| {
            at.saturating_duration_since(Instant::now()).min(every)
        });
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = stop.cancelled() => return,
        }
        if stop_at.is_some_and(|at| Instant::now() >= at) {
            lost_all(&runner);
        }
    }
}

/// Starts keepers for newly held services, hands changed definitions to
/// running ones, stops those no longer wanted (giving the lease up) and
/// those whose lease another host took. A service whose previous keeper is
/// still stopping gets a new one only once that one is done.
fn reconcile(runner: &Arc<Runner>, held: Vec<Held>, unwanted: &[i64]) {
    let mut state = runner.services.lock();
    if runner.services.stop_holding.is_cancelled() {
        return;
    }
    state.stopping.retain(|_, done| !done.is_finished());
    state.running.retain(|id, k| {
        let alive = !k.done.is_finished();
        if !alive {
            tracing::warn!(service = id, "a service's keeper had ended; starting another");
        }
        alive
    });
    for h in &held {
        let definition = (h.task_id, h.definition_id);
        if let Some(k) = state.running.get(&h.id) {
            k.definition
                .send_if_modified(|d| std::mem::replace(d, definition) != definition);
        } else if !state.stopping.contains_key(&h.id) {
            tracing::info!(
                service = h.id,
                task = h.task_id,
                "service lease held: starting it here"
            );
            let keeper = spawn(runner, h.id, definition);
            state.running.insert(h.id, keeper);
        }
    }
    let gone: Vec<i64> = state
        .running
        .keys()
        .copied()
        .filter(|id| !held.iter().any(|h| h.id == *id))
        .collect();
    for id in gone {
        let Some(k) = state.running.remove(&id) else {
            continue;
        };
        let release = unwanted.contains(&id);
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
        signal_stop(&k, release);
        state.stopping.insert(id, k.done);
    }
    // Held here and not wanted, with no keeper running or stopping (it
    // ended already): give those up.
    let idle: Vec<i64> = unwanted
        .iter()
        .filter(|id| !state.running.contains_key(id) && !state.stopping.contains_key(id))
        .copied()
        .collect();
    drop(state);
    for id in idle {
        let me = Arc::clone(runner);
        tokio::spawn(async move {
            let host = me.config.host_id.clone();
            let _ = me.db.run(move |tx| services::release(tx, &host, Some(id))).await;
        });
    }
}

/// The leases could not be renewed for most of a lease: every service here
/// is stopped, without giving up leases this host can no longer vouch for.
fn lost_all(runner: &Runner) {
    let mut state = runner.services.lock();
    if !state.running.is_empty() {
        tracing::error!(
            services = state.running.len(),
            "service leases not renewed for 90% of a lease: stopping every service here"
        );
    }
    let all: Vec<(i64, Keeper)> = state.running.drain().collect();
    for (id, k) in all {
        signal_stop(&k, false);
        state.stopping.insert(id, k.done);
    }
}

fn spawn(runner: &Arc<Runner>, id: i64, definition: Definition) -> Keeper {
    let (sender, watched) = watch::channel(definition);
    let stop = CancellationToken::new();
    let release = Arc::new(AtomicBool::new(true));
    let done = tokio::spawn(keeper::keep(
        Arc::clone(runner),
        id,
        watched,
        stop.clone(),
        Arc::clone(&release),
    ));
    Keeper {
        definition: sender,
        stop,
        release,
        done,
    }
}
