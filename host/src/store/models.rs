//! Rows as Diesel reads and writes them. These are storage shapes; the API turns
//! them into its own response types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{pulses, run_events, runs, step_executions, tasks};

/// A task row.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg))]
pub struct TaskRow {
    /// Identifier.
    pub id: i64,
    /// Owning plugin.
    pub plugin_id: i64,
    /// Plugin version whose definition is current.
    pub plugin_version_id: i64,
    /// Name within the plugin.
    pub name: String,
    /// Described by the plugin's active version.
    pub active: bool,
    /// `cron`, `dynamic` or `manual`.
    pub schedule_kind: String,
    /// The cron expression as written.
    pub cron_expression: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Enabled by the plugin.
    pub enabled: bool,
    /// Queue priority.
    pub priority: i32,
    /// The stored definition (`task_definitions`) of the current version.
    pub definition_id: i64,
    /// skip, allow or replace.
    pub overlap: String,
    /// latest, all or none.
    pub catch_up: String,
    /// Starting deadline.
    pub starting_deadline_ms: Option<i64>,
    /// Names of tasks this one waits for within a pulse.
    pub depends_on: Vec<String>,
    /// Dynamic schedules: seconds between two questions.
    pub dynamic_interval_secs: Option<i32>,
    /// Occurrences at or before this instant are never due.
    pub schedule_since: DateTime<Utc>,
    /// Why the task is paused, when it is.
    pub paused_reason: Option<String>,
    /// When an operator's pause ends by itself.
    pub paused_until: Option<DateTime<Utc>>,
    /// First registered.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Labels from the task's definition.
    pub tags: Vec<String>,
}

/// A pulse row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Serialize)]
#[diesel(table_name = pulses, check_for_backend(diesel::pg::Pg))]
pub struct PulseRow {
    /// Identifier.
    pub id: i64,
    /// pulse or manual.
    pub kind: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Who sent it (User-Agent or `X-Pulse-Source`).
    pub source: Option<String>,
    /// The delivery's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The answer given, replayed for a retried delivery.
    #[serde(skip)]
    pub response: Option<serde_json::Value>,
    /// Problems met while evaluating.
    pub errors: serde_json::Value,
    /// Lateness of the latest-due slot it claimed.
    pub max_lateness_ms: Option<i64>,
    /// Slots that were due.
    pub due: i32,
    /// Slots this pulse claimed.
    pub claimed: i32,
    /// Slots recorded as skipped.
    pub skipped: i32,
    /// Slots recorded as missed.
    pub missed: i32,
    /// Server-side time to evaluate and claim.
    pub duration_ms: Option<f64>,
}

/// A run row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Serialize)]
#[diesel(table_name = runs, check_for_backend(diesel::pg::Pg))]
pub struct RunRow {
    /// Identifier.
    pub id: i64,
    /// The slot this run is an attempt of.
    pub slot_id: i64,
    /// The task.
    pub task_id: i64,
    /// The plugin version whose definition the run executes.
    pub plugin_version_id: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// queued, running, succeeded, failed, timed_out, cancelled, skipped, missed.
    pub status: String,
    /// Queue priority.
    pub priority: i32,
    /// The slot's time.
    pub scheduled_for: DateTime<Utc>,
    /// Earliest start.
    pub not_before: DateTime<Utc>,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// `started_at - scheduled_for`.
    pub lateness_ms: Option<i64>,
    /// Which part failed: step, provision, background, cleanup, timeout…
    pub failure_type: Option<String>,
    /// Human-readable reason.
    pub error: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// Host executing it.
    pub host_id: Option<String>,
    /// When a cancel was asked for.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Runs of the same pulse that must succeed first.
    pub depends_on_runs: Vec<i64>,
    /// The failed attempt this run retries.
    pub retry_of: Option<i64>,
    /// The stored definition (`task_definitions`) the run executes.
    pub definition_id: i64,
    /// Live process groups of the run (a background hook runs beside a step).
    pub process_groups: Vec<i32>,
    /// A queued run that cannot start by then is recorded as missed.
    pub start_deadline: Option<DateTime<Utc>>,
    /// A manual run's chosen input (`stdin_json`, `envs`), kept by its retries.
    pub overrides: Option<serde_json::Value>,
}

