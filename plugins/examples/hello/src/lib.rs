//! The smallest pulsehost plugin: one task that says hello every minute.

use pulsehost_sdk::prelude::*;

/// The plugin.
struct Hello;

impl Plugin for Hello {
    fn manifest() -> Result<Manifest, String> {
        Ok(Manifest::new("hello", env!("CARGO_PKG_VERSION"))
            .description("Says hello every minute.")
            .task(
                Task::cron("say-hello", "* * * * *")
                    .description("Prints a greeting.")
                    .step(Step::shell("greet", "echo hello from pulsehost")),
            ))
    }
}

pulsehost_sdk::export_plugin!(Hello);
