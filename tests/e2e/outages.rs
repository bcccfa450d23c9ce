//! A database outage longer than the lease: the host answers 503 at once while
//! PostgreSQL is away, keeps its runs, writes what finished meanwhile when it
//! returns, and no host (this one or a replica) declares them lost.

use std::time::{Duration, Instant};

use crate::recovery::{runs_of, time};
use crate::support::{component, eventually, Cluster, Server, PULSE};

const LEASE: (&str, &str) = ("PULSEHOST_LEASE_MS", "2000");

/// Asserts that `path` answers 503 within two seconds.
fn fails_fast(server: &Server, method: &str, path: &str, token: Option<&str>) {
    let started = Instant::now();
    let (status, body) = server.request(method, path, token, None);
    let took = started.elapsed();
    assert_eq!(status, 503, "{method} {path} during the outage: {body}");
    assert!(
        took < Duration::from_secs(2),
        "{method} {path} took {took:?} to answer 503"
    );
}

#[test]
fn an_outage_longer_than_the_lease_loses_no_healthy_run_and_every_endpoint_fails_fast_then_recovers() {
    let cluster = Cluster::start();
    let url = cluster.url("postgres");
    let host = Server::start_with(Some(&url), &[LEASE, ("PULSEHOST_MAX_CONCURRENT_RUNS", "4")]);
    let replica = Server::start_with(Some(&url), &[LEASE]);
    let (status, body) = host.push(&component("fixture-edges"));
    assert_eq!(status, 201, "{body}");
    let short = host.trigger("sleep-3");
    let long = host.trigger("sleep-12");
    for id in [short, long] {
        eventually(Duration::from_secs(20), "the runs to start", || {
            (host.get(&format!("/v1/runs/{id}"))["status"] == "running").then_some(())
        });
    }

    cluster.stop();
    let outage = Instant::now();
    for server in [&host, &replica] {
        fails_fast(server, "GET", "/readyz", None);
        fails_fast(server, "POST", "/v1/pulse", Some(PULSE));
        let started = Instant::now();
        let (status, body) = server.request("GET", "/healthz", None, None);
        assert_eq!(status, 200, "liveness does not depend on the database: {body}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // Four leases without a database; `sleep-3` finishes meanwhile.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(outage.elapsed()));
    cluster.resume();
    let back = chrono::Utc::now();

    for server in [&host, &replica] {
        eventually(Duration::from_secs(20), "the host to be ready again", || {
            (server.request("GET", "/readyz", None, None).0 == 200).then_some(())
        });
        let (status, body) = server.request("POST", "/v1/pulse", Some(PULSE), None);
        assert_eq!(status, 200, "{body}");
    }
    let done = host.finished_run(short, Duration::from_secs(30));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        time(&done["finished_at"]) < back,
        "recorded as finished when it finished, during the outage: {done}"
    );
    let done = host.finished_run(long, Duration::from_secs(30));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["steps"][0]["stdout"].as_str().unwrap().contains("slept-12"));
    for task in ["sleep-3", "sleep-12"] {
        let runs = runs_of(&host, task);
        assert_eq!(runs.len(), 1, "{task} ran once, no host_lost retry: {runs:?}");
    }
}
