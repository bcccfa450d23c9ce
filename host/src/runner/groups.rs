//! The live process groups of one run (a background hook runs beside a step,
//! so there can be several), kept in `runs.process_groups` through the journal
//! so that the host that recovers the run after this one died can kill every
//! one of them.

use std::sync::Mutex;

use super::journal::{Entry, Journal};

/// Live process groups of one run.
pub(super) struct Groups {
    run_id: i64,
    live: Mutex<Vec<i32>>,
    journal: Journal,
}

impl Groups {
    /// Tracks `run_id`'s groups.
    pub fn new(run_id: i64, journal: Journal) -> Groups {
        Groups {
            run_id,
            live: Mutex::default(),
            journal,
        }
    }

    /// A process of the run started in group `pgid`.
    pub fn spawned(&self, pgid: i32) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.push(pgid);
        self.publish(&live);
    }

    /// The process that led group `pgid` ended and the group was killed.
    pub fn exited(&self, pgid: i32) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|g| *g != pgid);
        self.publish(&live);
    }

    fn publish(&self, live: &[i32]) {
        self.journal.record(Entry::Groups {
            run_id: self.run_id,
            groups: live.to_vec(),
        });
    }
}
