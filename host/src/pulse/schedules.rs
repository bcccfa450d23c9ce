//! Cron occurrences of each task in a pulse's window, with parsed schedules
//! (and the next fire time after the last window) cached between pulses; and
//! the rule for when a task's schedule takes effect.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::cron::CronSchedule;
use super::due::{self, Policy};
use super::{Candidate, PulseConfig};
use crate::spec::{CatchUp, Schedule, TaskSpec};
use crate::store::plugins::{self, ExistingTask, NewPluginVersion, RegisteredVersion};
use crate::store::pulses::SchedulableTask;
use crate::store::{versions, StoreError, StoreResult, Tx};

/// Parsed cron schedules by task id.
#[derive(Default)]
pub(super) struct Cache {
    entries: HashMap<i64, Cached>,
}

/// A cron schedule parsed once and the next fire time last computed for it.
struct Cached {
    expression: String,
    timezone: Option<String>,
    schedule: CronSchedule,
    /// `(window start, first occurrence after it)`.
    next: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

impl Cache {
    /// Adds the occurrences of cron task `task` (at `index`) in its window up
    /// to `now`, with their verdicts, to `out`; returns how many older missed
    /// slots there were beyond the per-task cap (counted exactly, not recorded).
    pub fn occurrences(
        &mut self,
        index: usize,
        task: &SchedulableTask,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        config: &PulseConfig,
        out: &mut Vec<Candidate>,
    ) -> u64 {
        let start = previous.map_or(task.schedule_since, |p| p.max(task.schedule_since));
        let Some(schedule) = self.due_schedule(task, start, now) else {
            return 0;
        };
        let total = schedule.count_between(start, now);
        let slots = schedule.newest_between(start, now, config.catch_up_max);
        let policy = Policy {
            catch_up: catch_up(&task.catch_up),
            starting_deadline: task.starting_deadline_ms.map(Duration::milliseconds),
            on_time: config.on_time,
        };
        for (slot, verdict) in slots.iter().zip(due::classify(&slots, now, policy)) {
            out.push(Candidate {
                task: index,
                scheduled_for: *slot,
                verdict,
            });
        }
        total.saturating_sub(slots.len() as u64)
    }

    /// The task's parsed schedule, or None when nothing is due in `(start, now]`
    /// (answered from the cached next fire time without walking the schedule).
    fn due_schedule(
        &mut self,
        task: &SchedulableTask,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<&CronSchedule> {
        let stale = self.entries.get(&task.id).is_none_or(|c| {
            Some(&c.expression) != task.cron_expression.as_ref() || c.timezone != task.timezone
        });
        if stale {
            let expression = task.cron_expression.clone()?;
            let identity = super::cron::task_identity(&task.plugin_name, &task.name);
            let schedule = match CronSchedule::for_task(&expression, task.timezone.as_deref(), &identity) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(task.id = task.id, error = %e, "stored cron expression no longer parses");
                    return None;
                }
            };
            self.entries.insert(
                task.id,
                Cached {
                    expression,
                    timezone: task.timezone.clone(),
                    schedule,
                    next: None,
                },
            );
        }
        let cached = self.entries.get_mut(&task.id)?;
        // The first occurrence after an earlier start is still the first after
        // this one as long as it lies beyond this start.
        let next = match cached.next {
            Some((known_start, next)) if known_start <= start && next.is_none_or(|n| n > start) => next,
            _ => cached.schedule.after(start).next(),
        };
        cached.next = Some((start, next));
        next.is_some_and(|n| n <= now).then_some(&cached.schedule)
    }
}

fn catch_up(stored: &str) -> CatchUp {
    match stored {
        "all" => CatchUp::All,
        "none" => CatchUp::None,
        _ => CatchUp::Latest,
    }
}

/// Records an uploaded version and makes it active, each task's schedule
/// taking effect as [`effective_since`] says (in the caller's transaction).
pub fn register(tx: &mut Tx<'_>, new: &NewPluginVersion<'_>) -> StoreResult<RegisteredVersion> {
    // Versions of one plugin change one at a time: the row is locked before the
    // stored tasks are read, so a concurrent retire or rollback is seen.
    plugins::lock_or_create(tx, &new.manifest.name)?;
    let since = since_for(tx, &new.manifest.name, &new.manifest.tasks)?;
    plugins::register_version(tx, new, &since)
}

