//! The write half of a pulse: a transaction per batch that claims every
//! candidate slot and records its run in one statement, decides overlap under
//! per-task locks, links dependencies and cascades failures; and the
//! operator's "run now", which obeys overlap too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

use super::deps::{self, PulseRun};
use super::due::Verdict;
use super::{Candidate, PulseReport, Pulser, SlotRun, TaskSet, PREVIOUS_INSTANCE_RUNNING};
use crate::runner::settle;
use crate::store::pulses::{self, PulseSummary, RecordedRun, SchedulableTask, SlotCandidate};
use crate::store::{deps as store_deps, runs, StoreError, StoreResult, Tx};

/// One transaction's worth of candidates.
pub(super) struct Batch {
    pub set: Arc<TaskSet>,
    pub candidates: Vec<Candidate>,
    /// Runs an earlier batch of the same pulse recorded (dependencies may point at them).
    pub earlier: Vec<PulseRun>,
    /// Dynamic tasks asked in this pulse.
    pub asked: Vec<i64>,
}

/// What the first batch needs to open the pulse.
pub(super) struct Opening {
    pub source: Option<String>,
    pub key: Option<String>,
    pub now: DateTime<Utc>,
    pub uncounted: u64,
    pub clock: Instant,
    /// A second batch follows: the pulse stays incomplete until it is written.
    pub second_follows: bool,
}

/// Records the pulse and claims the first batch; None when another delivery
/// with the same idempotency key won.
pub(super) async fn first(
    pulser: &Pulser,
    batch: Batch,
    opening: Opening,
) -> StoreResult<Option<PulseReport>> {
    let window = pulser.config.idempotency_window.num_milliseconds();
    pulser
        .db
        .run(move |tx| {
            let Opening {
                source,
                key,
                now,
                uncounted,
                clock,
                second_follows,
            } = opening;
            let complete = !second_follows;
            let Some(pulse_id) = pulses::insert_pulse(
                tx,
                "pulse",
                source.as_deref(),
                key.as_deref(),
                now,
                window,
                complete,
            )?
            else {
                return Ok(None);
            };
            let mut report = PulseReport {
                pulse_id,
                received_at: now,
                due: 0,
                claimed: Vec::new(),
                skipped: Vec::new(),
                missed: Vec::new(),
                missed_uncounted: uncounted,
                errors: Vec::new(),
                duration_ms: 0.0,
                replaced: Vec::new(),
                recorded: Vec::new(),
            };
            claim(tx, &batch, &mut report, false)?;
            save(tx, &mut report, key.is_some(), clock, complete)?;
            Ok(Some(report))
        })
        .await
}

/// Claims the second batch (dynamic answers and what waited for them) into
/// the same pulse.
pub(super) async fn second(
    pulser: &Pulser,
    batch: Batch,
    mut report: PulseReport,
    keyed: bool,
    clock: Instant,
) -> StoreResult<PulseReport> {
    pulser
        .db
        .run(move |tx| {
            crate::store::asks::mark_asked(tx, &batch.asked, report.received_at)?;
            // Answers took a while: a task retired or rolled back meanwhile is not claimed.
            claim(tx, &batch, &mut report, true)?;
            save(tx, &mut report, keyed, clock, true)?;
            Ok(report)
        })
        .await
}

/// Locks the tasks whose overlap is decided here, records every candidate
/// with its verdict, cancels what `replace` replaces, links dependencies and
/// cascades failures to whatever waits.
/// With `live_only`, only tasks still active on the definition the pulse read
/// are claimed.
fn claim(tx: &mut Tx<'_>, batch: &Batch, report: &mut PulseReport, live_only: bool) -> StoreResult<()> {
    let tasks = &batch.set.tasks;
    let watched: Vec<i64> = batch
        .candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Run && tasks[c.task].overlap != "allow")
        .map(|c| tasks[c.task].id)
        .collect();
    // Overlap is decided one pulse (or trigger) at a time per task, so two
    // replicas pulsing at once cannot both find the task idle.
    pulses::lock_tasks(tx, &watched)?;
    let mut active: HashMap<i64, Vec<i64>> = HashMap::new();
    for (run_id, task_id) in pulses::active_runs(tx, &watched)? {
        active.entry(task_id).or_default().push(run_id);
    }
    let rows: Vec<SlotCandidate> = batch
        .candidates
        .iter()
        .map(|c| slot_candidate(&tasks[c.task], c, &active))
        .collect();
    let recorded = pulses::claim_and_record(
        tx,
        report.pulse_id,
        "schedule",
        report.received_at,
        &rows,
        live_only,
    )?;
    let index_of: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for run in recorded.iter().filter(|r| r.status == "queued") {
        if tasks[index_of[&run.task_id]].overlap == "replace" {
            for previous in active.remove(&run.task_id).unwrap_or_default() {
                if let runs::CancelOutcome::Requested { .. } | runs::CancelOutcome::Cancelled =
                    runs::request_cancel(tx, previous)?
                {
                    report.replaced.push(previous);
                }
            }
        }
    }
    let fresh: Vec<PulseRun> = recorded.iter().map(|r| pulse_run(r, &index_of)).collect();
    let links = deps::links(&fresh, &batch.earlier, tasks);
    store_deps::link(tx, &links)?;
    // Only runs linked just now, or runs a replace cancelled, can have a run
    // waiting for them that ended without success.
    let mut roots: Vec<i64> = links.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    roots.extend(report.replaced.iter().copied());
    if !roots.is_empty() {
        settle::cascade(tx, &roots)?;
    }
    report.due += batch
        .candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Run)
        .count();
    report.recorded.extend(fresh);
    for run in recorded {
        let task = &tasks[index_of[&run.task_id]];
        file(report, run, task);
    }
    Ok(())
}

