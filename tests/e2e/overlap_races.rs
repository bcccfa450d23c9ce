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
    // Let the schedules take effect a whole second before both pulses.
    std::thread::sleep(Duration::from_millis(1200));
    // Both pulses are held at the door (a lock on the pulses table) and then
    // let in together, so each decides overlap while the other has not committed.
    let mut gate = db.conn();
    let pulses = gate
        .transaction(|c| {
            diesel::sql_query("LOCK TABLE pulses IN SHARE ROW EXCLUSIVE MODE").execute(c)?;
            sleep_until_second_boundary(-200);
            let a = std::thread::spawn({
                let url = first.url.clone();
                move || pulse_at(&url)
            });
            sleep_until_second_boundary(200);
            let b = std::thread::spawn({
                let url = second.url.clone();
                move || pulse_at(&url)
            });
            std::thread::sleep(Duration::from_millis(500));
            Ok::<_, diesel::result::Error>((a, b))
        })
        .unwrap();
    let (a, b) = (pulses.0.join().unwrap(), pulses.1.join().unwrap());
    let queued = entries(&a, "claimed", "skip").len() + entries(&b, "claimed", "skip").len();
    let skipped: Vec<&Value> = [&a, &b]
        .iter()
        .flat_map(|p| entries(p, "skipped", "skip"))
        .collect();
    assert_eq!(queued, 1, "one instance queued:\n{a}\n{b}");
    assert_eq!(skipped.len(), 1, "the other skipped:\n{a}\n{b}");
    assert_eq!(skipped[0]["reason"], "previous_instance_running");
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
