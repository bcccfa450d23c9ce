//! Fields `pulsehost:plugin@0.2.0` added for services and alerts, carried
//! out by `crate::runner` (services) and `crate::alerts`.

use serde::{Deserialize, Serialize};

/// A long-running process the host keeps running on one host at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// First restart delay.
    pub restart_backoff_ms: u64,
    /// Largest restart delay.
    pub max_restart_backoff_ms: u64,
    /// Up this long resets the delay.
    pub stable_after_ms: u64,
    /// SIGTERM to SIGKILL on shutdown.
    pub shutdown_grace_ms: u64,
    /// Runs on shutdown.
    #[serde(default)]
    pub on_shutdown: Option<Box<super::ExecSpec>>,
}

/// A notification rule: which events of the task go to which receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    /// failure, recovery, missed, paused.
    pub events: Vec<String>,
    /// Receiver address.
    pub webhook: String,
}
