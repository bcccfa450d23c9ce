//! The operator's reads over 1,000,000 recorded runs. Prints `name: value unit`
//! lines, each beside a baseline measured in the same run on the same data:
//!
//! * a page of 50 runs (`GET /v1/runs`'s query, through the store) at the top
//!   and 90% deep, unfiltered and with each single filter, beside the same
//!   query paged with OFFSET — target ≤ 10 ms;
//! * statistics of one task and of all tasks, beside the same numbers computed
//!   from the runs themselves — target ≤ 50 ms;
//! * a `/metrics` scrape and every dashboard page, over HTTP from the real
//!   binary — targets ≤ 20 ms and ≤ 100 ms — beside counting runs by task and
//!   status from the runs themselves.
//!
//! The data: 200 tasks (one tagged `rare`, a tenth tagged `common`), a run per
//! slot spread over the last 7 days (90% succeeded, 4% failed, 1% timed out, 5%
//! missed), 10,080 pulses. Generating it takes a minute and is not timed.
//! Needs PostgreSQL at `PULSEHOST_BENCH_DATABASE_URL` (default: the test server).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use pulsehost::spec::*;
use pulsehost::store::history::{self, RunFilter};
use pulsehost::store::{stats, Db};
use support::{median, task, BenchDb};

const RUNS: i64 = 1_000_000;
const TASKS: usize = 200;
const CHUNK: i64 = 100_000;
const ROUNDS: usize = 15;

fn main() {
    let scratch = BenchDb::create("history");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = Db::connect(&scratch.url).unwrap();
    let generated = Instant::now();
    runtime.block_on(generate(&db, &scratch.url));
    // What every host's housekeeping does every few seconds, all at once here.
    while db.run_blocking(stats::roll_up).unwrap() > 0 {}
    eprintln!(
        "generated {RUNS} runs in {:.0} s",
        generated.elapsed().as_secs_f64()
    );
    let mut conn = PgConnection::establish(&scratch.url).unwrap();
    diesel::sql_query("VACUUM ANALYZE").execute(&mut conn).unwrap();
    pages(&db, &mut conn);
    statistics(&db, &mut conn);
    over_http(&scratch.url, &db, &mut conn);
}

async fn generate(db: &Db, url: &str) {
    let mut tasks: Vec<TaskSpec> = (0..TASKS)
        .map(|i| {
            task(
                &format!("task-{i:03}"),
                Schedule::Cron {
                    expression: "* * * * *".into(),
                    timezone: None,
                    jitter_ms: None,
                },
                Overlap::Allow,
            )
        })
        .collect();
    tasks[7].tags = vec!["rare".into()];
    for t in tasks.iter_mut().step_by(10) {
        t.tags.push("common".into());
    }
    support::register(db, "bench", tasks, b"bench".to_vec(), Utc::now()).await;
    let mut conn = PgConnection::establish(url).unwrap();
    for start in (0..RUNS).step_by(CHUNK as usize) {
        diesel::sql_query(format!(
            "WITH ids AS (SELECT array_agg(id ORDER BY id) AS a FROM tasks), \
             g AS (SELECT i, (SELECT a[1 + i % cardinality(a)] FROM ids) AS tid, \
                   now() - interval '7 days' + i * (interval '7 days' / {RUNS}) AS at \
                   FROM generate_series({start}, {end}) i), \
             s AS (INSERT INTO slots (task_id, scheduled_for, trigger, created_at) \
                   SELECT tid, at, 'schedule', at FROM g RETURNING id, task_id, scheduled_for) \
             INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, status, scheduled_for, \
                   not_before, created_at, started_at, finished_at, lateness_ms, error) \
             SELECT s.id, s.task_id, t.plugin_version_id, t.definition_id, v.status, s.scheduled_for, \
                   s.scheduled_for, s.scheduled_for, \
                   CASE WHEN v.status <> 'missed' THEN s.scheduled_for + (s.id % 2000) * interval '1 ms' END, \
                   s.scheduled_for + (s.id % 2000) * interval '1 ms' + CASE WHEN v.status <> 'missed' \
                       THEN (100 + (s.id * 7919) % 60000) * interval '1 ms' ELSE interval '0' END, \
                   CASE WHEN v.status <> 'missed' THEN s.id % 2000 END, \
                   CASE WHEN v.status IN ('failed', 'timed_out') THEN 'step exited 1' END \
             FROM s JOIN tasks t ON t.id = s.task_id, \
             LATERAL (SELECT CASE WHEN s.id % 100 < 90 THEN 'succeeded' WHEN s.id % 100 < 94 THEN 'failed' \
                   WHEN s.id % 100 < 95 THEN 'timed_out' ELSE 'missed' END AS status) v",
            end = (start + CHUNK - 1).min(RUNS - 1),
        ))
        .execute(&mut conn)
        .unwrap();
    }
    diesel::sql_query(
        "INSERT INTO pulses (kind, received_at, errors, due, claimed, skipped, missed, duration_ms, \
             max_lateness_ms, complete) \
         SELECT 'pulse', now() - i * interval '1 minute', '[]', 30, 30, 0, 0, 12.5, (i * 37) % 4000, true \
         FROM generate_series(0, 10079) i",
    )
    .execute(&mut conn)
    .unwrap();
}

