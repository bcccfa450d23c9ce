//! How native processes are confined: the user they run as, the policy when
//! the machine lacks a protection, and every process's limits.

use crate::exec::sandbox::{Limits, Policy, Protection};

use super::{flag, ConfigError};

/// Default processes (and threads) one step may have at once: plenty for
/// builds and test runners, and a fork bomb stops there.
pub const DEFAULT_STEP_PROCESSES: u64 = 1024;

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// User steps run as (`PULSEHOST_RUN_AS`, a name or uid).
    pub run_as: Option<String>,
    /// Missing protections degrade or refuse (`PULSEHOST_SANDBOX_POLICY`).
    pub policy: Policy,
    /// Every process's limits (`PULSEHOST_STEP_*`).
    pub limits: Limits,
    /// Protections not used even where the machine has them
    /// (`PULSEHOST_SANDBOX_OFF`, comma-separated names).
    pub off: Vec<Protection>,
    /// Memory the runs executing on this host may reserve together
    /// (`PULSEHOST_CAPACITY_MEMORY_BYTES`, default: the machine's memory).
    pub capacity_memory_bytes: u64,
    /// CPU they may reserve together, thousandths of a core
    /// (`PULSEHOST_CAPACITY_CPU_MILLICORES`, default: the machine's cores).
    pub capacity_cpu_millicores: u64,
    /// Largest remote file a process may ask for (`PULSEHOST_RESOURCE_MAX_BYTES`).
    pub resource_max_bytes: u64,
    /// Size of the remote-file cache (`PULSEHOST_RESOURCE_CACHE_BYTES`).
    pub resource_cache_bytes: u64,
}

/// The machine's memory, from `/proc/meminfo` (`MemTotal`).
fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(u64::from(u32::MAX), |kib| kib * 1024)
}

/// The machine's cores, in thousandths.
fn machine_cpu() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000
}

/// Reads the sandbox settings.
pub(super) fn read(get: &impl Fn(&str) -> Option<String>) -> Result<SandboxSettings, ConfigError> {
    let policy = match get("PULSEHOST_SANDBOX_POLICY") {
        None => Policy::BestEffort,
        Some(value) => value.trim().parse().map_err(|reason| ConfigError {
            name: "PULSEHOST_SANDBOX_POLICY",
            value,
            reason,
        })?,
    };
    let optional = |name: &'static str| -> Result<Option<u64>, ConfigError> {
        get(name)
            .map(|value| match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ConfigError {
                    name,
                    value,
                    reason: "expected a positive whole number".into(),
                }),
            })
            .transpose()
    };
    let processes = optional("PULSEHOST_STEP_PROCESSES")?.unwrap_or(DEFAULT_STEP_PROCESSES);
    let mut off = Vec::new();
    for name in get("PULSEHOST_SANDBOX_OFF")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
    {
        let invalid = |reason: String| ConfigError {
            name: "PULSEHOST_SANDBOX_OFF",
            value: name.to_string(),
            reason,
        };
        match name.parse::<Protection>() {
            _ if name.is_empty() => {}
            Ok(Protection::SeparateUser) => {
                return Err(invalid(
                    "steps never run as the host's user when it is root; it cannot be turned off".into(),
                ))
            }
            Ok(protection) => off.push(protection),
            Err(reason) => return Err(invalid(reason)),
        }
    }
    Ok(SandboxSettings {
        run_as: get("PULSEHOST_RUN_AS"),
        policy,
        limits: Limits {
            memory_bytes: optional("PULSEHOST_STEP_MEMORY_BYTES")?,
            cpu_millicores: optional("PULSEHOST_STEP_CPU_MILLICORES")?
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
            processes: Some(processes.min(u64::from(u32::MAX)) as u32),
            open_files: optional("PULSEHOST_STEP_OPEN_FILES")?,
            file_size_bytes: optional("PULSEHOST_STEP_FILE_SIZE_BYTES")?,
            no_network: flag(get, "PULSEHOST_STEP_NO_NETWORK", false)?,
            private_tmp: flag(get, "PULSEHOST_STEP_PRIVATE_TMP", false)?,
        },
        off,
        capacity_memory_bytes: optional("PULSEHOST_CAPACITY_MEMORY_BYTES")?.unwrap_or_else(machine_memory),
        capacity_cpu_millicores: optional("PULSEHOST_CAPACITY_CPU_MILLICORES")?.unwrap_or_else(machine_cpu),
        resource_max_bytes: optional("PULSEHOST_RESOURCE_MAX_BYTES")?.unwrap_or(256 << 20),
        resource_cache_bytes: optional("PULSEHOST_RESOURCE_CACHE_BYTES")?.unwrap_or(2 << 30),
    })
}
