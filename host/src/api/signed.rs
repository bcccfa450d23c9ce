//! Who may pulse: the pulse (or admin) token, or a signature made with a key
//! in `PULSEHOST_PULSE_SIGNING_KEYS` over the request's timestamp and body
//! (see [`crate::signing`]), each signature accepted once and only while its
//! timestamp is inside the window of the database's clock.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use super::auth::{require, Role};
use super::{ApiError, AppState};
use crate::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::store::signatures::{self, Admission};

/// Admits a pulse that carries a valid, fresh, unused signature, or else the
/// pulse or admin token.
pub async fn admit_pulse(req: &HttpRequest, body: &[u8], state: &AppState) -> Result<(), ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (timestamp, signature) = match (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) {
        (None, None) => return require(req, &state.tokens, Role::Pulse),
        (Some(timestamp), Some(signature)) => (timestamp, signature.to_string()),
        _ => {
            return Err(refused(
                "signature_incomplete",
                format!(
                    "a signed pulse needs both {TIMESTAMP_HEADER} (Unix seconds) and {SIGNATURE_HEADER} \
                     (v1=<hex HMAC-SHA256 of \"<timestamp>.<body>\">)"
                ),
            ))
        }
    };
    let keys = state.pulse_signing.keys.clone();
    if keys.is_empty() {
        return Err(refused(
            "signatures_off",
            "this host accepts no signed pulses: set PULSEHOST_PULSE_SIGNING_KEYS, or send the pulse token"
                .into(),
        ));
    }
    let Ok(timestamp) = timestamp.trim().parse::<i64>() else {
        return Err(refused(
            "signature_invalid",
            format!("{TIMESTAMP_HEADER} must be the Unix time in seconds, such as 1767225600"),
        ));
    };
    if signing::verify(&keys, timestamp, body, &signature).is_none() {
        return Err(refused(
            "signature_invalid",
            format!(
                "the signature does not match: send {SIGNATURE_HEADER}: v1=<hex HMAC-SHA256 of \
                 \"<timestamp>.<body>\"> made with a key in PULSEHOST_PULSE_SIGNING_KEYS"
            ),
        ));
    }
    let fingerprint = signing::fingerprint(&keys, timestamp, body);
    let window = state.pulse_signing.window.as_secs().max(1);
    let admission = state
        .db
        .run(move |tx| signatures::admit(tx, &fingerprint, timestamp, window))
        .await?;
    match admission {
        Admission::Fresh => Ok(()),
        Admission::Replayed => Err(refused(
            "signature_replayed",
            "this signature was used already: sign every pulse anew, at the time it is sent".into(),
        )),
        Admission::OutsideWindow { age_seconds } => Err(refused(
            "signature_outside_window",
            format!(
                "the timestamp is {age_seconds:.0} s away from the server's clock, beyond the {window} s window \
                 (PULSEHOST_PULSE_SIGNATURE_WINDOW): sign at the time of sending, and check the sender's clock"
            ),
        )),
    }
}

fn refused(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}
