//! WIT bindings (of either world) to the host's own [`crate::spec`] types, so
//! that no module but this one and `world` depends on generated code. The two
//! worlds share most shapes: one macro converts them, and each world supplies
//! what differs (`0.2.0`'s added fields; `0.1.0` gets their defaults).

use crate::spec;

/// The `0.2.0` fields of a task.
#[derive(Default)]
struct TaskExtras {
    default_limits: spec::StepLimits,
    sandbox_policy: spec::SandboxPolicy,
    reservation: Option<spec::Reservation>,
    concurrency: Option<spec::Concurrency>,
    alerts: Vec<spec::AlertRule>,
}

/// The `0.2.0` fields of a process.
#[derive(Default)]
struct ExecExtras {
    limits: spec::StepLimits,
    resources: Vec<spec::RemoteFile>,
    terminal_output: bool,
    stdin_schema: Option<String>,
    stdout_schema: Option<String>,
}

/// Defines `manifest` and `run_context` for the world whose types are `wit`,
/// with `task_extras(&wit::Task)`, `exec_extras(&wit::ExecSpec)` and
/// `schedule(wit::Schedule)` defined beside it.
macro_rules! convert_world {
    ($($wit:tt)+) => {
        use $($wit)+ as wit;
        use crate::spec;
        use super::{ExecExtras, TaskExtras};

        /// What `describe()` said, as the host's types.
        pub(crate) fn manifest(m: wit::Manifest) -> spec::Manifest {
            spec::Manifest {
                name: m.name,
                version: m.version,
                description: m.description,
                tasks: m.tasks.into_iter().map(task).collect(),
            }
        }

        fn task(t: wit::Task) -> spec::TaskSpec {
            let extras = task_extras(&t);
            spec::TaskSpec {
                name: t.name,
                description: t.description,
                schedule: schedule(t.schedule),
                enabled: t.enabled,
                timeout_ms: t.timeout_ms,
                priority: t.priority,
                retry: t.retry.map(|r| spec::RetryPolicy {
                    max_attempts: r.max_attempts,
                    backoff_ms: r.backoff_ms,
                    max_backoff_ms: r.max_backoff_ms,
                }),
                overlap: match t.overlap {
                    wit::Overlap::Skip => spec::Overlap::Skip,
                    wit::Overlap::Allow => spec::Overlap::Allow,
                    wit::Overlap::Replace => spec::Overlap::Replace,
                },
                catch_up: match t.catch_up {
                    wit::CatchUp::Latest => spec::CatchUp::Latest,
                    wit::CatchUp::All => spec::CatchUp::All,
                    wit::CatchUp::None => spec::CatchUp::None,
                },
                starting_deadline_ms: t.starting_deadline_ms,
                tags: t.tags,
                depends_on: t.depends_on,
                pipe_json: t.pipe_json,
                hooks: spec::ExecHooks {
                    provision: t.hooks.provision.map(exec),
                    cleanup: t.hooks.cleanup.map(exec),
                    background: t.hooks.background.map(exec),
                    background_may_exit: t.hooks.background_may_exit,
                },
                steps: t
                    .steps
                    .into_iter()
                    .map(|s| spec::StepSpec {
                        name: s.name,
                        exec: exec(s.exec),
                    })
                    .collect(),
                default_limits: extras.default_limits,
                sandbox_policy: extras.sandbox_policy,
                reservation: extras.reservation,
                concurrency: extras.concurrency,
                alerts: extras.alerts,
            }
        }

        fn exec(e: wit::ExecSpec) -> spec::ExecSpec {
            let extras = exec_extras(&e);
            spec::ExecSpec {
                kind: match e.kind {
                    wit::StepKind::Shell(script) => spec::StepKind::Shell { script },
                    wit::StepKind::Python(p) => spec::StepKind::Python {
                        source: p.source,
                        requirements: p.requirements,
                    },
                    wit::StepKind::Binary(path) => spec::StepKind::Binary { path },
                },
                args: e.args,
                envs: e.envs,
                working_dir: e.working_dir,
                timeout_ms: e.timeout_ms,
                stdin_json: e.stdin_json,
                limits: extras.limits,
                resources: extras.resources,
                terminal_output: extras.terminal_output,
                stdin_schema: extras.stdin_schema,
                stdout_schema: extras.stdout_schema,
            }
        }

        /// What `should-run` is told.
        pub(crate) fn run_context(c: &spec::RunContext) -> wit::RunContext {
            wit::RunContext {
                task: c.task.clone(),
                slot_id: c.slot_id.clone(),
                scheduled_for_ms: c.scheduled_for_ms,
                now_ms: c.now_ms,
                attempt: c.attempt,
                previous: c.previous.as_ref().map(|p| wit::RunOutcome {
                    status: match p.status.as_str() {
                        "succeeded" => wit::RunStatus::Succeeded,
                        "timed_out" => wit::RunStatus::TimedOut,
                        "cancelled" => wit::RunStatus::Cancelled,
                        "skipped" | "missed" => wit::RunStatus::Skipped,
                        _ => wit::RunStatus::Failed,
                    },
                    finished_at_ms: p.finished_at_ms,
                    exit_code: p.exit_code,
                    error: p.error.clone(),
                }),
            }
        }
    };
}

