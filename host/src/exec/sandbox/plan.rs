//! The execution plan: which protections a process asks for, which of them
//! this machine can give, and whether it may run without the others. Plain
//! functions over what [`super::probe`] found.

use serde::Serialize;

use super::Limits;

/// One protection a process can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Runs as a user other than the host's, never root.
    SeparateUser,
    /// Its processes are in cgroups of their own, killed together at its end.
    Cgroup,
    /// A PID namespace: whatever it leaves dies with it; it sees only its own processes.
    PidNamespace,
    /// CPU time and peak memory and process count recorded.
    Usage,
    /// Its memory limit is enforced.
    MemoryLimit,
    /// Its CPU limit is enforced.
    CpuLimit,
    /// Its process limit is enforced.
    ProcessLimit,
    /// Its open-files limit is enforced.
    OpenFilesLimit,
    /// Its file-size limit is enforced.
    FileSizeLimit,
    /// It has no network but loopback.
    NoNetwork,
    /// It has a private `/tmp`.
    PrivateTmp,
}

impl Protection {
    /// Its name, as recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::SeparateUser => "separate_user",
            Protection::Cgroup => "cgroup",
            Protection::PidNamespace => "pid_namespace",
            Protection::Usage => "usage",
            Protection::MemoryLimit => "memory_limit",
            Protection::CpuLimit => "cpu_limit",
            Protection::ProcessLimit => "process_limit",
            Protection::OpenFilesLimit => "open_files_limit",
            Protection::FileSizeLimit => "file_size_limit",
            Protection::NoNetwork => "no_network",
            Protection::PrivateTmp => "private_tmp",
        }
    }
}

impl std::str::FromStr for Protection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown protection {s:?}: one of {}", names.join(", "))
        })
    }
}

/// Every protection.
pub const ALL: [Protection; 11] = [
    Protection::SeparateUser,
    Protection::Cgroup,
    Protection::PidNamespace,
    Protection::Usage,
    Protection::MemoryLimit,
    Protection::CpuLimit,
    Protection::ProcessLimit,
    Protection::OpenFilesLimit,
    Protection::FileSizeLimit,
    Protection::NoNetwork,
    Protection::PrivateTmp,
];

/// What depends on cgroups: turned off with them.
pub const NEEDS_CGROUPS: [Protection; 4] = [
    Protection::Usage,
    Protection::MemoryLimit,
    Protection::CpuLimit,
    Protection::ProcessLimit,
];

/// What to do when a protection cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Run without it and record a `degraded` event naming it.
    #[default]
    BestEffort,
    /// Refuse to run the process.
    Strict,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best-effort" => Ok(Policy::BestEffort),
            "strict" => Ok(Policy::Strict),
            other => Err(format!(
                "unknown sandbox policy {other:?}: use best-effort or strict"
            )),
        }
    }
}

/// A protection that could not be given, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Which.
    pub protection: Protection,
    /// Why not, and what would give it.
    pub reason: String,
}

/// What protects one process, recorded with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Given.
    pub applied: Vec<Protection>,
    /// Asked for, not given.
    pub missing: Vec<Missing>,
    /// The limits asked for (enforced as far as `applied` says).
    pub limits: Limits,
}

/// What this machine can give: per protection, None when it can, or why not.
pub type Offers = std::collections::BTreeMap<Protection, Option<String>>;

/// Every protection a process with `limits` asks for. The user, cgroup, PID
/// namespace and usage accounting are always asked for.
pub fn requested(limits: &Limits) -> Vec<Protection> {
    let mut wanted = vec![
        Protection::SeparateUser,
        Protection::Cgroup,
        Protection::PidNamespace,
        Protection::Usage,
    ];
    let optional = [
        (limits.memory_bytes.is_some(), Protection::MemoryLimit),
        (limits.cpu_millicores.is_some(), Protection::CpuLimit),
        (limits.processes.is_some(), Protection::ProcessLimit),
        (limits.open_files.is_some(), Protection::OpenFilesLimit),
        (limits.file_size_bytes.is_some(), Protection::FileSizeLimit),
        (limits.no_network, Protection::NoNetwork),
        (limits.private_tmp, Protection::PrivateTmp),
    ];
    wanted.extend(optional.into_iter().filter(|(asked, _)| *asked).map(|(_, p)| p));
    wanted
}

/// Splits what is asked into what `offers` gives and what it lacks.
pub fn resolve(asked: &[Protection], offers: &Offers, limits: &Limits) -> Plan {
    let mut plan = Plan {
        limits: limits.clone(),
        ..Plan::default()
    };
    for &protection in asked {
        match offers.get(&protection) {
            Some(None) => plan.applied.push(protection),
            Some(Some(reason)) => plan.missing.push(Missing {
                protection,
                reason: reason.clone(),
            }),
            None => plan.missing.push(Missing {
                protection,
                reason: "not probed on this host".into(),
            }),
        }
    }
    plan
}

/// Whether a process with `plan` may run under `policy`: an error names
/// every missing protection and why.
pub fn admit(plan: &Plan, policy: Policy) -> Result<(), String> {
    if policy == Policy::BestEffort || plan.missing.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = plan
        .missing
        .iter()
        .map(|m| format!("{} ({})", m.protection.as_str(), m.reason))
        .collect();
    Err(format!(
        "the sandbox policy is strict and this host cannot give: {}; run `pulsehost doctor` on it, \
         or set the policy to best-effort",
        missing.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(missing: &[Protection]) -> Offers {
        requested(&Limits {
            memory_bytes: Some(1),
            cpu_millicores: Some(1),
            processes: Some(1),
            open_files: Some(1),
            file_size_bytes: Some(1),
            no_network: true,
            private_tmp: true,
        })
        .into_iter()
        .map(|p| (p, missing.contains(&p).then(|| "absent".to_string())))
        .collect()
    }

    #[test]
    fn only_what_is_asked_is_planned() {
        let plan = resolve(
            &requested(&Limits::default()),
            &offers(&[Protection::NoNetwork]),
            &Limits::default(),
        );
        assert_eq!(
            plan.applied,
            [
                Protection::SeparateUser,
                Protection::Cgroup,
                Protection::PidNamespace,
                Protection::Usage
            ]
        );
        assert!(plan.missing.is_empty());
    }

    #[test]
    fn a_missing_protection_degrades_best_effort_and_refuses_strict() {
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            ..Limits::default()
        };
        let plan = resolve(&requested(&limits), &offers(&[Protection::MemoryLimit]), &limits);
        assert_eq!(plan.missing.len(), 1);
        assert_eq!(plan.missing[0].protection, Protection::MemoryLimit);
        assert!(admit(&plan, Policy::BestEffort).is_ok());
        let refused = admit(&plan, Policy::Strict).unwrap_err();
        assert!(refused.contains("memory_limit (absent)"), "{refused}");
    }
}
