//! Runs that depend on other runs of the same pulse: a host takes one only once
//! its dependencies succeeded (waiting through their retries), and skips it as
//! `dependency_failed` when one of them fails for good or is cancelled.

use std::time::Duration;

use diesel::RunQueryDsl;
use serde_json::Value;

use crate::recovery::{event, millis_between, runs_of, server_with};
use crate::support::{Server, TestDb, ADMIN, PULSE};

/// One pulse over the dependency fixture, once its every-second tasks are due.
fn pulse_deps(server: &Server) -> Value {
    std::thread::sleep(Duration::from_millis(1100));
    let (status, body) = server.request("POST", "/v1/pulse", Some(PULSE), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// The finished run the pulse queued for `task`.
fn claimed_run(server: &Server, pulse: &Value, task: &str) -> Value {
    let claimed = pulse["claimed"].as_array().unwrap();
    let id = claimed
        .iter()
        .find(|c| c["task"] == task)
        .and_then(|c| c["run_id"].as_i64())
        .unwrap_or_else(|| panic!("no {task} run claimed by {pulse}"));
    server.finished_run(id, Duration::from_secs(30))
}

#[test]
fn a_run_starts_only_after_the_run_it_depends_on_succeeded() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-deps", &[("PULSEHOST_MAX_CONCURRENT_RUNS", "4")]);
    let pulse = pulse_deps(&server);
    let parent = claimed_run(&server, &pulse, "parent");
    let child = claimed_run(&server, &pulse, "child");
    assert_eq!(child["depends_on_runs"], serde_json::json!([parent["id"]]));
    assert_eq!(parent["status"], "succeeded");
    assert_eq!(child["status"], "succeeded", "{child}");
    assert!(
        millis_between(&parent["finished_at"], &child["started_at"]) >= 0,
        "the child started at {} before the parent finished at {}",
        child["started_at"],
        parent["finished_at"]
    );
}

#[test]
fn a_failed_dependency_skips_the_run_that_depends_on_it_as_dependency_failed() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-deps", &[]);
    let pulse = pulse_deps(&server);
    let bad = claimed_run(&server, &pulse, "bad-parent");
    let orphan = claimed_run(&server, &pulse, "orphan");
    assert_eq!(bad["status"], "failed");
    assert_eq!(orphan["status"], "skipped", "{orphan}");
    assert_eq!(orphan["skip_reason"], "dependency_failed");
    assert!(orphan["started_at"].is_null(), "it never ran");
    assert!(orphan["steps"].as_array().unwrap().is_empty());
    event(&orphan, "skipped");
}

/// Queues a run of `task` straight into the database, the way a pulse that
/// linked dependencies would, and returns its id.
pub(crate) fn queue_directly(
    db: &TestDb,
    server: &Server,
    task: &str,
    not_before_secs: i64,
    depends_on: &[i64],
) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let rows: Vec<Id> = diesel::sql_query(
        "WITH s AS (INSERT INTO slots (task_id, scheduled_for, trigger) \
                    VALUES ($1, clock_timestamp(), 'manual') RETURNING id, task_id, scheduled_for) \
         INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, status, scheduled_for, \
                           not_before, depends_on_runs) \
         SELECT s.id, s.task_id, t.plugin_version_id, t.definition_id, 'queued', s.scheduled_for, \
                now() + make_interval(secs => $2), $3 \
         FROM s JOIN tasks t ON t.id = s.task_id RETURNING runs.id",
    )
    .bind::<diesel::sql_types::BigInt, _>(server.task_id(task))
    .bind::<diesel::sql_types::Double, _>(not_before_secs as f64)
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(depends_on)
    .load(&mut db.conn())
    .unwrap();
    rows[0].id
}

#[test]
fn a_dependent_run_waits_for_the_retries_of_its_dependency_and_runs_after_the_one_that_succeeds() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-exec", &[]);
    let flaky = queue_directly(&db, &server, "flaky", 0, &[]);
    let dependent = queue_directly(&db, &server, "env", 0, &[flaky]);
    let done = server.finished_run(dependent, Duration::from_secs(60));
    let attempts = runs_of(&server, "flaky");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let succeeded = &attempts[2];
    assert_eq!(succeeded["status"], "succeeded");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["depends_on_runs"],
        serde_json::json!([succeeded["id"]]),
        "it now waits for the latest attempt"
    );
    assert!(millis_between(&succeeded["finished_at"], &done["started_at"]) >= 0);
}

#[test]
fn cancelling_a_queued_run_skips_the_runs_that_depend_on_it_transitively() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-exec", &[]);
    let first = queue_directly(&db, &server, "env", 3600, &[]);
    let second = queue_directly(&db, &server, "pipe", 0, &[first]);
    let third = queue_directly(&db, &server, "raw-bytes", 0, &[second]);
    let independent = queue_directly(&db, &server, "flood", 3600, &[]);
    let (status, body) = server.request("POST", &format!("/v1/runs/{first}/cancel"), Some(ADMIN), None);
    assert_eq!(status, 202, "{body}");
    for id in [second, third] {
        let run = server.get(&format!("/v1/runs/{id}"));
        assert_eq!(run["status"], "skipped", "{run}");
        assert_eq!(run["skip_reason"], "dependency_failed");
    }
    assert_eq!(server.get(&format!("/v1/runs/{independent}"))["status"], "queued");
}
