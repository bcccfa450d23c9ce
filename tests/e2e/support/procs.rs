//! What is running on this machine, read from /proc: the processes a run left
//! (found by the run context in their environment) and a process's zombies.

/// `(pid, process group)` of every live process whose environment carries
/// both `PULSEHOST_RUN_ID=<run>` and `PULSEHOST_HOST_ID=<host>`.
pub fn processes_of_run(run: i64, host: &str) -> Vec<(i32, i32)> {
    let markers = [
        format!("PULSEHOST_RUN_ID={run}"),
        format!("PULSEHOST_HOST_ID={host}"),
    ];
    live()
        .into_iter()
        .filter(|(pid, _, _)| carries(*pid, &markers))
        .map(|(pid, _, group)| (pid, group))
        .collect()
}

/// Whether process `pid`'s environment holds every one of `markers` (`NAME=value`).
fn carries(pid: i32, markers: &[impl AsRef<str>]) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
    markers.iter().all(|m| vars.contains(&m.as_ref().as_bytes()))
}

/// Zombie children of `parent`.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    all()
        .into_iter()
        .filter(|p| p.state == 'Z' && p.ppid == parent)
        .map(|p| p.pid)
        .collect()
}

struct Stat {
    pid: i32,
    state: char,
    ppid: i32,
    group: i32,
}

/// `(pid, parent, group)` of every process that is not a zombie.
fn live() -> Vec<(i32, i32, i32)> {
    all()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .map(|p| (p.pid, p.ppid, p.group))
        .collect()
}

fn all() -> Vec<Stat> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Fields after the command name: state ppid pgrp …
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(Stat {
                pid,
                state: rest.first()?.chars().next()?,
                ppid: rest.get(1)?.parse().ok()?,
                group: rest.get(2)?.parse().ok()?,
            })
        })
        .collect()
}

/// Live processes whose command line contains `needle`.
pub fn with_command_line(needle: &str) -> Vec<i32> {
    live()
        .into_iter()
        .filter(|(pid, _, _)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Live processes whose environment carries every one of `markers` (`NAME=value`).
pub fn marked(markers: &[&str]) -> Vec<i32> {
    live()
        .into_iter()
        .filter(|(pid, _, _)| carries(*pid, markers))
        .map(|(pid, _, _)| pid)
        .collect()
}
