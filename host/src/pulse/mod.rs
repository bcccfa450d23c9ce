//! What is due: each pulse evaluates every schedulable task's cron schedule
//! between the task's cursor and now, claims the due slots with one batched
//! insert (so duplicate pulses and replicas claim each slot once), applies the
//! overlap policy, and queues runs — all in one transaction.

pub mod cron;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::spec::{Overlap, Schedule, TaskSpec};
use crate::store::pulses::{self, DueSlot, NewRun, PulseCounts};
use crate::store::{Db, StoreError, StoreResult};
use cron::CronSchedule;

/// Occurrences counted per task per pulse at most; beyond it the newest is
/// still found by the catch-up policy, the count is just capped.
const MAX_OCCURRENCES_PER_PULSE: usize = 10_000;

/// Skip reason recorded when the previous run of a task is still going.
pub const PREVIOUS_INSTANCE_RUNNING: &str = "previous_instance_running";

/// A slot a pulse or trigger acted on.
#[derive(Debug, Clone, Serialize)]
pub struct SlotRun {
    /// The run created for the slot.
    pub run_id: i64,
    /// The slot (passed to steps as `PULSEHOST_SLOT_ID`).
    pub slot_id: i64,
    /// Task id.
    pub task_id: i64,
    /// Task name.
    pub task: String,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// Why the run was skipped, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one pulse did.
#[derive(Debug, Clone, Serialize)]
pub struct PulseReport {
    /// The pulse's id.
    pub pulse_id: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Slots that were due.
    pub due: usize,
    /// Slots this pulse claimed and queued.
    pub claimed: Vec<SlotRun>,
    /// Slots claimed but recorded as skipped.
    pub skipped: Vec<SlotRun>,
    /// Server-side time to evaluate and claim.
    pub duration_ms: f64,
}

/// Evaluates schedules at `now` and claims what is due.
pub async fn pulse(db: &Db, source: Option<String>, now: DateTime<Utc>) -> StoreResult<PulseReport> {
    db.run(move |conn| {
        let clock = Instant::now();
        let pulse_id = pulses::create_pulse(conn, source.as_deref(), now)?;
        let tasks = pulses::cron_tasks(conn)?;
        let mut due = Vec::new();
        let mut evaluated = Vec::with_capacity(tasks.len());
        let mut specs = std::collections::HashMap::new();
        for task in tasks {
            let spec: TaskSpec = match serde_json::from_value(task.definition.clone()) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(task.id = task.id, error = %e, "stored task definition unreadable; skipped");
                    continue;
                }
            };
            evaluated.push(task.id);
            if let Some(slot) = latest_due(&spec, task.schedule_since, now) {
                due.push(DueSlot { task_id: task.id, scheduled_for: slot });
            }
            specs.insert(task.id, (task.name, task.plugin_version_id, spec));
        }
        let claimed = pulses::claim_slots(conn, pulse_id, &due, "schedule")?;
        let skip_ids: Vec<i64> = claimed
            .iter()
            .filter(|c| specs.get(&c.task_id).is_some_and(|(_, _, s)| s.overlap == Overlap::Skip))
            .map(|c| c.task_id)
            .collect();
        let busy = pulses::tasks_with_active_runs(conn, &skip_ids)?;
        let mut new_runs = Vec::with_capacity(claimed.len());
        for slot in &claimed {
            let Some((_, version, spec)) = specs.get(&slot.task_id) else { continue };
            let skipped = busy.contains(&slot.task_id);
            new_runs.push(NewRun {
                slot_id: slot.slot_id,
                task_id: slot.task_id,
                plugin_version_id: *version,
                status: if skipped { "skipped" } else { "queued" }.into(),
                priority: spec.priority,
                scheduled_for: slot.scheduled_for,
                not_before: now,
                skip_reason: skipped.then(|| PREVIOUS_INSTANCE_RUNNING.to_string()),
                finished_at: skipped.then_some(now),
            });
        }
        let run_ids = pulses::insert_runs(conn, &new_runs)?;

        let (mut queued, mut skipped) = (Vec::new(), Vec::new());
        for (run, run_id) in new_runs.iter().zip(run_ids) {
            let name = specs.get(&run.task_id).map(|(n, _, _)| n.clone()).unwrap_or_default();
            let entry = SlotRun {
                run_id,
                slot_id: run.slot_id,
                task_id: run.task_id,
                task: name,
                scheduled_for: run.scheduled_for,
                reason: run.skip_reason.clone(),
            };
            if run.skip_reason.is_some() { skipped.push(entry) } else { queued.push(entry) }
        }
        let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        let counts = PulseCounts {
            due: due.len() as i32,
            claimed: queued.len() as i32,
            skipped: skipped.len() as i32,
            missed: 0,
        };
        pulses::finish_pulse(conn, pulse_id, counts, duration_ms)?;
        Ok(PulseReport { pulse_id, received_at: now, due: due.len(), claimed: queued, skipped, duration_ms })
    })
    .await
}

/// The slot a pulse at `now` should claim for a task whose schedule was last
/// evaluated at `cursor`: the newest occurrence in `(cursor, now]` (catch-up
/// `latest`, the default; the other policies arrive with the scheduling work).
fn latest_due(spec: &TaskSpec, cursor: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let Schedule::Cron { expression, timezone } = &spec.schedule else {
        return None;
    };
    let schedule = CronSchedule::parse(expression, timezone.as_deref()).ok()?;
    schedule.latest_between(cursor, now, MAX_OCCURRENCES_PER_PULSE).0
}

/// Queues a run of a task now, whatever its schedule (an operator's "run now").
pub async fn trigger(db: &Db, task_id: i64, now: DateTime<Utc>) -> StoreResult<SlotRun> {
    db.run(move |conn| {
        let (_, task) = crate::store::plugins::get_task(conn, task_id)?;
        if !task.active {
            return Err(StoreError::NotFound(format!("active task {task_id}")));
        }
        let pulse_id = pulses::create_pulse(conn, Some("manual"), now)?;
        let slot = pulses::claim_slots(
            conn,
            pulse_id,
            &[DueSlot {
                task_id,
                scheduled_for: now,
            }],
            "manual",
        )?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("a free slot for task {task_id} at {now}")))?;
        let run = NewRun {
            slot_id: slot.slot_id,
            task_id,
            plugin_version_id: task.plugin_version_id,
            status: "queued".into(),
            priority: task.priority,
            scheduled_for: now,
            not_before: now,
            skip_reason: None,
            finished_at: None,
        };
        let run_id = pulses::insert_runs(conn, &[run])?.pop().unwrap_or_default();
        pulses::finish_pulse(
            conn,
            pulse_id,
            PulseCounts {
                due: 1,
                claimed: 1,
                ..Default::default()
            },
            0.0,
        )?;
        Ok(SlotRun {
            run_id,
            slot_id: slot.slot_id,
            task_id,
            task: task.name,
            scheduled_for: now,
            reason: None,
        })
    })
    .await
}
