//! Bad input gets a clear error and loses nothing: binary paths are judged
//! after resolving them, cron errors speak the user's language, uploads and
//! idempotency keys have limits, and a 401 says which token is needed.

use std::time::Duration;

use crate::scheduling::pulse_with;
use crate::support::{component, Server, TestDb};

fn problems(answer: &serde_json::Value) -> String {
    answer["error"]["problems"].to_string()
}

#[test]
fn a_binary_path_that_climbs_out_of_an_allowed_directory_is_refused() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, answer) = server.push(&component("fixture-dotdot"));
    assert_eq!(status, 422, "{answer}");
    let text = problems(&answer);
    assert!(
        text.contains("/usr/sbin/nologin"),
        "names the resolved path: {text}"
    );
    assert!(text.contains("allowed director"), "{text}");
    assert_eq!(db.count("plugins"), 0);
}

#[test]
fn a_binary_swapped_for_a_link_out_of_the_allowed_directories_is_refused_at_run_time() {
    let dir = std::path::Path::new("/tmp/pulsehost-swap-fixture");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let tool = dir.join("tool");
    std::fs::copy("/bin/echo", &tool).unwrap();
    let db = TestDb::new();
    let server = Server::start_with(
        Some(&db.url),
        &[(
            "PULSEHOST_BINARY_DIRS",
            "/tmp/pulsehost-swap-fixture,/usr/bin,/bin",
        )],
    );
    let (status, body) = server.push(&component("fixture-swap"));
    assert_eq!(status, 201, "{body}");
    let run = server.finished_run(server.trigger("tool"), Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["steps"][0]["stdout"].as_str().unwrap().contains("swapped"));

    std::fs::remove_file(&tool).unwrap();
    std::os::unix::fs::symlink("/usr/sbin/nologin", &tool).unwrap();
    let run = server.finished_run(server.trigger("tool"), Duration::from_secs(30));
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/usr/sbin/nologin") && error.contains("allowed director"),
        "{run}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cron_errors_quote_what_the_user_wrote_with_the_real_bounds_and_a_schedule_that_never_fires_is_refused() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, answer) = server.push(&component("fixture-bad-cron"));
    assert_eq!(status, 422, "{answer}");
    let text = problems(&answer);
    assert!(
        text.contains(r#"\"61 * * * *\""#),
        "quotes the expression: {text}"
    );
    assert!(text.contains("0-59"), "states the bounds: {text}");
    assert!(!text.contains("less than 59"), "{text}");
    assert!(!text.contains("0 61 * * * *"), "never the internal form: {text}");

    let (status, answer) = server.push(&component("fixture-never-fires"));
    assert_eq!(status, 422, "{answer}");
    assert!(problems(&answer).contains("never fires"), "{answer}");
    assert_eq!(db.count("plugins"), 0);
}

#[test]
fn an_admin_endpoint_without_a_token_says_it_needs_the_admin_token() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, answer) = server.request("POST", "/v1/plugins", None, Some(b"x"));
    assert_eq!(status, 401);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("admin token"), "{message}");
    assert!(!message.contains("admin or admin"), "{message}");
}

#[test]
fn an_oversized_description_or_too_many_tasks_is_refused_and_nothing_is_stored() {
    let db = TestDb::new();
    let server = Server::start_with(
        Some(&db.url),
        &[
            ("PULSEHOST_MAX_TASKS_PER_PLUGIN", "5"),
            ("PULSEHOST_PLUGIN_MEMORY_BYTES", "268435456"),
        ],
    );
    let (status, answer) = server.push(&component("fixture-big-description"));
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "manifest_too_large", "{answer}");
    let (status, answer) = server.push(&component("fixture-exec"));
    assert_eq!(status, 422, "{answer}");
    let text = problems(&answer);
    assert!(text.contains("at most 5"), "{text}");
    assert_eq!(db.count("plugins"), 0);
    let (status, _) = server.push(&component("hello"));
    assert_eq!(status, 201);
    let listing = server.get("/v1/plugins").to_string();
    assert!(
        listing.len() < 4096,
        "listings stay small: {} bytes",
        listing.len()
    );
}

#[test]
fn idempotency_keys_have_a_length_limit_and_expire() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_IDEMPOTENCY_WINDOW_MS", "1000")]);
    let long = "k".repeat(201);
    let (status, body, _) = pulse_with(&server, "", Some(&long));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("200"),
        "{body}"
    );

    let (_, first, replayed) = pulse_with(&server, "", Some("delivery-1"));
    assert!(!replayed);
    let (_, again, replayed) = pulse_with(&server, "", Some("delivery-1"));
    assert!(replayed, "{again}");
    assert_eq!(again["pulse_id"], first["pulse_id"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, later, replayed) = pulse_with(&server, "", Some("delivery-1"));
    assert_eq!(status, 200, "{later}");
    assert!(!replayed, "an expired key starts a new pulse: {later}");
    assert_ne!(later["pulse_id"], first["pulse_id"]);
}
