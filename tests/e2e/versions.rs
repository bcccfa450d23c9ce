//! Plugin versions: identical uploads, the version list with what each changed,
//! rollback in one call, retiring a plugin, and pruning old component bytes.

use serde_json::Value;

use crate::support::{component, Server, TestDb, ADMIN};

fn version(listed: &Value, number: i64) -> &Value {
    listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == number)
        .unwrap_or_else(|| panic!("no version {number} in {listed}"))
}

fn task_enabled(server: &Server, name: &str) -> Option<bool> {
    let tasks = server.get("/v1/tasks");
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .map(|t| t["enabled"].as_bool().unwrap())
}

#[test]
fn an_identical_upload_returns_the_stored_version_without_compiling_again() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, first) = server.push(&component("hello"));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["created"], true);

    let (status, again) = server.push(&component("hello"));
    assert_eq!(status, 200, "identical bytes are the same version: {again}");
    assert_eq!(again["version"], 1);
    assert_eq!(again["created"], false);
    assert_eq!(again["sha256"], first["sha256"]);
    assert_eq!(db.count("plugin_versions"), 1);
    assert_eq!(
        server.log().matches("component compiled").count(),
        1,
        "the second upload compiled nothing:\n{}",
        server.log()
    );
}

#[test]
fn versions_say_what_changed_and_rollback_is_one_call_with_upload_semantics() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    for (fixture, expected) in [
        ("fixture-toggle-off", 201),
        ("fixture-toggle-on", 201),
        ("fixture-toggle-gone", 201),
    ] {
        let (status, body) = server.push(&component(fixture));
        assert_eq!(status, expected, "{fixture}: {body}");
    }
    let listed = server.get("/v1/plugins/toggle/versions");
    assert_eq!(listed["versions"][0]["version"], 3, "newest first: {listed}");
    assert_eq!(version(&listed, 3)["active"], true);
    assert_eq!(version(&listed, 3)["declared_version"], "3.0.0");
    assert_eq!(
        version(&listed, 3)["changes"]["removed"],
        serde_json::json!(["flip"])
    );
    assert_eq!(
        version(&listed, 2)["changes"]["changed"],
        serde_json::json!(["flip"])
    );
    assert_eq!(version(&listed, 2)["active"], false);
    assert_eq!(
        version(&listed, 1)["changes"]["added"],
        serde_json::json!(["flip", "stay"])
    );
    assert!(version(&listed, 1)["sha256"].as_str().unwrap().len() == 64);
    assert!(version(&listed, 1)["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(task_enabled(&server, "flip"), None, "version 3 removed flip");

    let (status, body) = server.request(
        "POST",
        "/v1/plugins/toggle/versions/2/activate",
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(
        task_enabled(&server, "flip"),
        Some(true),
        "rolled back to version 2: flip is back"
    );
    let listed = server.get("/v1/plugins/toggle/versions");
    assert_eq!(version(&listed, 2)["active"], true);
    assert_eq!(version(&listed, 3)["active"], false);
    assert_eq!(
        db.count("plugin_versions"),
        3,
        "a rollback records no new version"
    );

    // The task is back as if uploaded now: no occurrence from before the
    // rollback fires (flip fires every second), only new ones.
    let pulse = server.pulse();
    let flips = crate::support::recorded_in(&pulse, "flip");
    assert!(flips.len() <= 2, "only slots after the rollback: {pulse}");

    let (status, body) = server.request(
        "POST",
        "/v1/plugins/toggle/versions/9/activate",
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("version 9 of plugin toggle"));
}

#[test]
fn a_removed_plugin_is_no_longer_due_keeps_its_history_and_comes_back_by_activation() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, _) = server.push(&component("hello"));
    assert_eq!(status, 201);
    let run = server.trigger("say-hello");
    server.finished_run(run, std::time::Duration::from_secs(30));

    let (status, body) = server.request("DELETE", "/v1/plugins/hello", Some(ADMIN), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get("/v1/plugins")["plugins"], serde_json::json!([]));
    assert_eq!(server.get("/v1/tasks")["tasks"], serde_json::json!([]));
    let runs = server.get("/v1/runs");
    assert!(
        runs["runs"].as_array().unwrap().iter().any(|r| r["id"] == run),
        "history stays: {runs}"
    );
    let listed = server.get("/v1/plugins/hello/versions");
    assert_eq!(version(&listed, 1)["active"], false);

    let (status, body) = server.request("DELETE", "/v1/plugins/nothing-here", Some(ADMIN), None);
    assert_eq!(status, 404, "{body}");

    let (status, body) = server.request("POST", "/v1/plugins/hello/versions/1/activate", Some(ADMIN), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(task_enabled(&server, "say-hello"), Some(true));
}

#[test]
fn old_bytes_are_pruned_beyond_the_newest_versions_and_an_identical_upload_restores_them() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_KEEP_VERSIONS", "1")]);
    for fixture in ["fixture-toggle-off", "fixture-toggle-on"] {
        let (status, body) = server.push(&component(fixture));
        assert_eq!(status, 201, "{fixture}: {body}");
    }
    let listed = server.get("/v1/plugins/toggle/versions");
    assert_eq!(version(&listed, 1)["pruned"], true, "{listed}");
    assert_eq!(version(&listed, 2)["pruned"], false, "never the active version's");

    let (status, body) = server.request(
        "POST",
        "/v1/plugins/toggle/versions/1/activate",
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload that component again"),
        "{body}"
    );

    let (status, body) = server.push(&component("fixture-toggle-off"));
    assert_eq!(status, 200, "the pruned version comes back: {body}");
    assert_eq!(body["version"], 1);
    assert_eq!(
        task_enabled(&server, "flip"),
        Some(false),
        "version 1 disables flip"
    );
    let listed = server.get("/v1/plugins/toggle/versions");
    assert_eq!(version(&listed, 1)["active"], true);
    assert_eq!(version(&listed, 1)["pruned"], false);
    assert_eq!(
        version(&listed, 2)["pruned"],
        false,
        "version 2 is still the newest one"
    );
}

#[test]
fn a_plugin_removed_while_a_pulse_waits_for_its_answers_gets_no_run_from_that_pulse() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-crowd"));
    assert_eq!(status, 201, "{body}");
    let pulse = std::thread::scope(|s| {
        let pulse = s.spawn(|| server.pulse());
        // slow-yes answers "yes" after 700 ms; the plugin is retired meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(250));
        let (status, body) = server.request("DELETE", "/v1/plugins/crowd", Some(ADMIN), None);
        assert_eq!(status, 200, "{body}");
        pulse.join().unwrap()
    });
    assert!(
        crate::support::recorded_in(&pulse, "slow-yes").is_empty(),
        "a retired plugin's task is not due, even for a pulse that began before: {pulse}"
    );
    assert_eq!(db.count("runs"), 0);
}
