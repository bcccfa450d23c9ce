//! Rules every described task must pass before anything is stored. Each problem
//! names the field (by path) and says how to fix it.

mod contract;
mod service;

pub use contract::webhook_problem;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::exec::BinaryDirs;
use crate::pulse::cron::CronSchedule;
use crate::spec::{ExecSpec, Manifest, Schedule, StepKind, TaskSpec};

/// Longest accepted timeout or deadline: a week.
const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most attempts a retry policy may ask for.
const MAX_ATTEMPTS: u32 = 100;
/// Longest description of a plugin or a task: descriptions are shown in
/// listings, which must stay small.
pub const MAX_DESCRIPTION_BYTES: usize = 16 * 1024;

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
    pub binary_dirs: BinaryDirs,
    /// Most tasks one plugin may describe.
    pub max_tasks: usize,
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
    if m.tasks.len() > rules.max_tasks {
        p.add(
            "tasks",
            &format!(
                "the plugin describes {} tasks; a plugin may describe at most {} (PULSEHOST_MAX_TASKS_PER_PLUGIN): \
                 split it into several plugins",
                m.tasks.len(),
                rules.max_tasks
            ),
        );
    }
    check_description(&mut p, "description", &m.description);
    // A service has no runs in a pulse to wait for: it cannot be depended on.
    let names: HashSet<&str> = m
        .tasks
        .iter()
        .filter(|t| !matches!(t.schedule, Schedule::Service(_)))
        .map(|t| t.name.as_str())
        .collect();
    let mut seen = HashSet::new();
    for (i, t) in m.tasks.iter().enumerate() {
        let at = format!("tasks[{i}] {:?}", t.name);
        if !seen.insert(t.name.as_str()) {
            p.add(
                &format!("{at}.name"),
                &format!(
                    "{:?} is used by more than one task: task names must be unique",
                    t.name
                ),
            );
        }
        task(&mut p, &at, &m.name, t, &names, rules);
    }
    check_storable(&mut p, m);
    if let Some((index, cycle)) = dependency_cycle(&m.tasks) {
        p.add(
            &format!("tasks[{index}] {:?}.depends-on", m.tasks[index].name),
            &format!(
                "the tasks depend on each other in a cycle ({}), so none of them could ever start: \
                 remove one of these dependencies",
                cycle.join(" -> ")
            ),
        );
    }
    p.0
}

/// The first dependency cycle among `tasks`, as the index of the task it
/// starts from and the names along it (`a -> b -> a`). Iterative, so a long
/// chain of dependencies cannot exhaust the stack.
fn dependency_cycle(tasks: &[TaskSpec]) -> Option<(usize, Vec<String>)> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    // 0: unvisited, 1: on the current path, 2: done.
    let mut state = vec![0u8; tasks.len()];
    for start in 0..tasks.len() {
        if state[start] != 0 {
            continue;
        }
        // The current path, each task with the next of its dependencies to follow.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some((at, next)) = path.last_mut() {
            let Some(&dep) = deps[*at].get(*next) else {
                state[*at] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            match state[dep] {
                0 => {
                    state[dep] = 1;
                    path.push((dep, 0));
                }
                1 => {
                    let from = path.iter().position(|(i, _)| *i == dep).unwrap_or(0);
                    let mut names: Vec<String> =
                        path[from..].iter().map(|(i, _)| tasks[*i].name.clone()).collect();
                    names.push(tasks[dep].name.clone());
                    return Some((dep, names));
                }
                _ => {}
            }
        }
    }
    None
}

/// PostgreSQL cannot store a NUL character in text or JSON: say where one is.
fn check_storable(p: &mut Problems, m: &Manifest) {
    const NUL: &str = "contains a NUL character, which cannot be stored: remove it";
    let has_nul = |s: &str| s.contains('\0');
    for (field, text) in [
        ("name", &m.name),
        ("version", &m.version),
        ("description", &m.description),
    ] {
        if has_nul(text) {
            p.add(field, NUL);
        }
    }
    for (i, task) in m.tasks.iter().enumerate() {
        if serde_json::to_string(task).is_ok_and(|json| json.contains("\\u0000")) {
            p.add(
                &format!("tasks[{i}]"),
                &format!("a string of task {:?} {NUL}", task.name),
            );
        }
    }
}

