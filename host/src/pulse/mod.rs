//! What is due. A pulse reads every schedulable task's policies, works out the
//! occurrences since the previous pulse (cron) or asks the plugin (dynamic),
//! applies catch-up and starting deadlines, then — in one transaction — claims
//! every slot with one batched insert (so duplicate pulses and replicas claim
//! each slot once), applies the overlap policy, links dependencies and queues
//! runs. Skipped and missed slots are recorded as runs too: nothing is dropped
//! silently.

pub mod cron;
pub mod due;
mod dynamic;
mod record;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::plugin::PluginHost;
use crate::spec::CatchUp;
use crate::store::pulses::{self, SchedulableTask};
use crate::store::{Db, StoreError, StoreResult};
use cron::CronSchedule;
use due::{Policy, Verdict};

pub use record::trigger;

/// Skip reason recorded when the previous run of a task is still going.
pub const PREVIOUS_INSTANCE_RUNNING: &str = "previous_instance_running";
/// Skip reason of a dependent whose dependency failed or was skipped.
pub const DEPENDENCY_FAILED: &str = "dependency_failed";

/// Occurrences looked at per task per pulse at most (an every-second task after
/// a week without pulses must not spin the host).
const MAX_OCCURRENCES_SCANNED: usize = 1_000_000;

/// Pulse settings.
#[derive(Debug, Clone, Copy)]
pub struct PulseConfig {
    /// Missed slots run (`all`) or recorded individually per task per pulse.
    pub catch_up_max: usize,
    /// Under catch-up `none`, how late a slot may be and still count as on time.
    pub on_time: Duration,
}

/// A slot a pulse acted on.
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
    /// Why the run was skipped or missed, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A problem met while evaluating (the pulse goes on).
#[derive(Debug, Clone, Serialize)]
pub struct PulseProblem {
    /// Task id.
    pub task_id: i64,
    /// Task name.
    pub task: String,
    /// What went wrong.
    pub error: String,
}

/// What one pulse did.
#[derive(Debug, Clone, Serialize)]
pub struct PulseReport {
    /// The pulse's id.
    pub pulse_id: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Slots that were due to run.
    pub due: usize,
    /// Slots this pulse claimed and queued.
    pub claimed: Vec<SlotRun>,
    /// Slots claimed but recorded as skipped.
    pub skipped: Vec<SlotRun>,
    /// Slots recorded as missed.
    pub missed: Vec<SlotRun>,
    /// Missed slots beyond the per-task cap, counted but not recorded one by one.
    pub missed_uncounted: usize,
    /// Dynamic schedules that failed, and similar.
    pub errors: Vec<PulseProblem>,
    /// Server-side time to evaluate and claim.
    pub duration_ms: f64,
    /// Running runs an overlap `replace` asked to cancel.
    #[serde(skip)]
    pub replaced: Vec<i64>,
}

/// The answer to a pulse delivery.
#[derive(Debug, Clone)]
pub enum PulseAnswer {
    /// This delivery evaluated and claimed.
    Fresh(PulseReport),
    /// A delivery with the same idempotency key already did; its answer.
    Replayed(serde_json::Value),
}

/// One occurrence to claim, with its verdict.
#[derive(Debug, Clone)]
struct Candidate {
    task: usize,
    scheduled_for: DateTime<Utc>,
    verdict: Verdict,
}

