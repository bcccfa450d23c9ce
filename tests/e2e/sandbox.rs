//! The native-step sandbox, tried from inside real steps the way an attacker
//! (or a careless plugin) would: read the host's environment, its token file,
//! its database; check for root; leave daemons; fork-bomb; hog memory.
//! Every escape must fail, and each run must say what protected it.

use std::time::Duration;

use serde_json::Value;

use crate::support::db::TestDb;
use crate::support::procs::with_command_line;
use crate::support::{component, eventually, Server, PULSE, READ};

/// The only step's stdout.
fn stdout(run: &Value) -> String {
    run["steps"][0]["stdout"].as_str().unwrap_or_default().to_string()
}

/// Runs task `name` to its end with `token` as the admin token.
fn run_task(server: &Server, token: &str, name: &str) -> Value {
    let tasks = server.request("GET", "/v1/tasks", Some(token), None).1;
    let id = tasks["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .and_then(|t| t["id"].as_i64())
        .unwrap_or_else(|| panic!("no task {name} in {tasks}"));
    let (status, body) = server.request("POST", &format!("/v1/tasks/{id}/run"), Some(token), None);
    assert_eq!(status, 202, "{body}");
    let run_id = body["run_id"].as_i64().unwrap();
    eventually(
        Duration::from_secs(120),
        &format!("run {run_id} to finish"),
        || {
            let (_, run) = server.request("GET", &format!("/v1/runs/{run_id}"), Some(token), None);
            (!matches!(run["status"].as_str(), Some("queued" | "running"))).then_some(run)
        },
    )
}

fn applied(run: &Value) -> Vec<String> {
    run["steps"][0]["plan"]["applied"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[test]
fn a_step_cannot_read_the_hosts_environment_token_file_or_database_nor_run_as_root() {
    assert!(
        std::process::Command::new("psql")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "psql must be installed for the database escape to be tried"
    );
    // The embedded database, and a generated admin token kept in the data dir:
    // the default set-up, with every secret the issue names in reach.
    let server = Server::start_with(None, &[("PULSEHOST_ADMIN_TOKEN", "")]);
    let token = std::fs::read_to_string(server.data_path().join("admin-token")).unwrap();
    let token = token.trim();
    let db_password = std::fs::read_to_string(server.data_path().join("db-password")).unwrap();
    let (status, body) = server.request(
        "POST",
        "/v1/plugins",
        Some(token),
        Some(&component("fixture-escape")),
    );
    assert_eq!(status, 201, "{body}");
    let secrets = [
        token,
        PULSE,
        READ,
        db_password.trim(),
        "DATABASE_URL",
        "PULSEHOST_ADMIN_TOKEN",
    ];
    let leaks = |run: &Value| {
        let text = run.to_string();
        secrets
            .iter()
            .filter(|s| text.contains(*s))
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };

    let environs = run_task(&server, token, "read-environs");
    assert_eq!(environs["status"], "succeeded", "{environs}");
    assert!(stdout(&environs).contains("scanned"), "{environs}");
    assert_eq!(leaks(&environs), Vec::<String>::new(), "{environs}");

    let files = run_task(&server, token, "read-data-dir");
    assert!(stdout(&files).contains("looked"), "{files}");
    assert!(stdout(&files).contains("Permission denied"), "{files}");
    assert_eq!(leaks(&files), Vec::<String>::new(), "{files}");

    let database = run_task(&server, token, "connect-to-database");
    assert!(stdout(&database).contains("tried"), "{database}");
    assert!(!stdout(&database).contains("CONNECTED"), "{database}");

    let whoami = run_task(&server, token, "whoami");
    let text = stdout(&whoami);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_ne!(lines.first(), Some(&"0"), "a step ran as root: {whoami}");
    assert_eq!(lines.get(1), Some(&"pulsehost-steps"), "{whoami}");
    // Born in (v2) or moved into (v1) its cgroups in each hierarchy that
    // limits, measures or kills it: the one that counts its processes is its
    // run's, the others are the run's too or cells of the host's.
    let run_cgroup = format!("/run-{}/", whoami["id"]);
    let hierarchies = ["0::", ":memory:", ":pids:"];
    let placed: Vec<&&str> = lines
        .iter()
        .filter(|l| hierarchies.iter().any(|h| l.contains(h)))
        .collect();
    assert!(!placed.is_empty(), "no cgroup lines: {whoami}");
    for line in placed {
        let cell = !line.contains(":pids:") && line.contains("/cell-");
        assert!(
            line.contains(&run_cgroup) || cell,
            "{line} is neither under {run_cgroup} nor a cell: {whoami}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains(&run_cgroup)),
        "no cgroup of its run: {whoami}"
    );
    for protection in [
        "separate_user",
        "cgroup",
        "pid_namespace",
        "usage",
        "process_limit",
    ] {
        assert!(
            applied(&whoami).contains(&protection.to_string()),
            "{protection}: {whoami}"
        );
    }
}

#[test]
fn a_daemon_that_leaves_its_process_group_dies_with_its_step_at_exit_and_at_timeout() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);

    let run = server.finished_run(server.trigger("leave-a-daemon"), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(stdout(&run).contains("left-a-daemon"), "{run}");
    eventually(Duration::from_secs(10), "the daemon to be gone", || {
        with_command_line("sleep 301.25").is_empty().then_some(())
    });

    let run = server.finished_run(server.trigger("daemon-then-hang"), Duration::from_secs(60));
    assert_eq!(run["status"], "timed_out", "{run}");
    eventually(
        Duration::from_secs(10),
        "the timed-out step's daemon to be gone",
        || with_command_line("sleep 302.25").is_empty().then_some(()),
    );
}

#[test]
fn a_fork_bomb_is_stopped_by_the_process_limit_and_the_host_stays_responsive() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_STEP_PROCESSES", "64")]);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);
    let id = server.trigger("fork-bomb");
    let mut answers = 0;
    let run = eventually(Duration::from_secs(60), "the fork bomb's run to end", || {
        // The host answers while the bomb goes off.
        let health = ureq::get(&format!("{}/healthz", server.url))
            .timeout(Duration::from_secs(20))
            .call();
        assert!(health.is_ok(), "the host stopped answering: {health:?}");
        answers += 1;
        let run = server.get(&format!("/v1/runs/{id}"));
        (!matches!(run["status"].as_str(), Some("queued" | "running"))).then_some(run)
    });
    assert!(answers > 1);
    assert!(stdout(&run).contains("still-here"), "{run}");
    let peak = run["steps"][0]["usage"]["peak_processes"].as_i64().unwrap();
    assert!(peak <= 64 && peak > 8, "peak processes {peak}: {run}");
    let leftovers =
        crate::support::procs::marked(&[&format!("PULSEHOST_RUN_ID={id}"), "PULSEHOST_TASK=fork-bomb"]);
    assert!(leftovers.is_empty(), "the bomb left {leftovers:?}");
}

#[test]
fn a_step_over_its_memory_limit_fails_as_memory_limit_and_every_step_records_its_usage() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_STEP_MEMORY_BYTES", "67108864")]);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);

    let hog = server.finished_run(server.trigger("hog-memory"), Duration::from_secs(120));
    assert_eq!(hog["status"], "failed", "{hog}");
    assert_eq!(hog["failure_type"], "memory_limit", "{hog}");
    assert!(
        hog["steps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{hog}"
    );
    assert!(applied(&hog).contains(&"memory_limit".to_string()), "{hog}");

    let burn = server.finished_run(server.trigger("burn-cpu"), Duration::from_secs(60));
    assert_eq!(burn["status"], "succeeded", "{burn}");
    let usage = &burn["steps"][0]["usage"];
    let cpu = usage["cpu_user_ms"].as_f64().unwrap() + usage["cpu_system_ms"].as_f64().unwrap();
    assert!(cpu > 0.0, "{usage}");
    assert!(usage["peak_memory_bytes"].as_i64().unwrap() > 0, "{usage}");
    assert!(usage["peak_processes"].as_i64().unwrap() >= 1, "{usage}");
}

#[test]
fn a_step_can_have_no_network_and_a_private_tmp_and_sees_only_its_own_processes() {
    let db = TestDb::new();
    let server = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_STEP_NO_NETWORK", "true"),
            ("PULSEHOST_STEP_PRIVATE_TMP", "true"),
        ],
    );
    assert_eq!(server.push(&component("fixture-escape")).0, 201);
    let _ = std::fs::remove_file("/tmp/pulsehost-escape-mark");
    let run = server.finished_run(server.trigger("look-around"), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = stdout(&run);
    assert!(out.contains("interfaces: lo \n"), "{out}");
    assert!(out.contains("tmp: 0\n"), "{out}");
    assert!(out.contains("tmp writable"), "{out}");
    let processes: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("processes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    // init, the shell, and the command substitution's own few.
    assert!(processes <= 8, "the step saw {processes} processes: {out}");
    assert!(!std::path::Path::new("/tmp/pulsehost-escape-mark").exists());
    for protection in ["no_network", "private_tmp"] {
        assert!(applied(&run).contains(&protection.to_string()), "{run}");
    }
}

#[test]
fn a_missing_protection_degrades_with_an_event_or_is_refused_under_a_strict_policy() {
    let db = TestDb::new();
    let lenient = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_SANDBOX_OFF", "pid_namespace"),
            ("PULSEHOST_STEP_NO_NETWORK", "true"),
        ],
    );
    assert_eq!(lenient.push(&component("fixture-escape")).0, 201);
    let run = lenient.finished_run(lenient.trigger("whoami"), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    let missing = &run["steps"][0]["plan"]["missing"];
    assert_eq!(missing[0]["protection"], "pid_namespace", "{run}");
    let degraded: Vec<&Value> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "degraded")
        .collect();
    assert_eq!(degraded.len(), 1, "{run}");
    assert_eq!(degraded[0]["detail"]["missing"][0]["protection"], "pid_namespace");
    drop(lenient);

    let strict = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_SANDBOX_OFF", "no_network"),
            ("PULSEHOST_STEP_NO_NETWORK", "true"),
            ("PULSEHOST_SANDBOX_POLICY", "strict"),
        ],
    );
    let run = strict.finished_run(strict.trigger("whoami"), Duration::from_secs(60));
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["steps"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("strict") && error.contains("no_network") && error.contains("pulsehost doctor"),
        "{error}"
    );
    assert!(run["steps"][0]["exit_code"].is_null(), "nothing ran: {run}");
}