/// Median milliseconds of `f` over the rounds (after one untimed call).
fn time<T>(mut f: impl FnMut() -> T) -> f64 {
    f();
    median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// The listing's query with `where_sql`, paged by OFFSET (the naive way).
fn offset_page(conn: &mut PgConnection, where_sql: &str, offset: i64) -> Vec<i64> {
    diesel::sql_query(format!(
        "SELECT r.id FROM runs r JOIN tasks t ON t.id = r.task_id JOIN plugins p ON p.id = t.plugin_id \
         WHERE {where_sql} ORDER BY r.created_at DESC, r.id DESC LIMIT 50 OFFSET {offset}"
    ))
    .load::<Id>(conn)
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect()
}

fn count(conn: &mut PgConnection, where_sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!(
        "SELECT count(*) AS n FROM runs r JOIN tasks t ON t.id = r.task_id WHERE {where_sql}"
    ))
    .get_result::<N>(conn)
    .unwrap()
    .n
}

fn pages(db: &Db, conn: &mut PgConnection) {
    let task_id: i64 = diesel::sql_query("SELECT id FROM tasks WHERE name = 'task-042'")
        .get_result::<Id>(conn)
        .unwrap()
        .id;
    let now = Utc::now();
    let cases: Vec<(&str, RunFilter, String)> = vec![
        ("none", RunFilter::default(), "true".into()),
        (
            "task",
            RunFilter {
                task_id: Some(task_id),
                ..Default::default()
            },
            format!("r.task_id = {task_id}"),
        ),
        (
            "status",
            RunFilter {
                statuses: vec!["failed".into()],
                ..Default::default()
            },
            "r.status = 'failed'".into(),
        ),
        (
            "two_statuses",
            RunFilter {
                statuses: vec!["failed".into(), "timed_out".into()],
                ..Default::default()
            },
            "r.status IN ('failed', 'timed_out')".into(),
        ),
        (
            "tag_common",
            RunFilter {
                tag: Some("common".into()),
                ..Default::default()
            },
            "t.tags @> '{common}'".into(),
        ),
        (
            "tag_rare",
            RunFilter {
                tag: Some("rare".into()),
                ..Default::default()
            },
            "t.tags @> '{rare}'".into(),
        ),
        (
            "since_1d",
            RunFilter {
                since: Some(now - chrono::Duration::days(1)),
                ..Default::default()
            },
            format!(
                "r.created_at >= '{}'",
                (now - chrono::Duration::days(1)).to_rfc3339()
            ),
        ),
        (
            "until_6d_ago",
            RunFilter {
                until: Some(now - chrono::Duration::days(6)),
                ..Default::default()
            },
            format!(
                "r.created_at < '{}'",
                (now - chrono::Duration::days(6)).to_rfc3339()
            ),
        ),
        (
            "hide_missed",
            RunFilter {
                statuses: history::STATUSES
                    .iter()
                    .filter(|s| !matches!(**s, "missed" | "skipped"))
                    .map(|s| s.to_string())
                    .collect(),
                ..Default::default()
            },
            "r.status NOT IN ('missed', 'skipped')".into(),
        ),
    ];
    for (name, filter, where_sql) in cases {
        let matches = count(conn, &where_sql);
        let depth = (matches * 9 / 10).max(0);
        // The cursor of the page at 90% depth: the run just before it.
        let cursor = (depth > 0).then(|| offset_page(conn, &where_sql, depth - 1)[0]);
        for (at, before, offset) in [("top", None, 0), ("deep", cursor, depth)] {
            let filter = RunFilter {
                before,
                limit: 50,
                ..filter.clone()
            };
            let keyset = time(|| db.run_blocking(|tx| history::list_runs(tx, &filter)).unwrap());
            let naive = time(|| offset_page(conn, &where_sql, offset));
            println!("runs_page_{name}_{at}: {keyset:.2} ms");
            println!("runs_page_{name}_{at}_offset_baseline: {naive:.2} ms");
        }
    }
}

