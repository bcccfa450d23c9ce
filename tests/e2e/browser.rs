//! The dashboard in a real headless Chromium: sign in (a wrong token refused),
//! read a run's output with markup shown as text, filter runs, run a task now
//! and watch it finish.

use std::time::Duration;

use crate::operators::history;
use crate::support::browser::Browser;
use crate::support::{eventually, TestDb, ADMIN};

#[test]
fn an_operator_signs_in_reads_output_filters_runs_and_runs_a_task_in_a_real_browser() {
    let db = TestDb::new();
    let (server, ids) = history(&db);
    let browser = Browser::start();

    // Signed out, the dashboard sends the browser to sign in; a wrong token is refused.
    browser.open(&format!("{}/", server.url));
    assert_eq!(browser.location(), "/ui/login");
    browser.type_into("#token", "not-the-token");
    browser.click("#sign-in");
    let refusal = eventually(Duration::from_secs(30), "the refusal", || {
        browser.try_text("#error")
    });
    assert!(
        refusal.contains("neither the admin nor the read token"),
        "{refusal}"
    );
    assert_eq!(browser.location(), "/ui/login");

    browser.type_into("#token", ADMIN);
    browser.click("#sign-in");
    browser.arrive("the overview", |here| here == "/");
    assert_eq!(browser.text("#failures"), "1", "boom failed once");

    // A step that printed a <script> shows it as text; nothing ran.
    let markup = ids[3].1;
    browser.open(&format!("{}/ui/runs/{markup}", server.url));
    assert_eq!(
        browser.title(),
        format!("Run {markup} · pulsehost"),
        "the step's script did not run"
    );
    let stdout = browser.text("pre.stdout");
    assert!(
        stdout.contains(r#"<script>document.title="pwned"</script><b>bold</b>"#),
        "{stdout}"
    );
    assert!(browser.text(".process").contains("not UTF-8"));

    // Filter: only failed runs.
    browser.open(&format!("{}/ui/runs", server.url));
    assert_eq!(browser.texts("tr.run").len(), 4);
    browser.click("input[name=status][value=failed]");
    browser.click("#apply");
    browser.arrive("the filtered runs", |here| here.contains("status=failed"));
    let rows = browser.texts("tr.run");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("operators/boom"), "{rows:?}");

    // Run a task now and watch its page until it has finished.
    browser.open(&format!("{}/ui/tasks", server.url));
    browser.click("tr.task[data-name=ok] button.run-now");
    browser.arrive("the new run's page", |here| here.starts_with("/ui/runs/"));
    eventually(Duration::from_secs(30), "the run to finish on its page", || {
        (browser.try_text("#status").as_deref() == Some("succeeded")).then_some(())
    });
    let output = eventually(Duration::from_secs(10), "the run's output", || {
        browser.try_text("pre.stdout")
    });
    assert!(output.contains("all good"), "{output}");
}
