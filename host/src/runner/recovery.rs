//! Crash recovery. A host whose heartbeat is older than its lease (by the
//! database's clock) is declared lost; its running runs are finished as
//! `failed`/`host_lost` and retried by their task's policy, in one transaction.
//! When the lost host ran on this machine, every process its runs left is
//! killed: the process groups it recorded and any process whose environment
//! carries the run's and the lost host's ids (which catches a group spawned
//! just before the crash, before it could be recorded).

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use chrono::{DateTime, Utc};

use crate::spec::TaskSpec;
use crate::store::finish::{self, LostRun, RunEnd, ScheduledRetry};
use crate::store::{hosts, runs, StoreError, StoreResult, Tx};

use super::settle::{self, Ending};
use super::Runner;

/// Failure type of a run whose host stopped heartbeating.
pub const HOST_LOST: &str = "host_lost";

/// A run finished as `host_lost`.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveredRun {
    /// The run.
    pub run_id: i64,
    /// The host that was lost.
    pub host_id: Option<String>,
    /// The next attempt, when the task's policy asked for one.
    pub retry: Option<ScheduledRetry>,
}

/// What recovery found to clean up on a machine.
pub(super) struct Leftover {
    run_id: i64,
    host_id: String,
    machine: Option<String>,
    groups: Vec<i32>,
}

/// Declares silent hosts lost and finishes their runs (see the module doc).
pub(super) async fn recover(runner: &Runner) -> Result<Vec<RecoveredRun>, StoreError> {
    let reachable = runner.db.reachable_for();
    if reachable.is_none_or(|d| d < runner.config.lease) {
        tracing::debug!(
            ?reachable,
            "no recovery verdicts until the database answered for a whole lease"
        );
        return Ok(Vec::new());
    }
    let me = runner.config.host_id.clone();
    let now = runner.db.clock().now();
    let (recovered, leftovers, lost_hosts) = runner.db.run(move |tx| settle_lost(tx, &me, now)).await?;
    crate::metrics::host_lost_recovered(recovered.len());
    for run in &recovered {
        tracing::warn!(run.id = run.run_id, host = ?run.host_id, retry = ?run.retry.as_ref().map(|r| r.run_id), "run lost with its host: finished as host_lost");
    }
    kill_leftovers(runner, leftovers);
    // What a lost host of this machine kept of its cgroups goes once empty.
    for host in lost_hosts.iter().filter(|h| h.machine == runner.config.machine) {
        runner.config.sandbox.forget_host(&host.id);
    }
    Ok(recovered)
}

/// Kills, on this machine, what each of `leftovers` left behind.
pub(super) fn kill_leftovers(runner: &Runner, leftovers: Vec<Leftover>) {
    for leftover in leftovers {
        if leftover
            .machine
            .as_deref()
            .is_none_or(|m| m == runner.config.machine)
        {
            let killed = runner.config.sandbox.kill_run(&leftover.host_id, leftover.run_id);
            if killed > 0 {
                tracing::warn!(
                    run.id = leftover.run_id,
                    processes = killed,
                    "killed what a lost run left in its cgroups"
                );
            }
            kill_left_behind(&leftover);
        }
    }
}

/// One transaction: declares silent hosts lost, then finishes every run of a
/// host that is no longer alive as `host_lost` and retries it by policy.
fn settle_lost(
    tx: &mut Tx<'_>,
    me: &str,
    now: DateTime<Utc>,
) -> StoreResult<(Vec<RecoveredRun>, Vec<Leftover>, Vec<hosts::LostHost>)> {
    let lost_hosts = hosts::declare_lost(tx, me)?;
    for host in &lost_hosts {
        tracing::warn!(host = %host.id, machine = %host.machine, "host declared lost: its heartbeat is older than its lease");
    }
    let lost = finish::lost_runs(tx, me)?;
    let events: Vec<(i64, &str, serde_json::Value)> = lost
        .iter()
        .map(|l| {
            let detail = serde_json::json!({ "host": l.run.host_id, "process_groups": l.run.process_groups });
            (l.run.id, HOST_LOST, detail)
        })
        .collect();
    runs::add_each_event(tx, &events)?;
    let endings: Vec<Ending> = lost
        .iter()
        .map(|l| {
            let host = l.run.host_id.clone().unwrap_or_default();
            let error = format!("host_lost: host {host} stopped heartbeating");
            host_lost(l, &host, error, now)
        })
        .collect();
    let settled = settle::finish(tx, &endings)?;
    let recovered = lost
        .iter()
        .filter(|l| settled.recorded.contains(&l.run.id))
        .map(|l| RecoveredRun {
            run_id: l.run.id,
            host_id: l.run.host_id.clone(),
            retry: settled.retries.iter().find(|r| r.retry_of == l.run.id).cloned(),
        })
        .collect();
    let leftovers = lost.into_iter().map(Leftover::of).collect();
    Ok((recovered, leftovers, lost_hosts))
}

