//! Services against the real binary: exactly one of two hosts runs each,
//! the other takes it over after a kill -9 within two lease periods; exits
//! are restarted with a doubling backoff that resets once a service stayed
//! up; flapping is alerted; SIGTERM gives the service its signal, its
//! on-shutdown process and its grace; a serverless host runs no service and
//! does a pulse's work before answering.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::browser::Browser;
use crate::support::procs::{marked, with_command_line};
use crate::support::receiver::Receiver;
use crate::support::{cli, component, eventually, free_port, recorded_in, Server, TestDb, ADMIN};

const LIMIT: Duration = Duration::from_secs(90);
const LEASE_MS: i64 = 1500;
const BEAT: &str = "svc-beat-marker";

/// The shells of the `beat` incarnation of service row `row` still alive
/// on this machine (by run and host: run ids repeat across tests' databases).
fn beats(row: &Value) -> Vec<i32> {
    let run = format!("PULSEHOST_RUN_ID={}", row["run_id"]);
    let host = format!(
        "PULSEHOST_HOST_ID={}",
        row["host_id"].as_str().unwrap_or_default()
    );
    let of_run = marked(&[&run, &host]);
    with_command_line(BEAT)
        .into_iter()
        .filter(|p| of_run.contains(p))
        .collect()
}

