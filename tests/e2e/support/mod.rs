//! Shared test fixtures: a private database per test on the real PostgreSQL, a
//! real `pulsehost serve` process on a free port, and the components built from
//! `plugins/` by `cargo build-plugins`.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod db;
pub mod procs;
pub mod receiver;
pub mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cluster::Cluster;
pub use db::TestDb;
pub use server::Server;

/// The admin token every test server uses.
pub const ADMIN: &str = "test-admin-token";
/// The pulse token every test server uses.
pub const PULSE: &str = "test-pulse-token";
/// The read token every test server uses.
pub const READ: &str = "test-read-token";

/// The bytes of the component built from `plugins/<dir>` (crate `name`).
pub fn component(name: &str) -> Vec<u8> {
    let path = component_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): build the plugins first with `cargo build-plugins`",
            path.display()
        )
    })
}

/// Where `cargo build-plugins` puts the component of crate `name`.
pub fn component_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("plugins")
        .join(format!("{name}.wasm"))
}

/// Polls `f` every 50 ms until it returns Some, for at most `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every run a pulse's answer lists for `task`, whatever became of it
/// (claimed, skipped or missed).
pub fn recorded_in<'a>(pulse: &'a serde_json::Value, task: &str) -> Vec<&'a serde_json::Value> {
    ["claimed", "skipped", "missed"]
        .iter()
        .flat_map(|list| pulse[*list].as_array().into_iter().flatten())
        .filter(|r| r["task"] == task)
        .collect()
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Where Debian's `libfaketime` lives; tests that run a host with a skewed
/// clock preload it (`tests/setup.sh` installs it).
pub fn libfaketime() -> String {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .map(|path| path.to_string_lossy().into_owned())
        .expect("libfaketime.so.1 is missing: install Debian's libfaketime (tests/setup.sh does)")
}

/// Runs the `pulsehost` CLI against `server` with the admin token only.
pub fn cli_output(server: &Server, args: &[&str]) -> std::process::Output {
    std::process::Command::new(server::binary())
        .args(args)
        .env("PULSEHOST_URL", &server.url)
        .env("PULSEHOST_ADMIN_TOKEN", ADMIN)
        .env_remove("PULSEHOST_READ_TOKEN")
        .env_remove("PULSEHOST_PULSE_TOKEN")
        .output()
        .expect("run the pulsehost CLI")
}

/// [`cli_output`], asserting success; its standard output.
pub fn cli(server: &Server, args: &[&str]) -> String {
    let out = cli_output(server, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pulsehost {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