#[test]
fn doctor_prints_what_the_machine_offers() {
    let out = std::process::Command::new(crate::support::server::binary())
        .arg("doctor")
        .env("PULSEHOST_SANDBOX_OFF", "private_tmp")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for protection in [
        "separate_user",
        "cgroup",
        "pid_namespace",
        "memory_limit",
        "no_network",
    ] {
        assert!(text.contains(protection), "{text}");
    }
    assert!(text.contains("turned off by PULSEHOST_SANDBOX_OFF"), "{text}");
    assert!(text.contains("steps run as"), "{text}");
    assert!(text.contains("\nreused:"), "{text}");
}

#[test]
fn recovery_kills_a_daemon_a_lost_host_left_even_one_that_hid_its_environment() {
    let db = TestDb::new();
    let lease = [("PULSEHOST_LEASE_MS", "1500")];
    let mut doomed = Server::start_with(Some(&db.url), &lease);
    assert_eq!(doomed.push(&component("fixture-escape")).0, 201);
    let id = doomed.trigger("hide-a-daemon-and-hang");
    eventually(Duration::from_secs(20), "the hidden daemon to start", || {
        (!with_command_line("sleep 303.25").is_empty()).then_some(())
    });
    doomed.signal(nix::sys::signal::Signal::SIGKILL);
    doomed.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    // No environment to be found by, no process group to be killed with: only
    // the run's cgroup (and its PID namespace) still hold it.
    assert!(
        !with_command_line("sleep 303.25").is_empty(),
        "it outlived its host"
    );
    std::thread::sleep(Duration::from_millis(1500));

    let next = Server::start_with(Some(&db.url), &lease);
    eventually(
        Duration::from_secs(20),
        "the lost run's daemon to be killed",
        || with_command_line("sleep 303.25").is_empty().then_some(()),
    );
    let lost = next.get(&format!("/v1/runs/{id}"));
    assert_eq!(lost["failure_type"], "host_lost", "{lost}");
}

