//! One delivery attempt: a JSON POST of the alert, signed the way pulses are
//! (HMAC-SHA256 over `"<timestamp>.<body>"`), and when to try again.

use std::time::{Duration, Instant};

use crate::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::store::alerts::{Attempt, DueAlert};

/// Header carrying the alert's id (the same on every attempt).
pub const ALERT_ID_HEADER: &str = "X-Pulsehost-Alert-Id";
/// Attempts before an alert is given up as failed.
pub const MAX_ATTEMPTS: i32 = 8;
/// How long one attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Milliseconds before attempt `attempt + 1` after attempt `attempt` failed
/// (1 s, doubling, at most 5 min); None when no attempt is left.
pub fn backoff(attempt: i32) -> Option<i64> {
    (attempt < MAX_ATTEMPTS).then(|| (1000i64 << (attempt - 1).clamp(0, 20)).min(300_000))
}

/// POSTs `alert` to its webhook; what happened.
pub fn attempt(alert: &DueAlert, key: Option<&str>) -> Attempt {
    let body = alert.payload.to_string();
    let clock = Instant::now();
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = ureq::post(&alert.webhook)
        .timeout(TIMEOUT)
        .set("Content-Type", "application/json")
        .set(ALERT_ID_HEADER, &alert.id.to_string())
        .set(TIMESTAMP_HEADER, &timestamp.to_string());
    if let Some(key) = key {
        request = request.set(
            SIGNATURE_HEADER,
            &signing::sign(key.as_bytes(), timestamp, body.as_bytes()),
        );
    }
    let (status_code, error) = match request.send_string(&body) {
        Ok(response) => (Some(i32::from(response.status())), None),
        Err(ureq::Error::Status(code, _)) => (
            Some(i32::from(code)),
            Some(format!("the receiver answered {code}")),
        ),
        Err(e) => (None, Some(format!("not delivered: {e}"))),
    };
    let delivered = error.is_none();
    Attempt {
        alert_id: alert.id,
        attempt: alert.attempts,
        status_code,
        error,
        duration_ms: clock.elapsed().as_secs_f64() * 1000.0,
        delivered,
        retry_in_ms: if delivered { None } else { backoff(alert.attempts) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_up_to_the_last_attempt() {
        assert_eq!(backoff(1), Some(1000));
        assert_eq!(backoff(2), Some(2000));
        assert_eq!(backoff(7), Some(64_000));
        assert_eq!(backoff(MAX_ATTEMPTS), None);
    }
}
