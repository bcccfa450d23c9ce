//! `cargo bench -p pulsehost --bench plugin`: for a Rust, a JavaScript
//! (componentize-js) and a Python (componentize-py) plugin, side by side:
//!
//! * compiling a component vs loading its persisted artifact (both then link
//!   it: the same work apart from the compile);
//! * a warm `should-run` call, instantiation included;
//! * restarting a host whose Python plugin has an active dynamic task: the
//!   first pulse's duration and how long until the task is asked, with the
//!   compiled cache on disk vs without it (compiling from PostgreSQL).
//!
//! The JavaScript and Python plugins are scaffolded and built with this
//! pulsehost's own `plugin new` / `plugin build` before anything is timed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulsehost::plugin::{sha256_hex, Limits, PluginHost};
use pulsehost::spec::RunContext;
use support::{median, BenchDb};

const BIN: &str = env!("CARGO_BIN_EXE_pulsehost");
const CALLS: usize = 500;
const ADMIN: &str = "bench-admin";

fn main() {
    let work = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rust = std::fs::read(repo.join("target/plugins/hello.wasm"))
        .or_else(|_| std::fs::read(plugins_dir().join("hello.wasm")))
        .expect("target/plugins/hello.wasm: run `cargo build-plugins` first");
    let js = build(work.path(), "js");
    let python = build(work.path(), "python");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (label, bytes, rounds) in [("rust", rust, 5), ("js", js, 3), ("python", python.clone(), 1)] {
        runtime.block_on(compile_and_load(label, Arc::from(bytes), rounds, work.path()));
    }
    refuse_early();
    restart(&python, work.path());
}

