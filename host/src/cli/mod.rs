//! The `pulsehost` command: `serve` runs the host; every other subcommand is a
//! thin HTTP client of the API (so scripts and the CLI see the same thing).

mod client;
mod doctor;
mod history;
mod output;
mod plugin;
mod schedule;
mod serve;
mod services;
mod spinner;
mod views;

use clap::{Parser, Subcommand};

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
    /// Run the host (HTTP API, pulse endpoint, runner, dashboard).
    Serve,
    /// What this machine gives native steps (user, cgroups, namespaces,
    /// limits) and what each missing protection would take.
    Doctor,
    /// Apply database migrations to DATABASE_URL and exit.
    Migrate,
    /// Plugins: write, build and check your own; push, list, version, roll
    /// back and remove them on a server.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// List tasks; show one, run one now, or resume one.
    Tasks {
        #[command(subcommand)]
        action: Option<history::TasksCommand>,
    },
    /// Send a pulse: claim and start whatever is due now.
    Pulse {
        /// Sign it with PULSEHOST_PULSE_SIGNING_KEY (HMAC-SHA256 over the
        /// time and the body) instead of sending a token.
        #[arg(long)]
        sign: bool,
    },
    /// Recent pulses with the gap between them, and whether the last is late.
    Pulses {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Recent alerts and how their delivery went.
    Alerts {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Services: where each runs, restarts, last exit; a service's log.
    Services {
        #[command(subcommand)]
        action: Option<services::ServicesCommand>,
    },
    /// Run history: list (filtered), show, logs, cancel.
    #[command(subcommand)]
    Runs(history::RunsCommand),
    /// Counts by status, success rate, duration and lateness percentiles.
    Stats {
        /// One task (id, name, or plugin/name); all tasks without.
        task: Option<String>,
        /// How far back: 1h, 24h, 7d, ...
        #[arg(long, default_value = "24h")]
        window: String,
    },
    /// Print a completion script for your shell (bash, zsh, fish, ...).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve::serve(),
        Command::Migrate => serve::migrate(),
        Command::Doctor => doctor::doctor(),
        Command::Plugin(command) => plugin::run(command, cli.json),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "pulsehost", &mut std::io::stdout());
            Ok(())
        }
        Command::Runs(history::RunsCommand::Logs { id, step, follow }) => {
            client::Client::from_env().and_then(|c| history::logs(&c, id, step, follow))
        }
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
        Command::Tasks { action } => history::tasks(c, action)?,
        Command::Pulse { sign: false } => (c.post("/v1/pulse", Need::Pulse)?, output::pulse),
        Command::Pulse { sign: true } => (c.post_signed("/v1/pulse")?, output::pulse),
        Command::Pulses { limit } => history::pulses(c, limit)?,
        Command::Alerts { limit } => (
            c.get(&format!("/v1/alerts?limit={limit}"), Need::Read)?,
            schedule::alerts,
        ),
        Command::Runs(command) => history::runs(c, command)?,
        Command::Services { action } => services::run(c, action)?,
        Command::Stats { task, window } => history::stats(c, task, &window)?,
        Command::Serve
        | Command::Migrate
        | Command::Doctor
        | Command::Plugin(_)
        | Command::Completions { .. } => {
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