fn services(server: &Server) -> Vec<Value> {
    server.get("/v1/services")["services"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn service(server: &Server, name: &str) -> Value {
    services(server)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn running(server: &Server, name: &str) -> Value {
    eventually(LIMIT, &format!("service {name} to run"), || {
        let s = service(server, name);
        (s["state"] == "running").then_some(s)
    })
}

fn at(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

fn lease() -> [(&'static str, String); 1] {
    [("PULSEHOST_SERVICE_LEASE_MS", LEASE_MS.to_string())]
}

fn env<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn exactly_one_of_two_hosts_runs_a_service_and_the_other_takes_it_over_within_two_leases_of_a_kill_9() {
    let db = TestDb::new();
    let lease = lease();
    let mut a = Server::start_with(Some(&db.url), &env(&lease));
    let mut b = Server::start_with(Some(&db.url), &env(&lease));
    assert_eq!(a.push(&component("fixture-services")).0, 201);
    let first = running(&a, "beat");
    let holder = first["host_id"].as_str().unwrap().to_string();
    // Three lease periods later the same host still runs the only instance.
    std::thread::sleep(Duration::from_millis(3 * LEASE_MS as u64));
    let still = service(&b, "beat");
    assert_eq!(
        still["host_id"], first["host_id"],
        "the lease moved while its holder lived"
    );
    assert_eq!(
        still["run_id"], first["run_id"],
        "the service was restarted: {still}"
    );
    assert_eq!(beats(&first).len(), 1, "its one instance runs");
    let log = eventually(LIMIT, "the rolling log to show beats", || {
        let log = a.get(&format!("/v1/services/{}/log", first["id"]));
        log["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("beat 3")
            .then_some(log)
    });
    assert_eq!(log["running"], true);

    let (victim, survivor) = if holder.contains(&format!("-{}-", a.pid())) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let renewed = at(&service(survivor, "beat")["lease_until"]) - chrono::Duration::milliseconds(LEASE_MS);
    victim.signal(nix::sys::signal::Signal::SIGKILL);
    victim.wait_exit(LIMIT);
    let taken = eventually(LIMIT, "the other host to take the service over", || {
        let s = service(survivor, "beat");
        (s["host_id"] != holder.as_str() && s["state"] == "running").then_some(s)
    });
    let took = at(&taken["acquired_at"]) - renewed;
    assert!(
        took <= chrono::Duration::milliseconds(2 * LEASE_MS),
        "taken over {took} after the holder's last renewal (lease {LEASE_MS} ms)"
    );
    let old = survivor.get(&format!("/v1/runs/{}", first["run_id"]));
    assert_eq!(old["status"], "failed", "{old}");
    assert_eq!(old["failure_type"], "host_lost", "{old}");
    eventually(LIMIT, "the dead host's instance to be killed", || {
        beats(&first).is_empty().then_some(())
    });
    assert_eq!(beats(&taken).len(), 1, "the new instance runs");
}

#[test]
fn exits_are_restarted_with_a_doubling_backoff_that_resets_and_flapping_is_alerted_once() {
    let db = TestDb::new();
    let port = free_port();
    let receiver = Receiver::start(port, 0);
    let webhook = format!("http://127.0.0.1:{port}/hooks/host");
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_ALERT_WEBHOOK", &webhook)]);
    assert_eq!(server.push(&component("fixture-services")).0, 201);

    let flapping = receiver.wait_for("service_flapping", 1);
    assert_eq!(flapping[0].body["service"], "crashy", "{:?}", flapping[0].body);
    let crashy = service(&server, "crashy");
    assert!(crashy["restarts"].as_i64().unwrap() >= 4, "{crashy}");
    assert_eq!(crashy["last_exit_code"], 3, "{crashy}");
    assert!(!crashy["flapping_since"].is_null(), "{crashy}");
    // Each restart waits at least its delay: 100, 200, 400, then 400 ms.
    let crashy_gaps = gaps(&server, crashy["id"].as_i64().unwrap(), 5);
    for (gap, least) in crashy_gaps.iter().zip([100, 200, 400, 400]) {
        assert!(
            *gap >= least - 20,
            "restart gaps {crashy_gaps:?} ms: one is below its delay"
        );
    }
    // steady-crash stays up past its stable-after each time: its delay never
    // doubles (it would reach 200 * 2^3 = 1600 ms by the fourth restart).
    let steady = eventually(LIMIT, "steady-crash to restart four times", || {
        let s = service(&server, "steady-crash");
        (s["restarts"].as_i64().unwrap_or(0) >= 5).then_some(s)
    });
    let steady_gaps = gaps(&server, steady["id"].as_i64().unwrap(), 5);
    assert!(
        steady_gaps.iter().all(|g| *g >= 180 && *g < 1_200),
        "gaps {steady_gaps:?} ms"
    );
    assert!(steady["flapping_since"].is_null(), "{steady}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.of("service_flapping").len(),
        1,
        "flapping is alerted once per episode"
    );

    // Operators see it, in the CLI and on the dashboard; a service is never run on request.
    let listed = cli(&server, &["services"]);
    assert!(
        listed.contains("fixture-services/crashy") && listed.contains("FLAPPING"),
        "{listed}"
    );
    let log = cli(
        &server,
        &["services", "log", &service(&server, "beat")["id"].to_string()],
    );
    assert!(log.contains("beat "), "{log}");
    let browser = Browser::start();
    browser.open(&format!("{}/ui/login", server.url));
    browser.type_into("#token", ADMIN);
    browser.click("#sign-in");
    browser.arrive("the overview", |here| here == "/");
    browser.open(&format!("{}/ui/services", server.url));
    let beat = browser.text("tr.service[data-name=beat] td.state");
    assert_eq!(beat, "running");
    assert!(browser.text("tr.service[data-name=crashy]").contains("flapping"));
    assert!(
        browser.texts("pre.log").iter().any(|l| l.contains("beat ")),
        "the rolling log is shown"
    );
    let id = server.task_id("beat");
    let (status, body) = server.request("POST", &format!("/v1/tasks/{id}/run"), Some(ADMIN), None);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "service", "{body}");
}

/// Milliseconds between one incarnation's end and the next one's start, for
/// the service's first `n` incarnations.
fn gaps(server: &Server, service_id: i64, n: usize) -> Vec<i64> {
    let task = service_of(server, service_id);
    let runs = eventually(LIMIT, "enough incarnations", || {
        let mut runs: Vec<Value> = server.get(&format!("/v1/runs?task_id={task}&limit=100"))["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        runs.retain(|r| !r["finished_at"].is_null());
        runs.sort_by_key(|r| r["id"].as_i64());
        (runs.len() > n).then_some(runs)
    });
    runs.windows(2)
        .take(n - 1)
        .map(|w| (at(&w[1]["started_at"]) - at(&w[0]["finished_at"])).num_milliseconds())
        .collect()
}

fn service_of(server: &Server, service_id: i64) -> i64 {
    services(server)
        .into_iter()
        .find(|s| s["id"] == service_id)
        .and_then(|s| s["task_id"].as_i64())
        .unwrap()
}

#[test]
fn sigterm_gives_a_service_its_signal_its_on_shutdown_process_and_its_grace_then_frees_it() {
    let db = TestDb::new();
    let mut server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-services")).0, 201);
    let beat = running(&server, "beat");
    eventually(LIMIT, "beats in the log", || {
        let log = server.get(&format!("/v1/services/{}/log", beat["id"]));
        log["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("beat 2")
            .then_some(())
    });
    let stopped_at = Instant::now();
    assert!(server.stop().success(), "{}", server.log());
    assert!(stopped_at.elapsed() < Duration::from_secs(60));

    // A serverless host on the same database reads what was recorded (and takes nothing over).
    let reader = Server::start_with(Some(&db.url), &[("PULSEHOST_MODE", "serverless")]);
    let run = reader.get(&format!("/v1/runs/{}", beat["run_id"]));
    assert_eq!(run["status"], "cancelled", "{run}");
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let step = steps
        .iter()
        .find(|s| s["phase"] == "step")
        .expect("the service's step");
    assert!(step["stdout"].as_str().unwrap().contains("got TERM"), "{step}");
    let on_shutdown = steps
        .iter()
        .find(|s| s["phase"] == "shutdown")
        .expect("on-shutdown ran");
    assert_eq!(on_shutdown["status"], "succeeded", "{on_shutdown}");
    let expected = format!("on-shutdown for run {}", beat["run_id"]);
    assert!(
        on_shutdown["stdout"].as_str().unwrap().contains(&expected),
        "{on_shutdown}"
    );
    let after = service(&reader, "beat");
    assert_eq!(after["state"], "stopped", "{after}");
    assert!(after["host_id"].is_null(), "the lease is given up: {after}");
    assert!(beats(&beat).is_empty(), "nothing of it is left");
}

#[test]
fn a_serverless_host_runs_no_service_and_does_a_pulses_work_before_answering() {
    let db = TestDb::new();
    let port = free_port();
    let receiver = Receiver::start(port, 0);
    let webhook = format!("http://127.0.0.1:{port}/hooks/host");
    let server = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_MODE", "serverless"),
            ("PULSEHOST_ALERT_WEBHOOK", &webhook),
            ("PULSEHOST_EXPECTED_PULSE_INTERVAL", "1s"),
        ],
    );
    assert_eq!(server.push(&component("fixture-services")).0, 201);
    // The first pulse may come within the second of the upload: pulse until one claims a tick.
    let tick = eventually(LIMIT, "a pulse to claim a tick", || {
        std::thread::sleep(Duration::from_millis(1100));
        let pulse = server.pulse();
        recorded_in(&pulse, "tick").first().map(|r| (*r).clone())
    });
    let run = server.get(&format!("/v1/runs/{}", tick["run_id"]));
    assert_eq!(
        run["status"], "succeeded",
        "done before the pulse answered: {run}"
    );

    std::thread::sleep(Duration::from_millis(2500));
    let beat = service(&server, "beat");
    assert_eq!(beat["state"], "waiting", "{beat}");
    assert!(
        beat["run_id"].is_null(),
        "a serverless host runs no service: {beat}"
    );
    let task = server.task_id("beat");
    let runs = server.get(&format!("/v1/runs?task_id={task}"));
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
    assert!(receiver.of("pulse_overdue").is_empty(), "no ticker reports it");
    let ready = server.get("/readyz");
    assert_eq!(ready["mode"], "serverless", "{ready}");
    let overdue = receiver.wait_for("pulse_overdue", 1);
    assert_eq!(overdue.len(), 1);
}

#[test]
fn a_new_version_restarts_a_service_on_its_definition_at_once_and_stops_the_services_it_drops() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-services")).0, 201);
    let first = running(&server, "beat");
    assert_eq!(server.push(&component("fixture-services-v2")).0, 201);
    let second = eventually(LIMIT, "beat to run the new definition", || {
        let s = service(&server, "beat");
        (s["state"] == "running" && s["run_id"] != first["run_id"]).then_some(s)
    });
    assert_eq!(
        second["restarts"], first["restarts"],
        "a new definition is not a restart: {second}"
    );
    eventually(LIMIT, "the new version's output", || {
        let log = server.get(&format!("/v1/services/{}/log", second["id"]));
        log["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("v2 beat")
            .then_some(())
    });
    let old = server.get(&format!("/v1/runs/{}", first["run_id"]));
    assert_eq!(old["status"], "cancelled", "{old}");
    let dropped = eventually(LIMIT, "the dropped service to stop", || {
        let s = service(&server, "crashy");
        (s["state"] == "stopped").then_some(s)
    });
    assert!(dropped["host_id"].is_null(), "{dropped}");
}
