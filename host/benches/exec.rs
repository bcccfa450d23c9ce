//! Executor benchmarks. Prints `name: value unit` lines:
//!
//! * host overhead per trivial step (`/bin/true` through `exec::run`) beside a
//!   bare spawn of the same program doing the same work — its own process
//!   group, the same cleared environment, stdout and stderr piped and read to
//!   the end, then waited for — target ≤ 1.5×;
//! * the same step sandboxed (its cgroups made, joined, measured and removed,
//!   PID and mount namespaces, the step user) beside the same bare spawn —
//!   target ≤ 2×;
//! * sustained trivial runs per second through the runner with every run and
//!   step recorded in PostgreSQL, every step sandboxed as the host probes this
//!   machine — target ≥ 300/s — beside the bare spawn rate;
//! * host RSS growth while a step writes 1 GiB to stdout — target ≤ cap + 16 MiB.
//!
//! The three step figures are measured in interleaved rounds (bare, host,
//! sandboxed, ten times over, after a warm-up of each), so that a change in
//! the machine's load during the run weighs on each alike.
//!
//! `PULSEHOST_BENCH_SANDBOX_OFF` (protection names, comma-separated) leaves
//! protections off, to see what each costs.
//!
//! Needs PostgreSQL at `PULSEHOST_BENCH_DATABASE_URL` (default: the test
//! server, `postgres://postgres@127.0.0.1:5432/postgres`); creates and drops its
//! own database.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulsehost::exec::sandbox::{Limits, Policy, ProbeOptions, Sandbox};
use pulsehost::exec::{self, ProcessSpec, Program};
use pulsehost::runner::{Runner, RunnerConfig};
use pulsehost::spec::*;
use pulsehost::store::Db;
use tokio_util::sync::CancellationToken;

const SPAWNS: u32 = 500;
const ROUNDS: u32 = 10;
const RUNS: usize = 2000;
const FLOOD_BYTES: u64 = 1 << 30;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = probed();
    let (bare, host, sandboxed) = runtime.block_on(step_figures(&sandbox));
    println!("exec_bare_spawn_piped_wait: {bare:.1} us");
    println!("exec_host_step: {host:.1} us");
    println!("exec_host_overhead_ratio: {:.2} x (target <= 1.5)", host / bare);
    println!(
        "exec_sandboxed_step: {sandboxed:.1} us (plan: {})",
        plan_of(&sandbox)
    );
    println!(
        "exec_sandboxed_overhead_ratio: {:.2} x (target <= 2)",
        sandboxed / bare
    );
    println!("bare_spawns_per_second: {:.0} /s", 1e6 / bare);
    println!(
        "recorded_runs_per_second: {:.0} /s (target >= 300)",
        runtime.block_on(runs_per_second())
    );
    let cap = 1 << 20;
    let growth = runtime.block_on(rss_growth_during_flood(cap));
    println!("flood_stdout_bytes: {} MiB", FLOOD_BYTES >> 20);
    println!(
        "rss_growth_during_flood: {:.1} MiB (target <= {:.1})",
        growth,
        cap as f64 / 1048576.0 + 16.0
    );
    sandbox.forget_host(&host_id());
}

/// The host id the benchmark's sandbox names its cgroups after.
fn host_id() -> String {
    format!("bench-{}", std::process::id())
}

/// Mean microseconds of a bare spawn, a host step and a sandboxed step, each
/// over `SPAWNS` in `ROUNDS` interleaved rounds after a warm-up round.
async fn step_figures(sandbox: &Sandbox) -> (f64, f64, f64) {
    let per_round = SPAWNS / ROUNDS;
    let (mut bare, mut host, mut sandboxed) = (0.0, 0.0, 0.0);
    for round in 0..=ROUNDS {
        let figures = (
            bare_spawn_us(per_round),
            host_spawn_us(per_round).await,
            sandboxed_spawn_us(sandbox, round, per_round).await,
        );
        // Round 0 warms up (the sandbox's first cgroups are made then).
        if round > 0 {
            bare += figures.0 / f64::from(ROUNDS);
            host += figures.1 / f64::from(ROUNDS);
            sandboxed += figures.2 / f64::from(ROUNDS);
        }
    }
    sandbox.forget_run(1);
    (bare, host, sandboxed)
}

