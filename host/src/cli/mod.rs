//! The `pulsehost` command: `serve` runs the host; every other subcommand is a
//! thin HTTP client of the API (so scripts and the CLI see the same thing).

mod client;
mod output;
mod plugin;
mod serve;

use clap::{Args, Parser, Subcommand};

/// pulsehost: a WebAssembly plugin host that hosted cron pulses.
#[derive(Debug, Parser)]
#[command(name = "pulsehost", version, about)]
pub struct Cli {
    /// Print the API's JSON instead of tables (client commands).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host (HTTP API, pulse endpoint, runner).
    Serve,
    /// Apply database migrations to DATABASE_URL and exit.
    Migrate,
    /// Plugins: write, build and check your own; push, list, version, roll
    /// back and remove them on a server.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// List tasks, or run one now.
    Tasks(TasksArgs),
    /// Send a pulse: claim and start whatever is due now.
    Pulse,
    /// Run history.
    #[command(subcommand)]
    Runs(RunsCommand),
}

#[derive(Debug, Args)]
struct TasksArgs {
    #[command(subcommand)]
    action: Option<TasksCommand>,
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
    /// Queue a run of a task now, whatever its schedule.
    Run {
        /// Task id (see `pulsehost tasks`).
        id: i64,
    },
    /// Resume a task paused after repeated hook failures.
    Resume {
        /// Task id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Runs, newest first.
    List {
        /// Page size.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Only runs older than this run id (the previous page's last id).
        #[arg(long)]
        before: Option<i64>,
        /// Only this task id.
        #[arg(long)]
        task: Option<i64>,
        /// Only this status (queued, running, succeeded, failed, timed_out, cancelled, skipped, missed).
        #[arg(long)]
        status: Option<String>,
    },
    /// One run with every step's exit code and output.
    Show {
        /// Run id.
        id: i64,
    },
    /// Cancel a queued or running run (its cleanup hook still runs).
    Cancel {
        /// Run id.
        id: i64,
    },
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve::serve(),
        Command::Migrate => serve::migrate(),
        Command::Plugin(command) => plugin::run(command, cli.json),
        command => client::Client::from_env().and_then(|c| run_client(&c, command, cli.json)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn run_client(c: &client::Client, command: Command, json: bool) -> anyhow::Result<()> {
    use client::Need;
    let (value, render): (serde_json::Value, fn(&serde_json::Value) -> String) = match command {
        Command::Tasks(TasksArgs { action: None }) => (c.get("/v1/tasks", Need::Read)?, output::tasks),
        Command::Tasks(TasksArgs {
            action: Some(TasksCommand::Run { id }),
        }) => (
            c.post(&format!("/v1/tasks/{id}/run"), Need::Admin)?,
            output::triggered,
        ),
        Command::Tasks(TasksArgs {
            action: Some(TasksCommand::Resume { id }),
        }) => (
            c.post(&format!("/v1/tasks/{id}/resume"), Need::Admin)?,
            output::resumed,
        ),
        Command::Pulse => (c.post("/v1/pulse", Need::Pulse)?, output::pulse),
        Command::Runs(RunsCommand::Cancel { id }) => (
            c.post(&format!("/v1/runs/{id}/cancel"), Need::Admin)?,
            output::cancelled,
        ),
        Command::Runs(RunsCommand::List {
            limit,
            before,
            task,
            status,
        }) => {
            let mut path = format!("/v1/runs?limit={limit}");
            for (key, value) in [
                ("before", before.map(|v| v.to_string())),
                ("task_id", task.map(|v| v.to_string())),
                ("status", status),
            ] {
                if let Some(value) = value {
                    path.push_str(&format!("&{key}={value}"));
                }
            }
            (c.get(&path, Need::Read)?, output::runs)
        }
        Command::Runs(RunsCommand::Show { id }) => {
            (c.get(&format!("/v1/runs/{id}"), Need::Read)?, output::run)
        }
        Command::Serve | Command::Migrate | Command::Plugin(_) => {
            unreachable!("handled before a client is built")
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&value));
    }
    Ok(())
}
