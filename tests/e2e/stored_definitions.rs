//! What the host keeps about tasks: a definition it cannot read fails its run
//! clearly and the queue moves on; dynamic questions write nothing to the
//! tasks; the connection pool has the size it is given.

use std::time::Duration;

use diesel::RunQueryDsl;

use crate::recovery::server_with;
use crate::support::{component, eventually, Server, TestDb};

#[test]
fn a_run_whose_stored_definition_cannot_be_read_fails_clearly_and_the_queue_moves_on() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-exec", &[("PULSEHOST_MAX_CONCURRENT_RUNS", "1")]);
    diesel::sql_query(
        "UPDATE task_definitions SET definition = '{\"steps\": \"not a list\"}' WHERE name = 'env'",
    )
    .execute(&mut db.conn())
    .unwrap();
    let broken = server.trigger("env");
    let fine = server.trigger("pipe");
    let run = server.finished_run(broken, Duration::from_secs(30));
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("stored definition") && error.contains("env"),
        "the error names the task and the cause: {error}"
    );
    let next = server.finished_run(fine, Duration::from_secs(30));
    assert_eq!(next["status"], "succeeded", "the queue moved on: {next}");
}

/// `xmin` of every task row: it changes whenever a row is written.
fn task_row_versions(db: &TestDb) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT id::text || ':' || xmin::text AS v FROM tasks ORDER BY id")
            .load(&mut db.conn())
            .unwrap();
    rows.into_iter().map(|r| r.v).collect()
}

#[test]
fn asking_dynamic_schedules_writes_nothing_to_the_tasks() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-dynamic", &[]);
    let before = task_row_versions(&db);
    let pulse = server.pulse();
    assert!(
        pulse["claimed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["task"] == "poll"),
        "the dynamic task was asked: {pulse}"
    );
    assert_eq!(
        task_row_versions(&db),
        before,
        "a pulse's cache of the tasks stays valid"
    );
}

#[test]
fn the_connection_pool_has_the_size_it_is_given() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_DB_POOL_SIZE", "3")]);
    let (status, body) = server.push(&component("fixture-ticker"));
    assert_eq!(status, 201, "{body}");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..5 {
                    server.get("/v1/runs");
                    server.pulse();
                }
            });
        }
    });
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let open: Vec<Count> = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .load(&mut db.conn())
    .unwrap();
    // Three for the pool, one of the host's own for its heartbeat.
    assert!(open[0].n <= 4, "{} connections are open", open[0].n);
    eventually(Duration::from_secs(5), "the server to stay healthy", || {
        (server.request("GET", "/healthz", None, None).0 == 200).then_some(())
    });
}
