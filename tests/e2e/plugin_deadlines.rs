//! The plugin call deadline holds for every kind of guest wait, including a
//! blocking WASI sleep, and dynamic schedules never hold up cron claims.

use std::time::{Duration, Instant};

use crate::recovery::millis_between;
use crate::support::{component, Server, TestDb};

#[test]
fn a_describe_that_sleeps_is_stopped_at_its_deadline_and_says_how_long_it_ran() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_PLUGIN_CALL_TIMEOUT_MS", "1000")]);
    let started = Instant::now();
    let (status, answer) = server.push(&component("fixture-sleepy-describe"));
    let took = started.elapsed();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "plugin_timeout", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("within 1000 ms"), "{message}");
    assert!(
        message.contains("stopped after"),
        "the true elapsed time: {message}"
    );
    // The guest sleeps for a minute; the deadline is one second.
    assert!(took < Duration::from_secs(15), "the upload took {took:?}");
    assert_eq!(db.count("plugins"), 0);
}

#[test]
fn sleeping_should_runs_cost_a_pulse_one_shared_budget_and_never_delay_cron_claims() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_PLUGIN_CALL_TIMEOUT_MS", "1000")]);
    let (status, body) = server.push(&component("fixture-sleepy"));
    assert_eq!(status, 201, "{body}");
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(1100));
        let started = Instant::now();
        let pulse = server.pulse();
        let took = started.elapsed();
        // Three sleepers asked one after another would take three deadlines
        // (or three minutes); asked together under one budget, one.
        assert!(
            took < Duration::from_secs(10),
            "round {round}: the pulse took {took:?}"
        );
        let errors = pulse["errors"].as_array().unwrap();
        for sleeper in ["sleeper-1", "sleeper-2", "sleeper-3"] {
            let error = errors
                .iter()
                .find(|e| e["task"] == sleeper)
                .unwrap_or_else(|| panic!("round {round}: no error for {sleeper}: {pulse}"));
            assert!(error["error"].as_str().unwrap().contains("1000 ms"), "{error}");
        }
        let claimed = pulse["claimed"].as_array().unwrap();
        assert!(claimed.iter().any(|c| c["task"] == "awake"), "{pulse}");
        let tick = claimed
            .iter()
            .find(|c| c["task"] == "tick")
            .unwrap_or_else(|| panic!("tick is due every second: {pulse}"));
        // The cron slot was claimed before the dynamic questions were asked.
        let run = server.get(&format!("/v1/runs/{}", tick["run_id"]));
        let claimed_after = millis_between(&pulse["received_at"], &run["created_at"]);
        assert!(
            claimed_after < 500,
            "round {round}: tick was claimed {claimed_after} ms into the pulse"
        );
    }
}