fn bare_spawn_us(spawns: u32) -> f64 {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let start = Instant::now();
    for _ in 0..spawns {
        let mut child = std::process::Command::new("/bin/true")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
        assert!(child.wait().unwrap().success());
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(spawns)
}

fn trivial(program: &str, args: &[&str], cap: usize) -> ProcessSpec {
    ProcessSpec {
        program: Program::Executable(PathBuf::from(program)),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: PathBuf::from("/"),
        stdin: None,
        timeout: Duration::from_secs(600),
        grace: Duration::from_secs(1),
        output_cap: cap,
        confinement: None,
        rolling: false,
        terminal: false,
    }
}

async fn host_spawn_us(spawns: u32) -> f64 {
    let spec = trivial("/bin/true", &[], 1 << 20);
    let token = CancellationToken::new();
    let start = Instant::now();
    for _ in 0..spawns {
        let outcome = exec::run(&spec, &token).await;
        assert_eq!(outcome.exit_code, Some(0));
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(spawns)
}

/// The sandbox this machine gives, as the host probes it at start-up.
fn probed() -> Sandbox {
    Sandbox::probe(&ProbeOptions {
        host_id: host_id(),
        create_user: true,
        off: protections_off(),
        ..ProbeOptions::default()
    })
    .unwrap()
}

/// Protections left off to see what each costs:
/// `PULSEHOST_BENCH_SANDBOX_OFF=pid_namespace,cgroup,usage,process_limit`.
fn protections_off() -> Vec<pulsehost::exec::sandbox::Protection> {
    let listed = std::env::var("PULSEHOST_BENCH_SANDBOX_OFF").unwrap_or_default();
    let names = listed.split(',').map(str::trim).filter(|s| !s.is_empty());
    names.map(|name| name.parse().unwrap()).collect()
}

fn plan_of(sandbox: &Sandbox) -> String {
    let plan = sandbox
        .confine(0, "plan", &Limits::default(), Policy::BestEffort)
        .unwrap()
        .plan
        .clone();
    let applied: Vec<&str> = plan.applied.iter().map(|p| p.as_str()).collect();
    applied.join(", ")
}

/// The same trivial step, each time confined as the host confines a step: in
/// cgroups of its own (its `pids` cgroup made, joined, measured and removed;
/// the others the host's reused cells), a PID and mount namespace, as the
/// step user.
async fn sandboxed_spawn_us(sandbox: &Sandbox, round: u32, spawns: u32) -> f64 {
    let token = CancellationToken::new();
    let limits = Limits {
        processes: Some(1024),
        ..Limits::default()
    };
    let start = Instant::now();
    for i in 0..spawns {
        let mut spec = trivial("/bin/true", &[], 1 << 20);
        spec.confinement = Some(
            sandbox
                .confine(1, &format!("step-{round}-{i}"), &limits, Policy::BestEffort)
                .unwrap(),
        );
        let outcome = exec::run(&spec, &token).await;
        assert_eq!(outcome.exit_code, Some(0), "{:?}", outcome.error);
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(spawns)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn rss_growth_during_flood(cap: usize) -> f64 {
    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let spec = trivial(
        "/usr/bin/head",
        &["-c", &FLOOD_BYTES.to_string(), "/dev/zero"],
        cap,
    );
    let outcome = exec::run(&spec, &CancellationToken::new()).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(outcome.stdout.total, FLOOD_BYTES);
    assert!(outcome.stdout.truncated);
    (peak.load(Ordering::Relaxed).saturating_sub(before)) as f64 / 1024.0
}

async fn runs_per_second() -> f64 {
    let db = support::BenchDb::create("exec");
    measure_runs(&db.url).await
}

async fn measure_runs(url: &str) -> f64 {
    let db = Db::connect(url).unwrap();
    let noop = support::task("noop", Schedule::Manual, Overlap::Allow);
    support::register(&db, "bench", vec![noop], b"bench".to_vec(), chrono::Utc::now()).await;
    // Queue every run before the clock starts.
    let base = chrono::Utc::now();
    db.run(move |tx| {
        use pulsehost::store::pulses::{claim_and_record, insert_pulse, SlotCandidate};
        let (_, task) = pulsehost::store::plugins::list_tasks(tx)?.remove(0);
        let pulse = insert_pulse(tx, "manual", Some("bench"), None, base, 0, true)?.unwrap_or_default();
        let candidates: Vec<SlotCandidate> = (0..RUNS)
            .map(|i| SlotCandidate {
                task_id: task.id,
                scheduled_for: base + chrono::Duration::milliseconds(i as i64),
                plugin_version_id: task.plugin_version_id,
                definition_id: task.definition_id,
                status: "queued".into(),
                priority: 0,
                skip_reason: None,
                start_deadline: None,
                not_before: None,
            })
            .collect();
        claim_and_record(tx, pulse, "manual", base, &candidates, false)
    })
    .await
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = RunnerConfig {
        retention: pulsehost::runner::Retention {
            days: 30,
            missed_days: 30,
            every: std::time::Duration::from_secs(3600),
        },
        host_id: "bench".into(),
        machine: "bench".into(),
        data_dir: data_dir.path().to_path_buf(),
        max_concurrent_runs: 8,
        default_run_timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(1),
        output_cap_bytes: 1 << 20,
        env_allow: vec!["PATH".into()],
        binary_dirs: pulsehost::exec::BinaryDirs::new(vec!["/bin".into(), "/usr/bin".into()]),
        lease: Duration::from_secs(30),
        hook_failures_before_pause: 3,
        sandbox: Arc::new(probed()),
        step_limits: Limits::default(),
        resources: pulsehost::exec::resources::ResourceCache::new(
            data_dir.path().join("resources"),
            1 << 20,
            1 << 20,
        ),
        service_lease: None,
        serverless: false,
        capacity: pulsehost::runner::policy::Room {
            memory_bytes: i64::MAX,
            cpu_millicores: i64::MAX,
        },
    };
    let runner = Runner::new(db.clone(), config, "python3".into());
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let dispatcher = runner.start(shutdown.clone()).await.unwrap();
    runner.wake();
    loop {
        let finished: i64 = db
            .run(|tx| pulsehost::store::runs::count_with_status(tx, "succeeded"))
            .await
            .unwrap();
        if finished as usize >= RUNS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = RUNS as f64 / start.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = dispatcher.await;
    rate
}
