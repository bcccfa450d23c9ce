//! The database's clock, as seen from this host. Every decision about time
//! between hosts (heartbeats, backoff, deadlines) is taken in SQL with
//! PostgreSQL's `now()`; times this host records itself (when a process
//! started and ended, when a run finished while the database was away) are
//! put on the same clock: the offset is measured at every heartbeat and
//! carried forward with the monotonic clock, so a host whose wall clock is
//! wrong, or jumps, still writes times consistent with the database's.

use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;

use super::{StoreResult, Tx};

/// The database's clock, carried forward from the latest measurement.
#[derive(Debug, Default)]
pub struct DbClock {
    /// The database's time at `Instant`, when measured.
    sample: Mutex<Option<(DateTime<Utc>, Instant)>>,
}

impl DbClock {
    /// The database's current time, estimated; this host's own clock until
    /// the first measurement.
    pub fn now(&self) -> DateTime<Utc> {
        match *self.sample.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((db, at)) => db + chrono::Duration::from_std(at.elapsed()).unwrap_or_default(),
            None => Utc::now(),
        }
    }

    /// Records that the database read `db` somewhere between `sent` and `received`.
    pub(super) fn observe(&self, db: DateTime<Utc>, sent: Instant, received: Instant) {
        // The reading was taken about halfway through the round trip.
        let midpoint = sent + (received - sent) / 2;
        *self.sample.lock().unwrap_or_else(|p| p.into_inner()) = Some((db, midpoint));
    }
}

/// Reads the database's clock once and records it in `clock`.
pub(super) fn sample(tx: &mut Tx<'_>, clock: &DbClock) -> StoreResult<()> {
    #[derive(diesel::QueryableByName)]
    struct Now {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        now: DateTime<Utc>,
    }
    let sent = Instant::now();
    let rows: Vec<Now> = diesel::sql_query("SELECT clock_timestamp() AS now").load(tx.c())?;
    let received = Instant::now();
    if let Some(row) = rows.first() {
        clock.observe(row.now, sent, received);
    }
    Ok(())
}
