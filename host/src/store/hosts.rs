//! Hosts and their heartbeats. A host is alive while its heartbeat is younger
//! than its lease by PostgreSQL's clock; runs are judged lost only through
//! their host, never by one host's wall clock.

use std::time::Instant;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int8, Text, Timestamptz};

use super::schema::hosts;
use super::{DbClock, StoreResult, Tx};

/// A host as it registers itself.
#[derive(Debug, Clone)]
pub struct HostRecord {
    /// Unique per process (`<machine>-<pid>-<random>`).
    pub id: String,
    /// The machine's hostname.
    pub machine: String,
    /// The process id.
    pub pid: i32,
    /// How long it may stay silent before it counts as lost.
    pub lease_ms: i64,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Recorded.
    Alive,
    /// Another host declared this one lost (it was silent past its lease) and
    /// finished its runs; this host must stop them and register again.
    DeclaredLost,
}

/// Registers (or re-registers) a host as alive now.
pub fn register(tx: &mut Tx<'_>, host: &HostRecord) -> StoreResult<()> {
    diesel::sql_query(
        "INSERT INTO hosts (id, machine, pid, lease_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lease_ms = EXCLUDED.lease_ms, \
             lost_at = NULL, stopped_at = NULL",
    )
    .bind::<Text, _>(&host.id)
    .bind::<Text, _>(&host.machine)
    .bind::<diesel::sql_types::Int4, _>(host.pid)
    .bind::<Int8, _>(host.lease_ms)
    .execute(tx.c())?;
    Ok(())
}

/// Renews a host's heartbeat and measures the database's clock into `clock`.
pub fn heartbeat(tx: &mut Tx<'_>, id: &str, clock: &DbClock) -> StoreResult<Beat> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Timestamptz)]
        now: DateTime<Utc>,
    }
    let sent = Instant::now();
    let rows: Vec<Row> = diesel::sql_query(
        "UPDATE hosts SET heartbeat_at = now() WHERE id = $1 AND lost_at IS NULL \
         RETURNING clock_timestamp() AS now",
    )
    .bind::<Text, _>(id)
    .load(tx.c())?;
    let received = Instant::now();
    match rows.first() {
        Some(row) => {
            clock.observe(row.now, sent, received);
            Ok(Beat::Alive)
        }
        None => Ok(Beat::DeclaredLost),
    }
}

/// True when `id` may take runs: registered and neither declared lost nor
/// stopped. The row is share-locked for the rest of the transaction, so no
/// other host declares it lost while it takes runs.
pub fn may_claim(tx: &mut Tx<'_>, id: &str) -> StoreResult<bool> {
    Ok(hosts::table
        .filter(hosts::id.eq(id))
        .filter(hosts::lost_at.is_null())
        .filter(hosts::stopped_at.is_null())
        .select(hosts::id)
        .for_share()
        .first::<String>(tx.c())
        .optional()?
        .is_some())
}

/// Notes that a host stopped cleanly (its runs are all recorded).
pub fn stopped(tx: &mut Tx<'_>, id: &str) -> StoreResult<()> {
    diesel::update(hosts::table.find(id))
        .set(hosts::stopped_at.eq(diesel::dsl::now))
        .execute(tx.c())?;
    Ok(())
}

/// A host declared lost.
#[derive(Debug, Clone, QueryableByName)]
pub struct LostHost {
    /// Its id.
    #[diesel(sql_type = Text)]
    pub id: String,
    /// Its machine.
    #[diesel(sql_type = Text)]
    pub machine: String,
}

/// Declares lost every host other than `me` whose heartbeat is older than its
/// lease by the database's clock; returns them. Replicas may call this at once:
/// each host is declared by one of them.
pub fn declare_lost(tx: &mut Tx<'_>, me: &str) -> StoreResult<Vec<LostHost>> {
    Ok(diesel::sql_query(
        "UPDATE hosts SET lost_at = now() \
         WHERE id IN (SELECT id FROM hosts WHERE id <> $1 AND lost_at IS NULL AND stopped_at IS NULL \
                      AND heartbeat_at + lease_ms * interval '1 millisecond' < now() \
                      FOR UPDATE SKIP LOCKED) \
         RETURNING id, machine",
    )
    .bind::<Text, _>(me)
    .load(tx.c())?)
}
