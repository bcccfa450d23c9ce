//! Rules for a service: one process kept running, so the fields that belong
//! to a run that ends (retries, timeouts, deadlines, dependencies, a
//! concurrency slot) do not apply and are refused rather than ignored.

use crate::spec::{ServiceSpec, TaskSpec};

use super::Problems;

/// Longest first restart delay: an hour.
const MAX_RESTART_BACKOFF_MS: u64 = 3_600_000;
/// Longest delay between restarts: a day.
const MAX_MAX_RESTART_BACKOFF_MS: u64 = 86_400_000;
/// Longest shutdown grace: ten minutes.
const MAX_SHUTDOWN_GRACE_MS: u64 = 600_000;

/// The task-level rules of service `s` described by `t`.
pub(super) fn task(p: &mut Problems, at: &str, t: &TaskSpec, s: &ServiceSpec) {
    if t.steps.len() > 1 {
        p.add(
            &format!("{at}.steps"),
            &format!(
                "a service runs exactly one step (its long-running process); it has {}: \
                 put the others in a provision hook, or in a task of their own",
                t.steps.len()
            ),
        );
    }
    let refused = [
        (
            "retry",
            t.retry.is_some(),
            "a service is restarted with its own backoff (restart-backoff-ms)",
        ),
        (
            "timeout-ms",
            t.timeout_ms.is_some(),
            "a service runs until it is stopped",
        ),
        (
            "starting-deadline-ms",
            t.starting_deadline_ms.is_some(),
            "a service has no slots to be late for",
        ),
        (
            "depends-on",
            !t.depends_on.is_empty(),
            "a service does not wait for other tasks' runs",
        ),
        (
            "concurrency",
            t.concurrency.is_some(),
            "a service does not take a concurrency slot",
        ),
    ];
    for (field, set, why) in refused {
        if set {
            p.add(
                &format!("{at}.{field}"),
                &format!("does not apply to a service: {why}; remove it"),
            );
        }
    }
    if let Some(step) = t.steps.first().filter(|s| s.exec.timeout_ms.is_some()) {
        p.add(
            &format!("{at}.steps[0] {:?}.exec.timeout-ms", step.name),
            "does not apply to a service's process: it runs until it is stopped; remove it",
        );
    }
    let here = format!("{at}.schedule.service");
    if s.restart_backoff_ms == 0 || s.restart_backoff_ms > MAX_RESTART_BACKOFF_MS {
        p.add(
            &format!("{here}.restart-backoff-ms"),
            &format!("must be 1 to {MAX_RESTART_BACKOFF_MS} (an hour)"),
        );
    }
    if s.max_restart_backoff_ms < s.restart_backoff_ms
        || s.max_restart_backoff_ms > MAX_MAX_RESTART_BACKOFF_MS
    {
        p.add(
            &format!("{here}.max-restart-backoff-ms"),
            &format!("must be at least restart-backoff-ms and at most {MAX_MAX_RESTART_BACKOFF_MS} (a day)"),
        );
    }
    if s.stable_after_ms == 0 || s.stable_after_ms > MAX_MAX_RESTART_BACKOFF_MS {
        p.add(
            &format!("{here}.stable-after-ms"),
            &format!("must be 1 to {MAX_MAX_RESTART_BACKOFF_MS} (a day)"),
        );
    }
    if s.shutdown_grace_ms > MAX_SHUTDOWN_GRACE_MS {
        p.add(
            &format!("{here}.shutdown-grace-ms"),
            &format!("must be at most {MAX_SHUTDOWN_GRACE_MS} (ten minutes)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Schedule;

    fn problems(json: serde_json::Value) -> Vec<String> {
        let t = TaskSpec::decode(1, json).unwrap();
        let Schedule::Service(s) = &t.schedule else {
            panic!("not a service")
        };
        let mut p = Problems::default();
        task(&mut p, "tasks[0]", &t, s);
        p.0.into_iter()
            .map(|x| format!("{}: {}", x.field, x.message))
            .collect()
    }

    fn service(backoff: u64, max: u64, stable: u64, grace: u64) -> serde_json::Value {
        serde_json::json!({"kind": "service", "restart_backoff_ms": backoff, "max_restart_backoff_ms": max,
                           "stable_after_ms": stable, "shutdown_grace_ms": grace})
    }

    #[test]
    fn a_plain_service_passes() {
        let found = problems(serde_json::json!({
            "name": "w", "schedule": service(1000, 60000, 60000, 10000),
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "sleep 100"}}}]
        }));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn fields_of_a_run_that_ends_and_bad_delays_are_refused_by_name() {
        let found = problems(serde_json::json!({
            "name": "w", "schedule": service(0, 10, 0, 700000),
            "retry": {"max_attempts": 3, "backoff_ms": 10, "max_backoff_ms": 100},
            "timeout_ms": 1000, "depends_on": ["x"],
            "steps": [
                {"name": "a", "exec": {"kind": {"type": "shell", "script": "true"}, "timeout_ms": 5}},
                {"name": "b", "exec": {"kind": {"type": "shell", "script": "true"}}}
            ]
        }));
        for field in [
            "tasks[0].steps:",
            "tasks[0].retry",
            "tasks[0].timeout-ms",
            "tasks[0].depends-on",
            "steps[0] \"a\".exec.timeout-ms",
            "restart-backoff-ms",
            "stable-after-ms",
            "shutdown-grace-ms",
        ] {
            assert!(found.iter().any(|p| p.contains(field)), "{field}: {found:?}");
        }
        let max = problems(serde_json::json!({
            "name": "w", "schedule": service(5000, 1000, 1, 0),
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}}}]
        }));
        assert!(
            max.iter().any(|p| p.contains("max-restart-backoff-ms")),
            "{max:?}"
        );
    }
}
