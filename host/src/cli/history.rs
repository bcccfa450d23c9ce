//! `pulsehost tasks | runs | pulses | stats`: the operator's questions, each
//! answered by one command over the API.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use super::client::{Client, Need};
use super::{output, views};

/// An API answer and how to print it for people.
pub type Answer = (Value, fn(&Value) -> String);

/// What `pulsehost tasks` does (without one: list them).
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// One task: schedule in words, time zone, next fire times in its zone
    /// and in UTC, statistics of the last 24 h.
    Show {
        /// Task id, name, or plugin/name.
        task: String,
    },
    /// Queue a run of a task now, whatever its schedule, optionally with
    /// chosen input (recorded with the run).
    Run {
        /// Task id, name, or plugin/name.
        task: String,
        /// A JSON document for the first step's stdin, in place of what it
        /// declares; checked against its stdin-schema before anything is queued.
        #[arg(long, value_name = "JSON")]
        stdin_json: Option<String>,
        /// An environment variable for every process of the run (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        envs: Vec<String>,
    },
    /// Resume a task paused after repeated hook failures (same as unpause).
    Resume {
        /// Task id, name, or plugin/name.
        task: String,
    },
    /// Preview a cron task's occurrences, clock changes marked.
    Schedule {
        /// Task id, name, or plugin/name.
        task: String,
        /// From (RFC 3339, or a duration before now such as 2h); default now.
        #[arg(long)]
        from: Option<String>,
        /// To (RFC 3339); default seven days after --from.
        #[arg(long)]
        to: Option<String>,
    },
    /// Create the missing slots of a past range of a cron task and run them.
    Backfill {
        /// Task id, name, or plugin/name.
        task: String,
        /// First instant of the range (RFC 3339).
        #[arg(long)]
        from: String,
        /// Last instant of the range (RFC 3339, not later than now).
        #[arg(long)]
        to: String,
        /// Only list what would be created.
        #[arg(long)]
        dry_run: bool,
    },
    /// Pause a task: nothing of it is due until it is unpaused (or --until).
    Pause {
        /// Task id, name, or plugin/name.
        task: String,
        /// Why, shown wherever the task is.
        #[arg(long)]
        reason: String,
        /// End the pause by itself then (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
    /// Unpause a task; the paused span is not caught up.
    Unpause {
        /// Task id, name, or plugin/name.
        task: String,
    },
}

/// A run status, as filters take it.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to start.
    Queued,
    /// Executing.
    Running,
    /// Every step exited 0.
    Succeeded,
    /// A step or hook failed.
    Failed,
    /// The run or a step ran out of time.
    TimedOut,
    /// Cancelled by an operator.
    Cancelled,
    /// Not started: overlap or a failed dependency.
    Skipped,
    /// Its slot's time passed without a start.
    Missed,
}

/// What `pulsehost runs` does.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first, with their duration.
    List {
        /// Page size.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Only runs listed after this run id (the previous page's last).
        #[arg(long)]
        before: Option<i64>,
        /// Only this task (id, name, or plugin/name).
        #[arg(long)]
        task: Option<String>,
        /// Only these statuses (comma-separated or repeated).
        #[arg(long, value_enum, value_delimiter = ',')]
        status: Vec<Status>,
        /// Only tasks with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only runs created since: an RFC 3339 instant or a duration ago (1h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only runs created before: an RFC 3339 instant or a duration ago.
        #[arg(long)]
        until: Option<String>,
        /// Leave out missed and skipped runs.
        #[arg(long)]
        hide_missed: bool,
    },
    /// One run with every step's exit code and output.
    Show {
        /// Run id.
        id: i64,
    },
    /// A run's output: every process's, or one step's; `--follow` prints it
    /// as it comes until the run ends.
    Logs {
        /// Run id.
        id: i64,
        /// Only the step at this position (0 is the first step).
        #[arg(long)]
        step: Option<i64>,
        /// Keep printing new output until the run ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a queued or running run (its cleanup hook still runs).
    Cancel {
        /// Run id.
        id: i64,
    },
}

