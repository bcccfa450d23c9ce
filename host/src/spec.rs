//! What a plugin describes, as the host understands it: plain serde types that
//! every stage shares. `plugin/` converts the WIT bindings into these after
//! validating them; `store/` keeps each task's definition as JSON; `pulse/`,
//! `runner/` and `exec/` read them. Field meanings are documented in
//! `wit/plugin.wit`.
//!
//! The stored JSON is forward-compatible: every field added after the first
//! format has a default, so definitions written by an older host still decode,
//! and [`DEFINITION_FORMAT`] is stored beside each one so that a definition
//! written by a newer host is refused with a clear error instead of being
//! misread.

mod confinement;
mod later;
mod overrides;

pub use confinement::{Concurrency, RemoteFile, Reservation, SandboxPolicy, StepLimits};
pub use later::{AlertRule, ServiceSpec};
pub use overrides::RunOverrides;

use serde::{Deserialize, Serialize};

/// Version of the stored definition format this host writes and reads.
pub const DEFINITION_FORMAT: i32 = 1;

fn yes() -> bool {
    true
}

/// A plugin's description of itself and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin's name (unique per host).
    pub name: String,
    /// The plugin's own version string.
    pub version: String,
    /// Free text.
    pub description: String,
    /// The tasks, names unique.
    pub tasks: Vec<TaskSpec>,
}

impl Manifest {
    /// The task called `name`, if the manifest has one.
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

/// One schedulable unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique within the plugin.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// When it is due.
    pub schedule: Schedule,
    /// False: never due.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Limit for the whole run, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Retries of a failed run.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// Policy when the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
    /// Policy for missed slots.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Milliseconds after its time a slot may still start.
    #[serde(default)]
    pub starting_deadline_ms: Option<u64>,
    /// Labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tasks of the same plugin that must succeed first in the same pulse.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Pipe each step's JSON stdout into the next step's stdin.
    #[serde(default)]
    pub pipe_json: bool,
    /// Provision, background and cleanup processes.
    #[serde(default)]
    pub hooks: ExecHooks,
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
    /// Limits of its processes that set none.
    #[serde(default)]
    pub default_limits: StepLimits,
    /// When a protection is missing.
    #[serde(default)]
    pub sandbox_policy: SandboxPolicy,
    /// What a run needs of its host.
    #[serde(default)]
    pub reservation: Option<Reservation>,
    /// A shared concurrency limit.
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
    /// Notification rules (`0.2.0`).
    #[serde(default)]
    pub alerts: Vec<AlertRule>,
}

impl TaskSpec {
    /// Decodes a stored definition written in `format`; the error says what is
    /// wrong in words an operator can act on.
    pub fn decode(format: i32, json: serde_json::Value) -> Result<TaskSpec, String> {
        if format > DEFINITION_FORMAT {
            return Err(format!(
                "it was written in definition format {format} by a newer pulsehost, and this host reads \
                 format {DEFINITION_FORMAT} at most: upgrade this host"
            ));
        }
        serde_json::from_value(json).map_err(|e| format!("it does not decode: {e}"))
    }
}

/// When a task is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// On every occurrence of a cron expression in a time zone.
    Cron {
        /// As the user wrote it.
        expression: String,
        /// IANA name; None means UTC.
        timezone: Option<String>,
        /// Up to this much later, per slot (`0.2.0`).
        #[serde(default)]
        jitter_ms: Option<u64>,
    },
    /// Ask the plugin's `should-run` on each pulse, at most once per interval.
    Dynamic {
        /// Seconds between two questions.
        interval_secs: u32,
    },
    /// Only when triggered by hand.
    Manual,
    /// Always running, on one host at a time (`0.2.0`).
    Service(ServiceSpec),
}

impl Schedule {
    /// The stored name of the schedule's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Cron { .. } => "cron",
            Schedule::Dynamic { .. } => "dynamic",
            Schedule::Manual => "manual",
            Schedule::Service(_) => "service",
        }
    }
}

/// Overlap policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record a skipped run.
    #[default]
    Skip,
    /// Run both.
    Allow,
    /// Cancel the running one.
    Replace,
}

impl Overlap {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
            Overlap::Replace => "replace",
        }
    }
}