#[test]
fn a_task_sets_its_own_limits_and_policy_and_a_step_overrides_them() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_SANDBOX_OFF", "no_network")]);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);

    let hog = server.finished_run(
        server.trigger("hog-memory-within-task-limit"),
        Duration::from_secs(120),
    );
    assert_eq!(hog["failure_type"], "memory_limit", "{hog}");
    let roomy = server.finished_run(
        server.trigger("hog-memory-step-limit-over-task"),
        Duration::from_secs(120),
    );
    assert_eq!(roomy["status"], "succeeded", "the step's own limit wins: {roomy}");

    let strict = server.finished_run(server.trigger("strict-offline"), Duration::from_secs(60));
    assert_eq!(strict["status"], "failed", "{strict}");
    let error = strict["steps"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("no_network") && error.contains("turned off"),
        "{error}"
    );
}

#[test]
fn a_plugin_built_against_the_0_1_0_contract_is_accepted_and_runs_unchanged() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-contract-v1"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["wit_package"], "pulsehost:plugin@0.1.0", "{body}");
    let run = server.finished_run(server.trigger("greet"), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(stdout(&run), "hello from a 0.1.0 plugin\n");
    let (status, body) = server.push(&component("fixture-escape"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["wit_package"], "pulsehost:plugin@0.2.0", "{body}");
}

#[test]
fn a_step_cannot_redirect_the_hosts_writes_change_a_shared_venv_or_look_around_from_another_directory() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);
    let proof = std::path::Path::new("/tmp/pulsehost-root-write-proof");
    let _ = std::fs::remove_file(proof);

    let redirected = server.finished_run(
        server.trigger("redirect-the-hosts-write"),
        Duration::from_secs(120),
    );
    assert_eq!(redirected["status"], "succeeded", "{redirected}");
    assert_eq!(
        redirected["steps"][1]["stdout"], "the script ran\n",
        "{redirected}"
    );
    assert!(!proof.exists(), "the host wrote through a link a step planted");

    let tampered = server.finished_run(server.trigger("tamper-with-the-venv"), Duration::from_secs(120));
    assert_eq!(tampered["status"], "succeeded", "{tampered}");
    assert!(!stdout(&tampered).contains("WROTE"), "{tampered}");
    assert_eq!(stdout(&tampered).matches("refused").count(), 2, "{tampered}");

    let elsewhere = server.finished_run(server.trigger("look-from-elsewhere"), Duration::from_secs(60));
    let seen: i64 = stdout(&elsewhere).trim().parse().unwrap_or(i64::MAX);
    assert!(
        seen <= 8,
        "from /proc as its working directory a step saw {seen} processes: {elsewhere}"
    );
    assert_eq!(
        elsewhere["status"], "failed",
        "the step user cannot enter /root: {elsewhere}"
    );
    assert!(
        elsewhere["steps"][1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot enter the working directory /root"),
        "{elsewhere}"
    );
}