fn check_description(p: &mut Problems, field: &str, text: &str) {
    if text.len() > MAX_DESCRIPTION_BYTES {
        p.add(
            field,
            &format!(
                "is {} bytes; descriptions may be at most {MAX_DESCRIPTION_BYTES} bytes: shorten it",
                text.len()
            ),
        );
    }
}

fn task(p: &mut Problems, at: &str, plugin: &str, t: &TaskSpec, names: &HashSet<&str>, rules: &Rules) {
    check_name(p, &format!("{at}.name"), &t.name);
    contract::task(p, at, t);
    check_description(p, &format!("{at}.description"), &t.description);
    if let Schedule::Cron {
        expression, timezone, ..
    } = &t.schedule
    {
        // `H` picks its values by this name, as the pulse will.
        let identity = crate::pulse::cron::task_identity(plugin, &t.name);
        if let Err(e) = CronSchedule::for_task(expression, timezone.as_deref(), &identity) {
            p.add(&format!("{at}.schedule.cron"), &e.to_string());
        }
    }
    if let Schedule::Service(service) = &t.schedule {
        service::task(p, at, t, service);
        if let Some(on_shutdown) = &service.on_shutdown {
            exec(
                p,
                &format!("{at}.schedule.service.on-shutdown"),
                on_shutdown,
                rules,
            );
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
                &format!("{dep:?} is not another task (other than a service) of this plugin"),
            );
        }
    }
    if t.steps.is_empty() {
        p.add(&format!("{at}.steps"), "the task has no steps: add at least one");
    }
    let mut step_names = HashSet::new();
    for (s, step) in t.steps.iter().enumerate() {
        let here = format!("{at}.steps[{s}] {:?}", step.name);
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
    contract::exec(p, at, e);
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
            if let Err(message) = rules.binary_dirs.check(path) {
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

/// Why `name` cannot name a plugin or a task, if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    let mut p = Problems::default();
    check_name(&mut p, "name", name);
    p.0.pop().map(|problem| problem.message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn task(name: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            description: String::new(),
            schedule: Schedule::Manual,
            enabled: true,
            timeout_ms: None,
            priority: 0,
            retry: None,
            overlap: Overlap::Skip,
            catch_up: CatchUp::Latest,
            starting_deadline_ms: None,
            tags: vec![],
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            pipe_json: false,
            hooks: ExecHooks::default(),
            steps: vec![],
            default_limits: StepLimits::default(),
            sandbox_policy: SandboxPolicy::default(),
            reservation: None,
            concurrency: None,
            alerts: vec![],
        }
    }

    #[test]
    fn h_is_checked_with_the_name_the_pulse_spreads_by() {
        // `0 0 30 H *`: the 30th of a month H picks; February never has one.
        let (plugin, name, expression) = ("ops", "archive", "0 0 30 H *");
        let fires = CronSchedule::for_task(expression, None, &format!("{plugin}/{name}")).is_ok();
        let mut t = task(name, &[]);
        t.steps.clear();
        t.schedule = Schedule::Cron {
            expression: expression.into(),
            timezone: None,
            jitter_ms: None,
        };
        let m = Manifest {
            name: plugin.into(),
            version: "1".into(),
            description: String::new(),
            tasks: vec![t],
        };
        let rules = Rules {
            binary_dirs: BinaryDirs::new(Vec::new()),
            max_tasks: 10,
        };
        let refused = manifest(&m, &rules)
            .iter()
            .any(|p| p.field.contains("schedule.cron"));
        assert_eq!(refused, !fires);
    }

    #[test]
    fn a_cycle_is_named_from_where_it_starts() {
        let tasks = [
            task("x", &[]),
            task("a", &["b"]),
            task("b", &["c"]),
            task("c", &["a"]),
        ];
        let (index, cycle) = dependency_cycle(&tasks).unwrap();
        assert_eq!(index, 1);
        assert_eq!(cycle.join(" -> "), "a -> b -> c -> a");
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let tasks = [
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["a"]),
            task("d", &["b", "c"]),
        ];
        assert!(dependency_cycle(&tasks).is_none());
    }
}
