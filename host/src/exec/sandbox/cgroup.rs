//! Control groups: where each process of a run is placed, limited, measured and
//! killed. The host uses whatever this machine offers, per purpose: the cgroup
//! v2 unified hierarchy (`cgroup.kill`, `cpu.stat`, and `memory`/`pids`/`cpu`
//! where its controllers are enabled), or the v1 `memory`, `pids`, `cpu` and
//! `cpuacct` hierarchies (a hybrid machine has both). Every hierarchy gets the
//! same layout under the host's own cgroup: `pulsehost/<host id>/run-<run id>/<process>`,
//! so a run's processes can be killed together, also by a later host on the
//! same machine after a crash.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

/// What one hierarchy can do for a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Powers {
    /// Killing everything in it at once (`cgroup.kill`).
    pub kill: bool,
    /// CPU time, user and system.
    pub cpu_usage: bool,
    /// Memory limit and peak.
    pub memory: bool,
    /// Process-count limit and peak.
    pub pids: bool,
    /// CPU quota.
    pub cpu_quota: bool,
}

/// One mounted hierarchy the host may create cgroups in.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// `<mount>/<host's own cgroup>/pulsehost`.
    pub base: PathBuf,
    /// v2 (unified) or v1.
    pub unified: bool,
    /// What it offers.
    pub powers: Powers,
}

/// Finds the hierarchies this process can use: for each mounted cgroup file
/// system, its own cgroup there, and whether a child can be made under it.
pub fn discover() -> Vec<Hierarchy> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found = Vec::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, mount, fstype, options, ..] = fields[..] else {
            continue;
        };
        let unified = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers: Vec<&str> = options.split(',').collect();
        let Some(path) = own_path(&own, unified, &controllers) else {
            continue;
        };
        let base = Path::new(mount)
            .join(path.trim_start_matches('/'))
            .join("pulsehost");
        if std::fs::create_dir_all(&base).is_err() {
            continue;
        }
        let powers = if unified {
            unified_powers(&base)
        } else {
            v1_powers(&controllers)
        };
        if powers != Powers::default() {
            found.push(Hierarchy {
                base,
                unified,
                powers,
            });
        }
    }
    found
}

/// This process's cgroup in the hierarchy with these mount options.
fn own_path(own: &str, unified: bool, options: &[&str]) -> Option<String> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if unified {
            id == "0" && list.is_empty()
        } else {
            !list.is_empty() && list.split(',').all(|c| options.contains(&c))
        };
        matches.then(|| path.to_string())
    })
}

fn v1_powers(controllers: &[&str]) -> Powers {
    Powers {
        kill: false,
        cpu_usage: controllers.contains(&"cpuacct"),
        memory: controllers.contains(&"memory"),
        pids: controllers.contains(&"pids"),
        cpu_quota: controllers.contains(&"cpu"),
    }
}

/// Enables what the unified hierarchy lets this subtree have. `cgroup.kill`
/// and `cpu.stat` need no controller; `memory`, `pids` and `cpu` do.
fn unified_powers(base: &Path) -> Powers {
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let mut enabled = Vec::new();
    for controller in ["memory", "pids", "cpu"] {
        if available.split_whitespace().any(|c| c == controller)
            && std::fs::write(base.join("cgroup.subtree_control"), format!("+{controller}")).is_ok()
        {
            enabled.push(controller);
        }
    }
    Powers {
        kill: base.join("cgroup.kill").exists(),
        cpu_usage: base.join("cpu.stat").exists(),
        memory: enabled.contains(&"memory"),
        pids: enabled.contains(&"pids"),
        cpu_quota: enabled.contains(&"cpu"),
    }
}

/// The hierarchies a process needs: for each power it uses, one hierarchy
/// that has it (the unified one when it does), and the CPU quota only when a
/// quota is asked for. Every extra hierarchy is a cgroup to make, join and
/// remove per process, which is most of what confinement costs.
pub fn needed(hierarchies: &[Hierarchy], cpu_quota: bool) -> Vec<&Hierarchy> {
    type Has = fn(&Powers) -> bool;
    let wants: [(bool, Has); 5] = [
        (true, |p| p.kill),
        (true, |p| p.cpu_usage),
        (true, |p| p.memory),
        (true, |p| p.pids),
        (cpu_quota, |p| p.cpu_quota),
    ];
    let mut chosen: Vec<&Hierarchy> = Vec::new();
    for (wanted, has) in wants {
        if !wanted || chosen.iter().any(|h| has(&h.powers)) {
            continue;
        }
        let candidates = hierarchies.iter().filter(|h| has(&h.powers));
        if let Some(best) = candidates.min_by_key(|h| !h.unified) {
            chosen.push(best);
        }
    }
    chosen
}

/// Makes `dir` (and its parents) and, in the unified hierarchy, passes the
/// subtree's controllers down to it so that its children can be limited.
pub fn create(hierarchy: &Hierarchy, relative: &Path) -> std::io::Result<PathBuf> {
    let dir = hierarchy.base.join(relative);
    std::fs::create_dir_all(&dir)?;
    if hierarchy.unified {
        let enabled =
            std::fs::read_to_string(hierarchy.base.join("cgroup.subtree_control")).unwrap_or_default();
        let mut at = hierarchy.base.clone();
        for part in relative.parent().into_iter().flat_map(|p| p.components()) {
            at.push(part);
            for controller in enabled.split_whitespace() {
                let _ = std::fs::write(at.join("cgroup.subtree_control"), format!("+{controller}"));
            }
        }
    }
    Ok(dir)
}