/// A cron schedule parsed once and the next fire time last computed for it.
struct Cached {
    expression: String,
    timezone: Option<String>,
    schedule: Arc<CronSchedule>,
    /// `(window start, first occurrence after it)`.
    next: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

/// Evaluates pulses.
pub struct Pulser {
    db: Db,
    plugins: PluginHost,
    config: PulseConfig,
    schedules: Mutex<HashMap<i64, Cached>>,
    tasks: Mutex<Option<(pulses::TaskFingerprint, Arc<Vec<SchedulableTask>>)>>,
}

impl Pulser {
    /// A pulser over `db`, asking dynamic schedules through `plugins`.
    pub fn new(db: Db, plugins: PluginHost, config: PulseConfig) -> Self {
        Pulser {
            db,
            plugins,
            config,
            schedules: Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    /// Evaluates schedules at `now` and claims what is due. With `key`, a
    /// delivery that repeats an earlier one gets the earlier answer.
    pub async fn pulse(
        &self,
        source: Option<String>,
        key: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<PulseAnswer> {
        if let Some(answer) = self.replay(key.as_deref()).await? {
            return Ok(answer);
        }
        let clock = Instant::now();
        let (previous, tasks) = self.read_tasks(now).await?;
        let mut candidates = Vec::new();
        let mut uncounted = 0;
        {
            let mut cache = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
            for (i, task) in tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.schedule_kind == "cron")
            {
                uncounted += self.cron_candidates(&mut cache, i, task, previous, now, &mut candidates);
            }
        }
        let (asked, mut errors) = dynamic::ask(self, &tasks, now, &mut candidates).await;
        let outcome = record::claim(
            &self.db,
            record::Batch {
                tasks,
                candidates,
                asked,
                source,
                key: key.clone(),
                now,
                uncounted,
                errors: std::mem::take(&mut errors),
                clock,
            },
        )
        .await?;
        match outcome {
            Some(report) => Ok(PulseAnswer::Fresh(report)),
            None => Ok(self
                .replay(key.as_deref())
                .await?
                .unwrap_or(PulseAnswer::Replayed(serde_json::Value::Null))),
        }
    }

    /// The previous pulse's time and the schedulable tasks, re-read only when
    /// their fingerprint changed (a pulse over 10,000 tasks must not decode
    /// 10,000 rows every minute).
    async fn read_tasks(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<(Option<DateTime<Utc>>, Arc<Vec<SchedulableTask>>)> {
        let cached = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let known = cached.as_ref().map(|(fp, _)| *fp);
        let (previous, fingerprint, fresh) = self
            .db
            .run(move |c| {
                let previous = pulses::previous_pulse_at(c, now)?;
                let fingerprint = pulses::task_fingerprint(c)?;
                let fresh = (Some(fingerprint) != known)
                    .then(|| pulses::schedulable_tasks(c))
                    .transpose()?;
                Ok((previous, fingerprint, fresh))
            })
            .await?;
        let tasks = match (fresh, cached) {
            (Some(tasks), _) => {
                let tasks = Arc::new(tasks);
                *self.tasks.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((fingerprint, Arc::clone(&tasks)));
                tasks
            }
            (None, Some((_, tasks))) => tasks,
            (None, None) => Arc::default(),
        };
        Ok((previous, tasks))
    }

    /// The stored answer of an earlier delivery with `key`.
    async fn replay(&self, key: Option<&str>) -> StoreResult<Option<PulseAnswer>> {
        let Some(key) = key.map(str::to_string) else {
            return Ok(None);
        };
        let row = self.db.run(move |c| pulses::by_idempotency_key(c, &key)).await?;
        Ok(row.and_then(|r| r.response).map(PulseAnswer::Replayed))
    }

    /// Adds the occurrences of one cron task in its window; returns how many
    /// older missed slots were beyond the cap.
    fn cron_candidates(
        &self,
        cache: &mut HashMap<i64, Cached>,
        index: usize,
        task: &SchedulableTask,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        out: &mut Vec<Candidate>,
    ) -> usize {
        let start = previous.map_or(task.schedule_since, |p| p.max(task.schedule_since));
        let Some(schedule) = Self::schedule(cache, task, start, now) else {
            return 0;
        };
        let (slots, total) = due::window(
            schedule.after(start),
            now,
            self.config.catch_up_max,
            MAX_OCCURRENCES_SCANNED,
        );
        let policy = Policy {
            catch_up: catch_up(&task.catch_up),
            starting_deadline: task.starting_deadline_ms.map(Duration::milliseconds),
            on_time: self.config.on_time,
        };
        for (slot, verdict) in slots.iter().zip(due::classify(&slots, now, policy)) {
            out.push(Candidate {
                task: index,
                scheduled_for: *slot,
                verdict,
            });
        }
        total - slots.len()
    }

    /// The task's parsed schedule, or None when nothing is due in `(start, now]`
    /// (answered from the cached next fire time without walking the schedule).
    fn schedule(
        cache: &mut HashMap<i64, Cached>,
        task: &SchedulableTask,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Arc<CronSchedule>> {
        let stale = cache.get(&task.id).is_none_or(|c| {
            Some(&c.expression) != task.cron_expression.as_ref() || c.timezone != task.timezone
        });
        if stale {
            let expression = task.cron_expression.clone()?;
            let schedule = match CronSchedule::parse(&expression, task.timezone.as_deref()) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::error!(task.id = task.id, error = %e, "stored cron expression no longer parses");
                    return None;
                }
            };
            cache.insert(
                task.id,
                Cached {
                    expression,
                    timezone: task.timezone.clone(),
                    schedule,
                    next: None,
                },
            );
        }
        let cached = cache.get_mut(&task.id)?;
        // The first occurrence after an earlier start is still the first after
        // this one as long as it lies beyond this start.
        let next = match cached.next {
            Some((known_start, next)) if known_start <= start && next.is_none_or(|n| n > start) => next,
            _ => cached.schedule.after(start).next(),
        };
        cached.next = Some((start, next));
        next.is_some_and(|n| n <= now)
            .then(|| Arc::clone(&cached.schedule))
    }

    /// The next `n` fire times of a cron schedule after `after`.
    pub fn next_fire_times(
        expression: &str,
        timezone: Option<&str>,
        after: DateTime<Utc>,
        n: usize,
    ) -> Vec<DateTime<Utc>> {
        CronSchedule::parse(expression, timezone)
            .map(|s| s.next_n(after, n))
            .unwrap_or_default()
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn catch_up(stored: &str) -> CatchUp {
    match stored {
        "all" => CatchUp::All,
        "none" => CatchUp::None,
        _ => CatchUp::Latest,
    }
}

impl From<StoreError> for PulseProblem {
    fn from(e: StoreError) -> Self {
        PulseProblem {
            task_id: 0,
            task: String::new(),
            error: e.to_string(),
        }
    }
}
