//! Signed pulses: an HMAC-SHA256 signature over a timestamp and the body, as
//! the README's crontab line makes it with openssl and curl, accepted once,
//! inside the window, under either of two keys, on every replica.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{server, Server, TestDb};

const KEY: &str = "first-signing-key-0123456789";
const NEXT_KEY: &str = "second-signing-key-abcdefghij";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs `body` to `/v1/pulse` with these signature headers and no token.
fn signed_pulse(server: &Server, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = ureq::post(&format!("{}/v1/pulse", server.url)).timeout(Duration::from_secs(60));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST /v1/pulse: {e}\n{}", server.log()),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(Value::Null))
}

fn headers(timestamp: i64, key: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Pulsehost-Timestamp", timestamp.to_string()),
        (
            "X-Pulsehost-Signature",
            pulsehost::signing::sign(key.as_bytes(), timestamp, body.as_bytes()),
        ),
    ]
}

fn error_code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

/// The README's crontab recipe, run by a real shell with openssl and curl.
fn crontab_recipe(server: &Server, key: &str) -> Value {
    let recipe = r#"ts=$(date +%s)
sig=$(printf '%s.' "$ts" | openssl dgst -sha256 -hmac "$PULSEHOST_PULSE_SIGNING_KEY" -r | cut -d' ' -f1)
curl -fsS -X POST -H "X-Pulsehost-Timestamp: $ts" -H "X-Pulsehost-Signature: v1=$sig" "$PULSEHOST_URL/v1/pulse""#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(recipe)
        .env("PULSEHOST_URL", &server.url)
        .env("PULSEHOST_PULSE_SIGNING_KEY", key)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "the crontab recipe failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the pulse's answer is JSON")
}

#[test]
fn a_signed_pulse_is_accepted_once_inside_the_window_under_either_key_on_every_replica() {
    let db = TestDb::new();
    let keys = format!("{KEY},{NEXT_KEY}");
    let env = [("PULSEHOST_PULSE_SIGNING_KEYS", keys.as_str())];
    let first = Server::start_with(Some(&db.url), &env);
    let second = Server::start_with(Some(&db.url), &env);

    let answer = crontab_recipe(&first, KEY);
    assert!(answer["pulse_id"].is_i64(), "{answer}");

    // The next key (rotation), with a body: accepted; then the very same
    // request again, on the other replica: refused as a replay.
    let body = r#"{"nonce":"a"}"#;
    let signed = headers(now(), NEXT_KEY, body);
    let (status, answer) = signed_pulse(&first, &signed, body);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = signed_pulse(&second, &signed, body);
    assert_eq!(
        (status, error_code(&answer)),
        (401, "signature_replayed"),
        "{answer}"
    );
    // The same time and body under the other key is the same message. (A
    // body of its own: the recipe's empty body, signed a second ago, would
    // make this a replay of that pulse.)
    let again = r#"{"nonce":"b"}"#;
    let at = now() - 1;
    let (status, answer) = signed_pulse(&second, &headers(at, KEY, again), again);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = signed_pulse(&first, &headers(at, NEXT_KEY, again), again);
    assert_eq!(status, 401, "{answer}");

    type Headers = Vec<(&'static str, String)>;
    let refusals: Vec<(Headers, &str, &str)> = vec![
        (headers(now() - 600, KEY, ""), "", "signature_outside_window"),
        (headers(now() + 600, KEY, ""), "", "signature_outside_window"),
        (
            headers(now(), "some-other-key-0123456789", ""),
            "",
            "signature_invalid",
        ),
        (headers(now(), KEY, "{}"), "{ }", "signature_invalid"),
        (
            vec![("X-Pulsehost-Timestamp", now().to_string())],
            "",
            "signature_incomplete",
        ),
        (
            vec![
                ("X-Pulsehost-Timestamp", "yesterday".into()),
                ("X-Pulsehost-Signature", "v1=00".into()),
            ],
            "",
            "signature_invalid",
        ),
    ];
    for (signed, body, code) in refusals {
        let (status, answer) = signed_pulse(&first, &signed, body);
        assert_eq!((status, error_code(&answer)), (401, code), "{signed:?}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
    assert_eq!(
        db.count("pulses WHERE kind = 'pulse'"),
        3,
        "only the three accepted pulses were recorded"
    );

    // The CLI signs with the key in its environment and sends no token.
    let out = Command::new(server::binary())
        .args(["pulse", "--sign"])
        .env("PULSEHOST_URL", &first.url)
        .env("PULSEHOST_PULSE_SIGNING_KEY", NEXT_KEY)
        .env("PULSEHOST_DATA_DIR", "/nonexistent")
        .env_remove("PULSEHOST_ADMIN_TOKEN")
        .env_remove("PULSEHOST_PULSE_TOKEN")
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(db.count("pulses WHERE kind = 'pulse'"), 4);
    let out = Command::new(server::binary())
        .args(["pulse", "--sign"])
        .env("PULSEHOST_URL", &first.url)
        .env_remove("PULSEHOST_PULSE_SIGNING_KEY")
        .output()
        .expect("run the CLI");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PULSEHOST_PULSE_SIGNING_KEY"));
}

#[test]
fn signatures_are_refused_where_no_key_is_set_and_bad_keys_stop_the_host() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, answer) = signed_pulse(&server, &headers(now(), KEY, ""), "");
    assert_eq!((status, error_code(&answer)), (401, "signatures_off"), "{answer}");

    for (keys, says) in [("a,b,c", "at most two"), ("tiny-key", "shorter than 16")] {
        let out = Command::new(server::binary())
            .arg("serve")
            .env("PULSEHOST_PULSE_SIGNING_KEYS", keys)
            .env("DATABASE_URL", &db.url)
            .env("PULSEHOST_LISTEN", "127.0.0.1:0")
            .output()
            .expect("run pulsehost serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keys}: {stderr}");
        assert!(stderr.contains(says), "{keys}: {stderr}");
        assert!(!stderr.contains(keys), "a key is never printed: {stderr}");
    }
}
