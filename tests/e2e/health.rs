//! Liveness, readiness with the last pulse's age, and Prometheus metrics.

use std::time::Duration;

use crate::operators::history;
use crate::support::{eventually, Server, TestDb, READ};

#[test]
fn readiness_reports_the_database_migrations_plugins_and_a_late_pulse() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_EXPECTED_PULSE_INTERVAL", "2s")]);
    let ready = eventually(Duration::from_secs(30), "the host to be ready", || {
        let (status, body) = server.request("GET", "/readyz", None, None);
        (status == 200).then_some(body)
    });
    assert_eq!(ready["database"], "ok", "{ready}");
    assert_eq!(ready["migrations"], "applied", "{ready}");
    assert_eq!(ready["plugins"], "warmed", "{ready}");
    assert_eq!(ready["pulse"]["status"], "none yet", "{ready}");
    server.pulse();
    let (_, ready) = server.request("GET", "/readyz", None, None);
    assert_eq!(ready["pulse"]["status"], "on time", "{ready}");
    std::thread::sleep(Duration::from_millis(2500));
    let (status, ready) = server.request("GET", "/readyz", None, None);
    assert_eq!(
        status, 200,
        "a late pulse is reported, the host stays in service: {ready}"
    );
    assert_eq!(ready["pulse"]["status"], "late", "{ready}");
    assert!(ready["pulse"]["age_seconds"].as_f64().unwrap() > 2.0, "{ready}");
}

#[test]
fn metrics_count_runs_by_task_and_status_and_need_the_read_token_unless_public() {
    let db = TestDb::new();
    let (server, _) = history(&db);
    server.pulse();
    let (status, _) = server.request("GET", "/metrics", None, None);
    assert_eq!(status, 401, "metrics need a token by default");
    // The pulse may have started a run: scrape once nothing runs any more.
    let text = eventually(Duration::from_secs(30), "no run to be running", || {
        let text = scrape(&server, Some(READ));
        text.lines()
            .any(|l| l == "pulsehost_runs_running 0")
            .then_some(text)
    });
    for line in [
        r#"pulsehost_runs_finished_total{plugin="operators",task="boom",status="failed"} 1"#,
        r#"pulsehost_runs_finished_total{plugin="operators",task="ok",status="succeeded"} 2"#,
        r#"pulsehost_runs_executed_total{status="succeeded"} 3"#,
        "pulsehost_run_duration_seconds_count 4",
        "pulsehost_queue_depth 0",
        "pulsehost_runs_running 0",
        r#"pulsehost_pulses_handled_total{outcome="ok"} 1"#,
        "# TYPE pulsehost_seconds_since_last_pulse gauge",
        "# TYPE pulsehost_plugin_call_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line || l.starts_with(line)),
            "no `{line}` in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");

    let public = Server::start_with(Some(&db.url), &[("PULSEHOST_METRICS_PUBLIC", "true")]);
    assert!(scrape(&public, None).contains("pulsehost_runs_finished_total"));
}

fn scrape(server: &Server, token: Option<&str>) -> String {
    let mut req = ureq::get(&format!("{}/metrics", server.url));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let response = req.call().unwrap();
    assert!(response
        .content_type()
        .starts_with("application/openmetrics-text"));
    response.into_string().unwrap()
}

#[test]
fn the_openapi_document_is_served_and_describes_the_api() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, doc) = server.request("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let runs = &doc["paths"]["/v1/runs"]["get"];
    let params: Vec<&str> = runs["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["status", "tag", "since", "until", "hide_missed", "before"] {
        assert!(params.contains(&name), "{params:?}");
    }
    assert!(doc["components"]["securitySchemes"]["admin"].is_object(), "{doc}");
}
