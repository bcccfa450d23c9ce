//! Plugins: the only module that speaks wasmtime. A plugin is a WASI p2
//! component of the `pulsehost:plugin` world. Each call gets a fresh sandboxed
//! store (no preopened directories, no network, no inherited environment, a
//! memory cap); compiled components are cached per sha256 as `PluginPre`, so a
//! call after the first costs an instantiation, not a compile.
//!
//! Calls are async and bounded by a wall-clock deadline that holds for every
//! kind of guest wait: the guest yields to the executor at every epoch tick
//! (so a busy loop gives way), WASI's blocking calls (a sleep, a poll) are
//! futures on the host, and the deadline drops the whole call — the guest is
//! gone within a tick of it, wherever it was waiting.

mod convert;
mod sandbox;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::spec::Manifest;
pub use validate::{Problem, Rules};

use sandbox::SandboxState;

mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        exports: { default: async },
    });
}

/// The WIT package this host implements.
pub const WIT_PACKAGE: &str = "pulsehost:plugin@0.1.0";

/// How often the epoch advances; a call's deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Magic bytes of every wasm binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

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
    /// wasmtime could not compile it.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// It does not implement the world.
    #[error("the component does not implement the {WIT_PACKAGE} `plugin` world: {0}")]
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
    #[error("{call}() trapped: {message}")]
    Trap {
        /// The export.
        call: &'static str,
        /// wasmtime's description.
        message: String,
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
    /// Largest manifest (as JSON) a plugin may describe.
    pub max_manifest_bytes: usize,
}

/// A compiled and linked component, ready to instantiate.
type Pre = bindings::PluginPre<SandboxState>;

/// A component in the cache: compiled, or being compiled (every caller waits
/// for the one compile).
#[derive(Clone)]
enum Compiled {
    Ready(Pre),
    Pending(tokio::sync::watch::Receiver<Option<Result<Pre, PluginError>>>),
}

/// The engine, linker and compiled-component cache shared by all calls.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    linker: Arc<Linker<SandboxState>>,
    cache: Arc<Mutex<HashMap<String, Compiled>>>,
    limits: Limits,
}

impl PluginHost {
    /// Builds the engine and starts the epoch ticker thread.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
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

