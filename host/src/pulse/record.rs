//! The write half of a pulse: one transaction that records the pulse, claims
//! every candidate slot and records its run in one statement, applies overlap,
//! links dependencies; and the operator's "run now".

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::due::Verdict;
use super::{Candidate, PulseProblem, PulseReport, SlotRun, DEPENDENCY_FAILED, PREVIOUS_INSTANCE_RUNNING};
use crate::store::pulses::{self, ClaimedRun, PulseSummary, SchedulableTask, SlotCandidate};
use crate::store::{runs, Db, StoreError, StoreResult};

/// Everything the evaluation produced.
pub(super) struct Batch {
    pub tasks: std::sync::Arc<Vec<SchedulableTask>>,
    pub candidates: Vec<Candidate>,
    pub asked: Vec<i64>,
    pub source: Option<String>,
    pub key: Option<String>,
    pub now: DateTime<Utc>,
    pub uncounted: usize,
    pub errors: Vec<PulseProblem>,
    pub clock: Instant,
}

/// Claims and records; None when another delivery with the same key won.
pub(super) async fn claim(db: &Db, batch: Batch) -> StoreResult<Option<PulseReport>> {
    db.run(move |conn| {
        let Batch {
            tasks,
            candidates,
            asked,
            source,
            key,
            now,
            uncounted,
            errors,
            clock,
        } = batch;
        let Some(pulse_id) = pulses::insert_pulse(conn, "pulse", source.as_deref(), key.as_deref(), now)?
        else {
            return Ok(None);
        };
        let index_of: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        // Overlap: what is still queued or running of the tasks about to run.
        let watched: Vec<i64> = candidates
            .iter()
            .filter(|c| c.verdict == Verdict::Run && tasks[c.task].overlap != "allow")
            .map(|c| tasks[c.task].id)
            .collect();
        let mut active: HashMap<i64, Vec<i64>> = HashMap::new();
        for (run_id, task_id, _) in pulses::active_runs(conn, &watched)? {
            active.entry(task_id).or_default().push(run_id);
        }
        let rows: Vec<SlotCandidate> = candidates
            .iter()
            .map(|c| {
                let task = &tasks[c.task];
                let (status, reason) = match c.verdict {
                    Verdict::Missed(reason) => ("missed", Some(reason.to_string())),
                    Verdict::Run if task.overlap == "skip" && active.contains_key(&task.id) => {
                        ("skipped", Some(PREVIOUS_INSTANCE_RUNNING.to_string()))
                    }
                    Verdict::Run => ("queued", None),
                };
                SlotCandidate {
                    task_id: task.id,
                    scheduled_for: c.scheduled_for,
                    plugin_version_id: task.plugin_version_id,
                    status: status.into(),
                    priority: task.priority,
                    skip_reason: reason,
                }
            })
            .collect();
        let recorded = pulses::claim_and_record(conn, pulse_id, "schedule", now, &rows)?;
        // Overlap `replace`: a new run of the task was queued, so the old ones go.
        let mut replaced = Vec::new();
        for run in recorded.iter().filter(|r| r.status == "queued") {
            if tasks[index_of[&run.task_id]].overlap != "replace" {
                continue;
            }
            for previous in active.remove(&run.task_id).unwrap_or_default() {
                if let runs::CancelOutcome::Requested { .. } = runs::request_cancel(conn, previous, now)? {
                    replaced.push(previous);
                }
            }
        }
        link_dependencies(conn, &tasks, &index_of, &recorded, now)?;
        pulses::mark_asked(conn, &asked, now)?;

        let mut report = PulseReport {
            pulse_id,
            received_at: now,
            due: candidates.iter().filter(|c| c.verdict == Verdict::Run).count(),
            claimed: Vec::new(),
            skipped: Vec::new(),
            missed: Vec::new(),
            missed_uncounted: uncounted,
            errors,
            duration_ms: 0.0,
            replaced,
        };
        for run in recorded {
            let entry = SlotRun {
                run_id: run.run_id,
                slot_id: run.slot_id,
                task_id: run.task_id,
                task: tasks[index_of[&run.task_id]].name.clone(),
                scheduled_for: run.scheduled_for,
                reason: run.skip_reason,
            };
            match run.status.as_str() {
                "queued" => report.claimed.push(entry),
                "missed" => report.missed.push(entry),
                _ => report.skipped.push(entry),
            }
        }
        report.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        // The whole answer is kept only when a retried delivery may ask for it again.
        let errors = serde_json::to_value(&report.errors).map_err(|e| StoreError::Encoding(e.to_string()))?;
        let response = match key {
            Some(_) => Some(serde_json::to_value(&report).map_err(|e| StoreError::Encoding(e.to_string()))?),
            None => None,
        };
        let summary = PulseSummary {
            due: report.due as i32,
            claimed: report.claimed.len() as i32,
            skipped: report.skipped.len() as i32,
            missed: (report.missed.len() + uncounted) as i32,
            duration_ms: report.duration_ms,
            max_lateness_ms: report
                .claimed
                .iter()
                .map(|r| (now - r.scheduled_for).num_milliseconds())
                .max(),
            errors,
            response,
        };
        pulses::finish_pulse(conn, pulse_id, &summary)?;
        Ok(Some(report))
    })
    .await
}

