//! HMAC-SHA256 signatures, the one module that uses `hmac`.
//!
//! Pulses may be signed the way GitHub and Stripe sign webhooks: the sender
//! puts the Unix time in [`TIMESTAMP_HEADER`] and `v1=<hex>` in
//! [`SIGNATURE_HEADER`], where `<hex>` is HMAC-SHA256 with a shared key over
//! `"<timestamp>.<body>"`. Several `v1=` entries, comma-separated, may be sent
//! (a sender signing with the old and the new key while keys rotate). The
//! dashboard signs its session cookies with [`mac_hex`].

use constant_time_eq::constant_time_eq;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the Unix time (seconds) the sender signed at.
pub const TIMESTAMP_HEADER: &str = "X-Pulsehost-Timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>` entries.
pub const SIGNATURE_HEADER: &str = "X-Pulsehost-Signature";

/// Hex HMAC-SHA256 of `message` under `key`.
pub fn mac_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("v1={}", mac_hex(key, &signed_message(timestamp, body)))
}

/// The index of the key in `keys` that made one of the `v1=` entries of
/// `header` over `body` at `timestamp`; None when none did.
pub fn verify(keys: &[String], timestamp: i64, body: &[u8], header: &str) -> Option<usize> {
    let message = signed_message(timestamp, body);
    let expected: Vec<String> = keys.iter().map(|k| mac_hex(k.as_bytes(), &message)).collect();
    header
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix("v1="))
        .find_map(|given| {
            expected
                .iter()
                .position(|e| constant_time_eq(e.as_bytes(), given.trim().as_bytes()))
        })
}

/// What identifies a signed message for replay protection: its MAC under the
/// first key, whichever key signed it, so the same timestamp and body cannot
/// be replayed under the other key or with the entries rearranged.
pub fn fingerprint(keys: &[String], timestamp: i64, body: &[u8]) -> String {
    let first = keys.first().map_or(&[][..], |k| k.as_bytes());
    mac_hex(first, &signed_message(timestamp, body))
}

fn signed_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_either_active_key_and_nothing_else() {
        let keys = vec!["new-key".to_string(), "old-key".to_string()];
        let header = sign(b"old-key", 1_700_000_000, b"{}");
        assert_eq!(verify(&keys, 1_700_000_000, b"{}", &header), Some(1));
        let both = format!("{}, {}", sign(b"stale", 1, b""), sign(b"new-key", 1, b""));
        assert_eq!(verify(&keys, 1, b"", &both), Some(0));
        assert_eq!(verify(&keys, 1_700_000_001, b"{}", &header), None, "another time");
        assert_eq!(
            verify(&keys, 1_700_000_000, b"{ }", &header),
            None,
            "another body"
        );
        assert_eq!(verify(&keys, 1_700_000_000, b"{}", "v1=00"), None);
        assert_eq!(verify(&keys, 1_700_000_000, b"{}", "garbage"), None);
        assert_eq!(
            fingerprint(&keys, 1, b""),
            fingerprint(&keys, 1, b""),
            "the same message under either key is one message"
        );
        assert_ne!(fingerprint(&keys, 1, b""), fingerprint(&keys, 2, b""));
    }

    #[test]
    fn the_mac_matches_a_reference_value() {
        // RFC 4231, test case 2.
        assert_eq!(
            mac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
