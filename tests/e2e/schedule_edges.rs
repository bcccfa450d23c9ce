//! Schedules at their edges: a task enabled (or re-added) late never fires an
//! occurrence from before, a starting deadline holds while a run waits in the
//! queue, and after a long silence `latest` runs the newest slot and counts
//! every missed one exactly.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;

use crate::recovery::{server_with, time};
use crate::support::{component, eventually, recorded_in, Server, TestDb};

/// Pushes `fixture`: a new version, or (bytes pushed before) that version made active again.
fn push(server: &Server, fixture: &str) {
    let (status, body) = server.push(&component(fixture));
    assert!(
        status == 201 || (status == 200 && body["activated"] == true),
        "{fixture}: {body}"
    );
}

/// Pushes `fixture`, then pulses at once: nothing of `flip` before the push may appear.
fn enable_and_pulse(server: &Server, fixture: &str) {
    let before: DateTime<Utc> = Utc::now();
    push(server, fixture);
    let pulse = server.pulse();
    for run in recorded_in(&pulse, "flip") {
        assert!(
            time(&run["scheduled_for"]) > before,
            "{fixture}: an occurrence from before the task was enabled: {run}\n{pulse}"
        );
    }
}

#[test]
fn enabling_or_re_adding_a_task_never_fires_an_occurrence_from_before() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    push(&server, "fixture-toggle-off");
    server.pulse();
    std::thread::sleep(Duration::from_millis(1500));
    enable_and_pulse(&server, "fixture-toggle-on");

    push(&server, "fixture-toggle-gone");
    server.pulse();
    std::thread::sleep(Duration::from_millis(1500));
    enable_and_pulse(&server, "fixture-toggle-on");
}

#[test]
fn a_queued_run_whose_starting_deadline_passes_while_it_waits_is_recorded_missed_not_run() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-serial", &[("PULSEHOST_MAX_CONCURRENT_RUNS", "1")]);
    let blocker = server.trigger("blocker");
    eventually(Duration::from_secs(20), "the blocker to run", || {
        (server.get(&format!("/v1/runs/{blocker}"))["status"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1100));
    let pulse = server.pulse();
    let prompt = pulse["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["task"] == "prompt")
        .unwrap_or_else(|| panic!("prompt queued on time: {pulse}"));
    // The blocker holds the only slot for three seconds; the deadline is one.
    let run = server.finished_run(prompt["run_id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(run["status"], "missed", "{run}");
    assert_eq!(run["skip_reason"], "starting_deadline_exceeded");
    assert!(run["started_at"].is_null(), "it never started: {run}");
    assert!(run["steps"].as_array().unwrap().is_empty());
}

#[test]
fn after_twelve_days_without_pulses_latest_runs_the_newest_slot_and_counts_every_missed_one() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-ticker", &[]);
    // Pretend the task took effect, and the last pulse came, twelve days ago.
    diesel::sql_query(
        "WITH t AS (UPDATE tasks SET schedule_since = now() - interval '12 days' RETURNING schedule_since) \
         INSERT INTO pulses (kind, received_at) SELECT 'pulse', schedule_since FROM t LIMIT 1",
    )
    .execute(&mut db.conn())
    .unwrap();
    let since = {
        #[derive(diesel::QueryableByName)]
        struct Since {
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            since: DateTime<Utc>,
        }
        let rows: Vec<Since> =
            diesel::sql_query("SELECT schedule_since AS since FROM tasks WHERE name = 'tick'")
                .load(&mut db.conn())
                .unwrap();
        rows[0].since
    };
    let pulse = server.pulse();
    let received = time(&pulse["received_at"]);
    let tick = pulse["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["task"] == "tick")
        .unwrap_or_else(|| panic!("{pulse}"));
    assert_eq!(
        time(&tick["scheduled_for"]).timestamp(),
        received.timestamp(),
        "the newest occurrence runs: {tick}"
    );
    // Every whole second in (since, received] is an occurrence; one runs.
    let occurrences = received.timestamp() - since.timestamp();
    let stored = server.get("/v1/pulses?limit=1");
    assert_eq!(
        stored["pulses"][0]["missed"].as_i64().unwrap(),
        occurrences - 1,
        "{}",
        stored["pulses"][0]
    );
}