/// A queued run of a task with `depends_on` waits for the runs of those tasks
/// queued by the same pulse; if one of them was skipped or missed, it is
/// skipped with reason `dependency_failed`.
fn link_dependencies(
    conn: &mut diesel::PgConnection,
    tasks: &[SchedulableTask],
    index_of: &HashMap<i64, usize>,
    recorded: &[ClaimedRun],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let task_of = |run: &ClaimedRun| &tasks[index_of[&run.task_id]];
    for run in recorded
        .iter()
        .filter(|r| r.status == "queued" && !task_of(r).depends_on.is_empty())
    {
        let task = task_of(run);
        let mut waits_for = Vec::new();
        let mut failed = false;
        for name in &task.depends_on {
            // The dependency's run for the same occurrence, else its newest one
            // in this pulse (older, missed occurrences do not count).
            let of_dependency = recorded.iter().filter(|d| {
                let t = task_of(d);
                t.plugin_id == task.plugin_id && &t.name == name
            });
            let dependency = of_dependency
                .clone()
                .find(|d| d.scheduled_for == run.scheduled_for)
                .or_else(|| of_dependency.max_by_key(|d| d.scheduled_for));
            match dependency {
                Some(d) if d.status == "queued" => waits_for.push(d.run_id),
                Some(_) => failed = true,
                None => {}
            }
        }
        if failed {
            pulses::skip_runs(conn, &[run.run_id], DEPENDENCY_FAILED, now)?;
        } else if !waits_for.is_empty() {
            pulses::set_dependencies(conn, run.run_id, &waits_for)?;
        }
    }
    Ok(())
}

/// Queues a run of a task now, whatever its schedule (an operator's "run now").
pub async fn trigger(db: &Db, task_id: i64, now: DateTime<Utc>) -> StoreResult<SlotRun> {
    db.run(move |conn| {
        let (_, task) = crate::store::plugins::get_task(conn, task_id)?;
        if !task.active {
            return Err(StoreError::NotFound(format!("active task {task_id}")));
        }
        let pulse_id = pulses::insert_pulse(conn, "manual", Some("manual"), None, now)?
            .ok_or_else(|| StoreError::NotFound("a pulse id".into()))?;
        let candidate = SlotCandidate {
            task_id,
            scheduled_for: now,
            plugin_version_id: task.plugin_version_id,
            status: "queued".into(),
            priority: task.priority,
            skip_reason: None,
        };
        let run = pulses::claim_and_record(conn, pulse_id, "manual", now, &[candidate])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("a free slot for task {task_id} at {now}")))?;
        let summary = PulseSummary {
            due: 1,
            claimed: 1,
            errors: serde_json::json!([]),
            ..Default::default()
        };
        pulses::finish_pulse(conn, pulse_id, &summary)?;
        Ok(SlotRun {
            run_id: run.run_id,
            slot_id: run.slot_id,
            task_id,
            task: task.name,
            scheduled_for: now,
            reason: None,
        })
    })
    .await
}
