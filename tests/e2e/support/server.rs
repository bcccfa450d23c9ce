//! A real `pulsehost serve` process for one test, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{eventually, free_port, ADMIN, PULSE, READ};

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its data dir.
    pub data_dir: tempfile::TempDir,
    log: PathBuf,
}

/// The built binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pulsehost")
}

impl Server {
    /// Starts a server on `database_url` with test tokens and short limits.
    pub fn start(database_url: &str) -> Server {
        Self::start_with(Some(database_url), &[])
    }

    /// Starts a server; `None` uses the embedded database. `extra` adds variables.
    pub fn start_with(database_url: Option<&str>, extra: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::Builder::new()
            .prefix("pulsehost-test-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = data_dir.path().join("server.log");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .env_remove("DATABASE_URL")
            .env("PULSEHOST_LISTEN", format!("127.0.0.1:{port}"))
            .env("PULSEHOST_DATA_DIR", data_dir.path())
            .env("PULSEHOST_ADMIN_TOKEN", ADMIN)
            .env("PULSEHOST_PULSE_TOKEN", PULSE)
            .env("PULSEHOST_READ_TOKEN", READ)
            .env("PULSEHOST_PLUGIN_CALL_TIMEOUT_MS", "1000")
            .env("PULSEHOST_PLUGIN_MEMORY_BYTES", "67108864")
            .env("PULSEHOST_KILL_GRACE_MS", "500")
            .env("PULSEHOST_SHUTDOWN_GRACE_MS", "2000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(db) = database_url {
            cmd.env("DATABASE_URL", db);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pulsehost serve");
        let mut server = Server {
            child,
            url,
            data_dir,
            log,
        };
        let health = format!("{}/healthz", server.url);
        eventually(Duration::from_secs(60), "the server to answer /healthz", || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("pulsehost serve exited with {status}:\n{}", server.log());
            }
            ureq::get(&health).call().ok().map(|_| ())
        });
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The data dir's path.
    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// Sends a request; returns the status and the JSON body (Null if none).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        let mut req = ureq::request(method, &format!("{}{path}", self.url)).timeout(Duration::from_secs(60));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None if method == "POST" => req.send_bytes(&[]),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}\nserver log:\n{}", self.log()),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET with the admin token, asserting 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, Some(ADMIN), None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Uploads a component with the admin token.
    pub fn push(&self, bytes: &[u8]) -> (u16, Value) {
        self.request("POST", "/v1/plugins", Some(ADMIN), Some(bytes))
    }

    /// Sends a pulse with the pulse token, asserting 200.
    pub fn pulse(&self) -> Value {
        let (status, body) = self.request("POST", "/v1/pulse", Some(PULSE), None);
        assert_eq!(status, 200, "pulse: {body}");
        body
    }

    /// The id of task `name`.
    pub fn task_id(&self, name: &str) -> i64 {
        let tasks = self.get("/v1/tasks");
        tasks["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == name))
            .and_then(|t| t["id"].as_i64())
            .unwrap_or_else(|| panic!("no task {name} in {tasks}"))
    }

    /// Queues a run of task `name` now and returns the run id.
    pub fn trigger(&self, name: &str) -> i64 {
        let id = self.task_id(name);
        let (status, body) = self.request("POST", &format!("/v1/tasks/{id}/run"), Some(ADMIN), None);
        assert_eq!(status, 202, "trigger {name}: {body}");
        body["run_id"].as_i64().expect("run id")
    }

    /// Waits until run `id` has finished and returns it with its steps.
    pub fn finished_run(&self, id: i64, limit: Duration) -> Value {
        eventually(limit, &format!("run {id} to finish"), || {
            let run = self.get(&format!("/v1/runs/{id}"));
            (!matches!(run["status"].as_str(), Some("queued" | "running"))).then_some(run)
        })
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }

    /// Sends `signal` to the server process without waiting.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Waits up to `limit` for the server process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        eventually(limit, "the server to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Server {
    /// SIGTERM, then SIGKILL if the server is still there after a while; never
    /// panics (a panic while a failed test unwinds would abort every test).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
