//! Backfill: the slots of a past range of a cron task, claimed once (slots
//! that exist are left as they are) and queued; the queue runs them under
//! the task's overlap policy (one at a time unless it is `allow`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::cron::CronSchedule;
use super::preview;
use crate::store::models::TaskRow;
use crate::store::pulses::{self, PulseSummary, SlotCandidate};
use crate::store::{pauses, plugins, Db, StoreError, StoreResult, Tx};

/// A backfill covers at most this many occurrences; narrow a longer range.
pub const BACKFILL_MAX: usize = 1000;

/// One occurrence of the range and what the backfill did with it.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillSlot {
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// `created` (a run was recorded now), `exists` (its slot was claimed
    /// before, and is left as it is) or, in a dry run, `would_create`.
    pub state: &'static str,
    /// The run recorded now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// That run's status: `queued`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// What a backfill did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Backfill {
    /// The task.
    pub task_id: i64,
    /// Its name.
    pub task: String,
    /// Nothing was recorded.
    pub dry_run: bool,
    /// Every occurrence in the range, ascending.
    pub slots: Vec<BackfillSlot>,
}

/// Why a backfill was refused; the message says how to ask instead.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The request cannot be carried out as asked (422).
    #[error("{0}")]
    Refused(String),
    /// The store failed or the task does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Backfills `[from, to]` of task `task_id`; `to` must not be later than the
/// database's clock.
pub async fn backfill(
    db: &Db,
    task_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    dry_run: bool,
) -> Result<Backfill, BackfillError> {
    db.run(move |tx| -> StoreResult<Result<Backfill, BackfillError>> {
        let (plugin, task, _) = plugins::get_task(tx, task_id)?;
        let now = plugins::database_now(tx)?;
        let occurrences = match occurrences(&plugin, &task, from, to, now) {
            Ok(o) => o,
            Err(refused) => return Ok(Err(refused)),
        };
        let claimed: std::collections::HashSet<DateTime<Utc>> =
            pauses::claimed_at(tx, task_id, &occurrences)?
                .into_iter()
                .collect();
        let (fresh, existing): (Vec<_>, Vec<_>) = occurrences.into_iter().partition(|o| !claimed.contains(o));
        let mut slots: Vec<BackfillSlot> = existing.iter().map(|at| slot(*at, "exists")).collect();
        if dry_run {
            slots.extend(fresh.iter().map(|at| slot(*at, "would_create")));
        } else {
            let created = record(tx, &task, &fresh, now)?;
            // A slot claimed meanwhile by a pulse is left to it.
            let made: std::collections::HashSet<DateTime<Utc>> =
                created.iter().map(|c| c.scheduled_for).collect();
            let taken = fresh.iter().filter(|at| !made.contains(*at));
            slots.extend(taken.map(|at| slot(*at, "exists")));
            slots.extend(created);
        }
        slots.sort_by_key(|s| s.scheduled_for);
        Ok(Ok(Backfill {
            task_id,
            task: task.name,
            dry_run,
            slots,
        }))
    })
    .await?
}

/// The task's occurrences in `[from, to]`, or why none may be backfilled.
fn occurrences(
    plugin: &str,
    task: &TaskRow,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, BackfillError> {
    let refuse = |m: String| Err(BackfillError::Refused(m));
    if !task.active {
        return refuse(format!(
            "task {} is retired: only active tasks can be backfilled",
            task.name
        ));
    }
    if !task.enabled {
        return refuse(format!(
            "task {} is disabled by its plugin: enable it in a new version of the plugin to backfill it",
            task.name
        ));
    }
    let Some(expression) = task
        .cron_expression
        .as_deref()
        .filter(|_| task.schedule_kind == "cron")
    else {
        return refuse(format!(
            "task {} has a {} schedule: only cron tasks have past occurrences to backfill; use POST /v1/tasks/{}/run",
            task.name, task.schedule_kind, task.id
        ));
    };
    if to > now {
        return refuse(format!(
            "to ({to}) is later than now ({now}): a backfill covers past occurrences; later ones run on schedule"
        ));
    }
    let identity = super::cron::task_identity(plugin, &task.name);
    let schedule = CronSchedule::for_task(expression, task.timezone.as_deref(), &identity)
        .map_err(|e| BackfillError::Refused(e.to_string()))?;
    let found: Vec<_> = preview::occurrences(&schedule, from, to)
        .take(BACKFILL_MAX + 1)
        .collect();
    if found.len() > BACKFILL_MAX {
        return refuse(format!(
            "more than {BACKFILL_MAX} occurrences of {expression:?} lie between {from} and {to}: backfill a shorter range at a time"
        ));
    }
    Ok(found)
}

fn slot(at: DateTime<Utc>, state: &'static str) -> BackfillSlot {
    BackfillSlot {
        scheduled_for: at,
        state,
        run_id: None,
        status: None,
    }
}

/// Claims the slots at `fresh` and queues their runs. The queue holds the
/// task's overlap: runs of a task that is not `allow` start one at a time,
/// after the one going; none is skipped or cancelled for being a backfill
/// (skipping would use a slot up for good). Slots claimed meanwhile by
/// someone else are left to them.
fn record(
    tx: &mut Tx<'_>,
    task: &TaskRow,
    fresh: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> StoreResult<Vec<BackfillSlot>> {
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let pulse_id = pulses::insert_pulse(tx, "backfill", Some("backfill"), None, now, 0, true)?
        .ok_or_else(|| StoreError::NotFound("a pulse id".into()))?;
    let candidates: Vec<SlotCandidate> = fresh
        .iter()
        .map(|at| SlotCandidate {
            task_id: task.id,
            scheduled_for: *at,
            plugin_version_id: task.plugin_version_id,
            definition_id: task.definition_id,
            status: "queued".into(),
            priority: task.priority,
            skip_reason: None,
            // A deliberate backfill of the past is never too late to start.
            start_deadline: None,
            not_before: None,
        })
        .collect();
    let recorded = pulses::claim_and_record(tx, pulse_id, "backfill", now, &candidates, true)?;
    let summary = PulseSummary {
        due: recorded.len() as i32,
        claimed: recorded.len() as i32,
        errors: serde_json::json!([]),
        ..Default::default()
    };
    pulses::finish_pulse(tx, pulse_id, &summary, true)?;
    Ok(recorded
        .into_iter()
        .map(|r| BackfillSlot {
            scheduled_for: r.scheduled_for,
            state: "created",
            run_id: Some(r.run_id),
            status: Some(r.status),
        })
        .collect())
}
