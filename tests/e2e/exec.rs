//! One native process, driven directly: environment, process groups, output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pulsehost::exec::{run, ExitKind, ProcessSpec, Program};
use tokio_util::sync::CancellationToken;

fn shell(script: &str) -> ProcessSpec {
    ProcessSpec {
        program: Program::Shell(script.into()),
        args: vec![],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: PathBuf::from("/tmp"),
        stdin: None,
        timeout: Duration::from_secs(10),
        grace: Duration::from_millis(300),
        output_cap: 1 << 20,
        confinement: None,
        rolling: false,
        terminal: false,
    }
}

#[tokio::test]
async fn the_child_sees_only_the_environment_it_is_given() {
    std::env::set_var("PULSEHOST_ADMIN_TOKEN", "secret-of-the-host");
    let outcome = run(&shell("env"), &CancellationToken::new()).await;
    let env = String::from_utf8_lossy(&outcome.stdout.bytes);
    assert!(!env.contains("secret-of-the-host"), "{env}");
    assert!(env.contains("PATH=/usr/bin:/bin"));
}

#[tokio::test]
async fn a_grandchild_holding_stdout_does_not_outlive_the_timeout() {
    let mut spec = shell("(sleep 60; echo late) & echo started; sleep 60");
    spec.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let outcome = run(&spec, &CancellationToken::new()).await;
    assert_eq!(outcome.kind, ExitKind::TimedOut);
    assert_eq!(outcome.stdout.bytes, b"started\n");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
    let mut spec = shell("trap '' TERM; echo ready; while true; do sleep 0.05; done");
    spec.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let outcome = run(&spec, &CancellationToken::new()).await;
    assert_eq!(outcome.kind, ExitKind::TimedOut);
    assert_eq!(outcome.signal, Some(9), "SIGKILL after the grace period");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn output_past_the_cap_is_counted_and_discarded() {
    let mut spec = shell("head -c 300000 /dev/zero");
    spec.output_cap = 1000;
    let outcome = run(&spec, &CancellationToken::new()).await;
    assert_eq!(outcome.kind, ExitKind::Succeeded);
    assert_eq!(outcome.stdout.bytes.len(), 1000);
    assert_eq!(outcome.stdout.total, 300_000);
    assert!(outcome.stdout.truncated);
}

#[tokio::test]
async fn exit_codes_stdin_and_missing_programs_are_reported() {
    let mut spec = shell("cat; exit 3");
    spec.stdin = Some(br#"{"a":1}"#.to_vec());
    let outcome = run(&spec, &CancellationToken::new()).await;
    assert_eq!((outcome.kind, outcome.exit_code), (ExitKind::Failed, Some(3)));
    assert_eq!(outcome.stdout.bytes, br#"{"a":1}"#);
    let mut missing = shell("");
    missing.program = Program::Executable("/nonexistent/program".into());
    let outcome = run(&missing, &CancellationToken::new()).await;
    assert_eq!(outcome.kind, ExitKind::Failed);
    assert!(outcome.error.unwrap().contains("could not start"));
}

#[tokio::test]
async fn cancelling_kills_the_process_group() {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let outcome = run(&shell("sleep 30"), &token).await;
    assert_eq!(outcome.kind, ExitKind::Cancelled);
}

/// Processes (zombies included) whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the command name: state ppid pgrp …
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            rest.split_whitespace().nth(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .collect()
}

#[tokio::test]
async fn a_timed_out_step_leaves_no_process_and_no_zombie_behind() {
    pulsehost::exec::become_subreaper();
    let mut spec = shell("sleep 60 & sleep 60 & echo $$; wait");
    spec.timeout = Duration::from_millis(300);
    let outcome = run(&spec, &CancellationToken::new()).await;
    assert_eq!(outcome.kind, ExitKind::TimedOut);
    let pgid: i32 = String::from_utf8_lossy(&outcome.stdout.bytes)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        group_members(pgid),
        Vec::<String>::new(),
        "process group {pgid} must be gone"
    );
}

#[tokio::test]
async fn a_double_forked_daemon_holding_stdout_does_not_hold_the_host() {
    let mut spec = shell("setsid sh -c 'sleep 5' & echo parent done");
    spec.timeout = Duration::from_secs(10);
    let start = Instant::now();
    let outcome = run(&spec, &CancellationToken::new()).await;
    assert_eq!(outcome.kind, ExitKind::Succeeded);
    assert!(String::from_utf8_lossy(&outcome.stdout.bytes).contains("parent done"));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}