/// The id of `task`: a number, `plugin/name`, or a name only one plugin has.
pub fn task_id(c: &Client, task: &str) -> anyhow::Result<i64> {
    if let Ok(id) = task.parse() {
        return Ok(id);
    }
    let tasks = c.get("/v1/tasks", Need::Read)?;
    let all: Vec<&Value> = tasks["tasks"].as_array().into_iter().flatten().collect();
    let full = |t: &Value| format!("{}/{}", views::s(&t["plugin"]), views::s(&t["name"]));
    let found: Vec<&&Value> = all
        .iter()
        .filter(|t| full(t) == task || t["name"].as_str() == Some(task))
        .collect();
    match found.as_slice() {
        [one] => one["id"].as_i64().ok_or_else(|| anyhow!("task {task} has no id")),
        [] => bail!(
            "no task {task:?}; tasks: {}",
            all.iter().map(|t| full(t)).collect::<Vec<_>>().join(", ")
        ),
        many => bail!(
            "several plugins have a task {task:?}: write one of {}",
            many.iter().map(|t| full(t)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Runs a `tasks` command; the value and how to print it.
pub fn tasks(c: &Client, command: Option<TasksCommand>) -> anyhow::Result<Answer> {
    Ok(match command {
        None => (c.get("/v1/tasks", Need::Read)?, output::tasks),
        Some(TasksCommand::Show { task }) => {
            let id = task_id(c, &task)?;
            let mut shown = c.get(&format!("/v1/tasks/{id}"), Need::Read)?;
            shown["stats"] = c.get(&format!("/v1/tasks/{id}/stats?window=24h"), Need::Read)?["stats"].take();
            (shown, views::task)
        }
        Some(TasksCommand::Run {
            task,
            stdin_json,
            envs,
        }) => {
            let body = run_overrides(stdin_json.as_deref(), &envs)?;
            let id = task_id(c, &task)?;
            (
                c.post_json(&format!("/v1/tasks/{id}/run"), &body, Need::Admin)?,
                output::triggered,
            )
        }
        Some(TasksCommand::Schedule { task, from, to }) => {
            super::schedule::preview(c, task_id(c, &task)?, from.as_deref(), to.as_deref())?
        }
        Some(TasksCommand::Backfill {
            task,
            from,
            to,
            dry_run,
        }) => super::schedule::backfill(c, task_id(c, &task)?, &from, &to, dry_run)?,
        Some(TasksCommand::Pause { task, reason, until }) => {
            super::schedule::pause(c, task_id(c, &task)?, &reason, until.as_deref())?
        }
        Some(TasksCommand::Unpause { task }) => super::schedule::unpause(c, task_id(c, &task)?)?,
        Some(TasksCommand::Resume { task }) => {
            let id = task_id(c, &task)?;
            (
                c.post(&format!("/v1/tasks/{id}/resume"), Need::Admin)?,
                output::resumed,
            )
        }
    })
}

/// The body of a run request: `{"stdin_json": …, "envs": {…}}`, as given.
fn run_overrides(stdin_json: Option<&str>, envs: &[String]) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    if let Some(text) = stdin_json {
        let document: Value =
            serde_json::from_str(text).map_err(|e| anyhow!("--stdin-json is not JSON: {e}"))?;
        body.insert("stdin_json".into(), document);
    }
    let mut variables = serde_json::Map::new();
    for pair in envs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {pair:?} must be NAME=VALUE"))?;
        variables.insert(name.into(), Value::String(value.into()));
    }
    if !variables.is_empty() {
        body.insert("envs".into(), Value::Object(variables));
    }
    Ok(Value::Object(body))
}

/// Runs a `runs` command other than `logs`; the value and how to print it.
pub fn runs(c: &Client, command: RunsCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        RunsCommand::List {
            limit,
            before,
            task,
            status,
            tag,
            since,
            until,
            hide_missed,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(before.map(|b| ("before", b.to_string())));
            if let Some(task) = task {
                query.push(("task_id", task_id(c, &task)?.to_string()));
            }
            for s in status {
                query.push((
                    "status",
                    s.to_possible_value()
                        .map(|v| v.get_name().to_owned())
                        .unwrap_or_default(),
                ));
            }
            query.extend(tag.map(|t| ("tag", t)));
            query.extend(since.map(|t| ("since", t)));
            query.extend(until.map(|t| ("until", t)));
            if hide_missed {
                query.push(("hide_missed", "true".into()));
            }
            (c.get_query("/v1/runs", &query, Need::Read)?, output::runs)
        }
        RunsCommand::Show { id } => (c.get(&format!("/v1/runs/{id}"), Need::Read)?, output::run),
        RunsCommand::Cancel { id } => (
            c.post(&format!("/v1/runs/{id}/cancel"), Need::Admin)?,
            output::cancelled,
        ),
        RunsCommand::Logs { .. } => unreachable!("logs streams; see `logs`"),
    })
}

