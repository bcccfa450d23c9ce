//! Dynamic schedules: on each pulse, at most once per task's interval, the
//! plugin's `should-run` decides inside the sandbox whether the task is due. A
//! trap or timeout counts as "not due", is logged and reported with the pulse,
//! and never stops it.

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::{Candidate, PulseProblem, Pulser};
use crate::spec::{RunContext, RunOutcome};
use crate::store::pulses::{self, SchedulableTask};
use crate::store::StoreError;
use due::Verdict;

use super::due;

/// Asks every dynamic task whose interval has passed; returns the ids asked and
/// the problems met. Due tasks become candidates at their interval's slot.
pub(super) async fn ask(
    pulser: &Pulser,
    tasks: &[SchedulableTask],
    now: DateTime<Utc>,
    out: &mut Vec<Candidate>,
) -> (Vec<i64>, Vec<PulseProblem>) {
    let (mut asked, mut problems) = (Vec::new(), Vec::new());
    for (index, task) in tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.schedule_kind == "dynamic")
    {
        let interval = Duration::seconds(i64::from(task.dynamic_interval_secs.unwrap_or(0).max(1)));
        if task.last_asked_at.is_some_and(|last| now - last < interval) {
            continue;
        }
        asked.push(task.id);
        // Duplicate pulses within one interval name the same slot, so it is claimed once.
        let slot = now.duration_trunc(interval).unwrap_or(now);
        match ask_one(pulser, task, slot, now).await {
            Ok(true) => out.push(Candidate {
                task: index,
                scheduled_for: slot,
                verdict: Verdict::Run,
            }),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(task.id = task.id, task = %task.name, %error, "should-run failed; the task is not due");
                problems.push(PulseProblem {
                    task_id: task.id,
                    task: task.name.clone(),
                    error,
                });
            }
        }
    }
    (asked, problems)
}

async fn ask_one(
    pulser: &Pulser,
    task: &SchedulableTask,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, String> {
    let (task_id, version) = (task.id, task.plugin_version_id);
    let (previous, sha) = pulser
        .db
        .run(move |c| {
            Ok((
                pulses::last_outcome(c, task_id)?,
                pulses::version_sha(c, version)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())?;
    let ctx = RunContext {
        task: task.name.clone(),
        slot_id: format!("{}@{}", task.id, slot.to_rfc3339()),
        scheduled_for_ms: slot.timestamp_millis(),
        now_ms: now.timestamp_millis(),
        attempt: 1,
        previous: previous.map(|run| RunOutcome {
            status: run.status,
            finished_at_ms: run.finished_at.unwrap_or(now).timestamp_millis(),
            exit_code: None,
            error: run.error,
        }),
    };
    let (plugins, db) = (pulser.plugins.clone(), pulser.db.clone());
    tokio::task::spawn_blocking(move || {
        let load = || {
            let mut conn = db.conn().map_err(|e: StoreError| e.to_string())?;
            crate::store::plugins::component(&mut conn, version)
                .map(|(_, bytes)| bytes)
                .map_err(|e| e.to_string())
        };
        plugins.should_run(&sha, load, &ctx).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("should-run worker stopped: {e}"))?
}
