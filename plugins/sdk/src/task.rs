//! Builders for what a plugin describes: the [`Manifest`], its [`Task`]s and
//! their [`Retry`] policies.

use crate::{millis, wit, AlertEvent, CatchUp, Duration, Exec, Overlap, SandboxPolicy, Step};

/// Everything a plugin describes: its name, version, description and tasks.
///
/// ```
/// use pulsehost_sdk::prelude::*;
/// let manifest = Manifest::new("reports", "1.2.0")
///     .description("Weekly reports for the finance team.")
///     .task(Task::cron("weekly", "0 6 * * 1").step(Step::shell("render", "make report")));
/// ```
#[derive(Debug, Clone)]
pub struct Manifest(wit::Manifest);

/// One schedulable unit of work: when it is due, how it behaves, and the steps
/// it runs.
///
/// Defaults: enabled, no description, UTC, the host's default timeout, priority
/// 0, no retry, [`Overlap::Skip`], [`CatchUp::Latest`], no starting deadline, no
/// tags or dependencies, no JSON piping, no hooks.
#[derive(Debug, Clone)]
pub struct Task(wit::Task);

/// How a failed run is retried; see [`Task::retry`].
///
/// ```
/// use pulsehost_sdk::prelude::*;
/// let retry = Retry::attempts(3).backoff(Duration::from_secs(30)).max_backoff(Duration::from_secs(600));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Retry(wit::RetryPolicy);

impl Manifest {
    /// A manifest with no tasks. `name` (lowercase letters, digits, `-` and `_`)
    /// identifies the plugin: uploading a component with the same name makes a
    /// new version of it. `version` is shown to operators.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self(wit::Manifest {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            tasks: Vec::new(),
        })
    }

    /// Sets the text shown to operators.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.0.description = description.into();
        self
    }

    /// Adds a task. Task names must be unique within the plugin.
    pub fn task(mut self, task: Task) -> Self {
        self.0.tasks.push(task.0);
        self
    }

    /// Adds several tasks.
    pub fn tasks(mut self, tasks: impl IntoIterator<Item = Task>) -> Self {
        self.0.tasks.extend(tasks.into_iter().map(|task| task.0));
        self
    }
}

impl Task {
    /// A task due on every occurrence of a cron expression, read in UTC unless
    /// a [timezone](Task::timezone) is set. Five fields (`minute hour
    /// day-of-month month day-of-week`, Sunday is 0 or 7), optionally a leading
    /// seconds field, or one of `@yearly @monthly @weekly @daily @hourly`.
    pub fn cron(name: impl Into<String>, expression: impl Into<String>) -> Self {
        Self::new(
            name,
            wit::Schedule::Cron(wit::CronSchedule {
                expression: expression.into(),
                timezone: None,
                jitter_ms: None,
            }),
        )
    }

    /// A task whose due-ness the plugin decides: on each pulse, at most once per
    /// `every` (whole seconds), the host calls [`Plugin::should_run`](crate::Plugin::should_run).
    pub fn dynamic(name: impl Into<String>, every: Duration) -> Self {
        let seconds = u32::try_from(every.as_secs()).unwrap_or(u32::MAX);
        Self::new(name, wit::Schedule::Dynamic(seconds))
    }

    /// A task that is never due by itself: only an operator or an API client
    /// triggers it.
    pub fn manual(name: impl Into<String>) -> Self {
        Self::new(name, wit::Schedule::Manual)
    }

    /// A service: its one step is a long-running process that the host
    /// keeps running on one host of the cluster (hosts in server mode only),
    /// restarted by `service`'s backoff when it exits.
    pub fn service(name: impl Into<String>, service: crate::Service) -> Self {
        Self::new(name, wit::Schedule::Service(service.into()))
    }

    fn new(name: impl Into<String>, schedule: wit::Schedule) -> Self {
        Self(wit::Task {
            name: name.into(),
            description: String::new(),
            schedule,
            enabled: true,
            timeout_ms: None,
            priority: 0,
            retry: None,
            overlap: Overlap::Skip,
            catch_up: CatchUp::Latest,
            starting_deadline_ms: None,
            tags: Vec::new(),
            depends_on: Vec::new(),
            pipe_json: false,
            hooks: wit::ExecHooks {
                provision: None,
                cleanup: None,
                background: None,
                background_may_exit: false,
            },
            steps: Vec::new(),
            default_limits: crate::Limits::new().into(),
            sandbox_policy: wit::SandboxPolicy::BestEffort,
            reservation: None,
            concurrency: None,
            alerts: Vec::new(),
        })
    }

    /// Limits of every process of the task that sets none of its own.
    pub fn default_limits(mut self, limits: crate::Limits) -> Self {
        self.0.default_limits = limits.into();
        self
    }

    /// What happens when the host's machine cannot give a protection a
    /// process asks for: run degraded (the default) or refuse.
    pub fn sandbox_policy(mut self, policy: SandboxPolicy) -> Self {
        self.0.sandbox_policy = policy;
        self
    }

    /// What a run needs of its host: it is admitted only where this fits.
    pub fn reservation(mut self, memory_bytes: u64, cpu_millicores: u32) -> Self {
        self.0.reservation = Some(wit::Reservation {
            memory_bytes,
            cpu_millicores,
        });
        self
    }

