//! What this machine offers, found once at start-up by trying each mechanism
//! (a cgroup made and written, a namespace entered by a real `/bin/true`), and
//! the [`Sandbox`] that confines processes with it.

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use nix::libc;

use super::cells::Cells;
use super::cgroup::{self, Hierarchy};
use super::child::ChildSetup;
use super::plan::{self, Offers, Plan, Policy, Protection};
use super::user::{self, RunAs};
use super::{janitor, Command, Confinement};

/// What to probe for.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// `PULSEHOST_RUN_AS`: a user name or uid.
    pub run_as: Option<String>,
    /// Missing protections degrade or refuse.
    pub policy: Policy,
    /// Protections not to use even where the machine has them.
    pub off: Vec<Protection>,
    /// This host's id (its cgroups are named after it).
    pub host_id: String,
    /// Create the default step user when it is missing (the host does; `doctor` does not).
    pub create_user: bool,
}

/// How the host confines processes on this machine.
#[derive(Debug)]
pub struct Sandbox {
    /// Who processes run as; None is the host's own user.
    pub run_as: Option<RunAs>,
    pub(super) hierarchies: Vec<Hierarchy>,
    /// Per protection: None when given, or why not.
    pub offers: Offers,
    /// uid and gid maps of the user namespace a non-root host needs.
    pub(super) user_maps: Option<(CString, CString)>,
    /// Whether missing protections degrade or refuse.
    pub policy: Policy,
    pub(super) host_id: String,
    pub(super) enabled: bool,
    /// Reused cgroups, per hierarchy whose cgroups can be (see [`Cells`]).
    pub(super) cells: Vec<Arc<Cells>>,
}

impl Sandbox {
    /// Probes the machine; an error (an unusable user) stops the host from starting.
    pub fn probe(options: &ProbeOptions) -> Result<Sandbox, String> {
        let run_as = user::resolve(options.run_as.as_deref(), options.create_user)?;
        let root = nix::unistd::geteuid().is_root();
        let cgroups_off = options.off.contains(&Protection::Cgroup);
        let hierarchies = if root && !cgroups_off {
            cgroup::discover()
        } else {
            Vec::new()
        };
        let user_maps = (!root).then(|| {
            let line = |id: u32| CString::new(format!("{id} {id} 1")).unwrap_or_default();
            (
                line(nix::unistd::geteuid().as_raw()),
                line(nix::unistd::getegid().as_raw()),
            )
        });
        let cells = hierarchies
            .iter()
            .filter_map(|h| Cells::of(h, &options.host_id))
            .map(Arc::new)
            .collect();
        let mut sandbox = Sandbox {
            run_as,
            cells,
            hierarchies,
            offers: Offers::new(),
            user_maps,
            policy: options.policy,
            host_id: options.host_id.clone(),
            enabled: true,
        };
        sandbox.offers = sandbox.find_offers(root);
        let mut off = options.off.clone();
        if cgroups_off {
            off.extend(plan::NEEDS_CGROUPS);
        }
        for protection in off {
            sandbox
                .offers
                .insert(protection, Some("turned off by PULSEHOST_SANDBOX_OFF".into()));
        }
        Ok(sandbox)
    }

    /// No confinement at all: processes run as the host's user in its
    /// process group only (benchmarks' baseline, unit tests).
    pub fn disabled() -> Sandbox {
        Sandbox {
            run_as: None,
            hierarchies: Vec::new(),
            offers: Offers::new(),
            user_maps: None,
            policy: Policy::BestEffort,
            host_id: String::new(),
            enabled: false,
            cells: Vec::new(),
        }
    }

    fn find_offers(&self, root: bool) -> Offers {
        let power = |want: fn(&cgroup::Powers) -> bool| self.hierarchies.iter().any(|h| want(&h.powers));
        let no_cgroup = |what: &str| {
            Some(if root {
                format!("no writable cgroup hierarchy has {what} (mount the cgroup v2 unified hierarchy with the controller enabled, or the v1 controller)")
            } else {
                format!("the host is not root, so it cannot create cgroups for {what} (run it as root, or under a delegated cgroup v2 subtree)")
            })
        };
        let given = |ok: bool, what: &str| if ok { None } else { no_cgroup(what) };
        let namespace = |flag| self.try_namespace(flag);
        let mut offers = Offers::new();
        offers.insert(
            Protection::SeparateUser,
            (!root).then(|| {
                "the host is not root: steps run as its own user and can read what it can (its data dir, its token file); \
                 start it as root so steps run as an unprivileged user of their own"
                    .to_string()
            }),
        );
        offers.insert(
            Protection::Cgroup,
            given(
                !self.hierarchies.is_empty(),
                "killing a step's processes together",
            ),
        );
        offers.insert(Protection::Usage, given(power(|p| p.cpu_usage), "CPU accounting"));
        offers.insert(
            Protection::MemoryLimit,
            given(power(|p| p.memory), "the memory controller"),
        );
        offers.insert(
            Protection::CpuLimit,
            given(power(|p| p.cpu_quota), "the cpu controller"),
        );
        offers.insert(
            Protection::ProcessLimit,
            given(power(|p| p.pids), "the pids controller"),
        );
        offers.insert(Protection::OpenFilesLimit, None);
        offers.insert(Protection::FileSizeLimit, None);
        offers.insert(
            Protection::PidNamespace,
            namespace(libc::CLONE_NEWPID | libc::CLONE_NEWNS),
        );
        offers.insert(Protection::NoNetwork, namespace(libc::CLONE_NEWNET));
        offers.insert(Protection::PrivateTmp, namespace(libc::CLONE_NEWNS));
        offers
    }

