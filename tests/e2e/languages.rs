//! An author's three commands in each language, outside this repository:
//! `pulsehost plugin new`, `pulsehost plugin build`, `pulsehost plugin push`
//! (plus `plugin check`), then a pulse runs the plugin's dynamic task and its
//! run is read back. The builds install componentize-py and jco themselves
//! when they are missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{recorded_in, Server, TestDb, ADMIN};

/// Runs `pulsehost args…` in `dir`; its stdout, asserting success.
fn pulsehost(dir: &Path, server: Option<&Server>, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulsehost"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("PULSEHOST_ADMIN_TOKEN");
    // Rust builds reuse the std and dependencies the fixtures' build compiled.
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        cmd.env("CARGO_TARGET_DIR", Path::new(&target).join("plugins-build"));
    }
    if let Some(server) = server {
        cmd.env("PULSEHOST_URL", &server.url)
            .env("PULSEHOST_ADMIN_TOKEN", ADMIN);
    }
    let out = cmd.output().expect("run pulsehost");
    assert!(
        out.status.success(),
        "pulsehost {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// From nothing to a run in a pulse, in `lang` (`extra`: more `plugin new` arguments).
fn from_nothing_to_a_run(lang: &str, extra: &[&str]) {
    let name = format!("hello-{lang}");
    let work = tempfile::tempdir().unwrap();
    let mut new = vec!["plugin", "new", &name, "--lang", lang];
    new.extend_from_slice(extra);
    pulsehost(work.path(), None, &new);
    let project = work.path().join(&name);
    let manifest = match lang {
        "rust" => "Cargo.toml",
        "python" => "pyproject.toml",
        _ => "package.json",
    };
    for file in ["README.md", ".gitignore", manifest] {
        assert!(project.join(file).is_file(), "{file} scaffolded");
    }

    let built = pulsehost(&project, None, &["plugin", "build"]);
    let component = built.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        Path::new(&component).is_file(),
        "build printed the component's path: {built}"
    );

    let checked = pulsehost(&project, None, &["plugin", "check", &component]);
    assert!(
        checked.contains("task hello: cron `* * * * *` in UTC"),
        "{checked}"
    );
    assert!(checked.contains("next: "), "five next fire times: {checked}");
    assert!(checked.contains("no problems"), "{checked}");

    let db = TestDb::new();
    let server = Server::start(&db.url);
    let pushed = pulsehost(&project, Some(&server), &["plugin", "push", &component]);
    assert!(pushed.contains(&format!("pushed {name} version 1")), "{pushed}");
    let hello = server.get(&format!("/v1/tasks/{}", server.task_id("hello")));
    assert_eq!(
        hello["definition"]["schedule"]["jitter_ms"], 5000,
        "the SDK's jitter reached the host: {hello}"
    );
    let pulse = server.pulse();
    let asked = recorded_in(&pulse, "catch-up");
    assert_eq!(
        asked.len(),
        1,
        "should-run answered from the typed context: {pulse}"
    );
    let run = server.finished_run(asked[0]["run_id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["steps"][0]["stdout"]
            .as_str()
            .unwrap()
            .contains("catching up"),
        "{run}"
    );
    assert_eq!(
        run["steps"][0]["plan"]["limits"]["processes"], 64,
        "the SDK's per-step limit reached the sandbox: {run}"
    );
}

#[test]
fn a_rust_plugin_from_nothing_to_a_run_in_three_commands() {
    from_nothing_to_a_run("rust", &[]);
}

#[test]
fn a_rust_plugin_takes_the_sdk_as_a_git_dependency() {
    // This checkout is a git repository: its committed SDK, as any author's
    // crate would take it from a remote.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    from_nothing_to_a_run("rust", &["--sdk", &format!("file://{}", repo.display())]);
}

#[test]
fn a_python_plugin_from_nothing_to_a_run_in_three_commands() {
    from_nothing_to_a_run("python", &[]);
}

#[test]
fn a_javascript_plugin_from_nothing_to_a_run_in_three_commands() {
    from_nothing_to_a_run("js", &[]);
}
