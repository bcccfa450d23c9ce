//! Rules every described task must pass before anything is stored. Each problem
//! names the field (by path) and says how to fix it.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::pulse::cron::CronSchedule;
use crate::spec::{ExecSpec, Manifest, Schedule, StepKind, TaskSpec};

/// Longest accepted timeout or deadline: a week.
const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most attempts a retry policy may ask for.
const MAX_ATTEMPTS: u32 = 100;

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Path of the field, e.g. `tasks[0].steps[1].kind.binary`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Host settings the rules depend on.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Directories binary steps must live under.
    pub binary_dirs: Vec<PathBuf>,
}

/// Every problem with `m`; empty when it may be registered.
pub fn manifest(m: &Manifest, rules: &Rules) -> Vec<Problem> {
    let mut p = Problems::default();
    check_name(&mut p, "name", &m.name);
    if m.version.trim().is_empty() {
        p.add(
            "version",
            "is empty: give the plugin a version string such as \"1.0.0\"",
        );
    }
    if m.tasks.is_empty() {
        p.add("tasks", "the plugin describes no tasks: add at least one");
    }
    let names: HashSet<&str> = m.tasks.iter().map(|t| t.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, t) in m.tasks.iter().enumerate() {
        let at = format!("tasks[{i}]");
        if !seen.insert(t.name.as_str()) {
            p.add(
                &format!("{at}.name"),
                &format!(
                    "{:?} is used by more than one task: task names must be unique",
                    t.name
                ),
            );
        }
        task(&mut p, &at, t, &names, rules);
    }
    p.0
}

fn task(p: &mut Problems, at: &str, t: &TaskSpec, names: &HashSet<&str>, rules: &Rules) {
    check_name(p, &format!("{at}.name"), &t.name);
    if let Schedule::Cron { expression, timezone } = &t.schedule {
        if let Err(e) = CronSchedule::parse(expression, timezone.as_deref()) {
            p.add(&format!("{at}.schedule.cron"), &e.to_string());
        }
    }
    check_duration(p, &format!("{at}.timeout-ms"), t.timeout_ms);
    check_duration(p, &format!("{at}.starting-deadline-ms"), t.starting_deadline_ms);
    if let Some(r) = &t.retry {
        if r.max_attempts == 0 || r.max_attempts > MAX_ATTEMPTS {
            p.add(
                &format!("{at}.retry.max-attempts"),
                &format!("must be 1 to {MAX_ATTEMPTS} (1 means no retry)"),
            );
        }
        if r.max_backoff_ms < r.backoff_ms || r.max_backoff_ms > MAX_DURATION_MS {
            p.add(
                &format!("{at}.retry.max-backoff-ms"),
                "must be at least backoff-ms and at most a week",
            );
        }
    }
    for (d, dep) in t.depends_on.iter().enumerate() {
        if dep == &t.name || !names.contains(dep.as_str()) {
            p.add(
                &format!("{at}.depends-on[{d}]"),
                &format!("{dep:?} is not another task of this plugin"),
            );
        }
    }
    if t.steps.is_empty() {
        p.add(&format!("{at}.steps"), "the task has no steps: add at least one");
    }
    let mut step_names = HashSet::new();
    for (s, step) in t.steps.iter().enumerate() {
        let here = format!("{at}.steps[{s}]");
        if step.name.trim().is_empty() || !step_names.insert(step.name.as_str()) {
            p.add(
                &format!("{here}.name"),
                "step names must be non-empty and unique within the task",
            );
        }
        exec(p, &format!("{here}.exec"), &step.exec, rules);
    }
    for (hook, spec) in [
        ("provision", &t.hooks.provision),
        ("cleanup", &t.hooks.cleanup),
        ("background", &t.hooks.background),
    ] {
        if let Some(spec) = spec {
            exec(p, &format!("{at}.hooks.{hook}"), spec, rules);
        }
    }
}

fn exec(p: &mut Problems, at: &str, e: &ExecSpec, rules: &Rules) {
    match &e.kind {
        StepKind::Shell { script } if script.trim().is_empty() => {
            p.add(&format!("{at}.kind.shell"), "the script is empty")
        }
        StepKind::Python { source, requirements } => {
            if source.trim().is_empty() {
                p.add(&format!("{at}.kind.python.source"), "the program is empty");
            }
            for (r, req) in requirements.iter().enumerate() {
                let req = req.trim();
                if req.is_empty() || req.starts_with('-') || req.contains(['\n', '\r']) {
                    p.add(
                        &format!("{at}.kind.python.requirements[{r}]"),
                        "must be one pip requirement specifier such as \"six==1.16.0\" (no options, no newlines)",
                    );
                }
            }
        }
        StepKind::Binary { path } => {
            if let Err(message) = check_binary(path, &rules.binary_dirs) {
                p.add(&format!("{at}.kind.binary"), &message);
            }
        }
        StepKind::Shell { .. } => {}
    }
    for (i, (name, _)) in e.envs.iter().enumerate() {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || name.starts_with("PULSEHOST_") {
            p.add(
                &format!("{at}.envs[{i}]"),
                &format!("{name:?} must be [A-Za-z_][A-Za-z0-9_]* and not start with PULSEHOST_"),
            );
        }
    }
    if e.args.iter().any(|a| a.contains('\0')) {
        p.add(&format!("{at}.args"), "arguments cannot contain NUL bytes");
    }
    if let Some(dir) = &e.working_dir {
        if !Path::new(dir).is_absolute() {
            p.add(
                &format!("{at}.working-dir"),
                &format!("{dir:?} must be an absolute path"),
            );
        }
    }
    check_duration(p, &format!("{at}.timeout-ms"), e.timeout_ms);
    if let Some(json) = &e.stdin_json {
        if let Err(err) = serde_json::from_str::<serde_json::Value>(json) {
            p.add(&format!("{at}.stdin-json"), &format!("is not valid JSON: {err}"));
        }
    }
}

/// A binary step's program: absolute, existing, executable, under an allowed directory.
pub fn check_binary(path: &str, allowed: &[PathBuf]) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} must be an absolute path"));
    }
    let meta = std::fs::metadata(p).map_err(|_| format!("{path:?} does not exist on this host"))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{path:?} is not an executable file"));
    }
    if !allowed.iter().any(|dir| p.starts_with(dir)) {
        let dirs: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
        return Err(format!(
            "{path:?} is not under an allowed directory ({}); see PULSEHOST_BINARY_DIRS",
            dirs.join(", ")
        ));
    }
    Ok(())
}

fn check_name(p: &mut Problems, field: &str, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        p.add(field, &format!("{name:?} must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"));
    }
}

fn check_duration(p: &mut Problems, field: &str, ms: Option<u64>) {
    if let Some(ms) = ms {
        if ms == 0 || ms > MAX_DURATION_MS {
            p.add(field, "must be between 1 ms and one week");
        }
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: &str, message: &str) {
        self.0.push(Problem {
            field: field.to_string(),
            message: message.to_string(),
        });
    }
}
