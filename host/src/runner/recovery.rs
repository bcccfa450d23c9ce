//! Crash recovery: runs whose host stopped renewing their lease are finished as
//! `host_lost` (and retried by their task's policy); when that host ran on this
//! machine, the process group it recorded for the run is killed if still alive.

use chrono::Utc;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::store::finish::{self, RecoveredRun};
use crate::store::{Db, StoreResult};

/// Finishes every run whose lease expired as `failed`/`host_lost`, retrying it by
/// policy, and SIGKILLs the recorded process group of each one that a host on
/// this machine ran. `this_host` is the caller's host id (`<hostname>-<pid>`):
/// its own runs are left to the caller (their processes are its live children).
pub async fn recover_expired_runs(db: &Db, this_host: &str) -> StoreResult<Vec<RecoveredRun>> {
    let recovered = db.run(|c| finish::recover_expired(c, Utc::now())).await?;
    let machine = machine_of(this_host);
    for run in &recovered {
        let host = run.host_id.as_deref().unwrap_or("unknown");
        tracing::warn!(
            run.id = run.run_id,
            host,
            process_group = ?run.process_group,
            retry = ?run.retry.as_ref().map(|r| r.run_id),
            "run lost with its host: finished as host_lost"
        );
        if let Some(pgid) = run.process_group {
            if host != this_host && machine_of(host) == machine {
                kill_left_behind(run.run_id, pgid);
            }
        }
    }
    Ok(recovered)
}

/// The machine part of a host id (`<hostname>-<pid>`).
pub fn machine_of(host_id: &str) -> &str {
    host_id.rsplit_once('-').map_or(host_id, |(machine, _)| machine)
}

/// SIGKILLs process group `pgid` left behind by run `run_id`, unless the group
/// is gone or, its id having been reused, it belongs to something else: a
/// member whose environment we can read must carry the run's id.
fn kill_left_behind(run_id: i64, pgid: i32) {
    if pgid <= 1 {
        return;
    }
    let marker = format!("PULSEHOST_RUN_ID={run_id}");
    let members = group_members(pgid);
    if members.is_empty() {
        return;
    }
    let readable: Vec<Vec<u8>> = members
        .iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
        .collect();
    let ours = readable.is_empty()
        || readable
            .iter()
            .any(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()));
    if !ours {
        tracing::info!(
            run.id = run_id,
            pgid,
            "process group id reused by another program; left alone"
        );
        return;
    }
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) => tracing::warn!(
            run.id = run_id,
            pgid,
            "killed the process group a lost host left behind"
        ),
        Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(run.id = run_id, pgid, error = %e, "cannot kill a lost run's process group"),
    }
}

/// Live (not zombie) processes of group `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the command name: state ppid pgrp …
            let mut rest = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace();
            let state = rest.next();
            let group = rest.nth(1).and_then(|g| g.parse::<i32>().ok());
            state != Some("Z") && group == Some(pgid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::machine_of;

    #[test]
    fn the_machine_is_the_host_id_without_its_pid() {
        assert_eq!(machine_of("build-box-7-1234"), "build-box-7");
        assert_eq!(machine_of("host"), "host");
    }
}
