//! Overlap `skip` holds under races: replicas pulsing across a second
//! boundary, catch-up `all`, and manual triggers never run two instances of a
//! `skip` task at once.

use std::time::Duration;

use chrono::{DurationRound, Utc};
use diesel::{Connection, RunQueryDsl};
use serde_json::Value;

use crate::recovery::{runs_of, server_with, time};
use crate::support::{eventually, Server, TestDb, ADMIN};

/// Sleeps until `offset_ms` (may be negative) from the nearest whole second
/// that is still ahead once the offset is applied.
fn sleep_until_second_boundary(offset_ms: i64) {
    let now = Utc::now();
    let second = chrono::Duration::seconds(1);
    let mut target = now.duration_trunc(second).unwrap() + chrono::Duration::milliseconds(offset_ms);
    while target <= now {
        target += second;
    }
    std::thread::sleep(Duration::from_millis((target - now).num_milliseconds() as u64));
}

fn entries<'a>(pulse: &'a Value, list: &str, task: &str) -> Vec<&'a Value> {
    pulse[list]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["task"] == task)
        .collect()
}

#[test]
fn two_replicas_pulsing_across_a_second_boundary_never_queue_two_skip_instances() {
    let db = TestDb::new();
    let first = server_with(&db, "fixture-serial", &[]);
    let second = Server::start(&db.url);
    // Let the schedules take effect a whole second before the first round.
    std::thread::sleep(Duration::from_millis(1200));
    // Each round holds both pulses at the door (a lock on the slots table,
    // taken after both decided overlap without the other's claim in sight)
    // and lets them in together. Which goes first is up to PostgreSQL, so
    // several rounds are played.
    for round in 0..6 {
        let (a, b) = gated_pulses(&db, &first.url, &second.url);
        let queued = entries(&a, "claimed", "skip").len() + entries(&b, "claimed", "skip").len();
        assert!(queued <= 1, "round {round}: two instances queued:\n{a}\n{b}");
        eventually(Duration::from_secs(20), "the skip task to be idle", || {
            let runs = runs_of(&first, "skip");
            runs.iter().all(|r| r["finished_at"].is_string()).then_some(())
        });
    }
    let runs = runs_of(&first, "skip");
    let mut ran: Vec<&Value> = runs.iter().filter(|r| r["started_at"].is_string()).collect();
    ran.sort_by_key(|r| r["started_at"].as_str().unwrap().to_string());
    for pair in ran.windows(2) {
        assert!(
            time(&pair[1]["started_at"]) >= time(&pair[0]["finished_at"]),
            "{pair:?}"
        );
    }
}

/// Two pulses, one to each host, sent across a second boundary while the
/// slots table is locked, then let in together.
fn gated_pulses(db: &TestDb, a: &str, b: &str) -> (Value, Value) {
    let mut gate = db.conn();
    let threads = gate
        .transaction(|c| {
            diesel::sql_query("LOCK TABLE slots IN SHARE ROW EXCLUSIVE MODE").execute(c)?;
            sleep_until_second_boundary(-200);
            let first = std::thread::spawn({
                let url = a.to_string();
                move || pulse_at(&url)
            });
            sleep_until_second_boundary(200);
            let second = std::thread::spawn({
                let url = b.to_string();
                move || pulse_at(&url)
            });
            std::thread::sleep(Duration::from_millis(500));
            Ok::<_, diesel::result::Error>((first, second))
        })
        .unwrap();
    (threads.0.join().unwrap(), threads.1.join().unwrap())
}

fn pulse_at(url: &str) -> Value {
    let response = ureq::post(&format!("{url}/v1/pulse"))
        .timeout(Duration::from_secs(60))
        .set("Authorization", &format!("Bearer {}", crate::support::PULSE))
        .send_bytes(&[])
        .unwrap();
    response.into_json().unwrap()
}

#[test]
fn catch_up_all_runs_the_missed_slots_of_a_skip_task_one_after_another() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-serial", &[("PULSEHOST_MAX_CONCURRENT_RUNS", "8")]);
    std::thread::sleep(Duration::from_millis(3300));
    let pulse = server.pulse();
    let claimed = entries(&pulse, "claimed", "serial");
    assert!(claimed.len() >= 3, "{pulse}");
    let mut runs: Vec<Value> = claimed
        .iter()
        .map(|c| server.finished_run(c["run_id"].as_i64().unwrap(), Duration::from_secs(60)))
        .collect();
    runs.sort_by_key(|r| r["scheduled_for"].as_str().unwrap().to_string());
    for pair in runs.windows(2) {
        assert_eq!(pair[0]["status"], "succeeded", "{}", pair[0]);
        assert!(
            time(&pair[1]["started_at"]) >= time(&pair[0]["finished_at"]),
            "two instances ran at once:\n{}\n{}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn a_manual_trigger_of_a_running_skip_task_is_refused_and_recorded_as_skipped() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-edges", &[]);
    let first = server.trigger("skip-me");
    eventually(Duration::from_secs(20), "the first run to start", || {
        (server.get(&format!("/v1/runs/{first}"))["status"] == "running").then_some(())
    });
    let task = server.task_id("skip-me");
    let (status, body) = server.request("POST", &format!("/v1/tasks/{task}/run"), Some(ADMIN), None);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "previous_instance_running", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&first.to_string()),
        "{body}"
    );
    let runs = runs_of(&server, "skip-me");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["status"], "skipped");
    assert_eq!(runs[1]["skip_reason"], "previous_instance_running");
}
