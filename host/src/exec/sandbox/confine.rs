//! Confining one process: its plan resolved and admitted, its cgroups (new,
//! or the host's reusable cells) made and limited, and what its init and
//! program do prepared.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use rustix::process::Resource;

use super::cgroup::{self, Hierarchy};
use super::child::{CgroupEntry, ChildSetup, Join};
use super::plan::{self, Plan, Policy, Protection};
use super::probe::Sandbox;
use super::{c_path, Confinement, Joined, Limits};

impl Sandbox {
    /// Resolves the plan of a process of run `run_id` named `name` with
    /// `limits`, refuses it when something is missing and either the host's
    /// policy or `policy` (the task's) is strict, and prepares its cgroups.
    pub fn confine(
        &self,
        run_id: i64,
        name: &str,
        limits: &Limits,
        policy: Policy,
    ) -> Result<Arc<Confinement>, String> {
        if !self.enabled {
            return Ok(Arc::new(Confinement {
                cgroups: Vec::new(),
                killed: Default::default(),
                spent: Default::default(),
                setup: Arc::new(ChildSetup::default()),
                plan: Plan::default(),
            }));
        }
        let plan = plan::resolve(&plan::requested(limits), &self.offers, limits);
        let strictest = if policy == Policy::Strict {
            policy
        } else {
            self.policy
        };
        plan::admit(&plan, strictest)?;
        let applied = |p| plan.applied.contains(&p);
        let pid_namespace = applied(Protection::PidNamespace);
        let private_tmp = applied(Protection::PrivateTmp);
        let network_namespace = applied(Protection::NoNetwork);
        // Dropped on an error below, it kills, removes and gives back what
        // it was given so far.
        let mut confinement = Confinement {
            cgroups: Vec::new(),
            killed: Default::default(),
            spent: Default::default(),
            setup: Arc::new(ChildSetup::default()),
            plan,
        };
        let relative = super::run_cgroup(&self.host_id, run_id).join(name);
        let (joins, clone_into) = self.join_all(&mut confinement, &relative, limits)?;
        let rlimits = [
            (Resource::Nofile, limits.open_files),
            (Resource::Fsize, limits.file_size_bytes),
        ]
        .into_iter()
        .filter_map(|(resource, limit)| limit.map(|l| (resource, l)))
        .collect();
        confinement.setup = Arc::new(ChildSetup {
            joins,
            clone_into,
            rlimits,
            user_namespace: self
                .user_maps
                .clone()
                .filter(|_| pid_namespace || private_tmp || network_namespace),
            pid_namespace,
            network_namespace,
            mount_namespace: pid_namespace || private_tmp,
            private_tmp,
            credentials: self.run_as.as_ref().map(|u| (u.uid.as_raw(), u.gid.as_raw())),
        });
        Ok(Arc::new(confinement))
    }

    /// Gives `confinement` its cgroups, limited: what the program writes to
    /// join them, and the v2 cgroup it is born in.
    fn join_all(
        &self,
        confinement: &mut Confinement,
        relative: &Path,
        limits: &Limits,
    ) -> Result<(Vec<Join>, Option<CgroupEntry>), String> {
        let mut joins = Vec::new();
        let mut clone_into = None;
        let needed = cgroup::needed(&self.hierarchies, limits.cpu_millicores.is_some());
        // Cells only beside a new cgroup named after the run.
        let named = needed.iter().any(|h| h.powers.pids);
        for hierarchy in needed {
            let joined = self.join(hierarchy, relative, named)?;
            let dir = joined.dir.clone();
            let cell = joined.cell.as_ref().map(|(_, cell)| cell);
            let (dir_fd, tasks_fd) = cell.map_or((-1, None), |cell| {
                (cell.fd.as_raw_fd(), cell.tasks.as_ref().map(|t| t.as_raw_fd()))
            });
            let limited = set_limits(joined.at(), hierarchy, limits);
            confinement.cgroups.push(joined);
            limited.map_err(|e| format!("cannot limit the cgroup {}: {e}", dir.display()))?;
            if !hierarchy.unified {
                joins.push(match tasks_fd {
                    Some(fd) => Join::Open(fd),
                    None => Join::File(c_path(&dir.join("tasks"))),
                });
            } else if clone_into.is_none() {
                clone_into = Some(CgroupEntry {
                    dir: c_path(&dir),
                    fd: dir_fd,
                    procs: c_path(&dir.join("cgroup.procs")),
                });
            } else {
                joins.push(Join::File(c_path(&dir.join("cgroup.procs"))));
            }
        }
        Ok((joins, clone_into))
    }

    /// The cgroup a process gets in `hierarchy`: one of its cells when it has
    /// them and another of the process's cgroups is named after its run
    /// (`named`), otherwise a new one at `relative`.
    fn join(&self, hierarchy: &Hierarchy, relative: &Path, named: bool) -> Result<Joined, String> {
        let cells = self
            .cells
            .iter()
            .find(|c| named && !hierarchy.powers.pids && c.base == hierarchy.base);
        let (dir, cell) = match cells {
            Some(cells) => {
                let cell = cells
                    .take()
                    .map_err(|e| format!("cannot create a cgroup under {}: {e}", cells.base.display()))?;
                (cell.dir.clone(), Some((Arc::clone(cells), cell)))
            }
            None => {
                let dir = cgroup::create(hierarchy, relative).map_err(|e| {
                    format!(
                        "cannot create the cgroup {}: {e}",
                        hierarchy.base.join(relative).display()
                    )
                })?;
                (dir, None)
            }
        };
        Ok(Joined {
            dir,
            powers: hierarchy.powers,
            unified: hierarchy.unified,
            cell,
        })
    }
}

fn set_limits(dir: cgroup::At<'_>, hierarchy: &Hierarchy, limits: &Limits) -> std::io::Result<()> {
    let powers = hierarchy.powers;
    if let (true, Some(bytes)) = (powers.memory, limits.memory_bytes) {
        if hierarchy.unified {
            cgroup::set(dir, "memory.max", &bytes.to_string())?;
            let _ = cgroup::set(dir, "memory.swap.max", "0");
        } else {
            cgroup::set(dir, "memory.limit_in_bytes", &bytes.to_string())?;
            let _ = cgroup::set(dir, "memory.memsw.limit_in_bytes", &bytes.to_string());
        }
    }
    if let (true, Some(processes)) = (powers.pids, limits.processes) {
        cgroup::set(dir, "pids.max", &processes.to_string())?;
    }
    if let (true, Some(millicores)) = (powers.cpu_quota, limits.cpu_millicores) {
        let period = 100_000u64;
        let quota = (u64::from(millicores) * period / 1000).max(1000);
        if hierarchy.unified {
            cgroup::set(dir, "cpu.max", &format!("{quota} {period}"))?;
        } else {
            cgroup::set(dir, "cpu.cfs_period_us", &period.to_string())?;
            cgroup::set(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        }
    }
    Ok(())
}