/// Makes version `version` of `plugin` the active one (a rollback, or a roll
/// forward), with the same schedule semantics as an upload of it; brings a
/// retired plugin back. Refused when the version's bytes were pruned.
pub fn activate(tx: &mut Tx<'_>, plugin: &str, version: i32) -> StoreResult<RegisteredVersion> {
    let stored = versions::lock_version(tx, plugin, version)?;
    if stored.pruned {
        return Err(StoreError::Refused(format!(
            "the component of version {version} of plugin {plugin} was pruned (only the newest \
             PULSEHOST_KEEP_VERSIONS keep their bytes): upload that component again to restore it"
        )));
    }
    let (manifest, definitions) = versions::definitions(tx, &stored)?;
    // The active version stays as it is: its tasks and their schedules' starts.
    if !stored.active {
        let since = since_for(tx, plugin, &manifest.tasks)?;
        plugins::make_active(
            tx,
            stored.plugin_id,
            stored.version_id,
            &manifest.tasks,
            &definitions,
            &since,
        )?;
    }
    Ok(RegisteredVersion {
        plugin_id: stored.plugin_id,
        plugin: stored.plugin,
        version_id: stored.version_id,
        version: stored.version,
        sha256: stored.sha256,
        tasks: manifest.tasks.into_iter().map(|t| t.name).collect(),
        created: false,
    })
}

/// When each of `specs` takes effect against the stored tasks of `plugin`.
fn since_for(tx: &mut Tx<'_>, plugin: &str, specs: &[TaskSpec]) -> StoreResult<Vec<DateTime<Utc>>> {
    let existing: HashMap<String, ExistingTask> = plugins::existing_tasks(tx, plugin)?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let now = plugins::database_now(tx)?;
    Ok(specs
        .iter()
        .map(|t| effective_since(existing.get(&t.name), t, now))
        .collect())
}

/// When the schedule of `new` takes effect, given the stored row of the same
/// task (if any) and the database's `now`. A task keeps the instant its
/// schedule took effect only while it stays active, enabled and on the same
/// schedule; a task that is new, re-added, re-enabled or rescheduled takes
/// effect now — never earlier, so no occurrence from before it could run fires.
pub fn effective_since(existing: Option<&ExistingTask>, new: &TaskSpec, now: DateTime<Utc>) -> DateTime<Utc> {
    let Some(old) = existing else { return now };
    let (expression, timezone, interval) = match &new.schedule {
        Schedule::Cron {
            expression, timezone, ..
        } => (Some(expression), timezone.as_ref(), None),
        Schedule::Dynamic { interval_secs } => (None, None, Some(*interval_secs as i32)),
        Schedule::Manual | Schedule::Service(_) => (None, None, None),
    };
    let unchanged = old.active
        && old.enabled
        && new.enabled
        && old.schedule_kind == new.schedule.kind()
        && old.cron_expression.as_ref() == expression
        && old.timezone.as_ref() == timezone
        && old.dynamic_interval_secs == interval;
    if unchanged {
        old.schedule_since
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(enabled: bool, expression: &str) -> TaskSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t", "enabled": enabled,
            "schedule": {"kind": "cron", "expression": expression, "timezone": null},
            "steps": [{"name": "s", "exec": {"kind": {"type": "shell", "script": "true"}}}]
        }))
        .unwrap()
    }

    fn stored(active: bool, enabled: bool, expression: &str) -> ExistingTask {
        ExistingTask {
            name: "t".into(),
            active,
            enabled,
            schedule_kind: "cron".into(),
            cron_expression: Some(expression.into()),
            timezone: None,
            dynamic_interval_secs: None,
            schedule_since: at("2026-11-01T00:00:00Z"),
        }
    }

    #[test]
    fn an_unchanged_live_schedule_keeps_its_start_and_anything_else_starts_now() {
        let now = at("2026-11-23T19:02:20Z");
        let since = at("2026-11-01T00:00:00Z");
        assert_eq!(
            effective_since(
                Some(&stored(true, true, "* * * * *")),
                &spec(true, "* * * * *"),
                now
            ),
            since
        );
        for (old, new, what) in [
            (
                stored(true, false, "* * * * *"),
                spec(true, "* * * * *"),
                "re-enabled",
            ),
            (
                stored(false, true, "* * * * *"),
                spec(true, "* * * * *"),
                "re-added",
            ),
            (
                stored(true, true, "* * * * *"),
                spec(true, "*/5 * * * *"),
                "rescheduled",
            ),
        ] {
            assert_eq!(effective_since(Some(&old), &new, now), now, "{what}");
        }
        assert_eq!(effective_since(None, &spec(true, "* * * * *"), now), now, "new");
    }
}