#[test]
fn a_plugins_limits_only_tighten_the_operators_and_inherited_descriptors_stay_with_the_host() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "inherited-descriptor-secret").unwrap();
    // Opened without close-on-exec: every server this test process starts inherits it.
    let inherited = nix::fcntl::open(
        secret.path(),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let db = TestDb::new();
    let server = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_STEP_PROCESSES", "64"),
            ("PULSEHOST_STEP_NO_NETWORK", "true"),
        ],
    );
    let _ = nix::unistd::close(inherited);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);

    let loosened = server.finished_run(server.trigger("loosen-the-limits"), Duration::from_secs(60));
    let limits = &loosened["steps"][0]["plan"]["limits"];
    assert_eq!(limits["processes"], 64, "{loosened}");
    assert_eq!(limits["no_network"], true, "{loosened}");
    assert!(stdout(&loosened).contains("interfaces: lo \n"), "{loosened}");

    let read = server.finished_run(
        server.trigger("read-inherited-descriptors"),
        Duration::from_secs(60),
    );
    assert!(stdout(&read).contains("read"), "{read}");
    assert!(!stdout(&read).contains("inherited-descriptor-secret"), "{read}");
}

/// The cgroup a step was in, in the hierarchy of `controller` ("" for the
/// unified one), from the `/proc/self/cgroup` it printed.
fn cgroup_of(step: &Value, controller: &str) -> Option<String> {
    let stdout = step["stdout"].as_str().unwrap_or_default();
    stdout.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })
}

