//! Scheduling that hosted cron can rely on: catch-up, starting deadlines,
//! overlap, dependencies, dynamic schedules, exactly-once across replicas,
//! idempotent and waiting pulses. Fixtures fire every second, so real time is
//! the clock.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{component, eventually, Server, TestDb, PULSE};

fn server_with(db: &TestDb, fixture: &str, extra: &[(&str, &str)]) -> Server {
    let mut vars = vec![("PULSEHOST_MAX_CONCURRENT_RUNS", "16")];
    vars.extend_from_slice(extra);
    let server = Server::start_with(Some(&db.url), &vars);
    let (status, body) = server.push(&component(fixture));
    assert_eq!(status, 201, "{body}");
    server
}

fn of_task<'a>(list: &'a Value, task: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["task"] == task)
        .collect()
}

pub(crate) fn pulse_with(server: &Server, query: &str, key: Option<&str>) -> (u16, Value, bool) {
    let mut req = ureq::post(&format!("{}/v1/pulse{query}", server.url))
        .timeout(Duration::from_secs(120))
        .set("Authorization", &format!("Bearer {PULSE}"));
    if let Some(k) = key {
        req = req.set("Idempotency-Key", k);
    }
    let response = match req.send_bytes(&[]) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("pulse: {e}"),
    };
    let replayed = response.header("Idempotent-Replayed").is_some();
    (
        response.status(),
        response.into_json().unwrap_or(Value::Null),
        replayed,
    )
}

#[test]
fn late_pulses_catch_up_by_policy_and_record_every_missed_slot() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-catchup", &[("PULSEHOST_ON_TIME_MS", "0")]);
    std::thread::sleep(Duration::from_millis(3300));
    let pulse = server.pulse();
    let latest_runs = of_task(&pulse["claimed"], "latest");
    assert_eq!(latest_runs.len(), 1, "latest runs one slot: {pulse}");
    let latest_missed = of_task(&pulse["missed"], "latest");
    assert!(
        latest_missed.len() >= 2,
        "the older ones are recorded as missed: {pulse}"
    );
    assert!(latest_missed
        .iter()
        .all(|m| m["reason"] == "superseded_by_newer_slot"));
    assert!(latest_missed
        .iter()
        .all(|m| m["scheduled_for"].as_str() < latest_runs[0]["scheduled_for"].as_str()));

    let all_runs = of_task(&pulse["claimed"], "all");
    assert_eq!(
        all_runs.len(),
        latest_runs.len() + latest_missed.len(),
        "all runs every slot: {pulse}"
    );
    assert!(
        of_task(&pulse["claimed"], "none").is_empty(),
        "none runs no missed slot"
    );
    assert_eq!(of_task(&pulse["missed"], "none").len(), all_runs.len());

    // Starting deadline 1.5 s: slots older than that are missed even under `all`.
    let deadline_missed = of_task(&pulse["missed"], "deadline");
    assert!(!deadline_missed.is_empty(), "{pulse}");
    assert!(deadline_missed
        .iter()
        .all(|m| m["reason"] == "starting_deadline_exceeded"));
    assert!(!of_task(&pulse["claimed"], "deadline").is_empty());

    // Missed slots are visible in history, and lateness is recorded per run.
    let missed = server.get("/v1/runs?status=missed&limit=500");
    assert_eq!(
        missed["runs"].as_array().unwrap().len(),
        pulse["missed"].as_array().unwrap().len()
    );
    let run = server.finished_run(
        latest_runs[0]["run_id"].as_i64().unwrap(),
        Duration::from_secs(30),
    );
    assert!(run["lateness_ms"].as_i64().unwrap() >= 0, "{run}");
    let pulses = server.get("/v1/pulses");
    assert_eq!(
        pulses["pulses"][0]["missed"].as_i64().unwrap() as usize,
        pulse["missed"].as_array().unwrap().len()
    );
    assert!(
        pulses["pulses"][0]["max_lateness_ms"].as_i64().is_some(),
        "{pulses}"
    );
}