/// `pulsehost:plugin@0.1.0`: the fields it lacks take their defaults.
pub(crate) mod v1 {
    convert_world!(super::super::world::v1::pulsehost::plugin::types);

    fn task_extras(_: &wit::Task) -> TaskExtras {
        TaskExtras::default()
    }

    fn exec_extras(_: &wit::ExecSpec) -> ExecExtras {
        ExecExtras::default()
    }

    fn schedule(s: wit::Schedule) -> spec::Schedule {
        match s {
            wit::Schedule::Cron(c) => spec::Schedule::Cron {
                expression: c.expression,
                timezone: c.timezone,
                jitter_ms: None,
            },
            wit::Schedule::Dynamic(interval_secs) => spec::Schedule::Dynamic { interval_secs },
            wit::Schedule::Manual => spec::Schedule::Manual,
        }
    }
}

/// `pulsehost:plugin@0.2.0`.
pub(crate) mod v2 {
    convert_world!(super::super::world::v2::pulsehost::plugin::types);

    fn limits(l: &wit::Limits) -> spec::StepLimits {
        spec::StepLimits {
            memory_bytes: l.memory_bytes,
            cpu_millicores: l.cpu_millicores,
            processes: l.processes,
            open_files: l.open_files,
            file_size_bytes: l.file_size_bytes,
            no_network: l.no_network,
            private_tmp: l.private_tmp,
        }
    }

    fn task_extras(t: &wit::Task) -> TaskExtras {
        TaskExtras {
            default_limits: limits(&t.default_limits),
            sandbox_policy: match t.sandbox_policy {
                wit::SandboxPolicy::BestEffort => spec::SandboxPolicy::BestEffort,
                wit::SandboxPolicy::Strict => spec::SandboxPolicy::Strict,
            },
            reservation: t.reservation.map(|r| spec::Reservation {
                memory_bytes: r.memory_bytes,
                cpu_millicores: r.cpu_millicores,
            }),
            concurrency: t.concurrency.as_ref().map(|c| spec::Concurrency {
                key: c.key.clone(),
                limit: c.limit,
            }),
            alerts: t
                .alerts
                .iter()
                .map(|a| spec::AlertRule {
                    events: a
                        .events
                        .iter()
                        .map(|e| {
                            match e {
                                wit::AlertEvent::Failure => "failure",
                                wit::AlertEvent::Recovery => "recovery",
                                wit::AlertEvent::Missed => "missed",
                                wit::AlertEvent::Paused => "paused",
                            }
                            .to_string()
                        })
                        .collect(),
                    webhook: a.webhook.clone(),
                })
                .collect(),
        }
    }

    fn exec_extras(e: &wit::ExecSpec) -> ExecExtras {
        ExecExtras {
            limits: limits(&e.limits),
            resources: e
                .resources
                .iter()
                .map(|r| spec::RemoteFile {
                    url: r.url.clone(),
                    sha256: r.sha256.clone(),
                    dest: r.dest.clone(),
                    executable: r.executable,
                })
                .collect(),
            terminal_output: e.terminal_output,
            stdin_schema: e.stdin_schema.clone(),
            stdout_schema: e.stdout_schema.clone(),
        }
    }

    fn schedule(s: wit::Schedule) -> spec::Schedule {
        match s {
            wit::Schedule::Cron(c) => spec::Schedule::Cron {
                expression: c.expression,
                timezone: c.timezone,
                jitter_ms: c.jitter_ms,
            },
            wit::Schedule::Dynamic(interval_secs) => spec::Schedule::Dynamic { interval_secs },
            wit::Schedule::Manual => spec::Schedule::Manual,
            wit::Schedule::Service(s) => spec::Schedule::Service(spec::ServiceSpec {
                restart_backoff_ms: s.restart_backoff_ms,
                max_restart_backoff_ms: s.max_restart_backoff_ms,
                stable_after_ms: s.stable_after_ms,
                shutdown_grace_ms: s.shutdown_grace_ms,
                on_shutdown: s.on_shutdown.map(|e| Box::new(exec(e))),
            }),
        }
    }
}
