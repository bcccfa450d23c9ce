//! Pulse and upload benchmarks. Prints `name: value unit` lines, each beside a
//! baseline measured in the same run that does the same work:
//!
//! * a pulse over 10,000 registered tasks with 1,000 due (evaluate, claim,
//!   commit — timed from outside, as a caller sees it) beside one batched
//!   `INSERT` of 1,000 slot rows with its commit — target ≤ 3×;
//! * the same pulse with 50 and with 100 dynamic tasks among the tasks, whose
//!   `should-run` answers at once — target (50) ≤ 3× the pulse without them;
//! * the same pulse with a cold task cache (a new host every pulse);
//! * the same pulse with one dynamic task whose `should-run` sleeps past the
//!   call deadline — target ≤ deadline + 100 ms, and its cron slots claimed
//!   no later than without it;
//! * registering a 10,000-task plugin (validation and storage, everything an
//!   upload does beyond `describe()`) beside one multi-row upsert of 10,000
//!   rows — target ≤ 1 s.
//!
//! Needs PostgreSQL at `PULSEHOST_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; each variant creates and drops
//! its own database) and the fixture components (`cargo build-plugins`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use diesel::RunQueryDsl;
use pulsehost::plugin::{Limits, PluginHost, Rules};
use pulsehost::pulse::{PulseAnswer, PulseConfig, Pulser};
use pulsehost::spec::*;
use pulsehost::store::plugins::NewPluginVersion;
use pulsehost::store::Db;
use support::{median, task, BenchDb};

const TASKS: usize = 10_000;
const DUE: usize = 1_000;
const ROUNDS: usize = 7;
const CALL_DEADLINE: Duration = Duration::from_millis(1000);

/// How a pulse variant's plugin looks.
#[derive(Clone, Copy)]
struct Variant {
    dynamic: usize,
    sleeper: bool,
    cold: bool,
}

/// Median wall time of a pulse, and median time until its cron slots were claimed.
struct Timing {
    pulse_ms: f64,
    claimed_ms: f64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain = runtime.block_on(variant(Variant {
        dynamic: 0,
        sleeper: false,
        cold: false,
    }));
    let insert_ms = runtime.block_on(baseline_insert());
    let with_50 = runtime.block_on(variant(Variant {
        dynamic: 50,
        sleeper: false,
        cold: false,
    }));
    let with_100 = runtime.block_on(variant(Variant {
        dynamic: 100,
        sleeper: false,
        cold: false,
    }));
    let cold = runtime.block_on(variant(Variant {
        dynamic: 0,
        sleeper: false,
        cold: true,
    }));
    let sleeping = runtime.block_on(variant(Variant {
        dynamic: 0,
        sleeper: true,
        cold: false,
    }));
    let (uploads, upsert_ms) = runtime.block_on(upload());
    println!("pulse_tasks: {TASKS} tasks");
    println!("pulse_due: {DUE} slots");
    println!(
        "pulse_evaluate_claim_commit: {:.2} ms (median of {ROUNDS})",
        plain.pulse_ms
    );
    println!("baseline_batched_insert_1000_rows_with_commit: {insert_ms:.2} ms (median of {ROUNDS})");
    println!(
        "pulse_vs_baseline_ratio: {:.2} x (target <= 3)",
        plain.pulse_ms / insert_ms
    );
    println!("pulse_with_50_dynamic: {:.2} ms", with_50.pulse_ms);
    println!(
        "pulse_with_50_dynamic_vs_without: {:.2} x (target <= 3)",
        with_50.pulse_ms / plain.pulse_ms
    );
    println!("pulse_with_100_dynamic: {:.2} ms", with_100.pulse_ms);
    println!(
        "pulse_with_100_dynamic_vs_without: {:.2} x",
        with_100.pulse_ms / plain.pulse_ms
    );
    println!("pulse_cold_task_cache: {:.2} ms", cold.pulse_ms);
    println!(
        "pulse_cold_vs_warm_ratio: {:.2} x",
        cold.pulse_ms / plain.pulse_ms
    );
    println!(
        "pulse_with_should_run_sleeping_past_deadline: {:.2} ms (deadline {} ms; target <= {} ms)",
        sleeping.pulse_ms,
        CALL_DEADLINE.as_millis(),
        CALL_DEADLINE.as_millis() + 100
    );
    println!("cron_claimed_after_without_sleeper: {:.2} ms", plain.claimed_ms);
    println!("cron_claimed_after_with_sleeper: {:.2} ms", sleeping.claimed_ms);
    println!(
        "upload_10000_tasks_beyond_describe: {:.2} ms (target <= 1000)",
        uploads[0]
    );
    println!(
        "reupload_10000_tasks_beyond_describe: {:.2} ms (target <= 1000)",
        uploads[1]
    );
    println!("baseline_multirow_upsert_10000_rows: {upsert_ms:.2} ms");
}

