//! Retention: history older than the configured days goes, in batches, with
//! what hangs off it; what is younger stays; missed runs can go sooner; venvs
//! unused for the retention are removed.

use std::time::Duration;

use diesel::RunQueryDsl;

use crate::support::{component, eventually, Server, TestDb, ADMIN, READ};

fn sql(db: &TestDb, statement: &str) {
    diesel::sql_query(statement)
        .execute(&mut db.conn())
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

#[test]
fn history_older_than_the_retention_is_deleted_and_younger_history_stays() {
    let db = TestDb::new();
    let server = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_RETAIN_DAYS", "30"),
            ("PULSEHOST_RETAIN_MISSED_DAYS", "7"),
            ("PULSEHOST_RETENTION_INTERVAL", "1s"),
        ],
    );
    let (status, body) = server.push(&component("fixture-operators"));
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for task in ["ok", "boom", "ok", "boom"] {
        let id = server.trigger(task);
        server.finished_run(id, Duration::from_secs(30));
        ids.push(id);
    }
    let [old, young, missed, awaited] = ids[..] else {
        unreachable!()
    };
    server.pulse();
    server.pulse();
    // Forty days ago, ten days ago, and a run recorded as missed ten days ago.
    sql(
        &db,
        &format!("UPDATE runs SET created_at = now() - interval '40 days' WHERE id = {old}"),
    );
    sql(&db, &format!("UPDATE slots SET created_at = now() - interval '40 days' WHERE id = (SELECT slot_id FROM runs WHERE id = {old})"));
    sql(
        &db,
        &format!("UPDATE runs SET created_at = now() - interval '10 days' WHERE id = {young}"),
    );
    sql(
        &db,
        &format!(
            "UPDATE runs SET created_at = now() - interval '10 days', status = 'missed' WHERE id = {missed}"
        ),
    );
    // A failed run a queued run still waits for stays, however old: its
    // verdict decides whether the queued run may start. (The queued run goes
    // in first: a pass runs every second.)
    sql(
        &db,
        &format!(
            "WITH s AS (INSERT INTO slots (task_id, scheduled_for, trigger) SELECT task_id, now() + interval '1 day', \
                 'manual' FROM runs WHERE id = {awaited} RETURNING id, task_id, scheduled_for) \
             INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, status, scheduled_for, not_before, \
                 depends_on_runs) SELECT s.id, s.task_id, r.plugin_version_id, r.definition_id, 'queued', \
                 s.scheduled_for, s.scheduled_for, ARRAY[{awaited}]::int8[] FROM s, runs r WHERE r.id = {awaited}"
        ),
    );
    sql(
        &db,
        &format!("UPDATE runs SET created_at = now() - interval '40 days' WHERE id = {awaited}"),
    );
    sql(
        &db,
        "UPDATE pulses SET received_at = now() - interval '40 days' WHERE id = (SELECT min(id) FROM pulses)",
    );
    let venvs = server.data_path().join("venvs");
    for (name, age) in [("stale", "40 days ago"), ("fresh", "2 days ago")] {
        std::fs::create_dir_all(venvs.join(name).join("bin")).unwrap();
        // A venv's last use is its directory's modification time.
        let touched = std::process::Command::new("touch")
            .args(["-d", age])
            .arg(venvs.join(name))
            .status()
            .unwrap();
        assert!(touched.success());
    }

    eventually(Duration::from_secs(30), "the old run to be deleted", || {
        let (status, _) = server.request("GET", &format!("/v1/runs/{old}"), Some(READ), None);
        (status == 404).then_some(())
    });
    eventually(Duration::from_secs(30), "the missed run to be deleted", || {
        let (status, _) = server.request("GET", &format!("/v1/runs/{missed}"), Some(READ), None);
        (status == 404).then_some(())
    });
    eventually(Duration::from_secs(30), "the stale venv to be removed", || {
        (!venvs.join("stale").exists()).then_some(())
    });
    let (status, _) = server.request("GET", &format!("/v1/runs/{awaited}"), Some(ADMIN), None);
    assert_eq!(status, 200, "a run a queued run waits for stays");
    let (status, kept) = server.request("GET", &format!("/v1/runs/{young}"), Some(ADMIN), None);
    assert_eq!(status, 200, "a run younger than the retention stays: {kept}");
    assert!(
        !kept["steps"].as_array().unwrap().is_empty(),
        "with its processes: {kept}"
    );
    assert!(venvs.join("fresh").exists(), "a venv used lately stays");
    let orphans = db.count("step_executions WHERE run_id NOT IN (SELECT id FROM runs)");
    assert_eq!(orphans, 0, "processes go with their runs");
    assert_eq!(
        db.count("run_events WHERE run_id NOT IN (SELECT id FROM runs)"),
        0
    );
    let pulses = server.get("/v1/pulses");
    let ids: Vec<i64> = pulses["pulses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "the old pulse went, the others stay: {pulses}");
    assert!(!ids.contains(&1), "{pulses}");
    let metrics = ureq::get(&format!("{}/metrics", server.url))
        .set("Authorization", &format!("Bearer {READ}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(r#"pulsehost_retention_deleted_rows_total{table="runs"} 2"#),
        "{metrics}"
    );
    assert!(server.log().contains("retention deleted"), "{}", server.log());
}
