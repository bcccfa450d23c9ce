//! The operator's questions, answered by the API in one call each: which runs
//! failed lately (several statuses, a tag, a time range, keyset pages), and a
//! task's success rate and typical duration.

use std::time::Duration;

use serde_json::Value;

use crate::support::{component, Server, TestDb, ADMIN};

/// A host with the operators fixture and finished runs: `ok` twice, `boom`
/// (failed, tagged nightly) and `markup` once each. Returns the run ids by task.
pub fn history(db: &TestDb) -> (Server, Vec<(&'static str, i64)>) {
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-operators"));
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for task in ["ok", "boom", "ok", "markup"] {
        let id = server.trigger(task);
        server.finished_run(id, Duration::from_secs(30));
        ids.push((task, id));
    }
    (server, ids)
}

fn listed(server: &Server, query: &str) -> Vec<(String, i64)> {
    let page = server.get(&format!("/v1/runs?{query}"));
    page["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|r| (r["task"].as_str().unwrap().to_owned(), r["id"].as_i64().unwrap()))
        .collect()
}

fn refused(server: &Server, path: &str) -> String {
    let (status, body) = server.request("GET", path, Some(ADMIN), None);
    assert_eq!(status, 400, "GET {path}: {body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn runs_are_filtered_by_several_statuses_a_tag_and_a_time_range_and_paged_by_keyset() {
    let db = TestDb::new();
    let (server, ids) = history(&db);
    let boom = ids[1].1;
    assert_eq!(
        listed(&server, "status=failed,timed_out"),
        [("boom".to_owned(), boom)]
    );
    assert_eq!(
        listed(&server, "status=failed&status=timed_out"),
        [("boom".to_owned(), boom)]
    );
    assert_eq!(listed(&server, "status=succeeded&status=failed").len(), 4);
    let nightly = listed(&server, "tag=nightly");
    assert_eq!(nightly, [("boom".to_owned(), boom)]);
    assert_eq!(listed(&server, "tag=team-a").len(), 3);
    assert_eq!(listed(&server, "since=1h").len(), 4);
    assert!(listed(&server, "until=2000-01-01T00:00:00Z").is_empty());
    assert_eq!(listed(&server, "hide_missed=true").len(), 4);
    assert!(listed(&server, "status=missed").is_empty());
    let ok = server.task_id("ok");
    assert_eq!(
        listed(&server, &format!("task_id={ok}&status=succeeded")).len(),
        2
    );
}

#[test]
fn unknown_filter_values_are_refused_with_the_valid_ones_listed() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let message = refused(&server, "/v1/runs?status=bogus");
    assert!(
        message.contains("bogus") && message.contains("timed_out"),
        "{message}"
    );
    let message = refused(&server, "/v1/runs?since=yesterday");
    assert!(message.contains("RFC 3339"), "{message}");
    let message = refused(&server, "/v1/runs?colour=red");
    assert!(
        message.contains("colour") && message.contains("hide_missed"),
        "{message}"
    );
    let message = refused(&server, "/v1/stats?window=forever");
    assert!(message.contains("window"), "{message}");
}

#[test]
fn pages_follow_the_cursor_without_repeating_or_skipping_a_run() {
    let db = TestDb::new();
    let (server, ids) = history(&db);
    let mut seen = Vec::new();
    let mut query = "limit=1".to_owned();
    loop {
        let page = server.get(&format!("/v1/runs?{query}"));
        seen.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(next) => query = format!("limit=1&before={next}"),
            None => break,
        }
    }
    let mut expected: Vec<i64> = ids.iter().map(|(_, id)| *id).collect();
    expected.reverse();
    assert_eq!(seen, expected);
    let run = &server.get("/v1/runs?limit=1")["runs"][0];
    assert!(run["duration_ms"].as_f64().unwrap() > 0.0, "{run}");
}

#[test]
fn stats_give_counts_success_rate_durations_and_the_last_success_and_failure() {
    let db = TestDb::new();
    let (server, ids) = history(&db);
    let ok = server.task_id("ok");
    let task: Value = server.get(&format!("/v1/tasks/{ok}/stats?window=24h"));
    let stats = &task["stats"];
    assert_eq!(stats["counts"]["succeeded"], 2, "{task}");
    assert_eq!(stats["counts"]["failed"], 0, "{task}");
    assert_eq!(stats["success_rate"], 1.0, "{task}");
    let p50 = stats["duration"]["p50_ms"].as_f64().unwrap();
    assert!(p50 >= 150.0, "ok sleeps 0.2 s: {task}");
    assert!(stats["duration"]["max_ms"].as_f64().unwrap() >= p50, "{task}");
    assert_eq!(stats["last_success"]["run_id"], ids[2].1, "{task}");
    assert!(stats["last_failure"].is_null(), "{task}");
    assert!(stats["lateness"]["count"].as_i64().unwrap() >= 2, "{task}");

    let all: Value = server.get("/v1/stats");
    let stats = &all["stats"];
    assert_eq!(stats["runs"], 4, "{all}");
    assert_eq!(stats["success_rate"], 0.75, "{all}");
    assert_eq!(stats["last_failure"]["run_id"], ids[1].1, "{all}");
    let (status, body) = server.request("GET", "/v1/tasks/999999/stats", Some(ADMIN), None);
    assert_eq!(status, 404, "{body}");

    // Runs just ended are counted before and after housekeeping rolls them up, the same.
    crate::support::eventually(Duration::from_secs(30), "the rollup", || {
        (db.count("run_stats_pending") == 0).then_some(())
    });
    assert_eq!(server.get(&format!("/v1/tasks/{ok}/stats?window=24h")), task);
    assert_eq!(server.get("/v1/stats"), all);
}

#[test]
fn a_running_steps_output_is_visible_before_it_ends() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-operators"));
    assert_eq!(status, 201, "{body}");
    let id = server.trigger("slow");
    // `slow` prints a line every half second for six seconds.
    let live = crate::support::eventually(Duration::from_secs(20), "live output", || {
        let run = server.get(&format!("/v1/runs/{id}"));
        let out = run["live"][0]["stdout"].as_str().unwrap_or("").to_owned();
        (run["status"] == "running" && out.contains("line 2")).then_some(out)
    });
    assert!(!live.contains("line 12"), "seen before the end: {live}");
    let run = server.finished_run(id, Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["live"].as_array().unwrap().is_empty(),
        "the final record replaces it: {run}"
    );
    assert!(
        run["steps"][0]["stdout"].as_str().unwrap().contains("line 12"),
        "{run}"
    );
    assert_eq!(run["attempts"][0]["run_id"], id, "{run}");
}

