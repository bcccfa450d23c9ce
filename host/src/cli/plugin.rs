//! `pulsehost plugin …`: versions on a server (push, list, versions, rollback,
//! remove) and the author's local commands (new, build, check), which need no
//! server.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::client::{Client, Need};
use super::output;
use crate::author::{self, Lang};

/// What `pulsehost plugin` does.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a component (.wasm) as a new version of its plugin (identical
    /// bytes return, and activate, the version already stored).
    Push {
        /// Path of the component.
        file: PathBuf,
    },
    /// List plugins in service and their active versions.
    List,
    /// Every version of a plugin: active one, sizes, tasks added/removed/changed.
    Versions {
        /// Plugin name.
        name: String,
    },
    /// Make an earlier (or later) version active: by default the newest
    /// version before the active one that still has its component.
    Rollback {
        /// Plugin name.
        name: String,
        /// Version number to activate (see `pulsehost plugin versions NAME`).
        #[arg(long)]
        to: Option<i64>,
    },
    /// Retire a plugin: its tasks stop being due; versions and history stay.
    Remove {
        /// Plugin name.
        name: String,
    },
    /// Scaffold a plugin project of your own (manifest, one example task,
    /// README, .gitignore).
    New {
        /// Plugin name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Language of the project.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust only: where the `pulsehost-sdk` crate comes from, a path or a
        /// git URL (default: this pulsehost's own checkout when it has one).
        #[arg(long)]
        sdk: Option<String>,
    },
    /// Build a plugin project into a component (prints its path).
    Build {
        /// Project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a component's describe() locally, in the host's sandbox, and show
    /// its tasks, their next fire times and every problem an upload would report.
    Check {
        /// Path of the component.
        file: PathBuf,
    },
}

/// Runs a plugin command; local ones never build a client.
pub fn run(command: PluginCommand, json: bool) -> anyhow::Result<()> {
    match command {
        PluginCommand::New { name, lang, dir, sdk } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            author::scaffold(&name, lang, &dir, sdk.as_deref())?;
            println!(
                "created {} ({lang}); next:\n  cd {}\n  pulsehost plugin build\n  pulsehost plugin push {}",
                dir.display(),
                dir.display(),
                author::output_hint(&name)
            );
            Ok(())
        }
        PluginCommand::Build { dir } => {
            let built = super::spinner::while_working("building", || author::build(&dir))?;
            println!("{}", built.display());
            Ok(())
        }
        PluginCommand::Check { file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let report = author::check(bytes)?;
            print!(
                "{}",
                if json {
                    format!("{}\n", serde_json::to_string_pretty(&report.json)?)
                } else {
                    report.text
                }
            );
            if report.ok {
                Ok(())
            } else {
                Err(anyhow!("{} would be refused at upload", file.display()))
            }
        }
        remote => remote_command(&Client::from_env()?, remote, json),
    }
}

fn remote_command(c: &Client, command: PluginCommand, json: bool) -> anyhow::Result<()> {
    let (value, render): (serde_json::Value, fn(&serde_json::Value) -> String) = match command {
        PluginCommand::Push { file } => {
            let bytes = std::fs::read(&file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            let uploaded =
                super::spinner::while_working("uploading; the server compiles the component", || {
                    c.post_bytes("/v1/plugins", bytes, Need::Admin)
                });
            (uploaded?, output::pushed)
        }
        PluginCommand::List => (c.get("/v1/plugins", Need::Read)?, output::plugins),
        PluginCommand::Versions { name } => (
            c.get(&format!("/v1/plugins/{name}/versions"), Need::Read)?,
            output::versions,
        ),
        PluginCommand::Rollback { name, to } => {
            let to = match to {
                Some(to) => to,
                None => previous_version(c, &name)?,
            };
            (
                c.post(&format!("/v1/plugins/{name}/versions/{to}/activate"), Need::Admin)?,
                output::activated,
            )
        }
        PluginCommand::Remove { name } => (
            c.delete(&format!("/v1/plugins/{name}"), Need::Admin)?,
            output::retired,
        ),
        PluginCommand::New { .. } | PluginCommand::Build { .. } | PluginCommand::Check { .. } => {
            unreachable!("local commands are handled before a client is built")
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&value));
    }
    Ok(())
}

/// The newest version before the active one whose component is still stored.
fn previous_version(c: &Client, name: &str) -> anyhow::Result<i64> {
    let listed = c.get(&format!("/v1/plugins/{name}/versions"), Need::Read)?;
    let versions = listed["versions"].as_array().cloned().unwrap_or_default();
    let active = versions
        .iter()
        .find(|v| v["active"] == true)
        .and_then(|v| v["version"].as_i64())
        .ok_or_else(|| {
            anyhow!("plugin {name} has no active version (it was removed): name one with --to N")
        })?;
    versions
        .iter()
        .filter(|v| v["pruned"] != true)
        .filter_map(|v| v["version"].as_i64())
        .filter(|n| *n < active)
        .max()
        .ok_or_else(|| anyhow!("plugin {name} has no version before {active} to roll back to"))
}
