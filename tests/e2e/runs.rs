//! Pulses, runs and their recorded steps, against real processes.

use std::time::Duration;

use crate::support::{component, eventually, Server, TestDb};

fn ticker(db: &TestDb) -> Server {
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-ticker"));
    assert_eq!(status, 201, "{body}");
    server
}

#[test]
fn a_pulse_claims_a_due_slot_and_the_run_records_the_steps_output() {
    let db = TestDb::new();
    let server = ticker(&db);
    // `tick` fires every second; the first occurrence after the upload is due by now.
    std::thread::sleep(Duration::from_millis(1100));
    let pulse = server.pulse();
    let claimed = pulse["claimed"].as_array().expect("claimed list");
    let tick = claimed
        .iter()
        .find(|c| c["task"] == "tick")
        .unwrap_or_else(|| panic!("tick not claimed: {pulse}"));
    let run = server.finished_run(tick["run_id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"][0]["stdout"], "tick tick\n");
    assert_eq!(run["steps"][0]["exit_code"], 0);
    assert!(run["lateness_ms"].as_i64().unwrap() >= 0);
    assert!(
        run["events"].as_array().unwrap().len() >= 2,
        "started and finished are logged"
    );
}

#[test]
fn concurrent_duplicate_pulses_claim_each_slot_once() {
    let db = TestDb::new();
    let server = ticker(&db);
    std::thread::sleep(Duration::from_millis(1100));
    let claimed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10).map(|_| s.spawn(|| server.pulse())).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap()["claimed"].as_array().unwrap().len())
            .sum()
    });
    #[derive(diesel::QueryableByName)]
    struct Dup {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    let dups: Vec<Dup> = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT slot_id FROM runs GROUP BY slot_id HAVING count(*) > 1) d",
    )
    .load(&mut db.conn())
    .unwrap();
    assert_eq!(dups[0].n, 0, "no slot has two runs");
    assert_eq!(
        claimed as i64,
        db.count("runs") - skipped_or_missed(&db),
        "every claimed slot has exactly one run"
    );
}

fn skipped_or_missed(db: &TestDb) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<N> =
        diesel::sql_query("SELECT count(*) AS n FROM runs WHERE status IN ('skipped', 'missed')")
            .load(&mut db.conn())
            .unwrap();
    rows[0].n
}

#[test]
fn arguments_reach_a_shell_step_as_positional_parameters_never_pasted() {
    let db = TestDb::new();
    let server = ticker(&db);
    let run = server.finished_run(server.trigger("manual-echo"), Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"][0]["stdout"], "a b|c|");
}

#[test]
fn a_step_past_its_timeout_is_killed_and_the_run_is_timed_out() {
    let db = TestDb::new();
    let server = ticker(&db);
    let started = std::time::Instant::now();
    let run = server.finished_run(server.trigger("slow"), Duration::from_secs(30));
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(run["steps"][0]["status"], "timed_out");
    assert_eq!(
        run["steps"][0]["signal"], 15,
        "SIGTERM ended it within the grace period"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "sleep 30 must not hold the run"
    );
}

#[test]
fn a_realistic_plugin_runs_hooks_python_with_a_requirement_and_a_binary() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("backup"));
    assert_eq!(status, 201, "{body}");
    let task = body["tasks"][0].as_str().unwrap().to_string();
    // The first python run builds a venv and pip-installs the requirement.
    let run = server.finished_run(server.trigger(&task), Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = run["steps"].as_array().unwrap();
    let phases: Vec<&str> = steps.iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"provision"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"cleanup"), "{phases:?}");
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"python") && kinds.contains(&"binary"),
        "{kinds:?}"
    );
    let python = steps.iter().find(|s| s["kind"] == "python").unwrap();
    assert!(
        python["stdout_json"].is_object(),
        "the python step prints JSON: {python}"
    );
    assert!(steps.iter().all(|s| s["exit_code"] == 0), "{run}");
}

#[test]
fn runs_are_listed_newest_first_a_page_at_a_time() {
    let db = TestDb::new();
    let server = ticker(&db);
    let ids: Vec<i64> = (0..3).map(|_| server.trigger("manual-echo")).collect();
    for id in &ids {
        server.finished_run(*id, Duration::from_secs(30));
    }
    let page = server.get("/v1/runs?limit=2");
    let first: Vec<i64> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first, vec![ids[2], ids[1]]);
    let next = page["next_before"].as_i64().expect("a next page");
    let page = server.get(&format!("/v1/runs?limit=2&before={next}"));
    assert_eq!(page["runs"][0]["id"].as_i64(), Some(ids[0]));
    let (status, body) = server.request("GET", "/v1/runs?limit=0", Some(crate::support::ADMIN), None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.request("GET", "/v1/runs/999999", Some(crate::support::ADMIN), None);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = server.request("GET", "/v1/runs/abc", Some(crate::support::ADMIN), None);
    assert_eq!(status, 400);
    eventually(Duration::from_secs(1), "health", || Some(()));
}
