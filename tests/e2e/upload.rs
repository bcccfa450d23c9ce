//! Uploading plugins: what is accepted, and every way an upload is refused
//! with a clear 4xx, nothing stored, and the server still up.

use crate::support::{component, Server, TestDb};

#[test]
fn an_uploaded_plugin_registers_its_tasks_as_a_new_version() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("hello"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["plugin"], "hello");
    assert_eq!(body["version"], 1);
    assert_eq!(body["tasks"], serde_json::json!(["say-hello"]));

    let (status, again) = server.push(&component("hello"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["version"], 1,
        "identical bytes are the version already stored"
    );

    let plugins = server.get("/v1/plugins");
    assert_eq!(plugins["plugins"].as_array().unwrap().len(), 1);
    assert_eq!(plugins["plugins"][0]["version"], 1);
    let tasks = server.get("/v1/tasks");
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "the task keeps its identity across versions");
    assert_eq!(tasks[0]["cron"], "* * * * *");
    let task = server.get(&format!("/v1/tasks/{}", tasks[0]["id"]));
    assert_eq!(task["definition"]["steps"][0]["exec"]["kind"]["type"], "shell");
}

/// Each bad upload: (what, body, expected status, expected error code, text the message must contain).
fn bad_uploads() -> Vec<(&'static str, Vec<u8>, u16, &'static str, &'static str)> {
    vec![
        (
            "not wasm",
            b"#!/bin/sh\necho hi\n".to_vec(),
            400,
            "not_wasm",
            "not WebAssembly",
        ),
        ("empty body", Vec::new(), 400, "bad_request", "empty"),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            400,
            "not_a_component",
            "core WebAssembly module",
        ),
        (
            "another world",
            component("fixture-other-world"),
            422,
            "wrong_world",
            "plugin` world",
        ),
        (
            "describe traps",
            component("fixture-trap"),
            422,
            "plugin_trapped",
            "describe() trapped (wasm trap: wasm `unreachable` instruction executed); the plugin said: thread",
        ),
        (
            "describe traps, in its own words",
            component("fixture-trap"),
            422,
            "plugin_trapped",
            "fixture-trap: describe always panics",
        ),
        (
            "describe loops",
            component("fixture-loop"),
            422,
            "plugin_timeout",
            "did not return within",
        ),
        (
            "describe allocates",
            component("fixture-alloc"),
            422,
            "plugin_out_of_memory",
            "memory limit",
        ),
        (
            "describe errors",
            component("fixture-describe-error"),
            422,
            "describe_failed",
            "database of tasks is unavailable",
        ),
        (
            "invalid cron",
            component("fixture-bad-cron"),
            422,
            "invalid_tasks",
            r#"tasks[0] \"sixty-first-minute\".schedule.cron"#,
        ),
        (
            "duplicate names",
            component("fixture-duplicate"),
            422,
            "invalid_tasks",
            "must be unique",
        ),
        (
            "missing binary",
            component("fixture-missing-binary"),
            422,
            "invalid_tasks",
            "does not exist",
        ),
    ]
}

#[test]
fn every_bad_upload_gets_a_clear_4xx_and_nothing_is_stored() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    for (what, body, status, code, text) in bad_uploads() {
        let (got, answer) = server.push(&body);
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        assert!(
            answer.to_string().contains(text),
            "{what}: {answer} should mention {text:?}"
        );
        let (health, _) = server.request("GET", "/healthz", None, None);
        assert_eq!(health, 200, "{what}: the server must stay up");
    }
    for table in ["plugins", "plugin_versions", "tasks"] {
        assert_eq!(db.count(table), 0, "nothing may be stored in {table}");
    }
}

#[test]
fn problems_name_the_field_that_is_wrong() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (_, answer) = server.push(&component("fixture-missing-binary"));
    let problems = answer["error"]["problems"].as_array().expect("problems list");
    assert!(
        problems
            .iter()
            .any(|p| p["field"].as_str().unwrap_or("").ends_with("kind.binary")
                && p["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("/nonexistent/bin/tool")),
        "{answer}"
    );
}

#[test]
fn an_upload_over_the_size_cap_is_refused_with_413() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_MAX_PLUGIN_BYTES", "1024")]);
    let (status, answer) = server.push(&component("hello"));
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "plugin_too_large");
    assert_eq!(db.count("plugins"), 0);
}
