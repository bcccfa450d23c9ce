//! Plugins: the only module that speaks wasmtime. A plugin is a WASI p2
//! component of the `pulsehost:plugin` world. Each call gets a fresh sandboxed
//! store (no preopened directories, no network, no inherited environment, a
//! memory cap).
//!
//! A component is compiled once: at upload, after its imports and exports were
//! read from its bytes ([`surface`]). Its machine code is then kept on disk
//! ([`artifacts`], keyed by sha256 and engine) and in a bounded memory cache
//! ([`cache`]); a host that starts loads the artifacts of active versions in
//! the background, compiling only what it has never seen. Calls never compile:
//! a component that is not ready yet answers [`PluginError::NotReady`].
//!
//! Calls are async and bounded by a wall-clock deadline that holds for every
//! kind of guest wait: the guest yields to the executor at every epoch tick
//! (so a busy loop gives way), WASI's blocking calls (a sleep, a poll) are
//! futures on the host, and the deadline drops the whole call — the guest is
//! gone within a tick of it, wherever it was waiting.

mod artifacts;
mod cache;
mod convert;
mod error;
mod sandbox;
pub mod surface;
pub mod validate;
mod world;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::spec::Manifest;
pub use cache::Readiness;
pub use error::PluginError;
pub use validate::{webhook_problem, Problem, Rules};

use artifacts::{ArtifactDir, Found};
use cache::{Begin, Cache};
use sandbox::SandboxState;
use world::Pre;

/// The newest WIT package this host implements (plugins are built against it).
pub const WIT_PACKAGE: &str = "pulsehost:plugin@0.2.0";

/// Every WIT package this host implements, newest first.
pub const WIT_PACKAGES: [&str; 2] = [WIT_PACKAGE, "pulsehost:plugin@0.1.0"];

/// How often the epoch advances; a call's deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A component that passed inspection.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// What `describe()` returned, validated.
    pub manifest: Manifest,
    /// The contract it was built against, e.g. `pulsehost:plugin@0.2.0`.
    pub wit_package: &'static str,
}

/// What a component said about itself, not validated yet.
#[derive(Debug, Clone)]
pub struct Described {
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// What `describe()` returned.
    pub manifest: Manifest,
    /// The contract it was built against.
    pub wit_package: &'static str,
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
    /// Machine code kept in memory (least recently used dropped beyond it).
    pub cache_bytes: usize,
    /// Instantiate from wasmtime's pooling allocator (memories and tables
    /// reserved once and reused) instead of allocating per call.
    pub pooling: bool,
}

/// Plugin calls in flight at once on a host; more wait for a turn (within
/// their caller's deadline). The pooling allocator is sized for them.
const CONCURRENT_CALLS: u32 = 16;

/// Reads a component's bytes (from PostgreSQL) when it must be compiled;
/// `None` when they are gone.
pub type FetchBytes = Box<dyn FnOnce() -> Result<Option<Vec<u8>>, String> + Send>;

/// Where a preparation gets the component from when no artifact is on disk.
enum Source {
    /// The bytes of an upload: a failed upload leaves nothing behind.
    Upload(Arc<[u8]>),
    /// Bytes fetched on demand: the artifact is persisted once compiled.
    Stored(FetchBytes),
}

/// The engine, linker and compiled-component caches shared by all calls.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    linker: Arc<Linker<SandboxState>>,
    cache: Arc<Mutex<Cache>>,
    artifacts: Option<ArtifactDir>,
    calls: Arc<tokio::sync::Semaphore>,
    limits: Limits,
}

