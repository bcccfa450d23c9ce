//! What a task says about its processes' confinement and its runs' needs
//! (`pulsehost:plugin@0.2.0`): limits, sandbox policy, resource reservation,
//! concurrency key, remote files.

use serde::{Deserialize, Serialize};

/// Limits of one process; None takes the task's default, then the host's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLimits {
    /// Memory, bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU, thousandths of a core.
    #[serde(default)]
    pub cpu_millicores: Option<u32>,
    /// Processes and threads at once.
    #[serde(default)]
    pub processes: Option<u32>,
    /// Open file descriptors.
    #[serde(default)]
    pub open_files: Option<u64>,
    /// Largest file written, bytes.
    #[serde(default)]
    pub file_size_bytes: Option<u64>,
    /// Only loopback.
    #[serde(default)]
    pub no_network: Option<bool>,
    /// A private `/tmp`.
    #[serde(default)]
    pub private_tmp: Option<bool>,
}

impl StepLimits {
    /// Every field of `self` that is set, else `fallback`'s.
    pub fn or(&self, fallback: &StepLimits) -> StepLimits {
        StepLimits {
            memory_bytes: self.memory_bytes.or(fallback.memory_bytes),
            cpu_millicores: self.cpu_millicores.or(fallback.cpu_millicores),
            processes: self.processes.or(fallback.processes),
            open_files: self.open_files.or(fallback.open_files),
            file_size_bytes: self.file_size_bytes.or(fallback.file_size_bytes),
            no_network: self.no_network.or(fallback.no_network),
            private_tmp: self.private_tmp.or(fallback.private_tmp),
        }
    }
}

/// A protection the machine cannot give: run without it, or refuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxPolicy {
    /// Run degraded, with a `degraded` event.
    #[default]
    BestEffort,
    /// Refuse the process.
    Strict,
}

/// What a run needs of its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// CPU, thousandths of a core.
    pub cpu_millicores: u32,
}

/// A concurrency limit shared by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    /// The key.
    pub key: String,
    /// Runs at once.
    pub limit: u32,
}

/// A file fetched before a process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// `http(s)://` address.
    pub url: String,
    /// Expected sha256, hex.
    pub sha256: String,
    /// Relative to the working directory.
    pub dest: String,
    /// Made executable.
    #[serde(default)]
    pub executable: bool,
}
