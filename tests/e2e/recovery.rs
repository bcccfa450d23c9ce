//! What the runner does when runs fail and hosts go away: retries with backoff
//! that survive a restart, runs of a killed host finished as `host_lost` (their
//! process group killed, the run retried), graceful shutdown on SIGTERM.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{component, eventually, Server, TestDb, PULSE};

pub(crate) fn server_with(db: &TestDb, fixture: &str, extra: &[(&str, &str)]) -> Server {
    let server = Server::start_with(Some(&db.url), extra);
    let (status, body) = server.push(&component(fixture));
    assert_eq!(status, 201, "{body}");
    server
}

pub(crate) fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn millis_between(from: &Value, to: &Value) -> i64 {
    (time(to) - time(from)).num_milliseconds()
}

/// The runs of task `name`, oldest first.
pub(crate) fn runs_of(server: &Server, name: &str) -> Vec<Value> {
    let id = server.task_id(name);
    let mut runs = server.get(&format!("/v1/runs?task_id={id}"))["runs"]
        .as_array()
        .unwrap()
        .clone();
    runs.reverse();
    runs
}

/// A run as stored, read straight from the database (the server may be gone).
fn stored_run(db: &TestDb, id: i64) -> Value {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        j: String,
    }
    let rows: Vec<Row> = diesel::sql_query("SELECT row_to_json(r)::text AS j FROM runs r WHERE id = $1")
        .bind::<diesel::sql_types::BigInt, _>(id)
        .load(&mut db.conn())
        .unwrap();
    serde_json::from_str(&rows[0].j).unwrap()
}

/// Stored processes of a run: (phase, status, stdout).
fn stored_steps(db: &TestDb, id: i64) -> Vec<(String, String, String)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        phase: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        stdout: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT phase, status, convert_from(stdout, 'UTF8') AS stdout \
         FROM step_executions WHERE run_id = $1 ORDER BY id",
    )
    .bind::<diesel::sql_types::BigInt, _>(id)
    .load(&mut db.conn())
    .unwrap();
    rows.into_iter().map(|r| (r.phase, r.status, r.stdout)).collect()
}

/// Live (not zombie) processes whose process group is `pgid`.
fn live_group_members(pgid: i64) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the command name: state ppid pgrp …
            let rest: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r)
                .unwrap_or("")
                .split_whitespace()
                .collect();
            rest.first() != Some(&"Z") && rest.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(pgid)
        })
        .collect()
}

pub(crate) fn event<'a>(run: &'a Value, kind: &str) -> &'a Value {
    run["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {run}"))
}