/// Failures of one hook type of one task.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = super::schema::hook_failures, check_for_backend(diesel::pg::Pg))]
pub struct HookFailureRow {
    /// The task.
    pub task_id: i64,
    /// provision, background or cleanup.
    pub hook: String,
    /// Failures since the last success.
    pub consecutive: i32,
    /// Failures ever.
    pub total: i32,
    /// When it last failed.
    pub last_failed_at: Option<DateTime<Utc>>,
    /// The most recent errors, newest first.
    pub last_errors: serde_json::Value,
}

/// One recorded process.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = step_executions, check_for_backend(diesel::pg::Pg))]
pub struct StepExecutionRow {
    /// Identifier.
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// provision, background, step or cleanup.
    pub phase: String,
    /// Position among the task's steps (0 for hooks).
    pub step_index: i32,
    /// Step name, or the hook's phase.
    pub name: String,
    /// shell, python or binary.
    pub kind: String,
    /// succeeded, failed, timed_out, cancelled.
    pub status: String,
    /// Exit code when it exited.
    pub exit_code: Option<i32>,
    /// Signal when a signal ended it.
    pub signal: Option<i32>,
    /// Captured stdout (up to the cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (up to the cap).
    pub stderr: Vec<u8>,
    /// Total stdout bytes produced.
    pub stdout_bytes: i64,
    /// Total stderr bytes produced.
    pub stderr_bytes: i64,
    /// Stdout exceeded the cap.
    pub stdout_truncated: bool,
    /// Stderr exceeded the cap.
    pub stderr_truncated: bool,
    /// Stdout parsed as JSON, when it is JSON.
    pub stdout_json: Option<serde_json::Value>,
    /// Why it could not run or did not succeed.
    pub error: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: DateTime<Utc>,
    /// Wall-clock duration.
    pub duration_ms: f64,
    /// What protected it: `{applied: [...], missing: [{protection, reason}]}`.
    pub plan: Option<serde_json::Value>,
    /// CPU time in user mode, milliseconds.
    pub cpu_user_ms: Option<f64>,
    /// CPU time in the kernel, milliseconds.
    pub cpu_system_ms: Option<f64>,
    /// Highest memory use, bytes.
    pub peak_memory_bytes: Option<i64>,
    /// Most processes at once.
    pub peak_processes: Option<i32>,
    /// How its stdin or stdout broke its declared JSON Schema.
    pub schema_errors: Option<serde_json::Value>,
}

/// A step execution to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = step_executions)]
pub struct NewStepExecution {
    /// The run.
    pub run_id: i64,
    /// provision, background, step or cleanup.
    pub phase: String,
    /// Position among the steps.
    pub step_index: i32,
    /// Step name.
    pub name: String,
    /// shell, python or binary.
    pub kind: String,
    /// Outcome.
    pub status: String,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Signal.
    pub signal: Option<i32>,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Total stdout bytes.
    pub stdout_bytes: i64,
    /// Total stderr bytes.
    pub stderr_bytes: i64,
    /// Stdout truncated.
    pub stdout_truncated: bool,
    /// Stderr truncated.
    pub stderr_truncated: bool,
    /// Stdout as JSON.
    pub stdout_json: Option<serde_json::Value>,
    /// Error text.
    pub error: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: DateTime<Utc>,
    /// Duration.
    pub duration_ms: f64,
    /// What protected it: `{applied: [...], missing: [{protection, reason}]}`.
    pub plan: Option<serde_json::Value>,
    /// CPU time in user mode, milliseconds.
    pub cpu_user_ms: Option<f64>,
    /// CPU time in the kernel, milliseconds.
    pub cpu_system_ms: Option<f64>,
    /// Highest memory use, bytes.
    pub peak_memory_bytes: Option<i64>,
    /// Most processes at once.
    pub peak_processes: Option<i32>,
    /// How its stdin or stdout broke its declared JSON Schema.
    pub schema_errors: Option<serde_json::Value>,
}

/// A lifecycle event.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = run_events, check_for_backend(diesel::pg::Pg))]
pub struct RunEventRow {
    /// Identifier.
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// queued, started, finished…
    pub kind: String,
    /// Details.
    pub detail: serde_json::Value,
}
