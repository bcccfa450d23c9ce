//! The executor against real processes, through the real server: what a step
//! sees, hooks and their failures, JSON piping, output, cancellation, timeouts.

use std::time::Duration;

use serde_json::Value;

use crate::support::{component, eventually, Server, TestDb, ADMIN};

fn exec_server(db: &TestDb, extra: &[(&str, &str)]) -> Server {
    let mut vars = vec![
        ("PULSEHOST_OUTPUT_CAP_BYTES", "100000"),
        ("DATABASE_URL_SECRET_CANARY", "x"),
    ];
    vars.extend_from_slice(extra);
    let server = Server::start_with(Some(&db.url), &vars);
    let (status, body) = server.push(&component("fixture-exec"));
    assert_eq!(status, 201, "{body}");
    server
}

fn run(server: &Server, task: &str) -> Value {
    server.finished_run(server.trigger(task), Duration::from_secs(120))
}

fn step<'a>(run: &'a Value, phase: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phase"] == phase)
        .unwrap_or_else(|| panic!("no {phase} in {run}"))
}

#[test]
fn a_step_sees_its_run_context_and_declared_envs_but_none_of_the_hosts_secrets() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "env");
    let env = run["steps"][0]["stdout"].as_str().unwrap();
    for expected in [
        format!("PULSEHOST_RUN_ID={}", run["id"]),
        "PULSEHOST_TASK=env".to_string(),
        format!("PULSEHOST_SLOT_ID={}", run["slot_id"]),
        "PULSEHOST_ATTEMPT=1".to_string(),
        "PULSEHOST_SCHEDULED_FOR=".to_string(),
        "PULSEHOST_STEP=env".to_string(),
        "GREETING=hi".to_string(),
        "PATH=".to_string(),
    ] {
        assert!(env.contains(&expected), "missing {expected:?} in:\n{env}");
    }
    for secret in [
        "DATABASE_URL",
        "PULSEHOST_ADMIN_TOKEN",
        "PULSEHOST_PULSE_TOKEN",
        "test-admin-token",
    ] {
        assert!(!env.contains(secret), "{secret} leaked into:\n{env}");
    }
}

#[test]
fn a_failed_provision_skips_the_steps_runs_cleanup_and_pauses_the_task_after_three() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    for attempt in 1..=3 {
        let run = run(&server, "provision-fails");
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(run["failure_type"], "provision");
        let phases: Vec<&str> = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases,
            ["provision", "cleanup"],
            "attempt {attempt}: steps skipped, cleanup ran"
        );
        assert_eq!(step(&run, "provision")["exit_code"], 7);
        assert_eq!(step(&run, "cleanup")["stdout"], "cleanup-ran\n");
    }
    let task = server.get("/v1/tasks")["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "provision-fails")
        .cloned()
        .unwrap();
    let reason = task["paused_reason"]
        .as_str()
        .unwrap_or_else(|| panic!("not paused: {task}"));
    assert!(reason.contains("provision hook failed 3 times"), "{reason}");
    assert_eq!(task["hook_failures"][0]["consecutive"], 3);
    assert_eq!(
        task["hook_failures"][0]["last_errors"].as_array().unwrap().len(),
        3
    );

    let (status, body) = server.request(
        "POST",
        &format!("/v1/tasks/{}/resume", task["id"]),
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let task = server.get(&format!("/v1/tasks/{}", task["id"]));
    assert!(task["paused_reason"].is_null(), "{task}");
}

#[test]
fn a_background_process_that_dies_early_fails_the_run_as_background() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "background-dies");
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failure_type"], "background");
    assert_eq!(step(&run, "background")["exit_code"], 1);
}

#[test]
fn a_background_process_runs_alongside_the_steps_and_is_stopped_after_them() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "background-serves");
    assert_eq!(run["status"], "succeeded", "{run}");
    let background = step(&run, "background");
    assert_eq!(
        background["status"], "cancelled",
        "stopped by the host: {background}"
    );
    assert_eq!(background["stdout"], "serving\n");
    assert_eq!(step(&run, "step")["stdout"], "worked\n");
}

#[test]
fn json_stdout_is_stored_parsed_and_piped_into_the_next_step() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "pipe");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["steps"][0]["stdout_json"],
        serde_json::json!({"n": 1, "word": "pulse"})
    );
    assert_eq!(
        run["steps"][1]["stdout_json"],
        serde_json::json!({"n": 1, "word": "pulse"}),
        "{run}"
    );
}

#[test]
fn output_that_is_not_utf8_is_kept_losslessly_as_base64() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "raw-bytes");
    let s = &run["steps"][0];
    assert_eq!(s["stdout_encoding"], "base64", "{s}");
    assert_eq!(s["stdout"], "//5vaw==");
}

#[test]
fn output_past_the_cap_is_truncated_with_its_total_counted() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "flood");
    let s = &run["steps"][0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(s["stdout_truncated"], true);
    assert_eq!(s["stdout_bytes"], 5_000_000);
    assert_eq!(s["stdout"].as_str().unwrap().len(), 100_000);
}

#[test]
fn cancelling_a_running_run_kills_it_and_still_runs_cleanup() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let id = server.trigger("cancel-me");
    eventually(Duration::from_secs(30), "the run to start", || {
        (server.get(&format!("/v1/runs/{id}"))["status"] == "running").then_some(())
    });
    let (status, body) = server.request("POST", &format!("/v1/runs/{id}/cancel"), Some(ADMIN), None);
    assert_eq!(status, 202, "{body}");
    let run = server.finished_run(id, Duration::from_secs(20));
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(step(&run, "cleanup")["stdout"], "cleanup-ran\n");
    let (status, body) = server.request("POST", &format!("/v1/runs/{id}/cancel"), Some(ADMIN), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_finished"))
    );
}

