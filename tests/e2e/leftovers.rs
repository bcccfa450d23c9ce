//! What a run leaves behind: after a host dies, recovery kills every process
//! of its runs (a background hook beside a step included), and a daemon that
//! escaped its step never stays a zombie of the host.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::recovery::{runs_of, server_with};
use crate::support::procs::{processes_of_run, zombies_of};
use crate::support::{eventually, Server, TestDb};

#[test]
fn a_host_killed_while_a_background_hook_runs_beside_a_step_leaves_no_process_of_the_run_behind() {
    let db = TestDb::new();
    let lease = [("PULSEHOST_LEASE_MS", "1500")];
    let mut doomed = server_with(&db, "fixture-edges", &lease);
    let id = doomed.trigger("background-and-step");
    let host = eventually(Duration::from_secs(20), "the run to start", || {
        let run = doomed.get(&format!("/v1/runs/{id}"));
        run["host_id"].as_str().map(str::to_string)
    });
    // Found by their environment: the host's own record of them may lag.
    eventually(
        Duration::from_secs(20),
        "the background hook and the step",
        || {
            let mut groups: Vec<i32> = processes_of_run(id, &host).iter().map(|p| p.1).collect();
            groups.sort();
            groups.dedup();
            (groups.len() >= 2).then_some(())
        },
    );
    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(Duration::from_secs(10));
    assert!(
        !processes_of_run(id, &host).is_empty(),
        "they outlived their host"
    );
    std::thread::sleep(Duration::from_millis(2000));

    let next = Server::start_with(Some(&db.url), &lease);
    eventually(
        Duration::from_secs(15),
        "every process of the lost run to be killed",
        || processes_of_run(id, &host).is_empty().then_some(()),
    );
    let lost = next.get(&format!("/v1/runs/{id}"));
    assert_eq!(lost["failure_type"], "host_lost", "{lost}");
    let retry = eventually(Duration::from_secs(30), "the retry", || {
        runs_of(&next, "background-and-step")
            .into_iter()
            .find(|r| r["retry_of"] == id)
    });
    let retry = next.finished_run(retry["id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(retry["status"], "succeeded", "{retry}");
}

#[test]
fn a_daemon_that_escapes_its_step_does_not_stay_a_zombie_of_the_host() {
    let db = TestDb::new();
    let server = server_with(&db, "fixture-edges", &[]);
    let id = server.trigger("daemon");
    let run = server.finished_run(id, Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    // The daemon sleeps a moment, then exits as an orphan the host adopted.
    std::thread::sleep(Duration::from_millis(2000));
    eventually(Duration::from_secs(10), "no zombie under the host", || {
        zombies_of(server.pid()).is_empty().then_some(())
    });
}
