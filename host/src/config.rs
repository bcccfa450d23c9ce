//! Server configuration, read from the environment in one place. Every variable
//! is listed in the README's configuration table; a malformed value is an error
//! that names the variable, never a silent default.

mod alerts;
mod mode;
mod sandbox;
mod signing;

use std::path::PathBuf;
use std::time::Duration;

pub use mode::Mode;
pub use sandbox::SandboxSettings;

/// Everything `pulsehost serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`PULSEHOST_LISTEN`).
    pub listen: String,
    /// Where the embedded database, venvs and scratch directories live (`PULSEHOST_DATA_DIR`).
    pub data_dir: PathBuf,
    /// External PostgreSQL; None starts the embedded cluster (`DATABASE_URL`).
    pub database_url: Option<String>,
    /// Bearer tokens per role.
    pub tokens: Tokens,
    /// Largest accepted component (`PULSEHOST_MAX_PLUGIN_BYTES`).
    pub max_plugin_bytes: usize,
    /// Linear-memory cap per plugin call (`PULSEHOST_PLUGIN_MEMORY_BYTES`).
    pub plugin_memory_bytes: usize,
    /// Wall-clock limit of one plugin call (`PULSEHOST_PLUGIN_CALL_TIMEOUT_MS`).
    pub plugin_call_timeout: Duration,
    /// Runs executing at once on this host (`PULSEHOST_MAX_CONCURRENT_RUNS`).
    pub max_concurrent_runs: usize,
    /// Run timeout when a task sets none (`PULSEHOST_DEFAULT_RUN_TIMEOUT_MS`).
    pub default_run_timeout: Duration,
    /// Between SIGTERM and SIGKILL of a process group (`PULSEHOST_KILL_GRACE_MS`).
    pub kill_grace: Duration,
    /// Bytes of each stream kept per process (`PULSEHOST_OUTPUT_CAP_BYTES`).
    pub output_cap_bytes: usize,
    /// Interpreter that builds venvs (`PULSEHOST_PYTHON`).
    pub python: String,
    /// Host variables a child may see (`PULSEHOST_ENV_ALLOW`, comma-separated).
    pub env_allow: Vec<String>,
    /// Directories binary steps must live under (`PULSEHOST_BINARY_DIRS`, comma-separated).
    pub binary_dirs: Vec<PathBuf>,
    /// How long a run's lease lasts without renewal (`PULSEHOST_LEASE_MS`).
    pub lease: Duration,
    /// Missed slots run (catch-up `all`) or recorded one by one per task per pulse (`PULSEHOST_CATCH_UP_MAX`).
    pub catch_up_max: usize,
    /// Under catch-up `none`, how late a slot may be and still run (`PULSEHOST_ON_TIME_MS`).
    pub on_time: Duration,
    /// Longest a `?wait=true` pulse holds its answer (`PULSEHOST_PULSE_WAIT_MAX_MS`).
    pub pulse_wait_max: Duration,
    /// Consecutive failures of one hook type that pause a task (`PULSEHOST_HOOK_FAILURES_BEFORE_PAUSE`).
    pub hook_failures_before_pause: u32,
    /// On SIGTERM or SIGINT, how long running runs may go on before they are
    /// cancelled (`PULSEHOST_SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
    /// Connections kept open to PostgreSQL (`PULSEHOST_DB_POOL_SIZE`).
    pub db_pool_size: u32,
    /// Most tasks one plugin may describe (`PULSEHOST_MAX_TASKS_PER_PLUGIN`).
    pub max_tasks_per_plugin: usize,
    /// Largest description a plugin may give, as JSON (`PULSEHOST_MAX_MANIFEST_BYTES`).
    pub max_manifest_bytes: usize,
    /// How long an `Idempotency-Key` is remembered (`PULSEHOST_IDEMPOTENCY_WINDOW_MS`).
    pub idempotency_window: Duration,
    /// Where compiled components are kept (`PULSEHOST_COMPILED_DIR`, default
    /// `<data dir>/compiled`).
    pub compiled_dir: PathBuf,
    /// Machine code of compiled components kept in memory (`PULSEHOST_PLUGIN_CACHE_BYTES`).
    pub plugin_cache_bytes: usize,
    /// Plugin instances come from wasmtime's pooling allocator (`PULSEHOST_PLUGIN_POOLING`).
    pub plugin_pooling: bool,
    /// Versions per plugin whose component bytes are kept (`PULSEHOST_KEEP_VERSIONS`);
    /// older ones are pruned, never the active one's.
    pub keep_versions: u32,
    /// `/metrics` answers without a token (`PULSEHOST_METRICS_PUBLIC`).
    pub metrics_public: bool,
    /// Longest expected gap between pulses before `/readyz` calls the last
    /// one late (`PULSEHOST_EXPECTED_PULSE_INTERVAL`, e.g. `5m`).
    pub expected_pulse_interval: Duration,
    /// Days of history kept (`PULSEHOST_RETAIN_DAYS`).
    pub retain_days: u32,
    /// Days `missed` runs are kept (`PULSEHOST_RETAIN_MISSED_DAYS`, at most
    /// the retention, which is the default).
    pub retain_missed_days: u32,
    /// Time between two retention passes (`PULSEHOST_RETENTION_INTERVAL`, default 1h).
    pub retention_interval: Duration,
    /// How native processes are confined.
    pub sandbox: SandboxSettings,
    /// Keys and window of signed pulses.
    pub pulse_signing: PulseSigning,
    /// Host-wide alerts and the key alerts are signed with.
    pub alerts: crate::alerts::AlertSettings,
    /// Server or serverless (`PULSEHOST_MODE`).
    pub mode: Mode,
    /// How long a service's lease lasts without renewal (`PULSEHOST_SERVICE_LEASE_MS`).
    pub service_lease: Duration,
}

