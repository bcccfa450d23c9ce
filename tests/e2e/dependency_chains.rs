//! Dependency chains at their edges: a skipped dependency skips everything
//! behind it in the same transaction, a violation left in the database is
//! repaired by the sweeper, and a cycle never gets in.

use std::time::Duration;

use serde_json::Value;

use crate::dependencies::queue_directly;
use crate::recovery::{event, runs_of, server_with};
use crate::support::{component, eventually, recorded_in, Server, TestDb};

/// The run a pulse recorded for `task`, in any of its lists.
fn recorded<'a>(pulse: &'a Value, task: &str) -> &'a Value {
    recorded_in(pulse, task)
        .into_iter()
        .max_by_key(|r| r["scheduled_for"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no run of {task} in {pulse}"))
}

fn status_of(server: &Server, run: &Value) -> Value {
    server.get(&format!("/v1/runs/{}", run["run_id"]))
}

#[test]
fn a_skipped_dependency_skips_the_whole_chain_behind_it_and_later_occurrences_run() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-chain", &[("PULSEHOST_MAX_CONCURRENT_RUNS", "4")]);
    // `a` takes four seconds; while it runs, the next occurrence of `a` is skipped.
    let running = server.trigger("a");
    eventually(Duration::from_secs(20), "a to run", || {
        (server.get(&format!("/v1/runs/{running}"))["status"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1100));
    let pulse = server.pulse();
    let a = status_of(&server, recorded(&pulse, "a"));
    assert_eq!(a["skip_reason"], "previous_instance_running", "{a}");
    for task in ["b", "c"] {
        let run = eventually(Duration::from_secs(5), &format!("{task} to be settled"), || {
            let run = status_of(&server, recorded(&pulse, task));
            (run["status"] != "queued").then_some(run)
        });
        assert_eq!(run["status"], "skipped", "{task}: {run}");
        assert_eq!(run["skip_reason"], "dependency_failed", "{task}: {run}");
        event(&run, "skipped");
    }

    // Nothing of the chain is left waiting, so its next occurrence runs in full.
    server.finished_run(running, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1100));
    let next = server.pulse();
    let c = recorded(&next, "c").clone();
    assert!(c["reason"].is_null(), "c is queued, not skipped: {next}");
    let done = server.finished_run(c["run_id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[test]
fn a_queued_run_behind_a_dependency_that_already_failed_is_skipped_by_the_sweeper() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-chain", &[]);
    // A state an older version or a crash between two writes could leave behind:
    // `c` queued behind a run of `b` that already failed for good.
    let failed = queue_directly(&db, &server, "b", 3600, &[]);
    diesel::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE runs SET status = 'failed', finished_at = now(), error = 'injected' WHERE id = $1",
        )
        .bind::<diesel::sql_types::BigInt, _>(failed),
        &mut db.conn(),
    )
    .unwrap();
    let waiting = queue_directly(&db, &server, "c", 0, &[failed]);
    let run = eventually(Duration::from_secs(20), "the sweeper to settle c", || {
        let run = server.get(&format!("/v1/runs/{waiting}"));
        (run["status"] != "queued").then_some(run)
    });
    assert_eq!(run["status"], "skipped", "{run}");
    assert_eq!(run["skip_reason"], "dependency_failed");
    assert!(runs_of(&server, "c").iter().all(|r| r["status"] != "queued"));
}

#[test]
fn a_dependency_cycle_is_refused_at_upload_naming_the_cycle() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, answer) = server.push(&component("fixture-cycle"));
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_tasks");
    let problems = answer["error"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["field"].as_str().unwrap().contains("depends-on")
                && p["message"].as_str().unwrap().contains("a -> b -> a")),
        "{answer}"
    );
    assert_eq!(db.count("plugins"), 0);
}
