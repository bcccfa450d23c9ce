//! [`Limits`]: what a process may use.

use crate::wit;

/// What one process (with everything it starts) may use. Unset fields fall
/// back to the task's defaults, then the host's.
///
/// ```
/// use pulsehost_sdk::prelude::*;
/// let limits = Limits::new().memory_bytes(256 << 20).processes(64).no_network();
/// let step = Step::shell("build", "make").limits(limits);
/// ```
#[derive(Debug, Clone)]
pub struct Limits(wit::Limits);

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

impl Limits {
    /// No limit set.
    pub fn new() -> Self {
        Self(wit::Limits {
            memory_bytes: None,
            cpu_millicores: None,
            processes: None,
            open_files: None,
            file_size_bytes: None,
            no_network: None,
            private_tmp: None,
        })
    }

    /// Memory, bytes; beyond it the run fails with failure type `memory_limit`.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.0.memory_bytes = Some(bytes);
        self
    }

    /// CPU quota in thousandths of a core.
    pub fn cpu_millicores(mut self, millicores: u32) -> Self {
        self.0.cpu_millicores = Some(millicores);
        self
    }

    /// Processes and threads at once.
    pub fn processes(mut self, processes: u32) -> Self {
        self.0.processes = Some(processes);
        self
    }

    /// Open file descriptors.
    pub fn open_files(mut self, files: u64) -> Self {
        self.0.open_files = Some(files);
        self
    }

    /// Largest file it may write, bytes.
    pub fn file_size_bytes(mut self, bytes: u64) -> Self {
        self.0.file_size_bytes = Some(bytes);
        self
    }

    /// No network but a loopback interface of its own.
    pub fn no_network(mut self) -> Self {
        self.0.no_network = Some(true);
        self
    }

    /// An empty `/tmp` of its own.
    pub fn private_tmp(mut self) -> Self {
        self.0.private_tmp = Some(true);
        self
    }
}

impl From<Limits> for wit::Limits {
    fn from(limits: Limits) -> Self {
        limits.0
    }
}