#[test]
fn a_queued_run_can_be_cancelled_before_it_starts() {
    let db = TestDb::new();
    let server = exec_server(&db, &[("PULSEHOST_MAX_CONCURRENT_RUNS", "1")]);
    let blocker = server.trigger("cancel-me");
    let queued = server.trigger("env");
    eventually(Duration::from_secs(30), "the blocker to run", || {
        (server.get(&format!("/v1/runs/{blocker}"))["status"] == "running").then_some(())
    });
    assert_eq!(
        server.get(&format!("/v1/runs/{queued}"))["status"],
        "queued",
        "one run at a time"
    );
    let (status, body) = server.request("POST", &format!("/v1/runs/{queued}/cancel"), Some(ADMIN), None);
    assert_eq!(
        (status, body["outcome"].as_str()),
        (202, Some("cancelled")),
        "{body}"
    );
    server.request("POST", &format!("/v1/runs/{blocker}/cancel"), Some(ADMIN), None);
    let run = server.finished_run(queued, Duration::from_secs(20));
    assert_eq!(run["status"], "cancelled");
    assert!(run["steps"].as_array().unwrap().is_empty(), "it never ran");
}

#[test]
fn the_run_timeout_bounds_steps_and_cleanup_still_runs() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "run-timeout");
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_eq!(run["steps"][1]["status"], "timed_out");
    assert_eq!(step(&run, "cleanup")["stdout"], "cleanup-ran\n");
}

#[test]
fn a_pip_failure_fails_the_step_and_keeps_pips_output() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "pip-fails");
    assert_eq!(run["status"], "failed", "{run}");
    let s = &run["steps"][0];
    assert!(s["error"].as_str().unwrap().contains("pip install failed"), "{s}");
    assert!(
        s["stderr"]
            .as_str()
            .unwrap()
            .contains("pulsehost-fixture-no-such-package"),
        "{s}"
    );
}

#[test]
fn a_python_step_gets_json_on_stdin_and_its_arguments() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let run = run(&server, "python-stdin");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["steps"][0]["stdout_json"],
        serde_json::json!({"got": {"x": 2}, "args": ["one", "two"]})
    );
}

#[test]
fn binary_steps_outside_the_allowed_directories_are_refused_at_upload() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_BINARY_DIRS", "/opt/nothing-here")]);
    let (status, body) = server.push(&component("backup"));
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("not under an allowed directory"),
        "{body}"
    );
}

#[test]
fn concurrent_runs_needing_the_same_venv_build_it_once() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let ids: Vec<i64> = (0..3).map(|_| server.trigger("python-stdin")).collect();
    for id in ids {
        let run = server.finished_run(id, Duration::from_secs(120));
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(
        server.log().matches("python venv built").count(),
        1,
        "{}",
        server.log()
    );
    let venvs: Vec<String> = std::fs::read_dir(server.data_path().join("venvs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(venvs.len(), 1, "one venv, no half-built leftovers: {venvs:?}");
}

#[test]
fn queued_runs_wait_in_postgres_and_survive_a_restart() {
    let db = TestDb::new();
    let mut first = exec_server(
        &db,
        &[
            ("PULSEHOST_MAX_CONCURRENT_RUNS", "1"),
            ("PULSEHOST_SHUTDOWN_GRACE_MS", "200"),
        ],
    );
    let blocker = first.trigger("cancel-me");
    let waiting = first.trigger("env");
    eventually(Duration::from_secs(30), "the blocker to run", || {
        (first.get(&format!("/v1/runs/{blocker}"))["status"] == "running").then_some(())
    });
    assert_eq!(first.get(&format!("/v1/runs/{waiting}"))["status"], "queued");
    first.stop();
    let second = Server::start_with(Some(&db.url), &[]);
    let run = second.finished_run(waiting, Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "the queued run was not lost: {run}");
}

#[test]
fn pip_uses_the_package_index_the_host_is_configured_with() {
    let db = TestDb::new();
    let server = exec_server(&db, &[("PIP_INDEX_URL", "http://127.0.0.1:9/pulsehost-index/")]);
    let run = run(&server, "pip-fails");
    assert_eq!(run["status"], "failed", "{run}");
    let pip_output = run["steps"][0]["stderr"].as_str().unwrap();
    assert!(
        pip_output.contains("127.0.0.1:9"),
        "pip did not use PIP_INDEX_URL:\n{pip_output}"
    );
}

#[test]
fn a_step_under_a_pseudo_terminal_sees_one_and_its_output_is_captured_with_the_cap() {
    let db = TestDb::new();
    let server = exec_server(&db, &[]);
    let shown = run(&server, "terminal");
    assert_eq!(shown["status"], "succeeded", "{shown}");
    let tty = &shown["steps"][0];
    let out = tty["stdout"].as_str().unwrap();
    assert!(out.contains("on-a-terminal\n"), "{tty}");
    assert!(
        out.contains("to-stderr\n"),
        "stderr goes to the terminal too: {tty}"
    );
    assert!(
        out.ends_with("a\nb\n"),
        "lines end as written, without \\r: {tty}"
    );
    assert_eq!(tty["stderr"], "", "{tty}");
    assert_eq!(shown["steps"][1]["stdout"], "not-a-terminal\n", "{shown}");

    let flood = run(&server, "terminal-flood");
    assert_eq!(flood["status"], "succeeded", "{flood}");
    let step = &flood["steps"][0];
    assert_eq!(step["stdout_bytes"], 3_000_000, "{}", step["stdout_bytes"]);
    assert_eq!(step["stdout_truncated"], true);
    assert_eq!(step["stdout"].as_str().unwrap().len(), 100_000);
}
