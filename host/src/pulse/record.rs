//! The write half of a pulse: one transaction that records the pulse, claims
//! every candidate slot in one batched insert, applies overlap, links
//! dependencies and queues runs; and the operator's "run now".

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::due::Verdict;
use super::{Candidate, PulseProblem, PulseReport, SlotRun, DEPENDENCY_FAILED, PREVIOUS_INSTANCE_RUNNING};
use crate::store::pulses::{self, DueSlot, NewRun, PulseSummary, SchedulableTask};
use crate::store::{runs, Db, StoreError, StoreResult};

/// Everything the evaluation produced.
pub(super) struct Batch {
    pub tasks: Vec<SchedulableTask>,
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
        let due: Vec<DueSlot> = candidates
            .iter()
            .map(|c| DueSlot {
                task_id: tasks[c.task].id,
                scheduled_for: c.scheduled_for,
            })
            .collect();
        let claimed = pulses::claim_slots(conn, pulse_id, &due, "schedule")?;
        let index_of: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        let verdict_of: HashMap<(i64, DateTime<Utc>), Verdict> = candidates
            .iter()
            .map(|c| ((tasks[c.task].id, c.scheduled_for), c.verdict))
            .collect();

        // Overlap: what is still queued or running of the tasks about to run.
        let running_ids: Vec<i64> = claimed
            .iter()
            .filter(|c| verdict_of.get(&(c.task_id, c.scheduled_for)) == Some(&Verdict::Run))
            .map(|c| c.task_id)
            .collect();
        let mut active: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
        for (run_id, task_id, status) in pulses::active_runs(conn, &running_ids)? {
            active.entry(task_id).or_default().push((run_id, status));
        }
        let mut replaced = Vec::new();
        let mut new_runs = Vec::with_capacity(claimed.len());
        for slot in &claimed {
            let task = &tasks[index_of[&slot.task_id]];
            let (status, reason) = match verdict_of.get(&(slot.task_id, slot.scheduled_for)) {
                Some(Verdict::Missed(reason)) => ("missed", Some(reason.to_string())),
                _ => match (task.overlap.as_str(), active.get(&task.id)) {
                    ("skip", Some(_)) => ("skipped", Some(PREVIOUS_INSTANCE_RUNNING.to_string())),
                    ("replace", Some(previous)) => {
                        for (run_id, _) in previous {
                            if let runs::CancelOutcome::Requested { .. } =
                                runs::request_cancel(conn, *run_id, now)?
                            {
                                replaced.push(*run_id);
                            }
                        }
                        ("queued", None)
                    }
                    _ => ("queued", None),
                },
            };
            new_runs.push(NewRun {
                slot_id: slot.slot_id,
                task_id: slot.task_id,
                plugin_version_id: task.plugin_version_id,
                status: status.into(),
                priority: task.priority,
                scheduled_for: slot.scheduled_for,
                not_before: now,
                finished_at: reason.as_ref().map(|_| now),
                skip_reason: reason,
            });
        }
        let run_ids = pulses::insert_runs(conn, &new_runs)?;
        link_dependencies(conn, &tasks, &new_runs, &run_ids, now)?;
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
        for (run, run_id) in new_runs.into_iter().zip(run_ids) {
            let entry = SlotRun {
                run_id,
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
        let response = serde_json::to_value(&report).map_err(|e| StoreError::Encoding(e.to_string()))?;
        pulses::finish_pulse(
            conn,
            pulse_id,
            &PulseSummary {
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
                errors: response["errors"].clone(),
                response: Some(response),
            },
        )?;
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
    new_runs: &[NewRun],
    run_ids: &[i64],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let by_task: HashMap<i64, (&SchedulableTask, &NewRun, i64)> = new_runs
        .iter()
        .zip(run_ids)
        .filter_map(|(run, id)| {
            tasks
                .iter()
                .find(|t| t.id == run.task_id)
                .map(|t| (t.id, (t, run, *id)))
        })
        .collect();
    for (task, run, run_id) in by_task.values() {
        if task.depends_on.is_empty() || run.status != "queued" {
            continue;
        }
        let mut waits_for = Vec::new();
        let mut failed = false;
        for name in &task.depends_on {
            let dependency = by_task
                .values()
                .find(|(t, ..)| t.plugin_id == task.plugin_id && &t.name == name);
            match dependency {
                Some((_, dep_run, dep_id)) if dep_run.status == "queued" => waits_for.push(*dep_id),
                Some(_) => failed = true,
                None => {}
            }
        }
        if failed {
            pulses::skip_runs(conn, &[*run_id], DEPENDENCY_FAILED, now)?;
        } else if !waits_for.is_empty() {
            pulses::set_dependencies(conn, *run_id, &waits_for)?;
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
        let summary = PulseSummary {
            due: 1,
            claimed: 1,
            errors: serde_json::json!([]),
            ..Default::default()
        };
        pulses::finish_pulse(conn, pulse_id, &summary)?;
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