/// Signed pulses: `POST /v1/pulse` with an HMAC-SHA256 signature instead of a
/// bearer token (see [`crate::signing`]).
#[derive(Debug, Clone, Default)]
pub struct PulseSigning {
    /// Active keys (`PULSEHOST_PULSE_SIGNING_KEYS`, comma-separated, at most
    /// two so that a key can be rotated); empty accepts no signature.
    pub keys: Vec<String>,
    /// How far a signature's timestamp may be from the database's clock, and
    /// how long a used signature is remembered
    /// (`PULSEHOST_PULSE_SIGNATURE_WINDOW`, default 5m).
    pub window: Duration,
}

/// Shortest signing key accepted: 16 bytes leave no key guessable.
pub const MIN_SIGNING_KEY_BYTES: usize = 16;

/// Bearer tokens, one per role. A role whose token is unset admits nobody except
/// through the admin token.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Everything (`PULSEHOST_ADMIN_TOKEN`).
    pub admin: Option<String>,
    /// `POST /v1/pulse` only (`PULSEHOST_PULSE_TOKEN`).
    pub pulse: Option<String>,
    /// History and listings (`PULSEHOST_READ_TOKEN`).
    pub read: Option<String>,
}

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    reason: String,
}

/// Default cap on a component upload: Python plugins embed CPython (~18 MB).
pub const DEFAULT_MAX_PLUGIN_BYTES: usize = 64 << 20;
/// Default linear-memory cap of one plugin call.
pub const DEFAULT_PLUGIN_MEMORY_BYTES: usize = 256 << 20;
/// Default limit of one plugin call; `describe()` builds a list, it never needs long.
pub const DEFAULT_PLUGIN_CALL_TIMEOUT_MS: u64 = 5_000;
/// Default output kept per stream per process.
pub const DEFAULT_OUTPUT_CAP_BYTES: usize = 1 << 20;
/// Default days of history kept.
pub const DEFAULT_RETAIN_DAYS: u64 = 30;
/// Default cap on the tasks of one plugin.
pub const DEFAULT_MAX_TASKS_PER_PLUGIN: u64 = 10_000;
/// Default cap on a plugin's description as JSON: ten thousand tasks with
/// short scripts fit; a 20 MB description does not.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Default machine code kept in memory: a few dozen Rust plugins and several
/// Python ones (each ~60 MB compiled).
pub const DEFAULT_PLUGIN_CACHE_BYTES: u64 = 512 << 20;
/// Whether plugin calls instantiate from the pooling allocator by default.
pub const DEFAULT_PLUGIN_POOLING: bool = true;
/// Default number of versions per plugin whose bytes are kept for rollback.
pub const DEFAULT_KEEP_VERSIONS: u64 = 10;
/// Default memory of an `Idempotency-Key`: a day, as hosted crons retry within minutes.
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3600 * 1000;

