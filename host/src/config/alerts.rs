//! Where host-wide alerts go and the key every alert is signed with.

use std::time::Duration;

use crate::alerts::AlertSettings;

use super::{ConfigError, MIN_SIGNING_KEY_BYTES};

/// Reads `PULSEHOST_ALERT_WEBHOOK` and `PULSEHOST_ALERT_SIGNING_KEY`.
pub fn read(get: &impl Fn(&str) -> Option<String>, expected: Duration) -> Result<AlertSettings, ConfigError> {
    let webhook = get("PULSEHOST_ALERT_WEBHOOK").filter(|w| !w.trim().is_empty());
    if let Some(url) = &webhook {
        if let Some(reason) = crate::plugin::webhook_problem(url) {
            return Err(ConfigError {
                name: "PULSEHOST_ALERT_WEBHOOK",
                value: url.clone(),
                reason,
            });
        }
    }
    let key = get("PULSEHOST_ALERT_SIGNING_KEY").filter(|k| !k.trim().is_empty());
    if key.as_ref().is_some_and(|k| k.len() < MIN_SIGNING_KEY_BYTES) {
        return Err(ConfigError {
            name: "PULSEHOST_ALERT_SIGNING_KEY",
            value: "(hidden)".into(),
            reason: format!(
                "shorter than {MIN_SIGNING_KEY_BYTES} characters: generate one with `openssl rand -hex 32`"
            ),
        });
    }
    Ok(AlertSettings {
        host_webhook: webhook,
        signing_key: key,
        expected_pulse_interval: expected,
    })
}
