//! Leases, heartbeats and back-off are judged by PostgreSQL's clock: a replica
//! whose own clock runs fast neither steals runs from a healthy host nor moves
//! a retry's start. The skewed clock is real: the replica runs under
//! libfaketime.

use std::time::Duration;

use crate::recovery::{millis_between, runs_of, server_with, time};
use crate::support::{eventually, libfaketime, Server, TestDb};

const LEASE: (&str, &str) = ("PULSEHOST_LEASE_MS", "3000");

/// Starts a replica whose wall clock runs twenty seconds ahead.
fn fast_replica(db: &TestDb) -> Server {
    let preload = libfaketime();
    let server = Server::start_with(
        Some(&db.url),
        &[
            LEASE,
            ("LD_PRELOAD", &preload),
            ("FAKETIME", "+20s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("FAKETIME_NO_CACHE", "1"),
        ],
    );
    // The replica's HTTP Date header comes from its own (skewed) clock.
    let date = ureq::get(&format!("{}/healthz", server.url)).call().unwrap();
    let date = chrono::DateTime::parse_from_rfc2822(date.header("date").unwrap()).unwrap();
    let skew = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        skew.num_seconds() >= 15,
        "the replica's clock is not skewed: {skew}"
    );
    server
}

#[test]
fn a_replica_whose_clock_runs_twenty_seconds_fast_does_not_declare_a_healthy_run_lost() {
    let db = TestDb::new();
    let honest = server_with(&db, "fixture-edges", &[LEASE]);
    let id = honest.trigger("sleep-12");
    eventually(Duration::from_secs(20), "the run to start", || {
        (honest.get(&format!("/v1/runs/{id}"))["status"] == "running").then_some(())
    });
    let fast = fast_replica(&db);
    // The replica recovers lost runs at start-up, on every pulse and every few seconds.
    for _ in 0..4 {
        fast.pulse();
        std::thread::sleep(Duration::from_secs(2));
    }
    let run = honest.finished_run(id, Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["failure_type"].is_null(), "{run}");
    assert_eq!(runs_of(&honest, "sleep-12").len(), 1, "no retry was needed");
}

#[test]
fn a_retry_queued_by_a_replica_with_a_fast_clock_waits_its_backoff_in_database_time() {
    let db = TestDb::new();
    let fast = fast_replica(&db);
    let (status, body) = fast.push(&crate::support::component("fixture-edges"));
    assert_eq!(status, 201, "{body}");
    fast.trigger("fail-once");
    let runs = eventually(Duration::from_secs(30), "both attempts to finish", || {
        let runs = runs_of(&fast, "fail-once");
        (runs.len() == 2 && runs.iter().all(|r| r["finished_at"].is_string())).then_some(runs)
    });
    let retry = &runs[1];
    assert_eq!(retry["status"], "succeeded", "{retry}");
    // Backoff 300 ms, half of it jitter, measured from when the retry was queued.
    let wait = millis_between(&retry["created_at"], &retry["not_before"]);
    assert!(
        (0..=1000).contains(&wait),
        "not_before is {wait} ms after queueing: {retry}"
    );
    assert!(time(&retry["started_at"]) >= time(&retry["not_before"]));
}
