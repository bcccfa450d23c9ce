//! Components are compiled once: the artifact is persisted and loaded by a
//! restarted host, a corrupt artifact is compiled again, a replica that never
//! saw a component compiles it from PostgreSQL in the background while its
//! pulses defer the question, and a failed upload keeps nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{component, eventually, Server, TestDb};

/// The compiled artifacts in a directory of them.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// A server keeping its compiled artifacts in `dir`.
fn with_compiled_dir(db: &TestDb, dir: &Path) -> Server {
    Server::start_with(
        Some(&db.url),
        &[("PULSEHOST_COMPILED_DIR", dir.to_str().unwrap())],
    )
}

/// The errors a pulse reported for `task`.
fn errors_for(pulse: &serde_json::Value, task: &str) -> Vec<String> {
    pulse["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["task"] == task)
        .map(|e| e["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Pulses until `task` has a queued or finished run; returns how many pulses deferred it.
fn pulse_until_asked(server: &Server, task: &str) -> usize {
    let mut deferred = 0;
    eventually(Duration::from_secs(60), "the dynamic task to be asked", || {
        let pulse = server.pulse();
        let errors = errors_for(&pulse, task);
        deferred += errors.iter().filter(|e| e.starts_with("deferred")).count();
        assert!(
            errors.iter().all(|e| e.starts_with("deferred")),
            "only deferrals expected: {pulse}"
        );
        (!crate::support::recorded_in(&pulse, task).is_empty()).then_some(())
    });
    deferred
}

#[test]
fn a_restarted_host_loads_the_compiled_artifact_instead_of_compiling() {
    let db = TestDb::new();
    let mut first = Server::start(&db.url);
    let (status, body) = first.push(&component("fixture-dynamic"));
    assert_eq!(status, 201, "{body}");
    let sha = body["sha256"].as_str().unwrap().to_string();
    // Stopped right after the upload answered: the artifact is already on disk.
    first.stop();
    let stored = artifacts(&first.data_path().join("compiled"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&sha))
        .expect("the upload wrote its artifact before answering");

    let compiled = tempfile::tempdir().unwrap();
    std::fs::copy(&stored, compiled.path().join(stored.file_name().unwrap())).unwrap();
    let second = with_compiled_dir(&db, compiled.path());
    eventually(Duration::from_secs(30), "the plugins to be warmed", || {
        second.log().contains("plugins warmed").then_some(())
    });
    assert!(
        !second.log().contains("component compiled"),
        "loaded, not compiled:\n{}",
        second.log()
    );
    let pulse = second.pulse();
    assert!(
        errors_for(&pulse, "poll").is_empty(),
        "warmed before the pulse: {pulse}"
    );
    assert_eq!(crate::support::recorded_in(&pulse, "poll").len(), 1, "{pulse}");
}

#[test]
fn a_corrupt_artifact_is_discarded_and_compiled_again() {
    let db = TestDb::new();
    let compiled = tempfile::tempdir().unwrap();
    let mut first = with_compiled_dir(&db, compiled.path());
    let (status, body) = first.push(&component("fixture-dynamic"));
    assert_eq!(status, 201, "{body}");
    let stored = eventually(Duration::from_secs(30), "the artifact to be written", || {
        artifacts(compiled.path()).into_iter().next()
    });
    first.stop();
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let second = with_compiled_dir(&db, compiled.path());
    pulse_until_asked(&second, "poll");
    let log = second.log();
    assert!(log.contains("compiled artifact discarded"), "{log}");
    assert!(log.contains("component compiled"), "{log}");
    let rewritten = std::fs::read(&stored).unwrap();
    assert_ne!(rewritten, bytes, "the artifact was written again");
}

#[test]
fn a_replica_that_never_saw_a_component_defers_then_compiles_it_from_postgres() {
    let db = TestDb::new();
    let uploader = Server::start(&db.url);
    let replica = Server::start(&db.url);
    eventually(Duration::from_secs(30), "the replica to warm", || {
        replica.log().contains("plugins warmed").then_some(())
    });
    let (status, body) = uploader.push(&component("fixture-dynamic"));
    assert_eq!(status, 201, "{body}");

    let pulse = replica.pulse();
    let errors = errors_for(&pulse, "poll");
    assert_eq!(
        errors.len(),
        1,
        "the first pulse defers, it never waits for a compile: {pulse}"
    );
    assert!(errors[0].starts_with("deferred"), "{pulse}");
    pulse_until_asked(&replica, "poll");
    assert!(replica.log().contains("component compiled"), "{}", replica.log());
    assert_eq!(
        artifacts(&replica.data_path().join("compiled")).len(),
        1,
        "the replica persisted what it compiled"
    );
}

#[test]
fn a_failed_upload_leaves_no_compiled_component_behind() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-describe-error"));
    assert_eq!(status, 422, "{body}");
    let (status, body) = server.push(&component("fixture-bad-cron"));
    assert_eq!(status, 422, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        artifacts(&server.data_path().join("compiled")).is_empty(),
        "{:?}",
        artifacts(&server.data_path().join("compiled"))
    );
    let (status, body) = server.push(&component("hello"));
    assert_eq!(status, 201, "{body}");
    eventually(Duration::from_secs(30), "the accepted upload's artifact", || {
        (artifacts(&server.data_path().join("compiled")).len() == 1).then_some(())
    });
}

#[test]
fn an_import_the_host_does_not_provide_is_refused_before_any_compile() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let mut bytes = wat::parse_str(
        r#"(component
            (import "wasi:http/types@0.2.3" (instance))
            (import "wasi:http/outgoing-handler@0.2.3" (instance))
            (import "wasi:io/streams@0.2.3" (instance))
        )"#,
    )
    .unwrap();
    // A custom section naming the toolchain, as componentize-js leaves one,
    // and 30 MB of padding: refusing must not depend on the size.
    let mut section = vec![0u8];
    let mut payload = b"\x09producersStarlingMonkey".to_vec();
    payload.resize(30 << 20, b' ');
    leb128(&mut section, payload.len());
    section.extend_from_slice(&payload);
    bytes.extend_from_slice(&section);

    let started = std::time::Instant::now();
    let (status, body) = server.push(&bytes);
    let elapsed = started.elapsed();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_imports", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("wasi:http/types@0.2.3"), "{message}");
    assert!(message.contains("wasi:http/outgoing-handler@0.2.3"), "{message}");
    assert!(
        !message.contains("wasi:io/streams"),
        "wasi:io is provided: {message}"
    );
    assert!(
        message.contains("--disable"),
        "the componentize-js fix: {message}"
    );
    assert!(!server.log().contains("component compiled"), "{}", server.log());
    eprintln!("refused a 30 MB component in {elapsed:?}");
}

/// Appends `value` as unsigned LEB128.
fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn the_memory_cache_is_bounded_and_a_dropped_component_comes_back_from_disk() {
    let db = TestDb::new();
    let server = Server::start_with(Some(&db.url), &[("PULSEHOST_PLUGIN_CACHE_BYTES", "1")]);
    for fixture in ["fixture-dynamic", "fixture-sleepy"] {
        let (status, body) = server.push(&component(fixture));
        assert_eq!(status, 201, "{fixture}: {body}");
    }
    assert!(
        server.log().contains("compiled component dropped from memory"),
        "one component fits, the older one is dropped:\n{}",
        server.log()
    );
    let pulse = server.pulse();
    let errors = errors_for(&pulse, "poll");
    assert!(errors.len() == 1 && errors[0].starts_with("deferred"), "{pulse}");
    assert_eq!(
        crate::support::recorded_in(&pulse, "awake").len(),
        1,
        "the one in memory is asked: {pulse}"
    );
    pulse_until_asked(&server, "poll");
    assert_eq!(
        server.log().matches("component compiled").count(),
        2,
        "loaded back from disk, not compiled:\n{}",
        server.log()
    );
}

#[test]
fn a_hundred_dynamic_questions_in_one_pulse_all_get_their_answer() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-crowd"));
    assert_eq!(status, 201, "{body}");
    let pulse = server.pulse();
    assert_eq!(
        pulse["errors"],
        serde_json::json!([]),
        "more calls than run at once wait their turn: {pulse}"
    );
    assert_eq!(
        crate::support::recorded_in(&pulse, "slow-yes").len(),
        1,
        "{pulse}"
    );
}
