//! `pulsehost plugin check FILE.wasm`: the author's dry run. The component's
//! `describe()` runs here, in the host's own sandbox and limits, with no
//! server; the report lists the tasks, the next five fire times of each cron
//! task in its own time zone, and every problem an upload would report.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;

use crate::config::Config;
use crate::plugin::{self, Limits, PluginHost};
use crate::pulse::cron::CronSchedule;
use crate::spec::{Manifest, Schedule, TaskSpec};

/// Fire times shown per cron task.
const NEXT_FIRES: usize = 5;

/// What a check found.
pub struct Report {
    /// True when an upload would be accepted.
    pub ok: bool,
    /// For people.
    pub text: String,
    /// For scripts (`--json`).
    pub json: serde_json::Value,
}

/// Runs `describe()` of the component `bytes` and validates what it says
/// under the limits the environment sets for a server (`PULSEHOST_*`).
pub fn check(bytes: Vec<u8>) -> Result<Report> {
    let config = Config::from_env()?;
    // One call at a time here: no pool to reserve.
    let limits = Limits {
        pooling: false,
        ..config.plugin_limits()
    };
    let host = PluginHost::new(limits, None)?;
    let rules = config.upload_rules();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let described = runtime.block_on(host.describe(Arc::from(bytes)));
    Ok(match described {
        Err(error) => Report {
            ok: false,
            text: format!("refused: {error}\n"),
            json: serde_json::json!({ "ok": false, "error": error.to_string() }),
        },
        Ok(d) => report(
            &d.sha256,
            &d.manifest,
            plugin::validate::manifest(&d.manifest, &rules),
        ),
    })
}

fn report(sha256: &str, manifest: &Manifest, problems: Vec<plugin::Problem>) -> Report {
    let mut text = format!(
        "plugin {} {} (sha256 {sha256})\n{}",
        manifest.name,
        manifest.version,
        if manifest.description.is_empty() {
            String::new()
        } else {
            format!("  {}\n", manifest.description)
        }
    );
    let mut tasks = Vec::new();
    for task in &manifest.tasks {
        let (schedule, fires) = schedule(&manifest.name, task);
        let _ = writeln!(text, "\ntask {}: {schedule}", task.name);
        for step in &task.steps {
            let _ = writeln!(text, "  step {}", step.name);
        }
        if !fires.is_empty() {
            let _ = writeln!(text, "  next: {}", fires.join(", "));
        }
        tasks.push(serde_json::json!({ "name": task.name, "schedule": schedule, "next": fires }));
    }
    if problems.is_empty() {
        text.push_str("\nno problems: an upload would be accepted\n");
    } else {
        let _ = writeln!(
            text,
            "\n{} problem(s): an upload would be refused",
            problems.len()
        );
        for p in &problems {
            let _ = writeln!(text, "  - {}: {}", p.field, p.message);
        }
    }
    Report {
        ok: problems.is_empty(),
        json: serde_json::json!({
            "ok": problems.is_empty(),
            "plugin": manifest.name,
            "version": manifest.version,
            "sha256": sha256,
            "tasks": tasks,
            "problems": problems,
        }),
        text,
    }
}

/// The schedule in words and the next fire times in the task's own zone
/// (`H` spread by `plugin/task`, as the host will).
fn schedule(plugin: &str, task: &TaskSpec) -> (String, Vec<String>) {
    match &task.schedule {
        Schedule::Cron {
            expression, timezone, ..
        } => {
            let zone = timezone.as_deref().unwrap_or("UTC");
            let words = format!("cron `{expression}` in {zone}");
            let identity = crate::pulse::cron::task_identity(plugin, &task.name);
            let Ok(cron) = CronSchedule::for_task(expression, timezone.as_deref(), &identity) else {
                return (words, Vec::new());
            };
            let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
            let fires = cron
                .after(Utc::now())
                .take(NEXT_FIRES)
                .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())
                .collect();
            (words, fires)
        }
        Schedule::Dynamic { interval_secs } => (
            format!("dynamic: should-run asked at most every {interval_secs} s"),
            Vec::new(),
        ),
        Schedule::Manual => ("manual: only when triggered".into(), Vec::new()),
        Schedule::Service(_) => ("service: always running".into(), Vec::new()),
    }
}
