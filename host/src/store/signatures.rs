//! Replay protection of signed pulses: each signed message is accepted once
//! while its timestamp is inside the window, judged by the database's clock
//! (so every replica agrees, whatever its own clock says).

use diesel::prelude::*;
use diesel::sql_types::{Double, Text};

use super::{StoreResult, Tx};

/// What the database says about a signed message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// First time seen, inside the window: recorded.
    Fresh,
    /// Seen before inside the window.
    Replayed,
    /// Its timestamp is further than the window from the database's clock by
    /// this many seconds (positive: in the past).
    OutsideWindow {
        /// The database's time minus the message's.
        age_seconds: f64,
    },
}

#[derive(QueryableByName)]
struct Outcome {
    #[diesel(sql_type = Double)]
    age: f64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    recorded: bool,
}

/// Records the message `fingerprint` signed at `timestamp` (Unix seconds)
/// when it is inside `window_secs` of the database's clock and unseen; drops
/// fingerprints whose window has passed.
pub fn admit(tx: &mut Tx<'_>, fingerprint: &str, timestamp: i64, window_secs: u64) -> StoreResult<Admission> {
    diesel::sql_query("DELETE FROM pulse_signatures WHERE expires_at < now()").execute(tx.c())?;
    let outcome: Outcome = diesel::sql_query(
        "WITH clock AS (SELECT extract(epoch FROM now())::float8 - $2 AS age), \
         recorded AS ( \
             INSERT INTO pulse_signatures (fingerprint, expires_at) \
             SELECT $1, to_timestamp($2 + $3) FROM clock WHERE abs(clock.age) <= $3 \
             ON CONFLICT (fingerprint) DO NOTHING RETURNING 1) \
         SELECT (SELECT age FROM clock) AS age, EXISTS (SELECT 1 FROM recorded) AS recorded",
    )
    .bind::<Text, _>(fingerprint)
    .bind::<Double, _>(timestamp as f64)
    .bind::<Double, _>(window_secs as f64)
    .get_result(tx.c())?;
    Ok(if outcome.recorded {
        Admission::Fresh
    } else if outcome.age.abs() > window_secs as f64 {
        Admission::OutsideWindow {
            age_seconds: outcome.age,
        }
    } else {
        Admission::Replayed
    })
}
