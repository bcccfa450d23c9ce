//! Pulse benchmark. Prints `name: value unit` lines: the server-side time of a
//! pulse over 10,000 registered tasks with 1,000 due (evaluate and claim),
//! beside one equivalent batched `INSERT` of 1,000 rows run directly in SQL on
//! the same database. Target: at most 3x the baseline.
//!
//! Needs PostgreSQL at `PULSEHOST_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); creates and drops its own database.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use diesel::RunQueryDsl;
use pulsehost::plugin::{Limits, PluginHost};
use pulsehost::pulse::{PulseAnswer, PulseConfig, Pulser};
use pulsehost::spec::*;
use pulsehost::store::plugins::{register_version, NewPluginVersion};
use pulsehost::store::Db;

const TASKS: usize = 10_000;
const DUE: usize = 1_000;
const ROUNDS: usize = 7;

fn main() {
    let db = support::BenchDb::create("pulse");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pulse_ms, insert_ms) = runtime.block_on(measure(&db.url));
    drop(db);
    println!("pulse_tasks: {TASKS} tasks");
    println!("pulse_due: {DUE} slots");
    println!("pulse_evaluate_and_claim: {pulse_ms:.2} ms (median of {ROUNDS})");
    println!("baseline_batched_insert_1000_rows: {insert_ms:.2} ms (median of {ROUNDS})");
    println!(
        "pulse_vs_baseline_ratio: {:.2} x (target <= 3)",
        pulse_ms / insert_ms
    );
}

fn task(i: usize) -> TaskSpec {
    let due = i < DUE;
    TaskSpec {
        name: format!("task-{i:05}"),
        description: String::new(),
        schedule: Schedule::Cron {
            expression: if due {
                "* * * * * *".into()
            } else {
                format!("{} {} 1 1 *", i % 60, i % 24)
            },
            timezone: None,
        },
        enabled: true,
        timeout_ms: None,
        priority: 0,
        retry: None,
        overlap: Overlap::Skip,
        catch_up: CatchUp::Latest,
        starting_deadline_ms: None,
        tags: vec![],
        depends_on: vec![],
        pipe_json: false,
        hooks: ExecHooks::default(),
        steps: vec![StepSpec {
            name: "true".into(),
            exec: ExecSpec {
                kind: StepKind::Binary {
                    path: "/bin/true".into(),
                },
                args: vec![],
                envs: vec![],
                working_dir: None,
                timeout_ms: None,
                stdin_json: None,
            },
        }],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn measure(url: &str) -> (f64, f64) {
    let db = Db::connect(url).unwrap();
    let manifest = Manifest {
        name: "bench".into(),
        version: "1".into(),
        description: String::new(),
        tasks: (0..TASKS).map(task).collect(),
    };
    // Every schedule takes effect on a whole second, so each later whole
    // second makes exactly one slot of each every-second task due.
    let t0: DateTime<Utc> = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap();
    db.run(move |c| {
        let new = NewPluginVersion {
            sha256: "bench",
            component: b"",
            wit_package: "bench",
            manifest: &manifest,
        };
        register_version(c, &new, t0)
    })
    .await
    .unwrap();
    let plugins = PluginHost::new(Limits {
        max_component_bytes: 1 << 20,
        memory_bytes: 64 << 20,
        call_timeout: Duration::from_secs(1),
    })
    .unwrap();
    let config = PulseConfig {
        catch_up_max: 100,
        on_time: chrono::Duration::seconds(90),
    };
    let pulser = Pulser::new(db.clone(), plugins, config);
    let mut pulse_times = Vec::new();
    for round in 1..=ROUNDS {
        let now = t0 + chrono::Duration::seconds(round as i64);
        let PulseAnswer::Fresh(report) = pulser.pulse(Some("bench".into()), None, now).await.unwrap() else {
            panic!("a fresh pulse")
        };
        // Nothing executes here, so from the second round on the default overlap
        // policy (skip) records the due slots as skipped: still 1,000 claims.
        assert_eq!(report.claimed.len() + report.skipped.len(), DUE, "round {round}");
        pulse_times.push(report.duration_ms);
    }
    // Baseline: the same 1,000 slot rows in one statement, new times each round.
    let mut insert_times = Vec::new();
    let mut conn = db.conn().unwrap();
    for round in 0..ROUNDS {
        let at = t0 + chrono::Duration::days(1) + chrono::Duration::seconds(round as i64);
        let sql = format!(
            "INSERT INTO slots (task_id, scheduled_for, trigger) \
             SELECT id, '{}'::timestamptz, 'schedule' FROM tasks ORDER BY id LIMIT {DUE} \
             ON CONFLICT DO NOTHING RETURNING id",
            at.to_rfc3339()
        );
        let start = Instant::now();
        diesel::sql_query(sql).execute(&mut conn).unwrap();
        insert_times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    (median(pulse_times), median(insert_times))
}
