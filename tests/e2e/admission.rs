//! Admission: a run starts only while its task's concurrency key has room
//! across every replica, and while its reserved memory and CPU fit its host;
//! a step that exits 75 with `{"retry_after_ms": N}` is retried no sooner, and
//! runs sharing its key wait as long. Times compared are the database's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::support::{component, eventually, Server, TestDb};

fn at(run: &Value, field: &str) -> DateTime<Utc> {
    run[field].as_str().unwrap().parse().unwrap()
}

/// No two of `runs` were running at the same moment.
fn one_at_a_time(runs: &[Value]) {
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = runs
        .iter()
        .map(|r| (at(r, "started_at"), at(r, "finished_at")))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two runs overlapped: {pair:?}");
    }
}

#[test]
fn a_concurrency_key_admits_one_run_at_a_time_across_two_replicas_and_tasks() {
    let db = TestDb::new();
    let first = Server::start(&db.url);
    let second = Server::start(&db.url);
    assert_eq!(first.push(&component("fixture-admission")).0, 201);
    let ids: Vec<i64> = (0..3)
        .flat_map(|_| [first.trigger("keyed-a"), second.trigger("keyed-b")])
        .collect();
    let runs: Vec<Value> = ids
        .iter()
        .map(|id| first.finished_run(*id, Duration::from_secs(120)))
        .collect();
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    one_at_a_time(&runs);
}

#[test]
fn runs_start_only_while_their_reservations_fit_the_hosts_capacity() {
    let db = TestDb::new();
    let server = Server::start_with(
        Some(&db.url),
        &[("PULSEHOST_CAPACITY_MEMORY_BYTES", "1073741824")],
    );
    assert_eq!(server.push(&component("fixture-admission")).0, 201);
    let too_big = server.trigger("reserve-too-much");
    let ids = [
        server.trigger("reserve-600m"),
        server.trigger("reserve-600m"),
        server.trigger("reserve-600m"),
    ];
    let runs: Vec<Value> = ids
        .iter()
        .map(|id| server.finished_run(*id, Duration::from_secs(120)))
        .collect();
    one_at_a_time(&runs);
    let waiting = server.get(&format!("/v1/runs/{too_big}"));
    assert_eq!(
        waiting["status"], "queued",
        "a run larger than the host waits: {waiting}"
    );
}

#[test]
fn a_rate_limited_step_is_retried_no_sooner_than_it_asked_and_its_key_waits_with_it() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-admission")).0, 201);
    let limited = server.finished_run(server.trigger("rate-limited"), Duration::from_secs(60));
    assert_eq!(limited["status"], "failed", "{limited}");
    assert_eq!(limited["failure_type"], "rate_limited", "{limited}");
    let same_key = server.trigger("same-key");
    let waited = server.finished_run(same_key, Duration::from_secs(60));
    let held_until = at(&limited, "finished_at") + chrono::Duration::milliseconds(2500);
    assert!(
        at(&waited, "started_at") >= held_until,
        "the key was not held: {waited}"
    );
    let retry = eventually(Duration::from_secs(60), "the retry to finish", || {
        let runs = server.get("/v1/runs?limit=20");
        let retry = runs["runs"]
            .as_array()?
            .iter()
            .find(|r| r["retry_of"] == limited["id"])?
            .clone();
        (retry["status"] == "succeeded").then_some(retry)
    });
    assert!(at(&retry, "started_at") >= held_until, "{retry}");
}