impl Config {
    /// The limits plugin calls run under.
    pub fn plugin_limits(&self) -> crate::plugin::Limits {
        crate::plugin::Limits {
            max_component_bytes: self.max_plugin_bytes,
            memory_bytes: self.plugin_memory_bytes,
            call_timeout: self.plugin_call_timeout,
            max_manifest_bytes: self.max_manifest_bytes,
            cache_bytes: self.plugin_cache_bytes,
            pooling: self.plugin_pooling,
        }
    }

    /// The rules an upload's tasks are checked against.
    pub fn upload_rules(&self) -> crate::plugin::Rules {
        crate::plugin::Rules {
            binary_dirs: crate::exec::BinaryDirs::new(self.binary_dirs.clone()),
            max_tasks: self.max_tasks_per_plugin,
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let list = |name: &str, default: &str| -> Vec<String> {
            get(name)
                .unwrap_or_else(|| default.to_string())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let data_dir = PathBuf::from(get("PULSEHOST_DATA_DIR").unwrap_or_else(|| "./.pulsehost".into()));
        let retain_days = positive(&get, "PULSEHOST_RETAIN_DAYS", DEFAULT_RETAIN_DAYS)?.min(100 * 365);
        let (mode, service_lease) = mode::read(&get)?;
        Ok(Config {
            listen: get("PULSEHOST_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir: data_dir.clone(),
            database_url: get("DATABASE_URL"),
            tokens: Tokens {
                admin: get("PULSEHOST_ADMIN_TOKEN"),
                pulse: get("PULSEHOST_PULSE_TOKEN"),
                read: get("PULSEHOST_READ_TOKEN"),
            },
            max_plugin_bytes: number(
                &get,
                "PULSEHOST_MAX_PLUGIN_BYTES",
                DEFAULT_MAX_PLUGIN_BYTES as u64,
            )? as usize,
            plugin_memory_bytes: number(
                &get,
                "PULSEHOST_PLUGIN_MEMORY_BYTES",
                DEFAULT_PLUGIN_MEMORY_BYTES as u64,
            )? as usize,
            plugin_call_timeout: millis(
                &get,
                "PULSEHOST_PLUGIN_CALL_TIMEOUT_MS",
                DEFAULT_PLUGIN_CALL_TIMEOUT_MS,
            )?,
            max_concurrent_runs: number(&get, "PULSEHOST_MAX_CONCURRENT_RUNS", 4)?.max(1) as usize,
            default_run_timeout: millis(&get, "PULSEHOST_DEFAULT_RUN_TIMEOUT_MS", 3_600_000)?,
            kill_grace: millis(&get, "PULSEHOST_KILL_GRACE_MS", 5_000)?,
            output_cap_bytes: number(
                &get,
                "PULSEHOST_OUTPUT_CAP_BYTES",
                DEFAULT_OUTPUT_CAP_BYTES as u64,
            )? as usize,
            python: get("PULSEHOST_PYTHON").unwrap_or_else(|| "python3".into()),
            env_allow: list("PULSEHOST_ENV_ALLOW", "PATH,HOME,LANG,TZ"),
            binary_dirs: list("PULSEHOST_BINARY_DIRS", "/usr/bin,/bin,/usr/local/bin")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            lease: std::time::Duration::from_millis(positive(&get, "PULSEHOST_LEASE_MS", 30_000)?),
            catch_up_max: number(&get, "PULSEHOST_CATCH_UP_MAX", 100)?.clamp(1, 100_000) as usize,
            on_time: millis(&get, "PULSEHOST_ON_TIME_MS", 90_000)?,
            pulse_wait_max: millis(&get, "PULSEHOST_PULSE_WAIT_MAX_MS", 900_000)?,
            hook_failures_before_pause: number(&get, "PULSEHOST_HOOK_FAILURES_BEFORE_PAUSE", 3)?
                .clamp(1, 1000) as u32,
            shutdown_grace: millis(&get, "PULSEHOST_SHUTDOWN_GRACE_MS", 30_000)?,
            db_pool_size: positive(
                &get,
                "PULSEHOST_DB_POOL_SIZE",
                u64::from(crate::store::DEFAULT_POOL_SIZE),
            )?
            .min(1000) as u32,
            max_tasks_per_plugin: positive(
                &get,
                "PULSEHOST_MAX_TASKS_PER_PLUGIN",
                DEFAULT_MAX_TASKS_PER_PLUGIN,
            )? as usize,
            max_manifest_bytes: positive(&get, "PULSEHOST_MAX_MANIFEST_BYTES", DEFAULT_MAX_MANIFEST_BYTES)?
                as usize,
            idempotency_window: millis(
                &get,
                "PULSEHOST_IDEMPOTENCY_WINDOW_MS",
                DEFAULT_IDEMPOTENCY_WINDOW_MS,
            )?,
            compiled_dir: get("PULSEHOST_COMPILED_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("compiled")),
            plugin_cache_bytes: positive(&get, "PULSEHOST_PLUGIN_CACHE_BYTES", DEFAULT_PLUGIN_CACHE_BYTES)?
                as usize,
            plugin_pooling: flag(&get, "PULSEHOST_PLUGIN_POOLING", DEFAULT_PLUGIN_POOLING)?,
            keep_versions: positive(&get, "PULSEHOST_KEEP_VERSIONS", DEFAULT_KEEP_VERSIONS)?
                .min(u64::from(u32::MAX)) as u32,
            metrics_public: flag(&get, "PULSEHOST_METRICS_PUBLIC", false)?,
            expected_pulse_interval: duration(&get, "PULSEHOST_EXPECTED_PULSE_INTERVAL", 300)?,
            retain_days: retain_days as u32,
            retention_interval: duration(&get, "PULSEHOST_RETENTION_INTERVAL", 3600)?,
            retain_missed_days: positive(&get, "PULSEHOST_RETAIN_MISSED_DAYS", retain_days)?.min(retain_days)
                as u32,
            sandbox: sandbox::read(&get)?,
            pulse_signing: signing::read(&get)?,
            alerts: alerts::read(&get, duration(&get, "PULSEHOST_EXPECTED_PULSE_INTERVAL", 300)?)?,
            mode,
            service_lease,
        })
    }
}

fn flag(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(value) => Err(ConfigError {
            name,
            value,
            reason: "expected true or false".into(),
        }),
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError {
            name,
            value,
            reason: "expected a whole non-negative number".into(),
        }),
    }
}

fn positive(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match number(get, name, default)? {
        0 => Err(ConfigError {
            name,
            value: "0".into(),
            reason: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

/// A duration written for people (`5m`, `90s`, `1h 30m`).
fn duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default_secs: u64,
) -> Result<Duration, ConfigError> {
    match get(name) {
        None => Ok(Duration::from_secs(default_secs)),
        Some(value) => humantime::parse_duration(value.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or(ConfigError {
                name,
                value,
                reason: "expected a duration such as 5m, 90s or 1h".into(),
            }),
    }
}

fn millis(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    number(get, name, default).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.database_url.is_none());
        assert_eq!(c.output_cap_bytes, 1 << 20);
        assert_eq!(c.env_allow, ["PATH", "HOME", "LANG", "TZ"]);
    }

    #[test]
    fn the_pool_size_is_configurable_and_zero_is_refused() {
        assert_eq!(
            config(&[("PULSEHOST_DB_POOL_SIZE", "3")]).unwrap().db_pool_size,
            3
        );
        let err = config(&[("PULSEHOST_DB_POOL_SIZE", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PULSEHOST_DB_POOL_SIZE") && err.contains("at least 1"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_number_names_the_variable() {
        let err = config(&[("PULSEHOST_KILL_GRACE_MS", "5s")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PULSEHOST_KILL_GRACE_MS"), "{err}");
    }
}