impl Leftover {
    /// What a stranded run may have left.
    pub(super) fn of(l: LostRun) -> Leftover {
        Leftover {
            run_id: l.run.id,
            host_id: l.run.host_id.unwrap_or_default(),
            machine: l.machine,
            groups: l.run.process_groups,
        }
    }
}

/// How a stranded run held by `host` ends: `failed`/`host_lost`, retried by
/// the policy of the definition it executed (when that can be read).
pub(super) fn host_lost(stranded: &LostRun, host: &str, error: String, now: DateTime<Utc>) -> Ending {
    Ending {
        end: RunEnd {
            run_id: stranded.run.id,
            host_id: host.to_string(),
            status: "failed".into(),
            failure_type: Some(HOST_LOST.into()),
            error: Some(error),
            finished_at: now,
        },
        retry: stranded
            .definition
            .clone()
            .and_then(|(format, json)| TaskSpec::decode(format, json).ok())
            .and_then(|t| t.retry),
        rate_limited: None,
    }
}

/// Kills every process of a lost run still on this machine: the groups of
/// processes that carry the run's and the lost host's ids, and each recorded
/// group whose members carry them or cannot be inspected. A group id reused by
/// another program (its members readable and unmarked) is left alone.
fn kill_left_behind(leftover: &Leftover) {
    let markers = [
        format!("PULSEHOST_RUN_ID={}", leftover.run_id),
        format!("PULSEHOST_HOST_ID={}", leftover.host_id),
    ];
    let processes = live_processes();
    let marked = |p: &Process| {
        p.env.as_ref().is_some_and(|env| {
            let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
            markers.iter().all(|m| vars.contains(&m.as_bytes()))
        })
    };
    let mut groups: Vec<i32> = processes.iter().filter(|p| marked(p)).map(|p| p.group).collect();
    for recorded in &leftover.groups {
        let members: Vec<&Process> = processes.iter().filter(|p| p.group == *recorded).collect();
        let ours = !members.is_empty()
            && (members.iter().all(|p| p.env.is_none()) || members.iter().any(|p| marked(p)));
        if ours {
            groups.push(*recorded);
        }
    }
    groups.sort_unstable();
    groups.dedup();
    for group in groups.into_iter().filter(|g| *g > 1) {
        match killpg(Pid::from_raw(group), Signal::SIGKILL) {
            Ok(()) => tracing::warn!(
                run.id = leftover.run_id,
                pgid = group,
                "killed a process group a lost host left behind"
            ),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(run.id = leftover.run_id, pgid = group, error = %e, "cannot kill a lost run's process group")
            }
        }
    }
    // A marked process that left its group (setsid) goes on its own.
    for process in processes.iter().filter(|p| marked(p)) {
        let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
    }
}

/// A live process as /proc shows it.
struct Process {
    pid: i32,
    group: i32,
    /// Its environment, when readable.
    env: Option<Vec<u8>>,
}

/// Every live (not zombie) process.
fn live_processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name: state ppid pgrp …
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?;
            let group = rest.nth(1)?.parse::<i32>().ok()?;
            (state != "Z").then(|| Process {
                pid,
                group,
                env: std::fs::read(format!("/proc/{pid}/environ")).ok(),
            })
        })
        .collect()
}
