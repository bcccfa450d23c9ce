//! Dependencies between the runs of one pulse, as plain functions: which run
//! each queued run waits for, and which cron tasks must be claimed with the
//! dynamic answers because they wait for a dynamic task. Whether a waiting run
//! is skipped is the runner's cascade, applied after linking.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::store::pulses::SchedulableTask;

/// A run this pulse recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PulseRun {
    /// The run.
    pub run_id: i64,
    /// Index of its task in the pulse's task list.
    pub task: usize,
    /// Its occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// Queued (rather than recorded skipped or missed).
    pub queued: bool,
}

/// For every queued run of `fresh` whose task depends on others, the runs of
/// this pulse (`fresh` and `earlier`) it waits for: each dependency's run of
/// the same occurrence, else its newest one. A dependency without a run in
/// this pulse is not waited for.
pub fn links(fresh: &[PulseRun], earlier: &[PulseRun], tasks: &[SchedulableTask]) -> Vec<(i64, Vec<i64>)> {
    let all: Vec<&PulseRun> = earlier.iter().chain(fresh).collect();
    fresh
        .iter()
        .filter(|r| r.queued && !tasks[r.task].depends_on.is_empty())
        .filter_map(|run| {
            let task = &tasks[run.task];
            let waits_for: Vec<i64> = task
                .depends_on
                .iter()
                .filter_map(|name| {
                    let of_dependency = all.iter().filter(|d| {
                        let t = &tasks[d.task];
                        t.plugin_id == task.plugin_id && &t.name == name
                    });
                    of_dependency
                        .clone()
                        .find(|d| d.scheduled_for == run.scheduled_for)
                        .or_else(|| of_dependency.max_by_key(|d| d.scheduled_for))
                        .map(|d| d.run_id)
                })
                .collect();
            (!waits_for.is_empty()).then_some((run.run_id, waits_for))
        })
        .collect()
}

/// Per task: true for a cron task that waits, directly or through other
/// tasks, for a dynamic task of its plugin.
pub fn after_dynamic(tasks: &[SchedulableTask]) -> Vec<bool> {
    let by_name: HashMap<(i64, &str), usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.plugin_id, t.name.as_str()), i))
        .collect();
    let mut waits = vec![false; tasks.len()];
    // Each round marks tasks one dependency step further; a chain is at most
    // as long as the number of tasks, and cycles are refused at upload.
    for _ in 0..tasks.len() {
        let mut changed = false;
        for (i, task) in tasks.iter().enumerate() {
            if waits[i] {
                continue;
            }
            let upstream = task
                .depends_on
                .iter()
                .filter_map(|d| by_name.get(&(task.plugin_id, d.as_str())));
            if upstream
                .into_iter()
                .any(|&u| tasks[u].schedule_kind == "dynamic" || waits[u])
            {
                waits[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    waits
        .into_iter()
        .zip(tasks)
        .map(|(w, t)| w && t.schedule_kind == "cron")
        .collect()
}