#[test]
fn a_failing_task_is_retried_with_growing_backoff_and_every_attempt_is_visible() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-exec", &[]);
    let first = server.trigger("flaky");
    let runs = eventually(Duration::from_secs(60), "three attempts of flaky", || {
        let runs = runs_of(&server, "flaky");
        (runs.len() == 3 && runs.iter().all(|r| r["finished_at"].is_string())).then_some(runs)
    });
    let attempts: Vec<(i64, &str)> = runs
        .iter()
        .map(|r| (r["attempt"].as_i64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(attempts, [(1, "failed"), (2, "failed"), (3, "succeeded")]);
    assert_eq!(runs[0]["id"], first);
    for i in 0..2 {
        assert_eq!(
            runs[i + 1]["retry_of"],
            runs[i]["id"],
            "each attempt links the one it retries"
        );
        assert_eq!(runs[i + 1]["slot_id"], runs[0]["slot_id"], "same slot");
        assert!(
            runs[i]["error"].as_str().unwrap().contains("exited with code 1"),
            "{}",
            runs[i]
        );
        assert!(millis_between(&runs[i + 1]["not_before"], &runs[i + 1]["started_at"]) >= 0);
    }
    assert!(runs[2]["error"].is_null());
    // Backoff 200 ms doubling, capped at 1 s, half of it jitter. It counts from
    // when the retry is queued, a moment after the finish is recorded: the
    // upper bounds allow that moment on a busy machine.
    const QUEUEING: i64 = 150;
    let gap1 = millis_between(&runs[0]["finished_at"], &runs[1]["not_before"]);
    let gap2 = millis_between(&runs[1]["finished_at"], &runs[2]["not_before"]);
    assert!((100..=200 + QUEUEING).contains(&gap1), "first backoff {gap1} ms");
    assert!((200..=400 + QUEUEING).contains(&gap2), "second backoff {gap2} ms");

    let failed = server.get(&format!("/v1/runs/{first}"));
    let scheduled = event(&failed, "retry_scheduled");
    assert_eq!(scheduled["detail"]["next_run_id"], runs[1]["id"]);
    let second = server.get(&format!("/v1/runs/{}", runs[1]["id"]));
    let queued = event(&second, "queued");
    assert_eq!(queued["detail"]["retry_of"], first);
    assert!(queued["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("exited with code 1"));
    assert!(second["steps"][0]["stderr"]
        .as_str()
        .unwrap()
        .contains("failing attempt 2"));
}

#[test]
fn a_retry_waiting_for_its_backoff_survives_a_restart_of_the_host() {
    let db = TestDb::new();
    let mut first_host = server_with(&db, "fixture-exec", &[]);
    let first = first_host.trigger("retry-later");
    let retry = eventually(Duration::from_secs(30), "the retry to be queued", || {
        runs_of(&first_host, "retry-later")
            .into_iter()
            .find(|r| r["attempt"] == 2)
    });
    assert_eq!(retry["status"], "queued");
    assert_eq!(retry["retry_of"], first);
    let retry_id = retry["id"].as_i64().unwrap();
    assert!(first_host.stop().success());
    assert_eq!(
        stored_run(&db, retry_id)["status"],
        "queued",
        "the stopped host did not run it"
    );

    let second_host = Server::start(&db.url);
    let done = second_host.finished_run(retry_id, Duration::from_secs(60));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["steps"][0]["stdout"]
        .as_str()
        .unwrap()
        .contains("second-attempt"));
    assert!(millis_between(&done["not_before"], &done["started_at"]) >= 0);
    assert_ne!(
        done["host_id"],
        stored_run(&db, first)["host_id"],
        "the new host ran it"
    );
}

#[test]
fn a_host_killed_mid_run_has_its_run_finished_as_host_lost_its_process_group_killed_and_the_run_retried() {
    let db = TestDb::new();
    let lease = [("PULSEHOST_LEASE_MS", "1500")];
    let mut doomed = server_with(&db, "fixture-exec", &lease);
    let id = doomed.trigger("lost");
    let pgid = eventually(
        Duration::from_secs(30),
        "the run's process group to be recorded",
        || {
            let run = doomed.get(&format!("/v1/runs/{id}"));
            (run["status"] == "running")
                .then(|| run["process_groups"][0].as_i64())
                .flatten()
        },
    );
    assert!(
        !live_group_members(pgid).is_empty(),
        "the step runs in group {pgid}"
    );

    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(Duration::from_secs(10));
    let stranded = stored_run(&db, id);
    assert_eq!(stranded["status"], "running");
    assert!(!live_group_members(pgid).is_empty(), "the step outlived its host");
    // The next host starts once the dead host's heartbeat is older than its lease.
    std::thread::sleep(Duration::from_millis(1700));

    let next = Server::start_with(Some(&db.url), &lease);
    // The new host gives verdicts once it has reached the database for a lease.
    let lost = eventually(Duration::from_secs(20), "the run to be recovered", || {
        let run = next.get(&format!("/v1/runs/{id}"));
        (run["status"] != "running").then_some(run)
    });
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["failure_type"], "host_lost");
    let dead_host = stranded["host_id"].as_str().unwrap();
    assert_eq!(
        lost["error"],
        format!("host_lost: host {dead_host} stopped heartbeating")
    );
    assert_eq!(lost["process_groups"], serde_json::json!([]));
    event(&lost, "host_lost");
    eventually(
        Duration::from_secs(5),
        "the lost run's processes to be killed",
        || live_group_members(pgid).is_empty().then_some(()),
    );

    let retry = eventually(Duration::from_secs(30), "the lost run to be retried", || {
        runs_of(&next, "lost").into_iter().find(|r| r["retry_of"] == id)
    });
    let retried = next.finished_run(retry["id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(retried["attempt"], 2);
    assert!(retried["steps"][0]["stdout"]
        .as_str()
        .unwrap()
        .contains("recovered"));
}

#[test]
fn sigterm_refuses_pulses_and_a_run_that_ends_within_the_grace_is_recorded_succeeded() {
    let db = TestDb::new();
    let mut server = server_with(&db, "fixture-exec", &[("PULSEHOST_SHUTDOWN_GRACE_MS", "20000")]);
    let id = server.trigger("short");
    eventually(Duration::from_secs(30), "the run to start", || {
        (server.get(&format!("/v1/runs/{id}"))["process_groups"][0].is_i64()).then_some(())
    });
    server.signal(Signal::SIGTERM);
    let (status, body) = eventually(Duration::from_secs(5), "pulses to be refused", || {
        let (status, body) = server.request("POST", "/v1/pulse", Some(PULSE), None);
        (status == 503).then_some((status, body))
    });
    assert_eq!(status, 503, "{body}");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    let run = stored_run(&db, id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = stored_steps(&db, id);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(steps[0].2.contains("done"));
}

#[test]
fn sigterm_cancels_a_run_that_outlasts_the_grace_and_its_cleanup_still_runs() {
    let db = TestDb::new();
    let mut server = server_with(&db, "fixture-exec", &[("PULSEHOST_SHUTDOWN_GRACE_MS", "500")]);
    let id = server.trigger("cancel-me");
    eventually(Duration::from_secs(30), "the run to start", || {
        (server.get(&format!("/v1/runs/{id}"))["process_groups"][0].is_i64()).then_some(())
    });
    let started = std::time::Instant::now();
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let run = stored_run(&db, id);
    assert_eq!(run["status"], "cancelled", "{run}");
    let steps = stored_steps(&db, id);
    let phases: Vec<(&str, &str)> = steps.iter().map(|(p, s, _)| (p.as_str(), s.as_str())).collect();
    assert_eq!(phases, [("step", "cancelled"), ("cleanup", "succeeded")]);
    assert!(steps[1].2.contains("cleanup-ran"));
}
