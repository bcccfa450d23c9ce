//! Rules for the fields `pulsehost:plugin@0.2.0` added: limits, remote files,
//! reservations, concurrency keys, alert rules and jitter (a service's are in
//! `service.rs`).

use crate::schemas::{self, Schema};
use crate::spec::{ExecSpec, Schedule, StepLimits, TaskSpec};

use super::Problems;

/// Smallest memory limit or reservation: below it not even a shell starts.
const MIN_MEMORY_BYTES: u64 = 4 << 20;
/// Smallest process limit: the program and init of its namespace.
const MIN_PROCESSES: u32 = 2;

/// The task-level fields.
pub(super) fn task(p: &mut Problems, at: &str, t: &TaskSpec) {
    limits(p, &format!("{at}.default-limits"), &t.default_limits);
    if let Some(r) = &t.reservation {
        if r.memory_bytes < MIN_MEMORY_BYTES && r.memory_bytes != 0 {
            p.add(
                &format!("{at}.reservation.memory-bytes"),
                "must be 0 or at least 4 MiB",
            );
        }
    }
    if let Some(c) = &t.concurrency {
        if c.key.trim().is_empty() || c.key.len() > 200 {
            p.add(&format!("{at}.concurrency.key"), "must be 1 to 200 characters");
        }
        if c.limit == 0 {
            p.add(
                &format!("{at}.concurrency.limit"),
                "must be at least 1 (0 would never run)",
            );
        }
    }
    alert_rules(p, at, &t.alerts);
    if let Schedule::Cron {
        jitter_ms: Some(jitter),
        ..
    } = &t.schedule
    {
        jitter_fits(p, at, *jitter, t.starting_deadline_ms);
    }
}

/// The fields of one process.
pub(super) fn exec(p: &mut Problems, at: &str, e: &ExecSpec) {
    limits(p, &format!("{at}.limits"), &e.limits);
    schemas(p, at, e);
    for (i, file) in e.resources.iter().enumerate() {
        if let Some((field, message)) = crate::exec::resources::problem(file) {
            p.add(&format!("{at}.resources[{i}].{field}"), &message);
        }
    }
    if !e.resources.is_empty() && e.working_dir.is_some() {
        p.add(
            &format!("{at}.resources"),
            "resources are placed in the run's scratch directory: a process with resources cannot set working-dir",
        );
    }
}

/// The stdin and stdout schemas compile, and the stdin a process declares
/// satisfies its own schema.
fn schemas(p: &mut Problems, at: &str, e: &ExecSpec) {
    if let Some(text) = &e.stdout_schema {
        if let Err(problem) = Schema::compile(text) {
            p.add(&format!("{at}.stdout-schema"), &problem);
        }
    }
    let Some(text) = &e.stdin_schema else {
        return;
    };
    match Schema::compile(text) {
        Err(problem) => p.add(&format!("{at}.stdin-schema"), &problem),
        Ok(schema) => {
            let declared = e
                .stdin_json
                .as_deref()
                .map(str::as_bytes)
                .map(|b| schema.check_bytes("stdin-json", b));
            if let Some(Err(violations)) = declared {
                p.add(
                    &format!("{at}.stdin-json"),
                    &format!("{}: make them agree", schemas::summary("stdin-json", &violations)),
                );
            }
        }
    }
}

fn limits(p: &mut Problems, at: &str, l: &StepLimits) {
    if l.memory_bytes.is_some_and(|m| m < MIN_MEMORY_BYTES) {
        p.add(&format!("{at}.memory-bytes"), "must be at least 4 MiB (4194304)");
    }
    if l.cpu_millicores == Some(0) {
        p.add(
            &format!("{at}.cpu-millicores"),
            "must be at least 1 (a thousandth of a core)",
        );
    }
    if l.processes.is_some_and(|n| n < MIN_PROCESSES) {
        p.add(
            &format!("{at}.processes"),
            "must be at least 2 (the program and its namespace's init)",
        );
    }
    if l.open_files.is_some_and(|n| n < 16) {
        p.add(
            &format!("{at}.open-files"),
            "must be at least 16 (a program needs a few to start)",
        );
    }
    if l.file_size_bytes == Some(0) {
        p.add(&format!("{at}.file-size-bytes"), "must be at least 1 byte");
    }
}

/// Most alert rules a task may have.
const MAX_ALERT_RULES: usize = 10;

