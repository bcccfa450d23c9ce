//! The documented path, through the built binary's CLI: serve, push, pulse,
//! then read the run back over HTTP.

use std::process::Command;
use std::time::Duration;

use chrono::Timelike;

use crate::support::{cli, component_path, server::binary, Server, TestDb};

#[test]
fn push_pulse_and_read_the_run_back_through_the_cli_and_http() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let hello = component_path("hello");
    let pushed = cli(&server, &["plugin", "push", hello.to_str().unwrap()]);
    assert!(pushed.contains("pushed hello version 1"), "{pushed}");
    assert!(cli(&server, &["plugin", "list"]).contains("hello"));
    assert!(cli(&server, &["tasks"]).contains("say-hello"));

    // `say-hello` runs every minute: wait for the next minute boundary after the upload.
    let now = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(u64::from(60 - now.second()) * 1000 + 200));
    let pulse: serde_json::Value =
        serde_json::from_str(&cli(&server, &["--json", "pulse"])).expect("pulse JSON");
    let run_id = pulse["claimed"][0]["run_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("nothing claimed: {pulse}"));

    let run = server.finished_run(run_id, Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"][0]["stdout"], "hello from pulsehost\n");

    let shown = cli(&server, &["runs", "show", &run_id.to_string()]);
    assert!(shown.contains("hello from pulsehost"), "{shown}");
    assert!(cli(&server, &["runs", "list"]).contains("succeeded"));
}

#[test]
fn a_cli_error_explains_itself_and_exits_non_zero() {
    let out = Command::new(binary())
        .args(["plugin", "list"])
        .env("PULSEHOST_URL", "http://127.0.0.1:9")
        .output()
        .expect("run the CLI");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach pulsehost"), "{stderr}");
}

#[test]
fn versions_rollback_and_remove_through_the_cli() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    for fixture in ["fixture-toggle-off", "fixture-toggle-on"] {
        let path = component_path(fixture);
        let pushed = cli(&server, &["plugin", "push", path.to_str().unwrap()]);
        assert!(pushed.starts_with("pushed toggle"), "{pushed}");
    }
    let again = cli(
        &server,
        &[
            "plugin",
            "push",
            component_path("fixture-toggle-on").to_str().unwrap(),
        ],
    );
    assert!(again.contains("identical to the active version"), "{again}");

    let versions = cli(&server, &["plugin", "versions", "toggle"]);
    let lines: Vec<&str> = versions.lines().collect();
    assert!(
        lines[0].contains("VERSION") && lines[0].contains("CHANGES"),
        "{versions}"
    );
    assert!(
        lines[1].trim_start().starts_with("2") && lines[1].contains('*'),
        "newest and active first: {versions}"
    );
    assert!(lines[1].contains("~flip"), "version 2 changed flip: {versions}");
    assert!(
        lines[2].contains("+flip,stay"),
        "version 1 added both: {versions}"
    );

    let rolled = cli(&server, &["plugin", "rollback", "toggle"]);
    assert!(rolled.contains("toggle version 1 is active"), "{rolled}");
    let forward = cli(&server, &["plugin", "rollback", "toggle", "--to", "2"]);
    assert!(forward.contains("toggle version 2 is active"), "{forward}");

    let removed = cli(&server, &["plugin", "remove", "toggle"]);
    assert!(removed.contains("toggle retired"), "{removed}");
    let listed = cli(&server, &["plugin", "list"]);
    assert!(!listed.contains("toggle"), "{listed}");
    let json = cli(&server, &["--json", "plugin", "versions", "toggle"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["active"] == false),
        "{json}"
    );
}
