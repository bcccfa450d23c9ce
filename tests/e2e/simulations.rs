//! The pulse driven through the library at chosen instants, on a real
//! PostgreSQL: the autumn DST night (the database's clock cannot be moved, so
//! the pulse's instant is given), task changes committed out of order, and
//! every column of Diesel's view of the schema present after the migrations.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{Connection, PgConnection, QueryDsl, RunQueryDsl};
use pulsehost::plugin::{Limits, PluginHost};
use pulsehost::pulse::{PulseAnswer, PulseConfig, PulseReport, Pulser};
use pulsehost::spec::*;
use pulsehost::store::plugins::{register_version, NewPluginVersion};
use pulsehost::store::Db;

use crate::support::TestDb;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cron(name: &str, expression: &str, timezone: Option<&str>) -> TaskSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "overlap": "allow",
        "schedule": {"kind": "cron", "expression": expression, "timezone": timezone},
        "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}}}]
    }))
    .unwrap()
}

/// Registers `tasks`, every schedule taking effect at `since`, and a pulser over them.
async fn pulser(url: &str, tasks: Vec<TaskSpec>, since: DateTime<Utc>) -> (Db, Pulser) {
    let db = Db::connect(url).unwrap();
    let manifest = Manifest {
        name: "sim".into(),
        version: "1".into(),
        description: String::new(),
        tasks,
    };
    db.run(move |tx| {
        let since = vec![since; manifest.tasks.len()];
        let new = NewPluginVersion {
            sha256: "sim",
            component: b"sim",
            wit_package: "sim",
            manifest: &manifest,
            keep_versions: 10,
        };
        register_version(tx, &new, &since)
    })
    .await
    .unwrap();
    let plugins = PluginHost::new(
        Limits {
            max_component_bytes: 1 << 20,
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
            max_manifest_bytes: 1 << 20,
            cache_bytes: 64 << 20,
            pooling: false,
        },
        None,
    )
    .unwrap();
    let config = PulseConfig {
        catch_up_max: 100,
        on_time: chrono::Duration::seconds(90),
        idempotency_window: chrono::Duration::hours(24),
    };
    (db.clone(), Pulser::new(db, plugins, config))
}

async fn pulse(pulser: &Pulser, now: DateTime<Utc>) -> PulseReport {
    match pulser.pulse_at(None, None, Some(now), &|| {}).await.unwrap() {
        PulseAnswer::Fresh(report) => report,
        PulseAnswer::Replayed(v) => panic!("not a fresh pulse: {v}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn through_the_autumn_night_in_berlin_wildcard_hours_follow_real_time_and_a_fixed_hour_runs_once() {
    let db = TestDb::new();
    runtime().block_on(async {
        let tasks = vec![
            cron("every-minute", "* * * * *", Some("Europe/Berlin")),
            cron("quarter-hour", "*/15 * * * *", Some("Europe/Berlin")),
            cron("hourly", "0 * * * *", Some("Europe/Berlin")),
            cron("half-past-two", "30 2 * * *", Some("Europe/Berlin")),
        ];
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC).
        let (_, pulser) = pulser(&db.url, tasks, at("2026-10-24T22:00:00Z")).await;
        let mut slots: std::collections::HashMap<String, Vec<DateTime<Utc>>> = Default::default();
        let mut now = at("2026-10-24T22:00:30Z");
        while now <= at("2026-10-25T03:00:30Z") {
            for run in pulse(&pulser, now).await.claimed {
                slots.entry(run.task.clone()).or_default().push(run.scheduled_for);
            }
            now += chrono::Duration::minutes(1);
        }
        let gaps = |task: &str| -> Vec<i64> {
            slots[task]
                .windows(2)
                .map(|w| (w[1] - w[0]).num_minutes())
                .collect()
        };
        assert_eq!(slots["every-minute"].len(), 300, "five hours of real minutes");
        assert!(gaps("every-minute").iter().all(|g| *g == 1), "never silent");
        assert_eq!(slots["quarter-hour"].len(), 20);
        assert!(gaps("quarter-hour").iter().all(|g| *g == 15));
        assert_eq!(slots["hourly"].len(), 5, "{:?}", slots["hourly"]);
        assert!(
            gaps("hourly").iter().all(|g| *g == 60),
            "no two-hour gap: {:?}",
            slots["hourly"]
        );
        assert_eq!(
            slots["half-past-two"],
            [at("2026-10-25T00:30:00Z")],
            "a fixed hour runs once"
        );
    });
}

#[test]
fn a_task_change_committed_after_a_later_one_is_still_seen_and_writers_never_wait_for_each_other() {
    let db = TestDb::new();
    runtime().block_on(async {
        let t0 = at("2026-11-23T10:00:00Z");
        let tasks = vec![cron("a", "* * * * * *", None), cron("b", "* * * * * *", None)];
        let (_, pulser) = pulser(&db.url, tasks, t0).await;
        let names = |r: &PulseReport| -> Vec<String> { r.claimed.iter().map(|c| c.task.clone()).collect() };
        assert_eq!(
            names(&pulse(&pulser, t0 + chrono::Duration::seconds(1)).await),
            ["a", "b"]
        );

        // X pauses `a` but has not committed; Y changes `b` and commits first.
        let mut x = PgConnection::establish(&db.url).unwrap();
        diesel::sql_query("BEGIN").execute(&mut x).unwrap();
        diesel::sql_query("UPDATE tasks SET paused_reason = 'held' WHERE name = 'a'")
            .execute(&mut x)
            .unwrap();
        let mut y = PgConnection::establish(&db.url).unwrap();
        diesel::sql_query("SET statement_timeout = 3000")
            .execute(&mut y)
            .unwrap();
        diesel::sql_query("UPDATE tasks SET priority = 5 WHERE name = 'b'")
            .execute(&mut y)
            .expect("a writer must not wait for another writer of other tasks");
        assert_eq!(
            names(&pulse(&pulser, t0 + chrono::Duration::seconds(2)).await),
            ["a", "b"]
        );
        diesel::sql_query("COMMIT").execute(&mut x).unwrap();
        let report = pulse(&pulser, t0 + chrono::Duration::seconds(3)).await;
        assert_eq!(
            names(&report),
            ["b"],
            "the pause committed last is seen: {report:?}"
        );
    });
}

/// Every column `schema.rs` names exists in the migrated database (the types
/// are exercised by every query the tests above make).
#[test]
fn every_column_the_host_compiles_against_exists_after_the_migrations() {
    use pulsehost::store::schema::*;
    let db = TestDb::new();
    runtime().block_on(async {
        pulser(&db.url, vec![cron("a", "* * * * *", None)], Utc::now()).await;
    });
    let mut conn = db.conn();
    macro_rules! read_all {
        ($($table:ident),*) => {$(
            $table::table
                .select($table::all_columns)
                .execute(&mut conn)
                .unwrap_or_else(|e| panic!("{}: {e}", stringify!($table)));
        )*};
    }
    read_all!(
        plugins,
        plugin_versions,
        tasks,
        pulses,
        slots,
        runs,
        step_executions,
        run_events,
        hook_failures,
        task_definitions,
        dynamic_asks,
        hosts,
        run_stats,
        run_stats_pending,
        run_totals,
        step_output_live,
        task_marks
    );
}
