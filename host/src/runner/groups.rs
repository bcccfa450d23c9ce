//! The process group a run is executing, kept in `runs.process_group` so that
//! the host that recovers the run after this one died can kill what it left
//! behind. While a background hook runs beside a step, the step's group (the
//! newer one) is recorded; when it exits, the background's group is again.
//! Recording is asynchronous: a slow write never delays a process.

use std::sync::Mutex;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{runs, Db};

/// Live process groups of one run.
pub(super) struct Groups {
    live: Mutex<Vec<i32>>,
    current: watch::Sender<Option<i32>>,
}

impl Groups {
    /// Tracks `run_id`'s groups; the writer ends once the returned value is dropped.
    pub fn start(db: Db, run_id: i64) -> (Groups, JoinHandle<()>) {
        let (current, mut changes) = watch::channel(None);
        let writer = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let group = *changes.borrow_and_update();
                if let Err(e) = db.run(move |c| runs::set_process_group(c, run_id, group)).await {
                    tracing::warn!(run.id = run_id, error = %e, "cannot record the run's process group");
                }
            }
        });
        let groups = Groups {
            live: Mutex::default(),
            current,
        };
        (groups, writer)
    }

    /// A process of the run started in group `pgid`.
    pub fn spawned(&self, pgid: i32) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.push(pgid);
        self.current.send_replace(live.last().copied());
    }

    /// The process that led group `pgid` ended (and the group was killed). With
    /// no other process live, the stale id stays until the run finishes (which
    /// clears it): one write less per process, and recovery kills a group only
    /// when its members carry the run's id.
    pub fn exited(&self, pgid: i32) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|g| *g != pgid);
        if let Some(&last) = live.last() {
            self.current.send_replace(Some(last));
        }
    }
}