    /// The deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        self.limits.call_timeout
    }

    /// Checks an upload end to end: size, header, compile, world, `describe()`
    /// inside the sandbox, then every task against `rules`.
    pub async fn inspect(&self, bytes: Arc<[u8]>, rules: &Rules) -> Result<Inspected, PluginError> {
        if bytes.len() > self.limits.max_component_bytes {
            return Err(PluginError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_component_bytes,
            });
        }
        let sha256 = sha256_hex(&bytes);
        let pre = self.prepare(&sha256, bytes).await?;
        let mut store = sandbox::store(&self.engine, self.limits.memory_bytes);
        let started = Instant::now();
        let result = {
            let call = async {
                let plugin = pre.instantiate_async(&mut store).await?;
                plugin.call_describe(&mut store).await
            };
            tokio::time::timeout(self.limits.call_timeout, call).await
        };
        sandbox::log_output(&store, "describe");
        let manifest = self.outcome("describe", started, result)?;
        let manifest = convert::manifest(manifest.map_err(PluginError::Described)?);
        let size = serde_json::to_vec(&manifest)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.limits.max_manifest_bytes {
            return Err(PluginError::ManifestTooLarge {
                size,
                limit: self.limits.max_manifest_bytes,
            });
        }
        let problems = validate::manifest(&manifest, rules);
        if !problems.is_empty() {
            return Err(PluginError::Invalid(problems));
        }
        Ok(Inspected { sha256, manifest })
    }

    /// True when the component with `sha256` is compiled and linked here.
    pub fn is_prepared(&self, sha256: &str) -> bool {
        self.cached(sha256).is_some()
    }

    /// Asks a dynamic schedule whether its task is due, within the call
    /// deadline. `bytes` are the component's, needed only when it is not
    /// compiled here yet.
    pub async fn should_run(
        &self,
        sha256: &str,
        bytes: Option<Arc<[u8]>>,
        ctx: &crate::spec::RunContext,
    ) -> Result<bool, PluginError> {
        let pre = match (self.cached(sha256), bytes) {
            (Some(pre), _) => pre,
            (None, Some(bytes)) => self.prepare(sha256, bytes).await?,
            (None, None) => {
                return Err(PluginError::Compile(format!(
                    "component {sha256} is not compiled on this host and its bytes were not given"
                )))
            }
        };
        let ctx = convert::run_context(ctx);
        let mut store = sandbox::store(&self.engine, self.limits.memory_bytes);
        let started = Instant::now();
        let result = {
            let call = async {
                let plugin = pre.instantiate_async(&mut store).await?;
                plugin.call_should_run(&mut store, &ctx).await
            };
            tokio::time::timeout(self.limits.call_timeout, call).await
        };
        sandbox::log_output(&store, "should-run");
        self.outcome("should-run", started, result)
    }

    fn cached(&self, sha256: &str) -> Option<Pre> {
        match self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(sha256) {
            Some(Compiled::Ready(pre)) => Some(pre.clone()),
            _ => None,
        }
    }

    /// Compiles and links a component, or takes it from the cache. One compile
    /// per component runs at a time, on a blocking thread, and fills the cache
    /// there: callers that stop waiting (a pulse past its budget) leave it
    /// running, and later callers wait for it instead of starting another.
    async fn prepare(&self, sha256: &str, bytes: Arc<[u8]>) -> Result<Pre, PluginError> {
        let mut pending = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(sha256) {
                Some(Compiled::Ready(pre)) => return Ok(pre.clone()),
                Some(Compiled::Pending(pending)) => pending.clone(),
                None => {
                    check_header(&bytes)?;
                    let (done, pending) = tokio::sync::watch::channel(None);
                    cache.insert(sha256.to_string(), Compiled::Pending(pending.clone()));
                    self.compile(sha256.to_string(), bytes, done);
                    pending
                }
            }
        };
        let outcome = pending
            .wait_for(Option::is_some)
            .await
            .map_err(|_| PluginError::Compile("the compiler stopped".into()))?
            .clone();
        outcome.unwrap_or_else(|| Err(PluginError::Compile("the compiler stopped".into())))
    }

    /// Compiles on a blocking thread, caches the result (forgets a failure, so
    /// a later call may try again) and tells the waiters.
    fn compile(
        &self,
        sha: String,
        bytes: Arc<[u8]>,
        done: tokio::sync::watch::Sender<Option<Result<Pre, PluginError>>>,
    ) {
        let (engine, linker, cache) = (
            self.engine.clone(),
            Arc::clone(&self.linker),
            Arc::clone(&self.cache),
        );
        tokio::task::spawn_blocking(move || {
            let outcome = Component::new(&engine, &bytes)
                .map_err(|e| PluginError::Compile(format!("{e:#}")))
                .and_then(|component| {
                    linker
                        .instantiate_pre(&component)
                        .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))
                })
                .and_then(|pre| Pre::new(pre).map_err(|e| PluginError::WrongWorld(format!("{e:#}"))));
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Ok(pre) => _ = cache.insert(sha, Compiled::Ready(pre.clone())),
                Err(_) => _ = cache.remove(&sha),
            }
            drop(cache);
            let _ = done.send(Some(outcome));
        });
    }

    /// Turns a bounded call's result into the answer or the error that says why not.
    fn outcome<T>(
        &self,
        call: &'static str,
        started: Instant,
        result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, PluginError> {
        match result {
            Err(_) => Err(PluginError::Timeout {
                call,
                timeout: self.limits.call_timeout,
                elapsed: started.elapsed(),
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(call, started, error)),
        }
    }

    fn classify(&self, call: &'static str, started: Instant, error: wasmtime::Error) -> PluginError {
        let text = format!("{error:#}");
        if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return PluginError::Timeout {
                    call,
                    timeout: self.limits.call_timeout,
                    elapsed: started.elapsed(),
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

/// sha256 of a component's bytes, hex: how versions and compiled components are keyed.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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