    /// At most `limit` runs of the tasks naming `key` run at once, across
    /// the cluster.
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.0.concurrency = Some(wit::Concurrency {
            key: key.into(),
            limit,
        });
        self
    }

    /// Sends `events` of this task to `webhook` (an `http://` or `https://`
    /// address) as JSON POSTs signed with HMAC-SHA256; may be repeated.
    pub fn alert(mut self, events: impl IntoIterator<Item = AlertEvent>, webhook: impl Into<String>) -> Self {
        self.0.alerts.push(wit::AlertRule {
            events: events.into_iter().collect(),
            webhook: webhook.into(),
        });
        self
    }

    /// Sets the text shown to operators.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.0.description = description.into();
        self
    }

    /// Reads the cron expression in this IANA time zone, e.g. `Europe/Berlin`.
    ///
    /// # Panics
    ///
    /// If the task does not have a [cron](Task::cron) schedule.
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        match &mut self.0.schedule {
            wit::Schedule::Cron(cron) => cron.timezone = Some(timezone.into()),
            _ => panic!("timezone() applies only to cron tasks"),
        }
        self
    }

    /// Starts each occurrence up to `jitter` late, by an amount the host fixes
    /// per task and slot (the same on every replica): tasks due at the same
    /// instant spread out. At most an hour, and below the starting deadline.
    ///
    /// # Panics
    ///
    /// If the task does not have a [cron](Task::cron) schedule.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        match &mut self.0.schedule {
            wit::Schedule::Cron(cron) => cron.jitter_ms = Some(jitter.as_millis() as u64),
            _ => panic!("jitter() applies only to cron tasks"),
        }
        self
    }

    /// Registers the task but never makes it due (`false`), until a new version
    /// of the plugin enables it. Tasks are enabled by default.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.0.enabled = enabled;
        self
    }

    /// Limits the wall-clock time of a whole run, hooks and steps (whole
    /// milliseconds). Without it the host's default applies.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout_ms = Some(millis(timeout));
        self
    }

    /// Higher runs first when more runs wait than the host may run at once.
    /// Default 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.0.priority = priority;
        self
    }

    /// Retries failed runs. Without it a failed run is not retried.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.0.retry = Some(retry.0);
        self
    }

    /// What to do when a slot is due while the previous run is still going.
    /// Default [`Overlap::Skip`].
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.0.overlap = overlap;
        self
    }

    /// What to do with slots missed while no pulse came. Default
    /// [`CatchUp::Latest`].
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.0.catch_up = catch_up;
        self
    }

    /// Records a slot as missed if it cannot start within this long of its time
    /// (whole milliseconds).
    pub fn starting_deadline(mut self, deadline: Duration) -> Self {
        self.0.starting_deadline_ms = Some(millis(deadline));
        self
    }

    /// Adds a label for filtering history.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.0.tags.push(tag.into());
        self
    }

    /// Adds several labels; see [`tag`](Task::tag).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Names a task of the same plugin whose run in the same pulse must succeed
    /// before this one starts.
    pub fn depends_on(mut self, task: impl Into<String>) -> Self {
        self.0.depends_on.push(task.into());
        self
    }

    /// When `true`, a step whose stdout is JSON hands it to the next step's
    /// stdin (unless that step sets its own [`stdin_json`](Step::stdin_json)).
    pub fn pipe_json(mut self, pipe_json: bool) -> Self {
        self.0.pipe_json = pipe_json;
        self
    }

    /// Runs this process before the steps. If it fails, the steps are skipped
    /// and the run fails with failure type `provision`.
    pub fn provision(mut self, exec: Exec) -> Self {
        self.0.hooks.provision = Some(exec.into());
        self
    }

    /// Runs this process last, always: after success, failure, timeout or
    /// cancellation.
    pub fn cleanup(mut self, exec: Exec) -> Self {
        self.0.hooks.cleanup = Some(exec.into());
        self
    }

    /// Starts this process before the steps and stops it (its whole process
    /// group) after them. If it exits early the run fails with failure type
    /// `background`, unless [`background_may_exit`](Task::background_may_exit).
    pub fn background(mut self, exec: Exec) -> Self {
        self.0.hooks.background = Some(exec.into());
        self
    }

    /// When `true`, a background process that exits early is recorded but does
    /// not fail the run.
    pub fn background_may_exit(mut self, may_exit: bool) -> Self {
        self.0.hooks.background_may_exit = may_exit;
        self
    }

    /// Appends a step. Steps run in order; a task needs at least one.
    pub fn step(mut self, step: Step) -> Self {
        self.0.steps.push(step.into());
        self
    }

    /// Appends several steps.
    pub fn steps(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.0.steps.extend(steps.into_iter().map(Into::into));
        self
    }
}

impl Retry {
    /// Up to `max_attempts` attempts in all, including the first (1 means no
    /// retry). Default delays: 1 s before the second attempt, doubled for each
    /// further one (with jitter), at most 5 minutes.
    pub fn attempts(max_attempts: u32) -> Self {
        Self(wit::RetryPolicy {
            max_attempts,
            backoff_ms: 1_000,
            max_backoff_ms: 300_000,
        })
    }

    /// Sets the delay before the second attempt (whole milliseconds).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.0.backoff_ms = millis(backoff);
        self
    }

    /// Sets the upper bound of the delay between attempts (whole milliseconds).
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.0.max_backoff_ms = millis(max_backoff);
        self
    }
}

impl From<Manifest> for wit::Manifest {
    fn from(manifest: Manifest) -> Self {
        manifest.0
    }
}

impl From<Task> for wit::Task {
    fn from(task: Task) -> Self {
        task.0
    }
}

impl From<Retry> for wit::RetryPolicy {
    fn from(retry: Retry) -> Self {
        retry.0
    }
}
