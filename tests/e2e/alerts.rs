//! Alerts against the real binary and a real HTTP receiver: a task's
//! failure, recovery, missed slots and pause, and the host-wide dead man's
//! switch, each recorded once and POSTed signed, retried when the receiver
//! fails, with every attempt listed.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::receiver::{Receiver, KEY};
use crate::support::{cli, component, eventually, free_port, Server, TestDb, ADMIN};

const LIMIT: Duration = Duration::from_secs(60);

fn alerts(server: &Server) -> Vec<Value> {
    server.get("/v1/alerts?limit=100")["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn run_with(server: &Server, task: &str, body: Value) -> Value {
    let id = server.task_id(task);
    let bytes = body.to_string().into_bytes();
    let (status, answer) = server.request("POST", &format!("/v1/tasks/{id}/run"), Some(ADMIN), Some(&bytes));
    assert_eq!(status, 202, "{answer}");
    server.finished_run(answer["run_id"].as_i64().unwrap(), LIMIT)
}

#[test]
fn a_tasks_failure_recovery_missed_slots_and_pause_are_posted_signed_and_retried() {
    let receiver = Receiver::start(47393, 1);
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_ALERT_SIGNING_KEY", KEY)]);
    // A second replica evaluates and delivers the same alerts all along.
    let _replica = Server::start_with(Some(&db.url), &[("PULSEHOST_ALERT_SIGNING_KEY", KEY)]);
    assert_eq!(server.push(&component("fixture-alerts")).0, 201);

    // A failure: the receiver fails the first attempt; the second delivers it.
    let failed = run_with(&server, "flaky", json!({}));
    assert_eq!(failed["status"], "failed", "{failed}");
    let got = receiver.wait_for("failure", 2);
    assert!(
        got.iter()
            .all(|d| d.path == "/hooks/task" && d.body["_signature_ok"] == true),
        "{got:?}"
    );
    assert_eq!(
        got[0].headers["x-pulsehost-alert-id"],
        got[1].headers["x-pulsehost-alert-id"]
    );
    assert_eq!(got[0].body["task"], "flaky");
    assert_eq!(got[0].body["run_id"], failed["id"]);
    let listed = eventually(LIMIT, "the failure to be listed as delivered", || {
        let all = alerts(&server);
        let failure = all.iter().find(|a| a["kind"] == "failure")?.clone();
        (failure["status"] == "delivered").then_some(failure)
    });
    let codes: Vec<&Value> = listed["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(200)], "{listed}");

    // A task without rules alerts nobody; a success after the failure is a recovery.
    assert_eq!(run_with(&server, "quiet", json!({}))["status"], "failed");
    let recovered = run_with(&server, "flaky", json!({"envs": {"MODE": "ok"}}));
    assert_eq!(recovered["status"], "succeeded", "{recovered}");
    let recovery = receiver.wait_for("recovery", 1);
    assert_eq!(recovery[0].body["run_id"], recovered["id"]);

    // A pause.
    let id = server.task_id("flaky");
    let body = json!({"reason": "broken upstream"}).to_string().into_bytes();
    let (status, _) = server.request("POST", &format!("/v1/tasks/{id}/pause"), Some(ADMIN), Some(&body));
    assert_eq!(status, 200);
    let paused = receiver.wait_for("paused", 1);
    assert_eq!(paused[0].body["reason"], "broken upstream");

    // Missed slots: catch-up `latest` records the older ones missed.
    server.pulse();
    std::thread::sleep(Duration::from_millis(3500));
    let pulse = server.pulse();
    assert!(!pulse["missed"].as_array().unwrap().is_empty(), "{pulse}");
    let missed = receiver.wait_for("missed", 1);
    assert_eq!(missed[0].body["task"], "every-second");
    assert!(missed[0].body["missed"].as_i64().unwrap() >= 1, "{:?}", missed[0]);

    // Each was recorded once and, once delivered, not sent again, whatever
    // the number of rounds on either replica since.
    std::thread::sleep(Duration::from_secs(3));
    let all = alerts(&server);
    for kind in ["failure", "recovery", "paused"] {
        assert_eq!(
            all.iter().filter(|a| a["kind"] == kind).count(),
            1,
            "{kind}: {all:?}"
        );
    }
    assert!(!all.iter().any(|a| a["payload"]["task"] == "quiet"), "{all:?}");
    assert_eq!(
        receiver.of("failure").len(),
        2,
        "one failed attempt, one delivery"
    );
    assert_eq!(receiver.of("recovery").len(), 1);
    assert_eq!(receiver.of("paused").len(), 1);
    let printed = cli(&server, &["alerts"]);
    assert!(
        printed.contains("failure fixture-alerts/flaky") && printed.contains("delivered"),
        "{printed}"
    );
}

#[test]
fn the_dead_mans_switch_reports_a_silence_once() {
    let port = free_port();
    let receiver = Receiver::start(port, 0);
    let db = TestDb::new();
    let webhook = format!("http://127.0.0.1:{port}/hooks/host");
    let server = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_ALERT_WEBHOOK", webhook.as_str()),
            ("PULSEHOST_ALERT_SIGNING_KEY", KEY),
            ("PULSEHOST_EXPECTED_PULSE_INTERVAL", "2s"),
        ],
    );
    let first = server.pulse();
    // No pulse for longer than expected: the ticker reports it.
    let got = receiver.wait_for("pulse_overdue", 1);
    assert_eq!(got[0].path, "/hooks/host");
    assert_eq!(got[0].body["last_pulse_id"], first["pulse_id"], "{:?}", got[0]);
    assert_eq!(got[0].body["_signature_ok"], true);
    // The pulse that ends the silence reports the same silence, not another.
    std::thread::sleep(Duration::from_secs(1));
    server.pulse();
    std::thread::sleep(Duration::from_secs(3));
    let overdue: Vec<Value> = alerts(&server)
        .into_iter()
        .filter(|a| a["kind"] == "pulse_overdue")
        .collect();
    let about_first = overdue
        .iter()
        .filter(|a| a["payload"]["last_pulse_id"] == first["pulse_id"])
        .count();
    assert_eq!(about_first, 1, "{overdue:?}");
}
