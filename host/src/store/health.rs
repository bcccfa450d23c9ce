//! What `/readyz` asks the database: is every migration applied, and when did
//! the last pulse come (by the database's clock).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use diesel_migrations::MigrationHarness;

use super::schema::pulses;
use super::{StoreError, StoreResult, Tx, MIGRATIONS};

/// The database's side of readiness.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Migrations this binary carries that the database lacks.
    pub pending_migrations: usize,
    /// The last complete pulse.
    pub last_pulse_at: Option<DateTime<Utc>>,
    /// Its age in seconds.
    pub last_pulse_age_seconds: Option<f64>,
}

/// Reads the probe in one short transaction (an index lookup and the
/// migrations table).
pub fn probe(tx: &mut Tx<'_>) -> StoreResult<Probe> {
    let pending = tx
        .c()
        .pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Migration(e.to_string()))?
        .len();
    let (last, age) = last_pulse(tx)?;
    Ok(Probe {
        pending_migrations: pending,
        last_pulse_at: last,
        last_pulse_age_seconds: age,
    })
}

/// The last complete pulse and its age in seconds by the database's clock
/// (the newest entry of the pulses' partial index).
pub fn last_pulse(tx: &mut Tx<'_>) -> StoreResult<(Option<DateTime<Utc>>, Option<f64>)> {
    let last: Option<DateTime<Utc>> = pulses::table
        .filter(pulses::kind.eq("pulse"))
        .filter(pulses::complete.eq(true))
        .select(diesel::dsl::max(pulses::received_at))
        .first(tx.c())?;
    let now: DateTime<Utc> = diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).first(tx.c())?;
    Ok((last, last.map(|at| (now - at).num_milliseconds() as f64 / 1000.0)))
}
