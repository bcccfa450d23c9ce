//! The keys pulses may be signed with, and their replay window.

use super::{duration, ConfigError, PulseSigning, MIN_SIGNING_KEY_BYTES};

/// Reads `PULSEHOST_PULSE_SIGNING_KEYS` (at most two, comma-separated) and
/// `PULSEHOST_PULSE_SIGNATURE_WINDOW`.
pub fn read(get: &impl Fn(&str) -> Option<String>) -> Result<PulseSigning, ConfigError> {
    let name = "PULSEHOST_PULSE_SIGNING_KEYS";
    let raw = get(name).unwrap_or_default();
    let keys: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect();
    let invalid = |reason: String| ConfigError {
        name,
        value: "(hidden)".into(),
        reason,
    };
    if keys.len() > 2 {
        return Err(invalid(format!(
            "{} keys given; at most two are active at once (the new and the old while rotating)",
            keys.len()
        )));
    }
    if keys.iter().any(|k| k.len() < MIN_SIGNING_KEY_BYTES) {
        return Err(invalid(format!(
            "a key is shorter than {MIN_SIGNING_KEY_BYTES} characters: generate one with `openssl rand -hex 32`"
        )));
    }
    Ok(PulseSigning {
        keys,
        window: duration(get, "PULSEHOST_PULSE_SIGNATURE_WINDOW", 300)?,
    })
}