fn cpu_ms(step: &Value) -> f64 {
    let usage = &step["usage"];
    usage["cpu_user_ms"].as_f64().unwrap() + usage["cpu_system_ms"].as_f64().unwrap()
}

#[test]
fn a_reused_cgroup_gives_each_step_its_own_usage_and_one_killed_through_is_not_reused() {
    let db = TestDb::new();
    // Without a PID namespace the daemon outlives its step until its cgroup
    // is killed through (in one, it may already be gone with the
    // namespace's init, and then nothing needs killing).
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_SANDBOX_OFF", "pid_namespace")]);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);
    let mut reused = false;
    for _ in 0..2 {
        let run = server.finished_run(server.trigger("one-after-another"), Duration::from_secs(120));
        assert_eq!(run["status"], "succeeded", "{run}");
        let steps = run["steps"].as_array().unwrap();
        let step = |name: &str| {
            steps
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("no step {name}: {run}"))
        };
        let fill = step("fill");
        assert!(
            fill["usage"]["peak_memory_bytes"].as_i64().unwrap() >= 96 << 20,
            "{fill}"
        );
        for name in ["small", "after-daemon", "limited"] {
            let small = step(name);
            assert_eq!(small["status"], "succeeded", "{small}");
            // Its own peak and CPU time, not what the step before left.
            let peak = small["usage"]["peak_memory_bytes"].as_i64().unwrap();
            assert!(peak < 32 << 20, "{name} peaked at {peak} bytes: {small}");
            assert!(cpu_ms(small) < cpu_ms(fill) / 2.0, "{name}: {small} after {fill}");
            reused |= cgroup_of(small, "memory") == cgroup_of(fill, "memory");
        }
        // The unified cgroup `cgroup.kill` went through (the daemon was
        // still there) is never handed out again: the kernel would kill
        // the next process born in it.
        let daemon = cgroup_of(step("daemon"), "");
        for later in ["after-daemon", "limited"] {
            assert_ne!(cgroup_of(step(later), ""), daemon, "{run}");
        }
    }
    let v1_memory = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    assert!(
        reused || !v1_memory,
        "no step ran in a memory cgroup another had used"
    );
    eventually(Duration::from_secs(10), "the daemon to be gone", || {
        with_command_line("sleep 303.25").is_empty().then_some(())
    });
}

#[test]
fn a_cgroup_still_charged_for_a_steps_files_is_not_handed_to_the_next_step() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-escape")).0, 201);
    // 200 MB stay in /dev/shm, charged to the step's memory cgroup, which
    // emptying cannot take back (no swap).
    let fill = server.trigger("fill-shm");
    let filled = server.finished_run(fill, Duration::from_secs(120));
    // The host has made its only cgroups ready again meanwhile.
    std::thread::sleep(Duration::from_secs(1));
    let limited = server.finished_run(server.trigger("limited"), Duration::from_secs(120));
    let _ = std::fs::remove_file(format!("/dev/shm/pulsehost-shm-{fill}"));
    assert_eq!(filled["status"], "succeeded", "{filled}");
    // Neither refused its limit below those 200 MB nor counting them.
    assert_eq!(limited["status"], "succeeded", "{limited}");
    let peak = limited["steps"][0]["usage"]["peak_memory_bytes"]
        .as_i64()
        .unwrap();
    assert!(
        peak < 64 << 20,
        "the limited step peaked at {peak} bytes: {limited}"
    );
}
