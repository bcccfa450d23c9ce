//! WIT bindings to the host's own [`crate::spec`] types, so that no module but
//! this one depends on generated code.

use super::bindings::pulsehost::plugin::types as wit;
use crate::spec;

pub(super) fn manifest(m: wit::Manifest) -> spec::Manifest {
    spec::Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        tasks: m.tasks.into_iter().map(task).collect(),
    }
}

fn task(t: wit::Task) -> spec::TaskSpec {
    spec::TaskSpec {
        name: t.name,
        description: t.description,
        schedule: match t.schedule {
            wit::Schedule::Cron(c) => spec::Schedule::Cron {
                expression: c.expression,
                timezone: c.timezone,
            },
            wit::Schedule::Dynamic(interval_secs) => spec::Schedule::Dynamic { interval_secs },
            wit::Schedule::Manual => spec::Schedule::Manual,
        },
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
    }
}

fn exec(e: wit::ExecSpec) -> spec::ExecSpec {
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
    }
}

pub(super) fn run_context(c: &spec::RunContext) -> wit::RunContext {
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
