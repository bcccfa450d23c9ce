//! Notifications: what the recorded history calls for (per-task rules on
//! failure, recovery, missed and paused; the host-wide dead man's switch
//! when pulses stop) is turned into alerts in PostgreSQL, once each, and
//! delivered as signed webhook POSTs with retries.
//!
//! Evaluation and delivery run on a ticker of each host, and after every
//! pulse. Evaluating twice, or on two replicas, records nothing twice (each
//! alert has a unique key); an alert is attempted by one replica at a time
//! and delivered at least once (a receiver that answered 2xx but whose
//! answer was lost gets it again: use `X-Pulsehost-Alert-Id` to de-duplicate).

mod deliver;

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::store::{alerts, Db, StoreResult};

pub use deliver::{backoff, ALERT_ID_HEADER, MAX_ATTEMPTS};

/// How often the ticker evaluates and delivers.
pub const TICK: Duration = Duration::from_secs(2);
/// How far back the first evaluation after start looks.
const LOOKBACK: chrono::Duration = chrono::Duration::days(1);
/// How far each later evaluation reaches back before the previous one, for
/// records committed after it with an earlier time.
const SLACK: chrono::Duration = chrono::Duration::minutes(2);
/// Alerts attempted per round.
const BATCH: i64 = 20;

/// Where host-wide alerts go and how every alert is signed.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    /// Receiver of host-wide alerts (`PULSEHOST_ALERT_WEBHOOK`); None: none.
    pub host_webhook: Option<String>,
    /// Key alerts are signed with (`PULSEHOST_ALERT_SIGNING_KEY`); None: unsigned.
    pub signing_key: Option<String>,
    /// Longest expected gap between pulses (`PULSEHOST_EXPECTED_PULSE_INTERVAL`).
    pub expected_pulse_interval: Duration,
}

/// Evaluates and delivers alerts.
pub struct Alerter {
    db: Db,
    settings: AlertSettings,
    /// Where the last evaluation reached (the database's clock).
    evaluated: Mutex<Option<DateTime<Utc>>>,
    /// One round at a time on this host.
    round: tokio::sync::Mutex<()>,
}

impl Alerter {
    /// An alerter over `db`.
    pub fn new(db: Db, settings: AlertSettings) -> Self {
        Alerter {
            db,
            settings,
            evaluated: Mutex::new(None),
            round: tokio::sync::Mutex::new(()),
        }
    }

    /// Evaluates and delivers every `TICK` until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.cancelled() => return,
            }
            self.round().await;
        }
    }

    /// One round: record what is called for, then attempt what is due.
    pub async fn round(&self) {
        let Ok(_one) = self.round.try_lock() else { return };
        if let Err(e) = self.evaluate().await {
            tracing::warn!(error = %e, "could not evaluate alerts");
        }
        if let Err(e) = self.deliver_due().await {
            tracing::warn!(error = %e, "could not deliver alerts");
        }
    }

    async fn evaluate(&self) -> StoreResult<usize> {
        let last = *self.evaluated.lock().unwrap_or_else(|p| p.into_inner());
        let webhook = self.settings.host_webhook.clone();
        let expected_ms = self.settings.expected_pulse_interval.as_millis() as i64;
        let (now, recorded) = self
            .db
            .run(move |tx| {
                let now = crate::store::plugins::database_now(tx)?;
                let since = last.map_or(now - LOOKBACK, |l| l - SLACK);
                let recorded = alerts::evaluate(tx, since, now, webhook.as_deref(), expected_ms)?;
                Ok((now, recorded))
            })
            .await?;
        *self.evaluated.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        Ok(recorded)
    }

    async fn deliver_due(&self) -> StoreResult<()> {
        let lease_ms = (deliver::TIMEOUT.as_millis() as i64) * 2;
        let due = self
            .db
            .run(move |tx| alerts::take_due(tx, BATCH, lease_ms))
            .await?;
        for alert in due {
            let key = self.settings.signing_key.clone();
            let attempt = tokio::task::spawn_blocking(move || deliver::attempt(&alert, key.as_deref()))
                .await
                .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))?;
            self.db
                .run(move |tx| alerts::record_attempt(tx, &attempt))
                .await?;
        }
        Ok(())
    }
}
