//! Test runs with chosen input, and JSON Schemas for a step's stdin and
//! stdout: checked at upload, before a manual run is queued, before a step
//! starts and after it ends, with failure type `schema` and each violation's
//! place recorded.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{cli, cli_output, component, eventually, Server, TestDb, ADMIN};

const LIMIT: Duration = Duration::from_secs(60);

/// Queues `task` with `body`; the status and answer.
fn run_with(server: &Server, task: &str, body: &Value) -> (u16, Value) {
    let id = server.task_id(task);
    let bytes = body.to_string().into_bytes();
    server.request("POST", &format!("/v1/tasks/{id}/run"), Some(ADMIN), Some(&bytes))
}

fn finished(server: &Server, answer: &(u16, Value)) -> Value {
    assert_eq!(answer.0, 202, "{}", answer.1);
    server.finished_run(answer.1["run_id"].as_i64().unwrap(), LIMIT)
}

fn stdout_json(run: &Value, step: usize) -> Value {
    run["steps"][step]["stdout_json"].clone()
}

fn runs_of(server: &Server, task: &str) -> usize {
    let id = server.task_id(task);
    let page = server.get(&format!("/v1/runs?task_id={id}&limit=100"));
    page["runs"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_manual_run_takes_chosen_stdin_and_envs_records_them_and_checks_them_first() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-schemas")).0, 201);

    // Without a body the step reads what it declares.
    let declared = server.finished_run(server.trigger("greet"), LIMIT);
    assert_eq!(declared["status"], "succeeded", "{declared}");
    assert_eq!(stdout_json(&declared, 0)["input"], json!({"name": "world"}));
    assert_eq!(stdout_json(&declared, 0)["mode"], "declared");
    assert!(declared["overrides"].is_null(), "{declared}");

    // Chosen input reaches the step and is recorded with the run.
    let body = json!({"stdin_json": {"name": "Ada", "times": 2}, "envs": {"MODE": "test"}});
    let chosen = finished(&server, &run_with(&server, "greet", &body));
    assert_eq!(chosen["status"], "succeeded", "{chosen}");
    assert_eq!(stdout_json(&chosen, 0)["input"], body["stdin_json"]);
    assert_eq!(stdout_json(&chosen, 0)["mode"], "test");
    assert_eq!(chosen["overrides"], body, "{chosen}");

    // Input the first step's schema refuses is refused before anything is queued.
    let before = runs_of(&server, "greet");
    let (status, refused) = run_with(&server, "greet", &json!({"stdin_json": {"name": "", "times": 9}}));
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "schema", "{refused}");
    let fields: Vec<&str> = refused["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert!(fields.contains(&"stdin_json/name"), "{refused}");
    assert!(fields.contains(&"stdin_json/times"), "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"greet\""),
        "{refused}"
    );

    // Malformed overrides are refused with the field and the fix.
    let bad = [
        (
            json!({"envs": {"PULSEHOST_RUN_ID": "1"}}),
            "envs.PULSEHOST_RUN_ID",
        ),
        (json!({"envs": {"1X": "v"}}), "envs.1X"),
        (json!({"stdin": {}}), "stdin_json"),
        (json!({"envs": ["MODE=x"]}), "envs"),
    ];
    for (body, named) in bad {
        let (status, answer) = run_with(&server, "greet", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_overrides", "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(named),
            "{named}: {answer}"
        );
    }
    assert_eq!(
        runs_of(&server, "greet"),
        before,
        "a refused request recorded a run"
    );

    // The CLI sends the same; `runs show` prints what was chosen.
    let queued = cli(
        &server,
        &[
            "tasks",
            "run",
            "greet",
            "--stdin-json",
            r#"{"name":"cli"}"#,
            "--env",
            "MODE=cli",
        ],
    );
    let run_id: i64 = queued
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no run id in {queued}"));
    let run = server.finished_run(run_id, LIMIT);
    assert_eq!(stdout_json(&run, 0)["input"], json!({"name": "cli"}), "{run}");
    assert_eq!(stdout_json(&run, 0)["mode"], "cli", "{run}");
    let shown = cli(&server, &["runs", "show", &run_id.to_string()]);
    assert!(shown.contains(r#"chosen stdin: {"name":"cli"}"#), "{shown}");
    assert!(shown.contains("chosen env: MODE=cli"), "{shown}");
    let refused = cli_output(
        &server,
        &["tasks", "run", "greet", "--stdin-json", r#"{"name": 1}"#],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("stdin_json") && said.contains("/name"), "{said}");
}

#[test]
fn stdout_and_piped_stdin_that_break_their_schemas_fail_the_step_as_schema() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-schemas")).0, 201);

    let wrong_type = server.finished_run(server.trigger("bad-report"), LIMIT);
    assert_eq!(wrong_type["status"], "failed", "{wrong_type}");
    assert_eq!(wrong_type["failure_type"], "schema", "{wrong_type}");
    let step = &wrong_type["steps"][0];
    assert_eq!(step["exit_code"], 0, "it ran and exited 0: {step}");
    assert_eq!(step["status"], "failed", "{step}");
    assert_eq!(step["schema_errors"][0]["at"], "/count", "{step}");
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("stdout does not satisfy its schema"),
        "{step}"
    );

    let text = server.finished_run(server.trigger("text-report"), LIMIT);
    assert_eq!(text["failure_type"], "schema", "{text}");
    assert!(
        text["error"].as_str().unwrap().contains("stdout is not JSON"),
        "{text}"
    );

    // The second step's stdin, piped from the first, breaks its schema: it
    // never starts.
    let piped = server.finished_run(server.trigger("piped-negative"), LIMIT);
    assert_eq!(piped["failure_type"], "schema", "{piped}");
    let steps = piped["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{piped}");
    assert_eq!(steps[0]["status"], "succeeded", "{piped}");
    assert!(steps[1]["exit_code"].is_null(), "the step started: {piped}");
    assert_eq!(steps[1]["schema_errors"][0]["at"], "/n", "{piped}");
    assert!(!steps[1]["stdout"]
        .as_str()
        .unwrap_or("")
        .contains("should-not-run"));
}

#[test]
fn a_retry_keeps_the_runs_chosen_input() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    assert_eq!(server.push(&component("fixture-schemas")).0, 201);
    let body = json!({"stdin_json": [1, 2], "envs": {"MODE": "kept"}});
    let first = finished(&server, &run_with(&server, "retried-with-input", &body));
    assert_eq!(first["status"], "failed", "{first}");
    let retry = eventually(LIMIT, "the retry to be queued", || {
        let runs = server.get("/v1/runs?limit=20");
        runs["runs"]
            .as_array()?
            .iter()
            .find(|r| r["retry_of"] == first["id"])?
            .get("id")?
            .as_i64()
    });
    let second = server.finished_run(retry, LIMIT);
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["overrides"], body, "{second}");
    let out = second["steps"][0]["stdout"].as_str().unwrap();
    assert!(out.contains("attempt 2 mode=kept input=[1,2]"), "{out}");
}

#[test]
fn schemas_that_are_not_json_not_valid_refer_outside_or_break_their_own_input_are_refused_at_upload() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-bad-schemas"));
    assert_eq!(status, 422, "{body}");
    let problems: Vec<(String, String)> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        ("not-json", "stdin-schema", "is not JSON"),
        ("not-a-schema", "stdout-schema", "is not a valid JSON Schema"),
        ("reads-a-file", "stdin-schema", "is not a valid JSON Schema"),
        ("own-input-breaks-it", "stdin-json", "does not satisfy its schema"),
    ];
    for (task, field, message) in expect {
        assert!(
            problems
                .iter()
                .any(|(f, m)| f.contains(task) && f.ends_with(field) && m.contains(message)),
            "{task}.{field}: {message}: {problems:?}"
        );
    }
    assert_eq!(
        server.get("/v1/plugins")["plugins"]
            .as_array()
            .map_or(0, Vec::len),
        0
    );
}
