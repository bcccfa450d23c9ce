//! What is due. A pulse reads the schedulable tasks (re-read only when one
//! changed), works out the occurrences since the previous pulse, applies
//! catch-up and starting deadlines, and claims them in one transaction — with
//! one batched insert, so duplicate pulses and replicas claim each slot once,
//! and under per-task locks, so overlap is decided by one pulse at a time.
//! Only then are dynamic schedules asked, all at once under one budget, and
//! what they say is claimed in a second transaction: a slow plugin never
//! delays a cron slot. Skipped and missed slots are recorded as runs too:
//! nothing is dropped silently. The pulse's instant is PostgreSQL's clock.

pub mod backfill;
pub mod cron;
pub mod deps;
pub mod due;
mod dynamic;
pub mod preview;
mod record;
mod schedules;
pub mod warm;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::plugin::PluginHost;
use crate::store::pulses::{self, SchedulableTask};
use crate::store::{Db, StoreResult};
use due::Verdict;

pub use record::{trigger, Triggered};
pub use schedules::{activate, effective_since, register};

/// Skip reason recorded when the previous run of a task is still going.
pub const PREVIOUS_INSTANCE_RUNNING: &str = "previous_instance_running";

/// Pulse settings.
#[derive(Debug, Clone, Copy)]
pub struct PulseConfig {
    /// Missed slots run (`all`) or recorded individually per task per pulse.
    pub catch_up_max: usize,
    /// Under catch-up `none`, how late a slot may be and still count as on time.
    pub on_time: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
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
    /// When it arrived, by the database's clock.
    pub received_at: DateTime<Utc>,
    /// Slots that were due.
    pub due: usize,
    /// Slots this pulse claimed and queued.
    pub claimed: Vec<SlotRun>,
    /// Slots claimed but recorded as skipped.
    pub skipped: Vec<SlotRun>,
    /// Slots recorded as missed.
    pub missed: Vec<SlotRun>,
    /// Missed slots beyond the per-task cap, counted exactly but not recorded one by one.
    pub missed_uncounted: u64,
    /// Dynamic schedules that failed or were deferred, and similar.
    pub errors: Vec<PulseProblem>,
    /// Server-side time to evaluate and claim.
    pub duration_ms: f64,
    /// Running runs an overlap `replace` asked to cancel.
    #[serde(skip)]
    pub replaced: Vec<i64>,
    /// Every run recorded, for linking the dependencies of a later batch.
    #[serde(skip)]
    pub recorded: Vec<deps::PulseRun>,
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

/// The tasks a pulse read, and what it derived from them once.
#[derive(Default)]
struct TaskSet {
    /// The snapshot they were read under.
    snapshot: String,
    tasks: Vec<SchedulableTask>,
    /// Per task: a cron task that waits (directly or not) for a dynamic task,
    /// claimed with the dynamic answers rather than before them.
    after_dynamic: Vec<bool>,
}

/// Evaluates pulses.
pub struct Pulser {
    db: Db,
    plugins: PluginHost,
    config: PulseConfig,
    schedules: Mutex<schedules::Cache>,
    tasks: Mutex<Option<Arc<TaskSet>>>,
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

    /// Evaluates schedules at the database's now and claims what is due;
    /// `claimed` is called as soon as the cron slots are claimed and committed
    /// (before dynamic schedules are asked), and again if the dynamic answers
    /// queued runs. With `key`, a delivery that repeats an earlier
    /// one within the idempotency window gets the earlier answer.
    pub async fn pulse(
        &self,
        source: Option<String>,
        key: Option<String>,
        claimed: &(dyn Fn() + Sync),
    ) -> StoreResult<PulseAnswer> {
        self.pulse_at(source, key, None, claimed).await
    }