/// A cgroup's directory, where its control files are opened: by path, or
/// through a descriptor of it the host keeps open (one path component to
/// resolve instead of a whole hierarchy's).
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// Its path.
    Path(&'a Path),
    /// An open descriptor of it.
    Fd(BorrowedFd<'a>),
}

impl<'a> From<&'a Path> for At<'a> {
    fn from(path: &'a Path) -> At<'a> {
        At::Path(path)
    }
}

impl<'a> From<&'a PathBuf> for At<'a> {
    fn from(path: &'a PathBuf) -> At<'a> {
        At::Path(path)
    }
}

impl<'a> From<BorrowedFd<'a>> for At<'a> {
    fn from(fd: BorrowedFd<'a>) -> At<'a> {
        At::Fd(fd)
    }
}

/// Opens control file `file` for reading or writing (never truncating:
/// truncating a control file takes the lock of its hierarchy that every
/// cgroup made or removed holds).
fn open<'a>(at: impl Into<At<'a>>, file: &str, write: bool) -> std::io::Result<std::fs::File> {
    match at.into() {
        At::Path(dir) => std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(dir.join(file)),
        At::Fd(dir) => {
            use rustix::fs::{Mode, OFlags};
            let access = if write { OFlags::WRONLY } else { OFlags::RDONLY };
            let fd = rustix::fs::openat(dir, file, access | OFlags::CLOEXEC, Mode::empty())?;
            Ok(std::fs::File::from(fd))
        }
    }
}

/// Writes one control file.
pub fn set<'a>(dir: impl Into<At<'a>>, file: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    open(dir, file, true)?.write_all(value.as_bytes())
}

/// Reads one control file as a number (`max` is None).
pub fn read_number<'a>(dir: impl Into<At<'a>>, file: &str) -> Option<u64> {
    read_small(dir, file)?.trim().parse().ok()
}

/// Reads `key value` from a flat-keyed control file (`cpu.stat`, `memory.events`).
pub fn read_key<'a>(dir: impl Into<At<'a>>, file: &str, key: &str) -> Option<u64> {
    parse_key(&read_small(dir, file)?, key)
}

/// The value of `key` in a flat-keyed control file's text.
pub fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether any process is in `dir` or below (v2 `cgroup.events`).
pub fn populated<'a>(dir: impl Into<At<'a>>) -> Option<bool> {
    read_key(dir, "cgroup.events", "populated").map(|n| n > 0)
}

/// A control file's text, in one read where it fits a page (every one read
/// while a step ends does: its end is recorded after these reads).
pub fn read_small<'a>(dir: impl Into<At<'a>>, file: &str) -> Option<String> {
    use std::io::Read;
    let mut file = open(dir, file, false).ok()?;
    let mut page = [0u8; 4096];
    let mut text = Vec::new();
    loop {
        let read = file.read(&mut page).ok()?;
        text.extend_from_slice(&page[..read]);
        if read < page.len() {
            return String::from_utf8(text).ok();
        }
    }
}

/// Kills every process in `dir` and its descendants: through `cgroup.kill`
/// when the hierarchy has it (`has_kill`), otherwise SIGKILL to each listed
/// process until none is left (a process forking meanwhile is caught by the
/// next round; the pids limit bounds the rounds).
pub fn kill_all(dir: &Path, has_kill: bool) {
    if has_kill {
        let _ = set(dir, "cgroup.kill", "1");
        return;
    }
    for _ in 0..100 {
        let pids = members(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::yield_now();
    }
}

/// Every process in `dir` and below.
pub fn members(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(members(&entry.path()));
            }
        }
    }
    pids
}

/// Removes `dir` and its descendant cgroups (each must be empty of processes:
/// call [`kill_all`] first). Errors are ignored; a cgroup whose last process
/// is still exiting is removed by a later call.
pub fn remove(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(name: &str, unified: bool, powers: Powers) -> Hierarchy {
        Hierarchy {
            base: PathBuf::from(name),
            unified,
            powers,
        }
    }

    #[test]
    fn a_process_gets_one_hierarchy_per_power_it_uses() {
        let v1 = |controller: &str| {
            let powers = v1_powers(&[controller]);
            hierarchy(controller, false, powers)
        };
        let unified = hierarchy(
            "unified",
            true,
            Powers {
                kill: true,
                cpu_usage: true,
                ..Powers::default()
            },
        );
        let all = vec![v1("cpu"), v1("cpuacct"), v1("memory"), v1("pids"), unified];
        let names = |chosen: Vec<&Hierarchy>| -> Vec<String> {
            chosen.iter().map(|h| h.base.display().to_string()).collect()
        };
        assert_eq!(names(needed(&all, false)), ["unified", "memory", "pids"]);
        assert_eq!(names(needed(&all, true)), ["unified", "memory", "pids", "cpu"]);
        assert_eq!(
            names(needed(&all[..4], false)),
            ["cpuacct", "memory", "pids"],
            "without the unified hierarchy, v1 cpuacct measures CPU"
        );
    }

    #[test]
    fn own_path_picks_the_line_of_the_hierarchy() {
        let own = "9:name=systemd:/\n8:pids:/a\n4:memory:/process_api/x\n2:cpu,cpuacct:/c\n0::/u\n";
        assert_eq!(own_path(own, true, &["rw"]).as_deref(), Some("/u"));
        assert_eq!(
            own_path(own, false, &["rw", "memory"]).as_deref(),
            Some("/process_api/x")
        );
        assert_eq!(own_path(own, false, &["rw", "pids"]).as_deref(), Some("/a"));
        assert_eq!(
            own_path(own, false, &["rw", "cpu", "cpuacct"]).as_deref(),
            Some("/c")
        );
        assert_eq!(own_path(own, false, &["rw", "freezer"]), None);
    }
}