/// Each rule names at least one event, each once, and an http(s) receiver.
fn alert_rules(p: &mut Problems, at: &str, rules: &[crate::spec::AlertRule]) {
    if rules.len() > MAX_ALERT_RULES {
        p.add(
            &format!("{at}.alerts"),
            &format!(
                "has {} rules; at most {MAX_ALERT_RULES}: send one rule's events to a receiver that fans out",
                rules.len()
            ),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{at}.alerts[{i}]");
        if rule.events.is_empty() {
            p.add(
                &format!("{here}.events"),
                "is empty: name failure, recovery, missed or paused",
            );
        }
        if let Some(problem) = webhook_problem(&rule.webhook) {
            p.add(&format!("{here}.webhook"), &problem);
        }
    }
}

/// Most jitter a cron task may ask for.
const MAX_JITTER_MS: u64 = 3_600_000;

/// A jitter within an hour, and within the starting deadline (a run delayed
/// past it would always be missed).
fn jitter_fits(p: &mut Problems, at: &str, jitter_ms: u64, deadline_ms: Option<u64>) {
    let field = format!("{at}.schedule.cron.jitter-ms");
    if jitter_ms == 0 || jitter_ms > MAX_JITTER_MS {
        p.add(
            &field,
            &format!("must be 1 to {MAX_JITTER_MS} (one hour); leave it out to start on time"),
        );
    } else if let Some(deadline) = deadline_ms.filter(|d| jitter_ms >= *d) {
        p.add(
            &field,
            &format!("is {jitter_ms}, not below the starting deadline of {deadline} ms: a run that late would be missed; lower the jitter or raise starting-deadline-ms"),
        );
    }
}

/// What is wrong with a webhook address, if anything: it must be an
/// `http://` or `https://` address with a host, at most 2000 characters.
pub fn webhook_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        _ if url.len() > 2000 => Some("is longer than 2000 characters".into()),
        None => Some(format!("{url:?} must be an http:// or https:// address")),
        Some("") => Some(format!("{url:?} names no host: write it as https://host/path")),
        Some(h) if h.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some(format!("{url:?} holds a space or control character"))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(json: serde_json::Value) -> Vec<String> {
        let t = TaskSpec::decode(1, json).unwrap();
        let mut p = Problems::default();
        task(&mut p, "tasks[0]", &t);
        for s in &t.steps {
            exec(&mut p, "tasks[0].steps[0]", &s.exec);
        }
        p.0.into_iter()
            .map(|x| format!("{}: {}", x.field, x.message))
            .collect()
    }

    #[test]
    fn implemented_fields_are_accepted_and_alert_rules_are_checked() {
        let found = problems(serde_json::json!({
            "name": "t",
            "schedule": {"kind": "cron", "expression": "* * * * *", "timezone": null, "jitter_ms": 5000},
            "alerts": [{"events": ["failure", "recovery"], "webhook": "https://hooks.example.com/x"}],
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}, "terminal_output": true, "stdout_schema": "{}"}}]
        }));
        assert!(found.is_empty(), "{found:?}");
        let bad = problems(serde_json::json!({
            "name": "t",
            "schedule": {"kind": "manual"},
            "alerts": [{"events": [], "webhook": "ftp://x"}, {"events": ["paused"], "webhook": "http://"}],
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}}}]
        }));
        for field in ["alerts[0].events", "alerts[0].webhook", "alerts[1].webhook"] {
            assert!(bad.iter().any(|p| p.contains(field)), "{field}: {bad:?}");
        }
    }

    #[test]
    fn jitter_must_fit_within_an_hour_and_the_starting_deadline() {
        let task = |jitter: u64, deadline: Option<u64>| {
            problems(serde_json::json!({
                "name": "t",
                "schedule": {"kind": "cron", "expression": "* * * * *", "timezone": null, "jitter_ms": jitter},
                "starting_deadline_ms": deadline,
                "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}}}]
            }))
        };
        assert!(task(30_000, None).is_empty());
        assert!(task(30_000, Some(60_000)).is_empty());
        let too_long = task(3_600_001, None);
        assert!(
            too_long
                .iter()
                .any(|p| p.contains("jitter-ms") && p.contains("one hour")),
            "{too_long:?}"
        );
        let past_deadline = task(60_000, Some(60_000));
        assert!(
            past_deadline.iter().any(|p| p.contains("starting deadline")),
            "{past_deadline:?}"
        );
    }

    #[test]
    fn limits_and_keys_out_of_range_are_refused_with_the_field() {
        let found = problems(serde_json::json!({
            "name": "t",
            "schedule": {"kind": "manual"},
            "default_limits": {"memory_bytes": 1024, "processes": 1},
            "concurrency": {"key": "", "limit": 0},
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}, "limits": {"cpu_millicores": 0}}}]
        }));
        for field in [
            "default-limits.memory-bytes",
            "default-limits.processes",
            "concurrency.key",
            "concurrency.limit",
            "limits.cpu-millicores",
        ] {
            assert!(found.iter().any(|p| p.contains(field)), "{field}: {found:?}");
        }
    }
}
