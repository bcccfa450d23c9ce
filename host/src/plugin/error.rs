//! Why a component was refused or a plugin call failed.

use std::time::{Duration, Instant};

use super::sandbox::{self, SandboxState};
use super::validate::Problem;
use super::{Limits, WIT_PACKAGE, WIT_PACKAGES};

/// Why a component was refused or a call failed. Every message says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// Larger than the upload cap.
    #[error("the component is {size} bytes; the limit is {limit} bytes (PULSEHOST_MAX_PLUGIN_BYTES)")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Not WebAssembly at all.
    #[error(
        "the body is not WebAssembly (no \\0asm header): upload the .wasm component built from your plugin"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build for wasm32-wasip2, or wrap the module \
         with the WASI preview1 adapter (see plugins/README.md)"
    )]
    CoreModule,
    /// It imports interfaces this host does not provide.
    #[error(
        "the component imports what this host does not provide: {}. The host links WASI 0.2 cli, io, \
         clocks, random, filesystem and sockets (nothing granted) and {WIT_PACKAGE}'s types. Fix: {fix}",
        imports.join(", ")
    )]
    UnsupportedImports {
        /// The offending import names.
        imports: Vec<String>,
        /// What to do, for the toolchain that built it.
        fix: String,
    },
    /// The component is not ready on this host yet (a pulse never waits for it).
    #[error("the plugin is still being prepared on this host (loaded from its compiled cache or compiled)")]
    NotReady,
    /// Its bytes do not parse as a component.
    #[error("the component is malformed: {0}")]
    Malformed(String),
    /// wasmtime could not compile it.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// It does not implement the world.
    #[error("the component implements neither the {WIT_PACKAGE} `plugin` world nor the earlier {earlier} one: {0}", earlier = WIT_PACKAGES[1])]
    WrongWorld(String),
    /// The call ran past its deadline.
    #[error(
        "{call}() did not return within {} ms (stopped after {} ms)",
        timeout.as_millis(),
        elapsed.as_millis()
    )]
    Timeout {
        /// The export.
        call: &'static str,
        /// The deadline.
        timeout: Duration,
        /// How long it ran until it was stopped.
        elapsed: Duration,
    },
    /// The call tried to use more memory than allowed.
    #[error("{call}() exceeded the plugin memory limit of {limit} bytes (PULSEHOST_PLUGIN_MEMORY_BYTES)")]
    OutOfMemory {
        /// The export.
        call: &'static str,
        /// The cap.
        limit: usize,
    },
    /// The call trapped.
    #[error("{call}() trapped ({message}){}", guest.as_ref().map(|g| format!("; the plugin said: {g}")).unwrap_or_default())]
    Trap {
        /// The export.
        call: &'static str,
        /// wasmtime's description.
        message: String,
        /// The end of what the guest wrote to stderr before it trapped (a
        /// panic message, a Python traceback), if anything.
        guest: Option<String>,
    },
    /// `describe()` described more than the host keeps.
    #[error(
        "the plugin's description is {size} bytes as JSON; the limit is {limit} bytes \
         (PULSEHOST_MAX_MANIFEST_BYTES): shorten descriptions and scripts, or split the plugin"
    )]
    ManifestTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// `describe()` returned an error.
    #[error("describe() returned an error: {0}")]
    Described(String),
    /// The manifest breaks the rules.
    #[error("the plugin's description has {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

/// Counts a finished call in the metrics, by what became of it.
pub(super) fn observe<T>(call: &'static str, started: Instant, answer: &Result<T, PluginError>) {
    let outcome = match answer {
        Ok(_) => "ok",
        Err(PluginError::Timeout { .. }) => "timeout",
        Err(PluginError::OutOfMemory { .. }) => "out_of_memory",
        Err(PluginError::Trap { .. }) => "trap",
        Err(_) => "error",
    };
    crate::metrics::plugin_called(call, outcome, started.elapsed().as_secs_f64());
}

/// Turns a bounded call's result into the answer or the error that says why not.
pub(super) fn outcome<T>(
    call: &'static str,
    started: Instant,
    result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    store: &wasmtime::Store<SandboxState>,
    limits: &Limits,
) -> Result<T, PluginError> {
    let timeout = || PluginError::Timeout {
        call,
        timeout: limits.call_timeout,
        elapsed: started.elapsed(),
    };
    let error = match result {
        Err(_) => return Err(timeout()),
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(error)) => error,
    };
    if error
        .downcast_ref::<wasmtime::Trap>()
        .is_some_and(|trap| *trap == wasmtime::Trap::Interrupt)
    {
        return Err(timeout());
    }
    if sandbox::hit_memory_limit(&error) {
        return Err(PluginError::OutOfMemory {
            call,
            limit: limits.memory_bytes,
        });
    }
    // The root cause (`wasm trap: …`) without wasmtime's backtrace of unnamed
    // functions; the guest's own words say more.
    Err(PluginError::Trap {
        call,
        message: error.root_cause().to_string(),
        guest: sandbox::last_words(store),
    })
}