fn statistics(db: &Db, conn: &mut PgConnection) {
    let task_id: i64 = diesel::sql_query("SELECT id FROM tasks WHERE name = 'task-042'")
        .get_result::<Id>(conn)
        .unwrap()
        .id;
    let now = Utc::now();
    for (window, hours) in [("24h", 24), ("7d", 168)] {
        let one = time(|| {
            db.run_blocking(|tx| stats::read(tx, Some(task_id), hours, now))
                .unwrap()
        });
        let all = time(|| db.run_blocking(|tx| stats::read(tx, None, hours, now)).unwrap());
        let scan = |filter: String| {
            format!(
                "SELECT count(*) FILTER (WHERE status = 'succeeded')::float8 / nullif(count(*) FILTER (WHERE status IN \
                 ('succeeded','failed','timed_out')), 0) AS rate, \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS p50, \
                 percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS p95, \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY lateness_ms) AS l50 \
                 FROM runs WHERE finished_at >= now() - interval '{hours} hours' {filter}"
            )
        };
        let one_naive = time(|| {
            diesel::sql_query(scan(format!("AND task_id = {task_id}")))
                .execute(conn)
                .unwrap()
        });
        let all_naive = time(|| diesel::sql_query(scan(String::new())).execute(conn).unwrap());
        println!("stats_task_{window}: {one:.2} ms");
        println!("stats_task_{window}_scan_baseline: {one_naive:.2} ms");
        println!("stats_all_{window}: {all:.2} ms");
        println!("stats_all_{window}_scan_baseline: {all_naive:.2} ms");
    }
}

struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn over_http(url: &str, db: &Db, conn: &mut PgConnection) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let _host = Host(
        Command::new(env!("CARGO_BIN_EXE_pulsehost"))
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("PULSEHOST_LISTEN", format!("127.0.0.1:{port}"))
            .env("PULSEHOST_DATA_DIR", data.path())
            .env("PULSEHOST_ADMIN_TOKEN", "bench")
            .env("PULSEHOST_RETENTION_INTERVAL", "24h")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let started = Instant::now();
    while agent.get(&format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the host did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let login = agent
        .post(&format!("{base}/ui/login"))
        .send_form(&[("token", "bench")]);
    let cookie = match login {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
        Err(e) => panic!("{e}"),
    };
    let some_run = db
        .run_blocking(|tx| {
            history::list_runs(
                tx,
                &RunFilter {
                    limit: 1,
                    ..Default::default()
                },
            )
        })
        .unwrap()[0]
        .run
        .id;
    let get = |path: &str, auth: bool| {
        let mut req = agent.get(&format!("{base}{path}"));
        req = if auth {
            req.set("Authorization", "Bearer bench")
        } else {
            req.set("Cookie", &cookie)
        };
        let response = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response.into_string().unwrap().len()
    };
    println!("metrics_scrape: {:.2} ms", time(|| get("/metrics", true)));
    let totals = "SELECT task_id, status, count(*) FROM runs GROUP BY 1, 2";
    println!(
        "metrics_scrape_scan_baseline: {:.2} ms",
        time(|| diesel::sql_query(totals).execute(conn).unwrap())
    );
    println!("api_runs_top: {:.2} ms", time(|| get("/v1/runs?limit=50", true)));
    println!(
        "api_runs_failed_since_1h: {:.2} ms",
        time(|| get("/v1/runs?limit=50&status=failed,timed_out&since=1h", true))
    );
    for (name, path) in [
        ("overview", "/".to_owned()),
        ("tasks", "/ui/tasks".to_owned()),
        ("runs", "/ui/runs".to_owned()),
        (
            "runs_filtered",
            "/ui/runs?status=failed&status=timed_out&tag=common".to_owned(),
        ),
        ("run", format!("/ui/runs/{some_run}")),
        ("pulses", "/ui/pulses".to_owned()),
        ("plugins", "/ui/plugins".to_owned()),
    ] {
        println!("dashboard_{name}: {:.2} ms", time(|| get(&path, false)));
    }
}