    /// [`Pulser::pulse`] at a given instant instead of the database's now
    /// (benchmarks and simulations of a night or a silence).
    pub async fn pulse_at(
        &self,
        source: Option<String>,
        key: Option<String>,
        at: Option<DateTime<Utc>>,
        claimed: &(dyn Fn() + Sync),
    ) -> StoreResult<PulseAnswer> {
        if let Some(answer) = self.replay(key.as_deref()).await? {
            return Ok(answer);
        }
        let clock = Instant::now();
        let (now, previous, set) = self.read(at).await?;
        let (cron, deferred, uncounted) = self.cron_candidates(&set, previous, now);
        let second_follows = set.tasks.iter().any(|t| t.schedule_kind == "dynamic") || !deferred.is_empty();
        let first = record::Batch {
            set: Arc::clone(&set),
            candidates: cron,
            earlier: Vec::new(),
            asked: Vec::new(),
        };
        let opening = record::Opening {
            source,
            key: key.clone(),
            now,
            uncounted,
            clock,
            second_follows,
        };
        let Some(mut report) = record::first(self, first, opening).await? else {
            return self.replay_or_null(key.as_deref()).await;
        };
        claimed();
        if second_follows {
            // If anything below fails, the pulse stays incomplete and the next
            // pulse evaluates its window again.
            let asked = dynamic::ask(self, &set, now).await?;
            let mut candidates = deferred;
            candidates.extend(asked.candidates);
            let second = record::Batch {
                set: Arc::clone(&set),
                candidates,
                earlier: report.recorded.clone(),
                asked: asked.asked,
            };
            report.errors.extend(asked.problems);
            let queued_before = report.claimed.len();
            report = record::second(self, second, report, key.is_some(), clock).await?;
            if report.claimed.len() > queued_before {
                claimed();
            }
        }
        Ok(PulseAnswer::Fresh(report))
    }

    /// The pulse's instant, its window's start and the tasks (from the cache
    /// unless one changed since they were read).
    async fn read(
        &self,
        at: Option<DateTime<Utc>>,
    ) -> StoreResult<(DateTime<Utc>, Option<DateTime<Utc>>, Arc<TaskSet>)> {
        let known = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.snapshot.clone());
        let read = self
            .db
            .run(move |tx| pulses::read(tx, known.as_deref(), at))
            .await?;
        let mut cache = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tasks) = read.tasks {
            *cache = Some(Arc::new(TaskSet {
                snapshot: read.snapshot,
                after_dynamic: deps::after_dynamic(&tasks),
                tasks,
            }));
        }
        Ok((read.now, read.previous, cache.clone().unwrap_or_default()))
    }

    /// Occurrences of every cron task in its window: those claimed now, those
    /// that wait for the dynamic answers, and how many older missed slots
    /// are counted but not recorded one by one.
    fn cron_candidates(
        &self,
        set: &TaskSet,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (Vec<Candidate>, Vec<Candidate>, u64) {
        let mut cache = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        let (mut first, mut later, mut uncounted) = (Vec::new(), Vec::new(), 0);
        for (i, task) in set
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.schedule_kind == "cron")
        {
            let out = if set.after_dynamic[i] {
                &mut later
            } else {
                &mut first
            };
            uncounted += cache.occurrences(i, task, previous, now, &self.config, out);
        }
        (first, later, uncounted)
    }

    /// The stored answer of an earlier delivery with `key`, within the window.
    async fn replay(&self, key: Option<&str>) -> StoreResult<Option<PulseAnswer>> {
        let Some(key) = key.map(str::to_string) else {
            return Ok(None);
        };
        let window = self.config.idempotency_window.num_milliseconds();
        let row = self
            .db
            .run(move |tx| pulses::by_idempotency_key(tx, &key, window))
            .await?;
        Ok(row.and_then(|r| r.response).map(PulseAnswer::Replayed))
    }

    async fn replay_or_null(&self, key: Option<&str>) -> StoreResult<PulseAnswer> {
        Ok(self
            .replay(key)
            .await?
            .unwrap_or(PulseAnswer::Replayed(serde_json::Value::Null)))
    }

    /// The next `n` fire times after `after` of a cron schedule of the task
    /// `identity` (`plugin/task`, which `H` spreads by).
    pub fn next_fire_times(
        expression: &str,
        timezone: Option<&str>,
        identity: &str,
        after: DateTime<Utc>,
        n: usize,
    ) -> Vec<DateTime<Utc>> {
        cron::CronSchedule::for_task(expression, timezone, identity)
            .map(|s| s.next_n(after, n))
            .unwrap_or_default()
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}