/// Catch-up policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One run for the newest missed slot.
    #[default]
    Latest,
    /// One run per missed slot, capped.
    All,
    /// None of them.
    None,
}

impl CatchUp {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
            CatchUp::None => "none",
        }
    }
}

/// Retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts including the first.
    pub max_attempts: u32,
    /// First delay.
    pub backoff_ms: u64,
    /// Largest delay.
    pub max_backoff_ms: u64,
}

/// Processes that frame a task's steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecHooks {
    /// Before the steps.
    pub provision: Option<ExecSpec>,
    /// Always, last.
    pub cleanup: Option<ExecSpec>,
    /// Alongside the steps.
    pub background: Option<ExecSpec>,
    /// An early exit of the background process does not fail the run.
    #[serde(default)]
    pub background_may_exit: bool,
}

/// One named step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    /// Unique within the task.
    pub name: String,
    /// What to run.
    pub exec: ExecSpec,
}

/// One native process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The program.
    pub kind: StepKind,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub envs: Vec<(String, String)>,
    /// Absolute working directory; None is the run's scratch directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Limit for this process, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// JSON text for stdin.
    #[serde(default)]
    pub stdin_json: Option<String>,
    /// Its limits (unset fields: the task's defaults).
    #[serde(default)]
    pub limits: StepLimits,
    /// Files fetched before it runs.
    #[serde(default)]
    pub resources: Vec<RemoteFile>,
    /// Runs under a pseudo-terminal.
    #[serde(default)]
    pub terminal_output: bool,
    /// JSON Schema of stdin (`0.2.0`).
    #[serde(default)]
    pub stdin_schema: Option<String>,
    /// JSON Schema of stdout (`0.2.0`).
    #[serde(default)]
    pub stdout_schema: Option<String>,
}

/// What program a process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum StepKind {
    /// `/bin/sh -c <script>`.
    Shell {
        /// Script text.
        script: String,
    },
    /// A Python script in a cached venv.
    Python {
        /// Program text.
        source: String,
        /// pip requirement specifiers.
        #[serde(default)]
        requirements: Vec<String>,
    },
    /// An executable run directly.
    Binary {
        /// Absolute path.
        path: String,
    },
}

impl StepKind {
    /// The stored name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Shell { .. } => "shell",
            StepKind::Python { .. } => "python",
            StepKind::Binary { .. } => "binary",
        }
    }
}

/// What a dynamic schedule's `should-run` is told (see `run-context` in the WIT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    /// Task name.
    pub task: String,
    /// The candidate slot: `<task id>@<scheduled for, RFC 3339>`.
    pub slot_id: String,
    /// The candidate slot's time, milliseconds since the Unix epoch.
    pub scheduled_for_ms: i64,
    /// The pulse's time, milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// 1 for a first attempt.
    pub attempt: u32,
    /// How the task's previous run ended.
    pub previous: Option<RunOutcome>,
}

/// How a run ended, as a plugin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// succeeded, failed, timed_out, cancelled or skipped.
    pub status: String,
    /// When, milliseconds since the Unix epoch.
    pub finished_at_ms: i64,
    /// The failing process's exit code.
    pub exit_code: Option<i32>,
    /// Why it did not succeed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_missing_every_optional_field_decodes_with_defaults() {
        let json = serde_json::json!({
            "name": "old",
            "schedule": {"kind": "manual"},
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}}}],
            "a_field_from_the_future": 1
        });
        let task = TaskSpec::decode(1, json).unwrap();
        assert!(task.enabled);
        assert_eq!(task.overlap, Overlap::Skip);
        assert_eq!(task.catch_up, CatchUp::Latest);
        assert!(task.steps[0].exec.args.is_empty());
    }

    #[test]
    fn a_definition_from_a_newer_format_or_a_broken_one_is_refused_with_a_reason() {
        let newer = TaskSpec::decode(DEFINITION_FORMAT + 1, serde_json::json!({})).unwrap_err();
        assert!(newer.contains("newer pulsehost"), "{newer}");
        let broken = TaskSpec::decode(1, serde_json::json!({"steps": "not a list"})).unwrap_err();
        assert!(broken.contains("does not decode"), "{broken}");
    }
}
