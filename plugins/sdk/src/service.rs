//! Services: a task whose one step is a long-running process the host keeps
//! running, on one host of the cluster at a time.

use std::time::Duration;

use crate::{wit, Exec};

/// How a service is restarted and stopped. Start from [`Service::new`]
/// (restarts after 1 s, doubling up to 1 min, back to 1 s once it has
/// stayed up 1 min; 10 s between SIGTERM and SIGKILL) and pass it to
/// [`Task::service`](crate::Task::service).
#[derive(Debug, Clone)]
pub struct Service(wit::ServiceSpec);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Service {
    /// The defaults above.
    pub fn new() -> Self {
        Self(wit::ServiceSpec {
            restart_backoff_ms: 1_000,
            max_restart_backoff_ms: 60_000,
            stable_after_ms: 60_000,
            shutdown_grace_ms: 10_000,
            on_shutdown: None,
        })
    }

    /// Delay before the first restart; doubled for each further one.
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.0.restart_backoff_ms = millis(first);
        self.0.max_restart_backoff_ms = millis(max);
        self
    }

    /// Staying up this long resets the delay to the first one.
    pub fn stable_after(mut self, after: Duration) -> Self {
        self.0.stable_after_ms = millis(after);
        self
    }

    /// On shutdown: time between SIGTERM and SIGKILL.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.0.shutdown_grace_ms = millis(grace);
        self
    }

    /// A process run beside the service after its SIGTERM, within the grace
    /// (to deregister it, flush a queue, ...).
    pub fn on_shutdown(mut self, exec: Exec) -> Self {
        self.0.on_shutdown = Some(exec.into());
        self
    }
}

impl Default for Service {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Service> for wit::ServiceSpec {
    fn from(s: Service) -> Self {
        s.0
    }
}