/// Refusing a 30 MB component that imports `wasi:http`, from its bytes alone,
/// beside hashing the same bytes (which every upload does first).
fn refuse_early() {
    let mut bytes = wat::parse_str(r#"(component (import "wasi:http/types@0.2.3" (instance)))"#).unwrap();
    let padding = 30usize << 20;
    let mut section = vec![0u8];
    let mut len = padding + 8;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        section.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    section.extend_from_slice(b"\x07padding");
    section.resize(section.len() + padding, b' ');
    bytes.extend_from_slice(&section);
    let start = Instant::now();
    let refused = pulsehost::plugin::surface::check(&bytes);
    let check = ms(start);
    assert!(matches!(
        refused,
        Err(pulsehost::plugin::PluginError::UnsupportedImports { .. })
    ));
    let start = Instant::now();
    let _ = sha256_hex(&bytes);
    let hash = ms(start);
    println!("refuse_unsupported_imports_30mb: {check:.2} ms (target <= 100 ms; sha256 of the same bytes: {hash:.1} ms)");
}

/// Where `cargo build-plugins` puts components when the target dir is shared.
fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

/// Scaffolds and builds the example plugin of `lang`; its bytes.
fn build(work: &Path, lang: &str) -> Vec<u8> {
    let name = format!("bench-{lang}");
    let ok = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    ok(Command::new(BIN)
        .current_dir(work)
        .args(["plugin", "new", &name, "--lang", lang]));
    let out = Command::new(BIN)
        .current_dir(work.join(&name))
        .args(["plugin", "build"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The tools print their own lines; the build's last line is the component's path.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim().to_string();
    std::fs::read(path).unwrap()
}

fn host(artifacts: Option<PathBuf>) -> PluginHost {
    host_with(artifacts, false)
}

fn host_with(artifacts: Option<PathBuf>, pooling: bool) -> PluginHost {
    let limits = Limits {
        max_component_bytes: 64 << 20,
        memory_bytes: 256 << 20,
        call_timeout: Duration::from_secs(30),
        max_manifest_bytes: 16 << 20,
        cache_bytes: 1 << 30,
        pooling,
    };
    PluginHost::new(limits, artifacts).unwrap()
}

/// Compile vs load, then warm `should-run` calls.
async fn compile_and_load(label: &str, bytes: Arc<[u8]>, rounds: usize, work: &Path) {
    let sha = sha256_hex(&bytes);
    let fetch = |bytes: &Arc<[u8]>| {
        let bytes = bytes.to_vec();
        Box::new(move || Ok(Some(bytes))) as pulsehost::plugin::FetchBytes
    };
    let mut compiles = Vec::new();
    for _ in 0..rounds {
        let fresh = host(None);
        let start = Instant::now();
        fresh.warm(&sha, fetch(&bytes)).await.unwrap();
        compiles.push(ms(start));
    }
    let dir = work.join(format!("artifacts-{label}"));
    host(Some(dir.clone())).warm(&sha, fetch(&bytes)).await.unwrap();
    let mut loads = Vec::new();
    for _ in 0..5 {
        let fresh = host(Some(dir.clone()));
        let start = Instant::now();
        fresh
            .warm(&sha, Box::new(|| panic!("loaded from disk, never fetched")))
            .await
            .unwrap();
        loads.push(ms(start));
    }
    let (compile, load) = (median(compiles), median(loads));
    println!("compile_{label}: {compile:.1} ms ({} bytes)", bytes.len());
    println!("load_persisted_{label}: {load:.2} ms");
    println!("load_speedup_{label}: {:.1} x (target >= 20 x)", compile / load);

    let mut per_call = Vec::new();
    for pooling in [false, true] {
        let ready = host_with(Some(dir.clone()), pooling);
        ready.warm(&sha, fetch(&bytes)).await.unwrap();
        per_call.push(should_run_micros(&ready, &sha).await);
    }
    println!(
        "should_run_warm_{label}: {:.1} us per call with the pooling allocator, {:.1} us without \
         (instantiation included; target for rust <= 50 us)",
        per_call[1], per_call[0]
    );
}

/// Mean time of a warm `should-run` call, instantiation included.
async fn should_run_micros(host: &PluginHost, sha: &str) -> f64 {
    let ctx = RunContext {
        task: "catch-up".into(),
        slot_id: "1@2026-11-23T00:00:00+00:00".into(),
        scheduled_for_ms: 0,
        now_ms: 0,
        attempt: 1,
        previous: None,
    };
    host.should_run(sha, &ctx).await.unwrap();
    let start = Instant::now();
    for _ in 0..CALLS {
        host.should_run(sha, &ctx).await.unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / CALLS as f64
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// A `pulsehost serve` on `url` keeping its compiled artifacts in `compiled`.
fn serve(db_url: &str, data: &Path, compiled: &Path, port: u16) -> Child {
    Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("PULSEHOST_LISTEN", format!("127.0.0.1:{port}"))
        .env("PULSEHOST_DATA_DIR", data)
        .env("PULSEHOST_COMPILED_DIR", compiled)
        .env("PULSEHOST_ADMIN_TOKEN", ADMIN)
        .env("PULSEHOST_PLUGIN_CALL_TIMEOUT_MS", "30000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn call(method: &str, url: &str, body: Option<&[u8]>) -> serde_json::Value {
    let req = ureq::request(method, url)
        .set("Authorization", &format!("Bearer {ADMIN}"))
        .timeout(Duration::from_secs(120));
    let resp = match body {
        Some(b) => req.send_bytes(b),
        None => req.send_bytes(&[]),
    };
    resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"))
        .into_json()
        .unwrap()
}

fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "the host did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Restart-to-first-pulse with the Python plugin's dynamic task active, with
/// and without the compiled artifact on disk.
fn restart(python: &[u8], work: &Path) {
    for (label, keep_artifacts) in [("persisted", true), ("no_cache", false)] {
        let db = BenchDb::create("plugin");
        let data = work.join(format!("data-{label}"));
        let compiled = work.join(format!("compiled-{label}"));
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let first = serve(&db.url, &data, &compiled, port);
        wait_healthy(&base);
        call("POST", &format!("{base}/v1/plugins"), Some(python));
        stop(first);
        if !keep_artifacts {
            let _ = std::fs::remove_dir_all(&compiled);
        }
        let started = Instant::now();
        let second = serve(&db.url, &data, &compiled, port);
        wait_healthy(&base);
        let up = ms(started);
        let pulse_start = Instant::now();
        let mut pulse = call("POST", &format!("{base}/v1/pulse"), None);
        let first_pulse = ms(pulse_start);
        let mut pulses = 1;
        while !claimed(&pulse, "catch-up") {
            std::thread::sleep(Duration::from_millis(20));
            pulse = call("POST", &format!("{base}/v1/pulse"), None);
            pulses += 1;
        }
        let asked = ms(started);
        stop(second);
        println!("restart_{label}_python_serving: {up:.0} ms");
        println!("restart_{label}_python_first_pulse: {first_pulse:.1} ms (target <= 1000 ms)");
        println!("restart_{label}_python_dynamic_asked: {asked:.0} ms after start ({pulses} pulses)");
    }
}

fn claimed(pulse: &serde_json::Value, task: &str) -> bool {
    pulse["claimed"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["task"] == task)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