/// The fixture whose `should-run` answers at once for every task, except those
/// named `sleeper-*`, for which it sleeps a minute.
fn sleepy_component() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/fixture-sleepy.wasm");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo build-plugins` first", path.display()))
}

fn cron_task(i: usize) -> TaskSpec {
    let expression = if i < DUE {
        "* * * * * *".to_string()
    } else {
        format!("{} {} 1 1 *", i % 60, i % 24)
    };
    task(
        &format!("task-{i:05}"),
        Schedule::Cron {
            expression,
            timezone: None,
            jitter_ms: None,
        },
        Overlap::Skip,
    )
}

fn plugins() -> PluginHost {
    PluginHost::new(
        Limits {
            max_component_bytes: 64 << 20,
            memory_bytes: 64 << 20,
            call_timeout: CALL_DEADLINE,
            max_manifest_bytes: 64 << 20,
            cache_bytes: 512 << 20,
            pooling: false,
        },
        None,
    )
    .unwrap()
}

fn config() -> PulseConfig {
    PulseConfig {
        catch_up_max: 100,
        on_time: chrono::Duration::seconds(90),
        idempotency_window: chrono::Duration::hours(24),
    }
}

async fn variant(v: Variant) -> Timing {
    let scratch = BenchDb::create("pulse");
    let db = Db::connect(&scratch.url).unwrap();
    let mut tasks: Vec<TaskSpec> = (0..TASKS - v.dynamic).map(cron_task).collect();
    let dynamic = |name: String| task(&name, Schedule::Dynamic { interval_secs: 1 }, Overlap::Skip);
    tasks.extend((0..v.dynamic).map(|i| dynamic(format!("dyn-{i:03}"))));
    if v.sleeper {
        tasks.push(dynamic("sleeper-1".into()));
    }
    let component = if v.dynamic > 0 || v.sleeper {
        sleepy_component()
    } else {
        b"bench".to_vec()
    };
    // Every schedule takes effect on a whole second, so each later whole second
    // makes exactly one slot of each every-second task due.
    let t0: DateTime<Utc> = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap();
    let sha = pulsehost::plugin::sha256_hex(&component);
    support::register(&db, "bench", tasks, component, t0).await;
    let host = plugins();
    let mut pulser = Pulser::new(db.clone(), host.clone(), config());
    // Round 0 starts loading the component and fills the caches; it is not
    // timed, and the rounds wait until the component is ready.
    pulse_once(&pulser, t0 + chrono::Duration::seconds(1)).await;
    if v.dynamic > 0 || v.sleeper {
        loop {
            match host.readiness(&sha) {
                pulsehost::plugin::Readiness::Ready => break,
                pulsehost::plugin::Readiness::Failed(e) => panic!("the bench component failed: {e}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }
    let (mut pulses, mut claims) = (Vec::new(), Vec::new());
    for round in 2..=ROUNDS + 1 {
        if v.cold {
            pulser = Pulser::new(db.clone(), host.clone(), config());
        }
        let (pulse_ms, claimed_ms) = pulse_once(&pulser, t0 + chrono::Duration::seconds(round as i64)).await;
        pulses.push(pulse_ms);
        claims.push(claimed_ms);
    }
    Timing {
        pulse_ms: median(pulses),
        claimed_ms: median(claims),
    }
}

/// One pulse at `at`: its wall time, and when its cron slots were claimed (committed).
async fn pulse_once(pulser: &Pulser, at: DateTime<Utc>) -> (f64, f64) {
    let claimed = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let mark = {
        let claimed = Arc::clone(&claimed);
        move || {
            claimed.lock().unwrap().get_or_insert(start.elapsed());
        }
    };
    let answer = pulser
        .pulse_at(Some("bench".into()), None, Some(at), &mark)
        .await
        .unwrap();
    let total = start.elapsed();
    let PulseAnswer::Fresh(report) = answer else {
        panic!("a fresh pulse")
    };
    // Nothing executes here, so from the second round on the default overlap
    // policy (skip) records the due slots as skipped: still 1,000 claims.
    assert!(
        report.claimed.len() + report.skipped.len() >= DUE,
        "{} claimed",
        report.claimed.len()
    );
    let claimed = claimed.lock().unwrap().unwrap_or(total);
    (total.as_secs_f64() * 1000.0, claimed.as_secs_f64() * 1000.0)
}

/// The same 1,000 slot rows in one statement (autocommit: its commit included).
async fn baseline_insert() -> f64 {
    let scratch = BenchDb::create("insert");
    let db = Db::connect(&scratch.url).unwrap();
    let t0: DateTime<Utc> = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap();
    support::register(
        &db,
        "bench",
        (0..TASKS).map(cron_task).collect(),
        b"bench".to_vec(),
        t0,
    )
    .await;
    let mut conn = <diesel::PgConnection as diesel::Connection>::establish(&scratch.url).unwrap();
    let mut times = Vec::new();
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
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    median(times)
}

/// Validating and registering a 10,000-task plugin, beside one multi-row
/// upsert of 10,000 comparable rows.
async fn upload() -> (Vec<f64>, f64) {
    let scratch = BenchDb::create("upload");
    let db = Db::connect(&scratch.url).unwrap();
    let manifest = Manifest {
        name: "bench".into(),
        version: "1".into(),
        description: String::new(),
        tasks: (0..TASKS).map(cron_task).collect(),
    };
    let rules = Rules {
        binary_dirs: pulsehost::exec::BinaryDirs::new(vec!["/bin".into(), "/usr/bin".into()]),
        max_tasks: TASKS,
    };
    let manifest = Arc::new(manifest);
    let mut uploads = Vec::new();
    // The first upload inserts every task; the second updates every one.
    for _ in 0..2 {
        let manifest = Arc::clone(&manifest);
        let start = Instant::now();
        let problems = pulsehost::plugin::validate::manifest(&manifest, &rules);
        assert!(problems.is_empty(), "{problems:?}");
        db.run(move |tx| {
            let new = NewPluginVersion {
                sha256: "bench",
                component: b"bench",
                wit_package: "bench",
                manifest: &manifest,
                keep_versions: 10,
            };
            pulsehost::pulse::register(tx, &new)
        })
        .await
        .unwrap();
        uploads.push(start.elapsed().as_secs_f64() * 1000.0);
    }

    let mut conn = <diesel::PgConnection as diesel::Connection>::establish(&scratch.url).unwrap();
    diesel::sql_query(
        "CREATE TABLE upsert_baseline (name TEXT PRIMARY KEY, expression TEXT, definition JSONB)",
    )
    .execute(&mut conn)
    .unwrap();
    let start = Instant::now();
    diesel::sql_query(
        "INSERT INTO upsert_baseline SELECT 'task-' || i, i || ' * * * *', \
             jsonb_build_object('name', 'task-' || i, 'steps', jsonb_build_array(jsonb_build_object('name', 'true'))) \
         FROM generate_series(1, 10000) AS i \
         ON CONFLICT (name) DO UPDATE SET expression = EXCLUDED.expression, definition = EXCLUDED.definition",
    )
    .execute(&mut conn)
    .unwrap();
    (uploads, start.elapsed().as_secs_f64() * 1000.0)
}
