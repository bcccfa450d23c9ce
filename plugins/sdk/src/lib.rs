//! Write pulsehost plugins in Rust.
//!
//! A plugin is a WebAssembly component that *describes* tasks: when they are due
//! and which processes they run. The host calls the plugin's `describe` export
//! once, when the component is uploaded, then schedules, runs and records the
//! tasks itself. For tasks with a [dynamic](Task::dynamic) schedule the host also
//! asks the plugin, on each pulse, whether the task is due.
//!
//! This crate turns that contract (`wit/plugin.wit`, world
//! `pulsehost:plugin/plugin`) into a [`Plugin`] trait, builders with sensible
//! defaults ([`Manifest`], [`Task`], [`Step`], [`Exec`], [`Retry`]) and the
//! [`export_plugin!`] macro.
//!
//! ```no_run
//! use pulsehost_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Result<Manifest, String> {
//!         Ok(Manifest::new("hello", "0.1.0")
//!             .description("Says hello every minute.")
//!             .task(
//!                 Task::cron("say-hello", "* * * * *")
//!                     .timeout(Duration::from_secs(10))
//!                     .step(Step::shell("greet", "echo hello from pulsehost")),
//!             ))
//!     }
//! }
//!
//! pulsehost_sdk::export_plugin!(Hello);
//! ```
//!
//! A plugin is a `cdylib` crate of its own, anywhere, depending on this crate by
//! path or git: `pulsehost plugin new NAME --lang rust` scaffolds one and
//! `pulsehost plugin build` builds it into a component. Inside the pulsehost
//! repository, `cargo build-plugins` builds the examples and test fixtures.
//!
//! The builders do not validate anything (names, cron expressions, paths): the
//! host checks the manifest when the component is uploaded and rejects it with a
//! readable message.

#![deny(missing_docs)]

mod exec;
mod limits;
mod service;
mod task;

pub use exec::{Exec, Step};
pub use limits::Limits;
pub use service::Service;
pub use std::time::Duration;
pub use task::{Manifest, Retry, Task};
pub use wit::{AlertEvent, CatchUp, Overlap, RunContext, RunOutcome, RunStatus, SandboxPolicy};

/// The generated bindings of the `pulsehost:plugin/plugin` world. Used by
/// [`export_plugin!`]; plugin code uses the builders and [`wit`] instead.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "pulsehost:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "::pulsehost_sdk::bindings",
    });
}

/// The raw types of the WIT contract, exactly as the host receives them.
///
/// The builders convert into these with `From`; they are also handy in
/// [`Plugin::should_run`], whose [`RunContext`] comes from here.
pub mod wit {
    pub use crate::bindings::pulsehost::plugin::types::*;
}

/// Everything a plugin usually needs: `use pulsehost_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AlertEvent, CatchUp, Duration, Exec, Limits, Manifest, Overlap, Plugin, Retry, RunContext,
        RunOutcome, RunStatus, SandboxPolicy, Service, Step, Task,
    };
}

/// A pulsehost plugin. Implement it on a unit struct and pass that struct to
/// [`export_plugin!`].
pub trait Plugin {
    /// The plugin's name, version and tasks. Called once when the component is
    /// uploaded; an `Err` rejects the upload with that message.
    fn manifest() -> Result<Manifest, String>;

    /// Whether a task with a [dynamic](Task::dynamic) schedule is due now. Called
    /// on each pulse, at most as often as the task's interval. A trap (a panic)
    /// counts as "not due".
    ///
    /// The default answers `false`: only implement it if the plugin has dynamic
    /// tasks.
    fn should_run(ctx: RunContext) -> bool {
        let _ = ctx;
        false
    }
}

/// Exports a [`Plugin`] implementation as the component's `describe` and
/// `should-run` functions. Use it once per plugin crate, at the top level.
///
/// ```ignore
/// struct Backup;
/// impl pulsehost_sdk::Plugin for Backup { /* … */ }
/// pulsehost_sdk::export_plugin!(Backup);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // The generated exports are `extern "C"` functions with `export_name`.
        #[allow(unsafe_code)]
        const _: () = {
            struct PulsehostExport;

            impl $crate::bindings::Guest for PulsehostExport {
                fn describe() -> ::core::result::Result<$crate::wit::Manifest, ::std::string::String> {
                    <$plugin as $crate::Plugin>::manifest().map(::core::convert::Into::into)
                }

                fn should_run(ctx: $crate::RunContext) -> bool {
                    <$plugin as $crate::Plugin>::should_run(ctx)
                }
            }

    $crate::bindings::__export_plugin_world!(PulsehostExport with_types_in $crate::bindings);
        };
    };
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