#[test]
fn overlap_skip_records_a_skipped_run_and_allow_runs_both() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-overlap", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let first = server.pulse();
    let skip_id = of_task(&first["claimed"], "skip")[0]["run_id"].as_i64().unwrap();
    eventually(Duration::from_secs(20), "the first run to start", || {
        (server.get(&format!("/v1/runs/{skip_id}"))["status"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1100));
    let second = server.pulse();
    let skipped = of_task(&second["skipped"], "skip");
    assert_eq!(skipped.len(), 1, "{second}");
    assert_eq!(skipped[0]["reason"], "previous_instance_running");
    assert_eq!(
        of_task(&second["claimed"], "allow").len(),
        1,
        "allow runs alongside: {second}"
    );
    let allow_running = eventually(Duration::from_secs(20), "both allow runs running", || {
        let runs = server.get("/v1/runs?status=running&limit=100");
        let n = of_task(&runs["runs"], "allow").len();
        (n == 2).then_some(n)
    });
    assert_eq!(allow_running, 2);
}

#[test]
fn overlap_replace_cancels_the_running_run_whose_cleanup_still_runs() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-overlap", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let first = server.pulse();
    let old = of_task(&first["claimed"], "replace")[0]["run_id"]
        .as_i64()
        .unwrap();
    eventually(Duration::from_secs(20), "the first run to start", || {
        (server.get(&format!("/v1/runs/{old}"))["status"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1100));
    let second = server.pulse();
    assert_eq!(of_task(&second["claimed"], "replace").len(), 1, "{second}");
    let replaced = server.finished_run(old, Duration::from_secs(20));
    assert_eq!(replaced["status"], "cancelled", "{replaced}");
    let cleanup = replaced["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phase"] == "cleanup")
        .cloned();
    assert_eq!(cleanup.unwrap()["stdout"], "cleanup-ran\n");
}

#[test]
fn dynamic_schedules_ask_the_plugin_and_a_trap_is_reported_not_fatal() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-dynamic", &[]);
    let pulse = server.pulse();
    assert_eq!(
        of_task(&pulse["claimed"], "poll").len(),
        1,
        "should-run said yes: {pulse}"
    );
    let errors = pulse["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["task"] == "never" && e["error"].as_str().unwrap().contains("trapped")),
        "{pulse}"
    );
    let run = server.finished_run(
        pulse["claimed"][0]["run_id"].as_i64().unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let (status, _) = server.request("GET", "/healthz", None, None);
    assert_eq!(status, 200);
    let pulses = server.get("/v1/pulses");
    assert!(
        pulses["pulses"][0]["errors"].to_string().contains("never"),
        "recorded: {pulses}"
    );
}

#[test]
fn a_repeated_delivery_with_the_same_idempotency_key_gets_the_first_answer() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-ticker", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, first, replayed) = pulse_with(&server, "", Some("delivery-42"));
    assert_eq!((status, replayed), (200, false), "{first}");
    std::thread::sleep(Duration::from_millis(1100));
    let (status, again, replayed) = pulse_with(&server, "", Some("delivery-42"));
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, first, "the first answer, nothing new claimed");
    assert_eq!(db.count("pulses"), 1);
}

#[test]
fn a_waiting_pulse_answers_after_its_runs_finish() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-ticker", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, body, _) = pulse_with(&server, "?wait=true", None);
    assert_eq!(status, 200, "{body}");
    let runs = body["runs"].as_array().unwrap();
    assert!(!runs.is_empty(), "{body}");
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{body}");
}

#[test]
fn a_task_shows_its_next_five_fire_times() {
    let db = TestDb::new();
    let server = server_with(&db, "backup", &[]);
    let id = server.task_id("nightly-backup");
    let task = server.get(&format!("/v1/tasks/{id}"));
    let next = task["next_fire_times"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{task}");
    assert_eq!(task["timezone"], "Europe/Berlin");
}

#[test]
fn two_hosts_hit_by_fifty_concurrent_duplicate_pulses_run_every_slot_exactly_once() {
    let db = TestDb::new();
    let a = server_with(&db, "fixture-ticker", &[]);
    let b = Server::start_with(Some(&db.url), &[("PULSEHOST_MAX_CONCURRENT_RUNS", "16")]);
    std::thread::sleep(Duration::from_millis(1100));
    let claimed: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let server = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis((i % 10) * 30));
                    server.pulse()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                let pulse = h.join().unwrap();
                of_task(&pulse["claimed"], "tick")
                    .iter()
                    .map(|r| r["run_id"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    assert!(!claimed.is_empty());
    let mut slots: HashMap<i64, usize> = HashMap::new();
    for id in &claimed {
        let run = a.finished_run(*id, Duration::from_secs(60));
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["steps"].as_array().unwrap().len(), 1, "ran once: {run}");
        *slots.entry(run["slot_id"].as_i64().unwrap()).or_default() += 1;
    }
    assert!(slots.values().all(|n| *n == 1), "every slot once: {slots:?}");
    assert_eq!(
        db.count("runs") as usize,
        db.count("slots") as usize,
        "one run per slot, none lost"
    );
}

#[test]
fn after_missed_occurrences_a_dependent_waits_for_its_dependencys_run_of_the_same_slot() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-deps", &[]);
    std::thread::sleep(Duration::from_millis(2300));
    let pulse = server.pulse();
    assert!(
        !of_task(&pulse["missed"], "parent").is_empty(),
        "older slots were missed: {pulse}"
    );
    let parent = of_task(&pulse["claimed"], "parent")[0].clone();
    let child = of_task(&pulse["claimed"], "child")[0].clone();
    assert_eq!(parent["scheduled_for"], child["scheduled_for"]);
    let child = server.finished_run(child["run_id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(
        child["depends_on_runs"],
        serde_json::json!([parent["run_id"]]),
        "{child}"
    );
    assert_eq!(child["status"], "succeeded", "{child}");
}
