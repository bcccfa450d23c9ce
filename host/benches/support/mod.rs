//! What both benchmarks share: a scratch database on the PostgreSQL named by
//! `PULSEHOST_BENCH_DATABASE_URL` (default: the test server), dropped with it,
//! and tasks registered straight through the store.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use diesel::{Connection, PgConnection, RunQueryDsl};
use pulsehost::spec::*;
use pulsehost::store::plugins::{register_version, NewPluginVersion, RegisteredVersion};
use pulsehost::store::Db;

/// A database that lives as long as this value.
pub struct BenchDb {
    admin: PgConnection,
    name: String,
    /// Its connection URL.
    pub url: String,
}

impl BenchDb {
    /// Creates `pulsehost_bench_<label>_<pid>`.
    pub fn create(label: &str) -> BenchDb {
        let admin_url = std::env::var("PULSEHOST_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("pulsehost_bench_{label}_{}", std::process::id());
        let mut admin = PgConnection::establish(&admin_url).expect("bench PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap();
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        BenchDb { admin, name, url }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let _ =
            diesel::sql_query(format!("DROP DATABASE {} WITH (FORCE)", self.name)).execute(&mut self.admin);
    }
}

/// A task with one `/bin/true` step.
pub fn task(name: &str, schedule: Schedule, overlap: Overlap) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        description: String::new(),
        schedule,
        enabled: true,
        timeout_ms: None,
        priority: 0,
        retry: None,
        overlap,
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
                working_dir: Some("/tmp".into()),
                timeout_ms: None,
                stdin_json: None,
                limits: StepLimits::default(),
                resources: vec![],
                terminal_output: false,
                stdin_schema: None,
                stdout_schema: None,
            },
        }],
        default_limits: StepLimits::default(),
        sandbox_policy: SandboxPolicy::default(),
        reservation: None,
        concurrency: None,
        alerts: vec![],
    }
}

/// Registers `tasks` as plugin `name` (with `component` as its bytes),
/// every schedule taking effect at `since`.
pub async fn register(
    db: &Db,
    name: &str,
    tasks: Vec<TaskSpec>,
    component: Vec<u8>,
    since: DateTime<Utc>,
) -> RegisteredVersion {
    let manifest = Manifest {
        name: name.into(),
        version: "1".into(),
        description: String::new(),
        tasks,
    };
    let sha = pulsehost::plugin::sha256_hex(&component);
    db.run(move |tx| {
        let since = vec![since; manifest.tasks.len()];
        let new = NewPluginVersion {
            sha256: &sha,
            component: &component,
            wit_package: "bench",
            manifest: &manifest,
            keep_versions: 10,
        };
        register_version(tx, &new, &since)
    })
    .await
    .unwrap()
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