/// How often `runs logs --follow` asks for new output.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Prints a run's output; with `follow`, what each process adds until the
/// run ends. Fails when the run did not succeed (for scripts).
pub fn logs(c: &Client, id: i64, step: Option<i64>, follow: bool) -> anyhow::Result<()> {
    let mut printed: HashMap<(String, i64, &'static str), usize> = HashMap::new();
    loop {
        let run = c.get(&format!("/v1/runs/{id}"), Need::Read)?;
        let processes = run["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(run["live"].as_array().into_iter().flatten());
        for p in processes {
            let (phase, index) = (views::s(&p["phase"]), p["index"].as_i64().unwrap_or(0));
            if step.is_some_and(|n| phase != "step" || n != index) {
                continue;
            }
            for stream in ["stdout", "stderr"] {
                let bytes = decoded(p, stream);
                let done = printed.entry((phase.clone(), index, stream)).or_insert(0);
                if bytes.len() > *done {
                    if *done == 0 && step.is_none() {
                        eprintln!("==> {phase} {index} {} ({stream}) <==", views::s(&p["name"]));
                    }
                    let fresh = &bytes[*done..];
                    let written = match stream {
                        "stdout" => std::io::stdout().write_all(fresh),
                        _ => std::io::stderr().write_all(fresh),
                    };
                    written?;
                    *done = bytes.len();
                }
            }
        }
        std::io::stdout().flush()?;
        let status = views::s(&run["status"]);
        let finished = !matches!(status.as_str(), "queued" | "running");
        if !follow || (finished && run["live"].as_array().is_none_or(Vec::is_empty)) {
            eprintln!("run {id}: {status}");
            return match status.as_str() {
                "succeeded" | "queued" | "running" => Ok(()),
                _ => Err(anyhow!("run {id} ended {status}")),
            };
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

/// A stream's bytes from its JSON form (text, or base64 when not UTF-8).
fn decoded(process: &Value, stream: &str) -> Vec<u8> {
    let text = process[stream].as_str().unwrap_or("");
    match process[format!("{stream}_encoding")].as_str() {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default(),
        _ => text.as_bytes().to_vec(),
    }
}

/// `pulses`: recent pulses, and whether the last one is on time.
pub fn pulses(c: &Client, limit: i64) -> anyhow::Result<Answer> {
    let mut listed = c.get(&format!("/v1/pulses?limit={limit}"), Need::Read)?;
    listed["readiness"] = c.get_any("/readyz")?;
    Ok((listed, views::pulses))
}

/// `stats [TASK]`.
pub fn stats(c: &Client, task: Option<String>, window: &str) -> anyhow::Result<Answer> {
    let path = match task {
        Some(task) => format!("/v1/tasks/{}/stats", task_id(c, &task)?),
        None => "/v1/stats".to_owned(),
    };
    Ok((
        c.get_query(&path, &[("window", window.to_owned())], Need::Read)?,
        views::stats,
    ))
}