    /// Runs `/bin/true` in the namespaces `flags` name, started the way
    /// steps are; None when it worked.
    fn try_namespace(&self, flags: libc::c_int) -> Option<String> {
        let setup = ChildSetup {
            user_namespace: self.user_maps.clone(),
            pid_namespace: flags & libc::CLONE_NEWPID != 0,
            network_namespace: flags & libc::CLONE_NEWNET != 0,
            mount_namespace: flags & libc::CLONE_NEWNS != 0,
            private_tmp: flags == libc::CLONE_NEWNS,
            ..ChildSetup::default()
        };
        let confinement = Arc::new(Confinement {
            cgroups: Vec::new(),
            killed: Default::default(),
            spent: Default::default(),
            setup: Arc::new(setup),
            plan: Plan::default(),
        });
        let what = if self.user_maps.is_some() {
            "an unprivileged user namespace and "
        } else {
            ""
        };
        let hint = "the kernel or a container may forbid it (kernel.unprivileged_userns_clone, user.max_user_namespaces)";
        let ran = null_stdio().and_then(|stdio| {
            confinement
                .start(Command {
                    program: "/bin/true".into(),
                    argv: vec!["true".into()],
                    env: Vec::new(),
                    working_dir: "/".into(),
                    stdio,
                })
                .and_then(|mut started| {
                    started.await_exec()?;
                    started.wait_blocking()
                })
        });
        match ran {
            Ok(status) if status.success() => None,
            Ok(status) => Some(format!("entering {what}the namespace failed ({status}); {hint}")),
            Err(e) => Some(format!("entering {what}the namespace failed: {e}; {hint}")),
        }
    }

    /// Kills what is left of run `run_id` of host `host_id` on this machine
    /// and removes its cgroups (crash recovery); returns the processes killed.
    pub fn kill_run(&self, host_id: &str, run_id: i64) -> usize {
        let relative = super::run_cgroup(host_id, run_id);
        let mut killed = 0;
        for hierarchy in &self.hierarchies {
            let dir = hierarchy.base.join(&relative);
            if dir.exists() {
                killed += cgroup::members(&dir).len();
                cgroup::kill_all(&dir, hierarchy.powers.kill);
                cgroup::remove(&dir);
            }
        }
        killed
    }

    /// `dir` as a process will enter it (no symbolic links), when the step
    /// user may: every directory on the way searchable by it. Processes enter
    /// their working directory as root inside their namespaces, so this check
    /// is what keeps a directory closed to the step user closed.
    pub fn working_dir(&self, dir: &Path) -> Result<std::path::PathBuf, String> {
        let real = std::fs::canonicalize(dir)
            .map_err(|e| format!("the working directory {}: {e}", dir.display()))?;
        if !real.is_dir() {
            return Err(format!(
                "the working directory {} is not a directory",
                dir.display()
            ));
        }
        if let Some(user) = &self.run_as {
            // Every ancestor of an entry of `real`: `real` itself included.
            user::check_reachable(&real.join("entry"), user).map_err(|_| {
                format!(
                    "the step user {:?} cannot enter the working directory {}: let it traverse every \
                     directory on the way, or choose another",
                    user.name,
                    real.display()
                )
            })?;
        }
        Ok(real)
    }

    /// Has this host's (empty) cgroup of run `run_id` removed after the run,
    /// off the caller's path and after its processes' cgroups.
    pub fn forget_run(&self, run_id: i64) {
        let relative = super::run_cgroup(&self.host_id, run_id);
        let dirs = self.hierarchies.iter().map(|h| h.base.join(&relative));
        janitor::remove_later(dirs.collect());
    }

    /// Removes what is left of host `host_id`'s cgroups on this machine where
    /// they are empty: its free cells and its runs' cgroups. For this host
    /// (stopping) at once; for another (declared lost, its runs' processes
    /// just killed) as soon as they are empty.
    pub fn forget_host(&self, host_id: &str) {
        let dirs = self.hierarchies.iter().map(|h| h.base.join(host_id));
        if host_id == self.host_id {
            // The host is stopping: now, as the janitor stops with it.
            self.cells.iter().for_each(|cells| cells.remove_free());
            dirs.for_each(|dir| cgroup::remove(&dir));
        } else {
            // Its processes were just killed and may still be leaving.
            janitor::release_later(Vec::new(), dirs.collect(), Vec::new());
        }
    }

    /// The hierarchies whose cgroups are reused as cells (beside a new
    /// `pids` cgroup per process), for `pulsehost doctor`.
    pub fn cell_bases(&self) -> Vec<&Path> {
        self.cells.iter().map(|c| c.base.as_path()).collect()
    }

    /// Where each hierarchy's cgroups are made, for `pulsehost doctor`.
    pub fn cgroup_bases(&self) -> Vec<&Path> {
        self.hierarchies.iter().map(|h| h.base.as_path()).collect()
    }
}

/// `/dev/null` as stdin, stdout and stderr.
fn null_stdio() -> std::io::Result<[std::os::fd::OwnedFd; 3]> {
    let open = || -> std::io::Result<std::os::fd::OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    };
    Ok([open()?, open()?, open()?])
}
