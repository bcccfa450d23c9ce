//! Dynamic schedules: on each pulse, at most once per task's interval, the
//! plugin's `should-run` decides inside the sandbox whether the task is due.
//! Every due question is asked at once, under one budget for the whole pulse
//! (the plugin call deadline plus a little): a plugin that sleeps costs a
//! pulse one deadline, whatever the number of its tasks. A trap or timeout
//! counts as "not due" and is reported with the pulse. A pulse never waits for
//! a plugin to be loaded or compiled: a task whose component is not ready on
//! this host is reported as deferred (its loading started in the background)
//! and asked again on the next pulse.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::due::Verdict;
use super::{warm, Candidate, PulseProblem, Pulser, TaskSet};
use crate::plugin::Readiness;
use crate::spec::{RunContext, RunOutcome};
use crate::store::asks::{self, LastOutcome};
use crate::store::pulses::SchedulableTask;
use crate::store::StoreResult;

/// Beyond the call deadline, how long a pulse waits for its dynamic answers.
const BUDGET_SLACK: Duration = Duration::from_millis(50);

/// The problem reported for a question not asked because its component is not ready.
const DEFERRED: &str = "deferred: the plugin is still being prepared on this host (loaded from its \
                        compiled cache or compiled); asked again on the next pulse";

/// What asking the dynamic schedules gave.
#[derive(Default)]
pub(super) struct Asked {
    /// Due tasks, at their interval's slot.
    pub candidates: Vec<Candidate>,
    /// Tasks that were asked (answered or failed), so not again within their interval.
    pub asked: Vec<i64>,
    /// Failures and deferrals.
    pub problems: Vec<PulseProblem>,
}

/// One question to ask.
struct Question {
    index: usize,
    slot: DateTime<Utc>,
    context: RunContext,
    sha: String,
}

/// Why a question was not asked on this pulse.
enum NotAsked {
    /// Its component is being prepared here.
    Deferred,
    /// Its component could not be prepared.
    Failed(crate::plugin::PluginError),
}

/// Asks every dynamic task whose interval has passed (see the module doc).
pub(super) async fn ask(pulser: &Pulser, set: &TaskSet, now: DateTime<Utc>) -> StoreResult<Asked> {
    let dynamic: Vec<usize> = (0..set.tasks.len())
        .filter(|i| set.tasks[*i].schedule_kind == "dynamic")
        .collect();
    if dynamic.is_empty() {
        return Ok(Asked::default());
    }
    let questions = questions(pulser, set, &dynamic, now).await?;
    if questions.is_empty() {
        return Ok(Asked::default());
    }
    let mut unasked = HashMap::new();
    for (q, question) in questions.iter().enumerate() {
        match pulser.plugins.readiness(&question.sha) {
            Readiness::Ready => {}
            Readiness::Failed(error) => _ = unasked.insert(q, NotAsked::Failed(error)),
            Readiness::Warming | Readiness::Absent => {
                let version = set.tasks[question.index].plugin_version_id;
                warm::start(&pulser.db, &pulser.plugins, &question.sha, version);
                unasked.insert(q, NotAsked::Deferred);
            }
        }
    }
    let budget = pulser.plugins.call_timeout() + BUDGET_SLACK;
    let mut pending: FuturesUnordered<_> = questions
        .iter()
        .enumerate()
        .filter(|(q, _)| !unasked.contains_key(q))
        .map(|(q, question)| async move {
            (
                q,
                pulser.plugins.should_run(&question.sha, &question.context).await,
            )
        })
        .collect();
    let mut answers = HashMap::new();
    let _ = tokio::time::timeout(budget, async {
        while let Some((q, answer)) = pending.next().await {
            answers.insert(q, answer);
        }
    })
    .await;
    drop(pending);
    for (q, answer) in &answers {
        if matches!(answer, Err(crate::plugin::PluginError::NotReady)) {
            let question = &questions[*q];
            let version = set.tasks[question.index].plugin_version_id;
            warm::start(&pulser.db, &pulser.plugins, &question.sha, version);
        }
    }
    Ok(collect(set, &questions, answers, unasked, budget))
}