fn slot_candidate(task: &SchedulableTask, c: &Candidate, active: &HashMap<i64, Vec<i64>>) -> SlotCandidate {
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
        definition_id: task.definition_id,
        status: status.into(),
        priority: task.priority,
        skip_reason: reason,
        start_deadline: task
            .starting_deadline_ms
            .map(|ms| c.scheduled_for + Duration::milliseconds(ms)),
        not_before: task.jitter_ms.map(|max| {
            let identity = super::cron::task_identity(&task.plugin_name, &task.name);
            c.scheduled_for + super::due::jitter(&identity, c.scheduled_for, max)
        }),
    }
}

fn pulse_run(r: &RecordedRun, index_of: &HashMap<i64, usize>) -> PulseRun {
    PulseRun {
        run_id: r.run_id,
        task: index_of[&r.task_id],
        scheduled_for: r.scheduled_for,
        queued: r.status == "queued",
    }
}

/// Files a recorded run under claimed, missed or skipped.
fn file(report: &mut PulseReport, run: RecordedRun, task: &SchedulableTask) {
    let entry = SlotRun {
        run_id: run.run_id,
        slot_id: run.slot_id,
        task_id: run.task_id,
        task: task.name.clone(),
        scheduled_for: run.scheduled_for,
        reason: run.skip_reason,
    };
    match run.status.as_str() {
        "queued" => report.claimed.push(entry),
        "missed" => report.missed.push(entry),
        _ => report.skipped.push(entry),
    }
}

/// Stores what the pulse did so far (and the whole answer, when a retried
/// delivery may ask for it again).
fn save(
    tx: &mut Tx<'_>,
    report: &mut PulseReport,
    keyed: bool,
    clock: Instant,
    complete: bool,
) -> StoreResult<()> {
    report.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
    let encode =
        |v: serde_json::Result<serde_json::Value>| v.map_err(|e| StoreError::Encoding(e.to_string()));
    let summary = PulseSummary {
        due: report.due as i32,
        claimed: report.claimed.len() as i32,
        skipped: report.skipped.len() as i32,
        missed: report.missed.len() as i64 + report.missed_uncounted as i64,
        duration_ms: report.duration_ms,
        max_lateness_ms: report
            .claimed
            .iter()
            .map(|r| (report.received_at - r.scheduled_for).num_milliseconds())
            .max(),
        errors: encode(serde_json::to_value(&report.errors))?,
        response: if keyed {
            Some(encode(serde_json::to_value(&*report))?)
        } else {
            None
        },
    };
    pulses::finish_pulse(tx, report.pulse_id, &summary, complete)
}

/// What an operator's "run now" did.
#[derive(Debug, Clone)]
pub enum Triggered {
    /// A run was queued (and, under overlap `replace`, the running ones asked to stop).
    Queued(SlotRun),
    /// Overlap `skip` and the task is still running: a skipped run was recorded.
    Skipped {
        /// The skipped run.
        skipped: SlotRun,
        /// The runs still going.
        running: Vec<i64>,
    },
}

/// Queues a run of a task now, whatever its schedule, obeying its overlap policy.
pub async fn trigger(
    db: &crate::store::Db,
    task_id: i64,
    overrides: Option<crate::spec::RunOverrides>,
) -> StoreResult<Triggered> {
    db.run(move |tx| {
        let (_, task, _) = crate::store::plugins::get_task(tx, task_id)?;
        if !task.active {
            return Err(StoreError::NotFound(format!("active task {task_id}")));
        }
        let now = crate::store::plugins::database_now(tx)?;
        if task.overlap != "allow" {
            pulses::lock_tasks(tx, &[task_id])?;
        }
        let running: Vec<i64> = match task.overlap.as_str() {
            "allow" => Vec::new(),
            _ => pulses::active_runs(tx, &[task_id])?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        };
        let skip = task.overlap == "skip" && !running.is_empty();
        let pulse_id = pulses::insert_pulse(tx, "manual", Some("manual"), None, now, 0, true)?
            .ok_or_else(|| StoreError::NotFound("a pulse id".into()))?;
        let candidate = SlotCandidate {
            task_id,
            scheduled_for: now,
            plugin_version_id: task.plugin_version_id,
            definition_id: task.definition_id,
            status: if skip { "skipped" } else { "queued" }.into(),
            priority: task.priority,
            skip_reason: skip.then(|| PREVIOUS_INSTANCE_RUNNING.to_string()),
            start_deadline: None,
            not_before: None,
        };
        let run = pulses::claim_and_record(tx, pulse_id, "manual", now, &[candidate], false)?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("a free slot for task {task_id} at {now}")))?;
        if let Some(overrides) = &overrides {
            crate::store::runs::set_overrides(tx, run.run_id, overrides)?;
        }
        if task.overlap == "replace" {
            for previous in &running {
                runs::request_cancel(tx, *previous)?;
            }
            settle::cascade(tx, &running)?;
        }
        let summary = PulseSummary {
            due: 1,
            claimed: i32::from(!skip),
            skipped: i32::from(skip),
            errors: serde_json::json!([]),
            ..Default::default()
        };
        pulses::finish_pulse(tx, pulse_id, &summary, true)?;
        let slot = SlotRun {
            run_id: run.run_id,
            slot_id: run.slot_id,
            task_id,
            task: task.name,
            scheduled_for: now,
            reason: run.skip_reason,
        };
        Ok(if skip {
            Triggered::Skipped {
                skipped: slot,
                running,
            }
        } else {
            Triggered::Queued(slot)
        })
    })
    .await
}
