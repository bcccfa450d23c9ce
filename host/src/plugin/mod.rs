//! Plugins: the only module that speaks wasmtime. A plugin is a WASI p2
//! component of the `pulsehost:plugin` world. Each call gets a fresh sandboxed
//! store (no preopened directories, no network, no inherited environment, a
//! memory cap, an epoch deadline); compiled components are cached per sha256 as
//! `PluginPre`, so a call after the first costs an instantiation, not a compile.

mod convert;
mod sandbox;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::spec::Manifest;
pub use validate::{Problem, Rules};

use sandbox::SandboxState;

mod bindings {
    wasmtime::component::bindgen!({ world: "plugin", path: "../wit" });
}

/// The WIT package this host implements.
pub const WIT_PACKAGE: &str = "pulsehost:plugin@0.1.0";

/// How often the epoch advances; a call's deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Magic bytes of every wasm binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Why a component was refused or a call failed. Every message says what to do.
#[derive(Debug, thiserror::Error)]
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
    /// wasmtime could not compile it.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// It does not implement the world.
    #[error("the component does not implement the {WIT_PACKAGE} `plugin` world: {0}")]
    WrongWorld(String),
    /// The call ran past its deadline.
    #[error("{call}() did not return within {} ms", timeout.as_millis())]
    Timeout {
        /// The export.
        call: &'static str,
        /// The deadline.
        timeout: Duration,
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
    #[error("{call}() trapped: {message}")]
    Trap {
        /// The export.
        call: &'static str,
        /// wasmtime's description.
        message: String,
    },
    /// `describe()` returned an error.
    #[error("describe() returned an error: {0}")]
    Described(String),
    /// The manifest breaks the rules.
    #[error("the plugin's description has {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

/// A component that passed inspection.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// What `describe()` returned, validated.
    pub manifest: Manifest,
}

/// Limits every plugin call runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted component.
    pub max_component_bytes: usize,
    /// Linear-memory cap per call.
    pub memory_bytes: usize,
    /// Wall-clock deadline per call.
    pub call_timeout: Duration,
}

/// The engine, linker and compiled-component cache shared by all calls.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    linker: Arc<Linker<SandboxState>>,
    cache: Arc<Mutex<HashMap<String, bindings::PluginPre<SandboxState>>>>,
    limits: Limits,
}

impl PluginHost {
    /// Builds the engine and starts the epoch ticker thread.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("pulsehost-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(PluginHost {
            engine,
            linker: Arc::new(linker),
            cache: Arc::default(),
            limits,
        })
    }

    /// Checks an upload end to end: size, header, compile, world, `describe()`
    /// inside the sandbox, then every task against `rules`. Blocking; call it
    /// from a blocking thread.
    pub fn inspect(&self, bytes: &[u8], rules: &Rules) -> Result<Inspected, PluginError> {
        if bytes.len() > self.limits.max_component_bytes {
            return Err(PluginError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_component_bytes,
            });
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let pre = self.prepare(&sha256, bytes)?;
        let manifest = self.call(&pre, "describe", |plugin, store| plugin.call_describe(store))?;
        let manifest = manifest.map_err(PluginError::Described)?;
        let manifest = convert::manifest(manifest);
        let problems = validate::manifest(&manifest, rules);
        if !problems.is_empty() {
            return Err(PluginError::Invalid(problems));
        }
        Ok(Inspected { sha256, manifest })
    }

    /// Asks a dynamic schedule whether its task is due. `load` fetches the
    /// component's bytes when it is not compiled yet. Blocking.
    pub fn should_run(
        &self,
        sha256: &str,
        load: impl FnOnce() -> Result<Vec<u8>, String>,
        ctx: &crate::spec::RunContext,
    ) -> Result<bool, PluginError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha256)
            .cloned();
        let pre = match cached {
            Some(pre) => pre,
            None => self.prepare(sha256, &load().map_err(PluginError::Compile)?)?,
        };
        let ctx = convert::run_context(ctx);
        self.call(&pre, "should-run", |plugin, store| {
            plugin.call_should_run(store, &ctx)
        })
    }

    /// Compiles (or takes from the cache) and links a component.
    fn prepare(&self, sha256: &str, bytes: &[u8]) -> Result<bindings::PluginPre<SandboxState>, PluginError> {
        if let Some(pre) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(sha256) {
            return Ok(pre.clone());
        }
        check_header(bytes)?;
        let component =
            Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let pre =
            bindings::PluginPre::new(instance_pre).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256.to_string(), pre.clone());
        Ok(pre)
    }

    /// Instantiates in a fresh sandbox and runs one export under the limits.
    fn call<T>(
        &self,
        pre: &bindings::PluginPre<SandboxState>,
        name: &'static str,
        f: impl FnOnce(&bindings::Plugin, &mut wasmtime::Store<SandboxState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let mut store = sandbox::store(&self.engine, self.limits.memory_bytes);
        let ticks = (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let result = pre
            .instantiate(&mut store)
            .and_then(|plugin| f(&plugin, &mut store));
        sandbox::log_output(&store, name);
        result.map_err(|e| self.classify(name, e))
    }

    fn classify(&self, call: &'static str, error: wasmtime::Error) -> PluginError {
        let text = format!("{error:#}");
        if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return PluginError::Timeout {
                    call,
                    timeout: self.limits.call_timeout,
                };
            }
        }
        if sandbox::hit_memory_limit(&error) {
            return PluginError::OutOfMemory {
                call,
                limit: self.limits.memory_bytes,
            };
        }
        PluginError::Trap { call, message: text }
    }
}

fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(PluginError::NotWasm);
    }
    // Bytes 4..8: a core module has version 1 and layer 0; a component has layer 1.
    match bytes[6..8] {
        [0, 0] => Err(PluginError::CoreModule),
        [1, 0] => Ok(()),
        _ => Err(PluginError::Compile("unknown WebAssembly binary layer".into())),
    }
}
