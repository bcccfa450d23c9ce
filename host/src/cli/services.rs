//! `pulsehost services`: where each service runs and how it has been, and
//! its rolling log.

use clap::Subcommand;
use serde_json::Value;

use super::client::{Client, Need};
use super::history::Answer;
use super::views::s;

/// What to do with services.
#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Every service: state, host, since when, restarts, last exit.
    List,
    /// The last output of a service (its current incarnation's, or its last one's).
    Log {
        /// Service id (see `pulsehost services`).
        id: i64,
    },
}

/// Fetches what `command` asks for and says how to print it.
pub fn run(c: &Client, command: Option<ServicesCommand>) -> anyhow::Result<Answer> {
    Ok(match command.unwrap_or(ServicesCommand::List) {
        ServicesCommand::List => (c.get("/v1/services", Need::Read)?, list),
        ServicesCommand::Log { id } => (c.get(&format!("/v1/services/{id}/log"), Need::Read)?, log),
    })
}

/// One line per service.
fn list(v: &Value) -> String {
    let mut out = String::new();
    for x in v["services"].as_array().into_iter().flatten() {
        let place = match (&x["host_id"], &x["state"]) {
            (Value::String(h), _) => format!(" on {h}"),
            _ => String::new(),
        };
        let since = match &x["running_since"] {
            Value::Null => format!("since {}", s(&x["state_since"])),
            at => format!("up since {}", s(at)),
        };
        let last = match &x["last_exit_status"] {
            Value::Null => String::new(),
            status => format!(
                ", last exit {} (code {}) at {}",
                s(status),
                s(&x["last_exit_code"]),
                s(&x["last_exit_at"])
            ),
        };
        let flapping = if x["flapping_since"].is_null() {
            ""
        } else {
            ", FLAPPING"
        };
        out.push_str(&format!(
            "{}  {}/{}  {}{place} {since}, {} restart(s){last}{flapping}\n",
            s(&x["id"]),
            s(&x["plugin"]),
            s(&x["name"]),
            s(&x["state"]),
            s(&x["restarts"]),
        ));
    }
    if out.is_empty() {
        out.push_str("no services\n");
    }
    if v["runs_services"] == Value::Bool(false) {
        out.push_str("(this host is serverless: it runs no services)\n");
    }
    out
}

/// The rolling log, stdout then stderr.
fn log(v: &Value) -> String {
    let mut out = format!(
        "run {} ({})\n",
        s(&v["run_id"]),
        if v["running"] == Value::Bool(true) {
            "running"
        } else {
            "ended"
        }
    );
    for stream in ["stdout", "stderr"] {
        let text = v[stream].as_str().unwrap_or_default();
        if !text.is_empty() {
            out.push_str(&format!(
                "--- {stream} (last of {} bytes)\n{text}",
                s(&v[&format!("{stream}_bytes")])
            ));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}
