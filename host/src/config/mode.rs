//! Whether this host keeps services and its own tickers going (`server`) or
//! does work only when a request asks for it (`serverless`).

use std::time::Duration;

use super::ConfigError;

/// How this host works between requests (`PULSEHOST_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Long-lived: runs services, and tickers dispatch queued runs, recover
    /// lost hosts' runs and evaluate alerts between pulses.
    Server,
    /// Only requests do work: a pulse executes the runs it can start before
    /// it answers, recovers and sweeps; alerts are evaluated by each pulse
    /// and each `/readyz`. No services run here.
    Serverless,
}

/// Smallest service lease: renewals every third of it must stay apart.
const MIN_SERVICE_LEASE_MS: u64 = 300;

/// Reads `PULSEHOST_MODE` and `PULSEHOST_SERVICE_LEASE_MS`.
pub fn read(get: &impl Fn(&str) -> Option<String>) -> Result<(Mode, Duration), ConfigError> {
    let mode = match get("PULSEHOST_MODE")
        .map(|m| m.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("server") => Mode::Server,
        Some("serverless") => Mode::Serverless,
        Some(other) => {
            return Err(ConfigError {
                name: "PULSEHOST_MODE",
                value: other.into(),
                reason: "expected server or serverless".into(),
            })
        }
    };
    let lease = super::number(get, "PULSEHOST_SERVICE_LEASE_MS", 15_000)?;
    if lease < MIN_SERVICE_LEASE_MS {
        return Err(ConfigError {
            name: "PULSEHOST_SERVICE_LEASE_MS",
            value: lease.to_string(),
            reason: format!("must be at least {MIN_SERVICE_LEASE_MS}"),
        });
    }
    Ok((mode, Duration::from_millis(lease)))
}