#[test]
fn runs_ending_in_concurrent_transactions_in_opposite_status_orders_never_deadlock() {
    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;
    let db = TestDb::new();
    let (server, ids) = history(&db);
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    // Four runs waiting until tomorrow, so no host takes them.
    let queued: Vec<i64> = diesel::sql_query(format!(
        "WITH s AS (INSERT INTO slots (task_id, scheduled_for, trigger) \
             SELECT task_id, now() + g * interval '1 hour', 'manual' FROM runs, generate_series(1, 4) g \
             WHERE id = {} RETURNING id, task_id, scheduled_for) \
         INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, status, scheduled_for, not_before) \
         SELECT s.id, s.task_id, r.plugin_version_id, r.definition_id, 'queued', s.scheduled_for, \
             now() + interval '1 day' FROM s, runs r WHERE r.id = {} RETURNING id",
        ids[0].1, ids[0].1
    ))
    .load::<Id>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect();
    let end = |status: &str, id: i64| {
        format!("UPDATE runs SET status = '{status}', finished_at = now() WHERE id = {id}")
    };
    let (mut a, mut b) = (db.conn(), db.conn());
    a.batch_execute(&format!("BEGIN; {}", end("cancelled", queued[0])))
        .unwrap();
    b.batch_execute(&format!("BEGIN; {}", end("skipped", queued[1])))
        .unwrap();
    let second = end("skipped", queued[2]);
    let first_done = std::thread::spawn(move || {
        let outcome = a.batch_execute(&second).and_then(|_| a.batch_execute("COMMIT"));
        outcome.map_err(|e| e.to_string())
    });
    std::thread::sleep(Duration::from_millis(300));
    let other = b
        .batch_execute(&end("cancelled", queued[3]))
        .and_then(|_| b.batch_execute("COMMIT"))
        .map_err(|e| e.to_string());
    let first = first_done.join().unwrap();
    assert!(first.is_ok() && other.is_ok(), "{first:?} {other:?}");
    let stats = server.get("/v1/stats");
    assert_eq!(stats["stats"]["counts"]["cancelled"], 2, "{stats}");
    assert_eq!(stats["stats"]["counts"]["skipped"], 2, "{stats}");
}