/// The questions due now: dynamic tasks whose interval passed since they were
/// last asked, with what their `should-run` is told.
async fn questions(
    pulser: &Pulser,
    set: &TaskSet,
    dynamic: &[usize],
    now: DateTime<Utc>,
) -> StoreResult<Vec<Question>> {
    let ids: Vec<i64> = dynamic.iter().map(|i| set.tasks[*i].id).collect();
    let versions: Vec<i64> = dynamic.iter().map(|i| set.tasks[*i].plugin_version_id).collect();
    let (asked, outcomes, shas) = pulser
        .db
        .run(move |tx| {
            Ok((
                asks::asked_at(tx, &ids)?,
                asks::last_outcomes(tx, &ids)?,
                asks::version_shas(tx, &versions)?,
            ))
        })
        .await?;
    let asked: HashMap<i64, DateTime<Utc>> = asked.into_iter().collect();
    let shas: HashMap<i64, String> = shas.into_iter().collect();
    Ok(dynamic
        .iter()
        .filter_map(|&index| {
            let task = &set.tasks[index];
            let interval =
                chrono::Duration::seconds(i64::from(task.dynamic_interval_secs.unwrap_or(0).max(1)));
            if asked.get(&task.id).is_some_and(|last| now - *last < interval) {
                return None;
            }
            // Duplicate pulses within one interval name the same slot, so it is claimed once.
            let slot = now.duration_trunc(interval).unwrap_or(now);
            let previous = outcomes.iter().find(|o| o.task_id == task.id);
            Some(Question {
                index,
                slot,
                context: context(task, slot, now, previous),
                sha: shas.get(&task.plugin_version_id)?.clone(),
            })
        })
        .collect())
}

fn context(
    task: &SchedulableTask,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
    previous: Option<&LastOutcome>,
) -> RunContext {
    RunContext {
        task: task.name.clone(),
        slot_id: format!("{}@{}", task.id, slot.to_rfc3339()),
        scheduled_for_ms: slot.timestamp_millis(),
        now_ms: now.timestamp_millis(),
        attempt: 1,
        previous: previous.map(|run| RunOutcome {
            status: run.status.clone(),
            finished_at_ms: run.finished_at.timestamp_millis(),
            exit_code: run.exit_code,
            error: run.error.clone(),
        }),
    }
}

/// Turns the answers into candidates, asked tasks and problems.
fn collect(
    set: &TaskSet,
    questions: &[Question],
    mut answers: HashMap<usize, Result<bool, crate::plugin::PluginError>>,
    mut unasked: HashMap<usize, NotAsked>,
    budget: Duration,
) -> Asked {
    let mut asked = Asked::default();
    for (q, question) in questions.iter().enumerate() {
        let task = &set.tasks[question.index];
        let problem = |error: String| PulseProblem {
            task_id: task.id,
            task: task.name.clone(),
            error,
        };
        match answers.remove(&q) {
            Some(Ok(due)) => {
                asked.asked.push(task.id);
                if due {
                    asked.candidates.push(Candidate {
                        task: question.index,
                        scheduled_for: question.slot,
                        verdict: Verdict::Run,
                    });
                }
            }
            // Dropped from memory between the readiness check and the call.
            Some(Err(crate::plugin::PluginError::NotReady)) => {
                asked.problems.push(problem(DEFERRED.to_string()));
            }
            Some(Err(error)) => {
                tracing::warn!(task.id = task.id, task = %task.name, %error, "should-run failed; the task is not due");
                asked.asked.push(task.id);
                asked.problems.push(problem(error.to_string()));
            }
            None => asked.problems.push(problem(match unasked.remove(&q) {
                Some(NotAsked::Deferred) => DEFERRED.to_string(),
                Some(NotAsked::Failed(error)) => format!("the plugin could not be prepared: {error}"),
                None => format!(
                    "no answer within the pulse's budget of {} ms; asked again on the next pulse",
                    budget.as_millis()
                ),
            })),
        }
    }
    asked
}