impl PluginHost {
    /// Builds the engine and starts the epoch ticker thread. Compiled
    /// components are persisted under `artifact_dir` (None: memory only).
    pub fn new(limits: Limits, artifact_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        if limits.pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            // Generous per call: a componentize-py component holds several core
            // instances, memories and tables.
            pool.total_component_instances(CONCURRENT_CALLS)
                .total_core_instances(CONCURRENT_CALLS * 32)
                .total_memories(CONCURRENT_CALLS * 16)
                .total_tables(CONCURRENT_CALLS * 32)
                .total_stacks(CONCURRENT_CALLS)
                .max_memory_size(limits.memory_bytes);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
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
        let artifacts = artifact_dir.map(|dir| ArtifactDir::new(dir, &engine));
        Ok(PluginHost {
            cache: Arc::new(Mutex::new(Cache::new(limits.cache_bytes))),
            engine,
            linker: Arc::new(linker),
            artifacts,
            calls: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS as usize)),
            limits,
        })
    }

    /// The deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        self.limits.call_timeout
    }

    /// Where the compiled artifact of `sha256` lives on disk, if anywhere.
    pub fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        self.artifacts.as_ref().map(|a| a.path(sha256))
    }

    /// Checks an upload end to end: size, header, imports and exports, one
    /// compile, `describe()` inside the sandbox, then every task against
    /// `rules`. The compiled component stays provisional until [`Self::keep`]
    /// (the upload was recorded) or [`Self::discard`].
    pub async fn inspect(&self, bytes: Arc<[u8]>, rules: &Rules) -> Result<Inspected, PluginError> {
        let Described {
            sha256,
            manifest,
            wit_package,
        } = self.describe(bytes).await?;
        let problems = validate::manifest(&manifest, rules);
        if !problems.is_empty() {
            self.discard(&sha256);
            return Err(PluginError::Invalid(problems));
        }
        Ok(Inspected {
            sha256,
            manifest,
            wit_package,
        })
    }

    /// Everything [`Self::inspect`] does but the validation of the tasks: the
    /// sha256 and what `describe()` returned (provisionally compiled).
    pub async fn describe(&self, bytes: Arc<[u8]>) -> Result<Described, PluginError> {
        if bytes.len() > self.limits.max_component_bytes {
            return Err(PluginError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_component_bytes,
            });
        }
        surface::check(&bytes)?;
        let sha256 = sha256_hex(&bytes);
        let pre = self.prepare(&sha256, Source::Upload(bytes)).await?;
        let described = self.call_describe(&pre).await;
        if described.is_err() {
            self.discard(&sha256);
        }
        described.map(|manifest| Described {
            sha256,
            manifest,
            wit_package: pre.package(),
        })
    }

    /// The upload of `sha256` was recorded: its compiled component stays, and
    /// its artifact is on disk when this returns (so a host stopped right
    /// after an upload still starts without compiling).
    pub async fn keep(&self, sha256: &str) {
        self.lock().confirm(sha256);
        let (Some(artifacts), Some(pre)) = (self.artifacts.clone(), self.lock().ready(sha256)) else {
            return;
        };
        let sha = sha256.to_string();
        let written =
            tokio::task::spawn_blocking(move || persist(&artifacts, &sha, pre.instance_pre().component()))
                .await;
        if let Err(e) = written {
            tracing::warn!(component = %sha256, error = %e, "storing the compiled artifact stopped");
        }
    }

    /// The upload of `sha256` was not recorded: forgets what it compiled.
    pub fn discard(&self, sha256: &str) {
        self.lock().forget_provisional(sha256);
    }

    /// Where the component `sha256` stands on this host.
    pub fn readiness(&self, sha256: &str) -> Readiness {
        self.lock().readiness(sha256)
    }

    /// Makes `sha256` ready: from memory, from its artifact on disk, or by
    /// compiling the bytes `fetch` reads (then persisting the artifact). One
    /// preparation per component runs at a time; others wait for it.
    pub async fn warm(&self, sha256: &str, fetch: FetchBytes) -> Result<(), PluginError> {
        self.prepare(sha256, Source::Stored(fetch)).await.map(drop)
    }

    /// Asks a dynamic schedule whether its task is due, within the call
    /// deadline. A component that is not ready here answers
    /// [`PluginError::NotReady`] at once: warm it and ask again later.
    pub async fn should_run(&self, sha256: &str, ctx: &crate::spec::RunContext) -> Result<bool, PluginError> {
        let pre = self.lock().ready(sha256).ok_or(PluginError::NotReady)?;
        let mut store = sandbox::store(&self.engine, self.limits.memory_bytes);
        let started = Instant::now();
        let result = {
            let call = async {
                let _turn = self.calls.acquire().await?;
                pre.should_run(&mut store, ctx).await
            };
            tokio::time::timeout(self.limits.call_timeout, call).await
        };
        sandbox::log_output(&store, "should-run");
        let answer = error::outcome("should-run", started, result, &store, &self.limits);
        error::observe("should-run", started, &answer);
        answer
    }

    /// Calls `describe()` and checks the size of what it says.
    async fn call_describe(&self, pre: &Pre) -> Result<Manifest, PluginError> {
        let mut store = sandbox::store(&self.engine, self.limits.memory_bytes);
        let started = Instant::now();
        let result = {
            let call = async {
                let _turn = self.calls.acquire().await?;
                pre.describe(&mut store).await
            };
            tokio::time::timeout(self.limits.call_timeout, call).await
        };
        sandbox::log_output(&store, "describe");
        let manifest = error::outcome("describe", started, result, &store, &self.limits);
        error::observe("describe", started, &manifest);
        let manifest = manifest?;
        let manifest = manifest.map_err(PluginError::Described)?;
        let size = serde_json::to_vec(&manifest)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.limits.max_manifest_bytes {
            return Err(PluginError::ManifestTooLarge {
                size,
                limit: self.limits.max_manifest_bytes,
            });
        }
        Ok(manifest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a component from memory, or joins or starts its one preparation
    /// on a blocking thread (which fills the cache itself: callers that stop
    /// waiting leave it running, and later callers wait for it).
    async fn prepare(&self, sha256: &str, source: Source) -> Result<Pre, PluginError> {
        let upload = matches!(source, Source::Upload(_));
        let mut waiting = match self.lock().begin(sha256, upload)? {
            Begin::Ready(pre) => return Ok(pre),
            Begin::Wait(waiting) => waiting,
            Begin::Start(done) => {
                let waiting = done.subscribe();
                let (host, sha) = (self.clone(), sha256.to_string());
                tokio::task::spawn_blocking(move || {
                    let outcome = host.load(&sha, source);
                    host.lock().finish(&sha, &outcome, upload);
                    let _ = done.send(Some(outcome.map(|(pre, _)| pre)));
                });
                waiting
            }
        };
        let stopped = || PluginError::Compile("the compiler stopped".into());
        let outcome = waiting
            .wait_for(Option::is_some)
            .await
            .map_err(|_| stopped())?
            .clone();
        outcome.unwrap_or_else(|| Err(stopped()))
    }

    /// Loads the artifact from disk, or compiles (and, for stored bytes,
    /// persists); links. Returns the component with the size of its code.
    fn load(&self, sha256: &str, source: Source) -> Result<(Pre, usize), PluginError> {
        // An upload compiles its own bytes; stored components load their artifact.
        let from_disk = match source {
            Source::Upload(_) => None,
            Source::Stored(_) => self.artifacts.as_ref(),
        };
        let loaded = match from_disk.map(|a| a.load(&self.engine, sha256)) {
            Some(Found::Loaded(component)) => Some(component),
            Some(Found::Discarded(why)) => {
                tracing::warn!(component = %sha256, %why, "compiled artifact discarded; compiling again");
                None
            }
            Some(Found::Missing) | None => None,
        };
        let component = match (loaded, source) {
            (Some(component), _) => component,
            (None, Source::Upload(bytes)) => self.compile(&bytes)?,
            (None, Source::Stored(fetch)) => {
                let bytes = fetch()
                    .map_err(|e| PluginError::Compile(format!("reading the component: {e}")))?
                    .ok_or_else(|| PluginError::Compile("the component's bytes were pruned".into()))?;
                surface::check(&bytes)?;
                let component = self.compile(&bytes)?;
                if let Some(artifacts) = &self.artifacts {
                    persist(artifacts, sha256, &component);
                }
                component
            }
        };
        let range = component.image_range();
        let weight = (range.end as usize).saturating_sub(range.start as usize);
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(Pre::new)
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        Ok((pre, weight))
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        let started = Instant::now();
        let component =
            Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        tracing::info!(
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "component compiled"
        );
        Ok(component)
    }
}

/// Writes a component's artifact; a failure costs a compile at the next start.
fn persist(artifacts: &ArtifactDir, sha256: &str, component: &Component) {
    match artifacts.store(sha256, component) {
        Ok(path) => tracing::info!(component = %sha256, path = %path.display(), "compiled artifact stored"),
        Err(e) => {
            tracing::warn!(component = %sha256, dir = %artifacts.dir().display(), error = %e, "could not store the compiled artifact")
        }
    }
}

/// sha256 of a component's bytes, hex: how versions and compiled components are keyed.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
