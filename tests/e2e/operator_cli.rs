//! The operator's questions through the CLI, one command each.

use std::process::Command;
use std::time::Duration;

use crate::operators::history;
use crate::support::{cli, cli_output, server::binary, Server, TestDb, ADMIN};

#[test]
fn which_runs_failed_lately_what_is_a_tasks_success_rate_and_when_does_it_fire_next() {
    let db = TestDb::new();
    let (server, _) = history(&db);
    let failed = cli(
        &server,
        &["runs", "list", "--status", "failed,timed_out", "--since", "1h"],
    );
    assert!(failed.contains("boom") && !failed.contains(" ok "), "{failed}");
    assert!(failed.contains("TOOK"), "a duration column: {failed}");
    let team = cli(&server, &["runs", "list", "--tag", "team-a", "--hide-missed"]);
    assert_eq!(
        team.lines().filter(|l| l.contains("operators")).count(),
        3,
        "{team}"
    );

    let stats = cli(&server, &["stats", "ok"]);
    assert!(stats.contains("success rate  100.0%"), "{stats}");
    assert!(stats.contains("p50"), "{stats}");
    let all = cli(&server, &["stats", "--window", "7d"]);
    assert!(all.contains("success rate  75.0%"), "{all}");

    let shown = cli(&server, &["tasks", "show", "operators/minutely"]);
    assert!(shown.contains("Every minute (* * * * *)"), "{shown}");
    assert!(shown.contains("Europe/Amsterdam"), "{shown}");
    let fires: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("  20") && l.contains('Z'))
        .collect();
    assert_eq!(fires.len(), 5, "five fire times, local and UTC: {shown}");
    assert!(
        fires[0].contains("+01:00") || fires[0].contains("+02:00"),
        "{shown}"
    );

    let queued = cli(&server, &["tasks", "run", "boom"]);
    assert!(queued.contains("queued run"), "{queued}");

    server.pulse();
    let pulses = cli(&server, &["pulses"]);
    assert!(
        pulses.contains("last pulse") && pulses.contains("on time"),
        "{pulses}"
    );
    assert!(pulses.contains("GAP"), "{pulses}");
}

#[test]
fn unknown_values_are_refused_with_the_valid_ones() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let out = cli_output(&server, &["runs", "list", "--status", "bogus"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus") && err.contains("timed_out"), "{err}");
    let out = cli_output(&server, &["runs", "list", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    let out = cli_output(&server, &["tasks", "show", "no-such-task"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task"));
    let completion = cli(&server, &["completions", "bash"]);
    assert!(completion.contains("pulsehost"), "{completion}");
}

#[test]
fn logs_follow_prints_a_running_steps_output_as_it_comes() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&crate::support::component("fixture-operators"));
    assert_eq!(status, 201, "{body}");
    let id = server.trigger("slow");
    let started = std::time::Instant::now();
    let out = cli_output(&server, &["runs", "logs", &id.to_string(), "--follow"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        lines,
        "every line once, in order"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "it followed the run to its end"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("succeeded"));
}

#[test]
fn a_slow_upload_shows_a_spinner_on_a_terminal_and_nothing_off_one() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let component = crate::support::component_path("fixture-crowd");
    let command = format!("{} plugin push {}", binary(), component.display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("PULSEHOST_URL", &server.url)
        .env("PULSEHOST_ADMIN_TOKEN", ADMIN)
        .env("PULSEHOST_PROGRESS_AFTER_MS", "0")
        .output()
        .expect("run the CLI under a pseudo-terminal");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{seen}");
    assert!(seen.contains("pushed crowd"), "{seen}");
    assert!(
        seen.contains("uploading; the server compiles"),
        "the spinner on a terminal: {seen}"
    );
    // Off a terminal it never draws.
    let quiet = cli_output(&server, &["plugin", "push", component.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("uploading"));
}
