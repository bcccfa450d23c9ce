//! `pulsehost serve` and `pulsehost migrate`: wire configuration, database,
//! plugin host, runner and HTTP server together.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::exec::sandbox::{ProbeOptions, Sandbox};
use crate::plugin::PluginHost;
use crate::pulse::{PulseConfig, Pulser};
use crate::runner::{Runner, RunnerConfig};
use crate::store::embedded::EmbeddedPostgres;
use crate::store::{Db, DbOptions};

/// Runs the host until SIGINT or SIGTERM.
pub fn serve() -> anyhow::Result<()> {
    init_logging();
    let mut config = Config::from_env()?;
    // Same-user processes (steps, when the host is not root) cannot read this
    // process's memory or environment, nor attach to it.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot make the host non-dumpable");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    protect_data_dir(&config.data_dir)?;
    let runner_config = runner_config(&config)?;
    if let Some(user) = &runner_config.sandbox.run_as {
        crate::exec::sandbox::user::check_reachable(&runner_config.data_dir.join("work"), user)
            .map_err(anyhow::Error::msg)?;
        config.python = python_for(&config.python, user);
    }
    let (embedded, url) = match &config.database_url {
        Some(url) => (None, url.clone()),
        None => {
            let pg = EmbeddedPostgres::start(&config.data_dir)?;
            let url = pg.url();
            (Some(pg), url)
        }
    };
    let db = Db::connect_with(
        &url,
        DbOptions {
            pool_size: config.db_pool_size,
        },
    )
    .context("cannot open the database")?;
    crate::exec::become_subreaper();
    if config.tokens.admin.is_none() {
        config.tokens.admin = Some(generated_admin_token(&config.data_dir)?);
    }
    let plugins = PluginHost::new(config.plugin_limits(), Some(config.compiled_dir.clone()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        crate::exec::reaper::start();
        // Runs a previous host left running are finished (and retried) by
        // housekeeping once this host has reached the database for a lease.
        let runner = Runner::new(db.clone(), runner_config, config.python.clone());
        let shutdown = CancellationToken::new();
        let dispatcher = runner
            .start(shutdown.clone())
            .await
            .map_err(|e| std::io::Error::other(format!("cannot register this host: {e}")))?;
        let alerter = Arc::new(crate::alerts::Alerter::new(db.clone(), config.alerts.clone()));
        if config.mode == crate::config::Mode::Server {
            tokio::spawn(Arc::clone(&alerter).run(shutdown.clone()));
        }
        let draining = Arc::new(AtomicBool::new(false));
        let warmed = Arc::new(AtomicBool::new(false));
        crate::pulse::warm::active(db.clone(), plugins.clone(), Arc::clone(&warmed));
        let state = AppState {
            db: db.clone(),
            plugins: plugins.clone(),
            runner: Arc::clone(&runner),
            tokens: config.tokens.clone(),
            pulse_signing: config.pulse_signing.clone(),
            rules: config.upload_rules(),
            max_plugin_bytes: config.max_plugin_bytes,
            keep_versions: config.keep_versions,
            draining: Arc::clone(&draining),
            pulser: Arc::new(Pulser::new(db.clone(), plugins.clone(), pulse_config(&config))),
            pulse_wait_max: config.pulse_wait_max,
            warmed,
            metrics_public: config.metrics_public,
            expected_pulse_interval: config.expected_pulse_interval,
            alerter,
        };
        let served = match api::serve(state, &config.listen) {
            Ok(server) => {
                let handle = server.handle();
                let mut server = tokio::spawn(server);
                tokio::select! {
                    ended = &mut server => flatten(ended),
                    signal = stop_signal() => {
                        tracing::info!(signal, "shutting down: pulses get 503, running runs get the shutdown grace");
                        draining.store(true, Ordering::SeqCst);
                        tokio::select! {
                            _ = runner.drain(config.shutdown_grace) => {}
                            again = stop_signal() => {
                                tracing::warn!(signal = again, "second signal: cancelling every run now");
                                runner.drain(std::time::Duration::ZERO).await;
                            }
                        }
                        handle.stop(true).await;
                        flatten(server.await)
                    }
                }
            }
            Err(e) => Err(e),
        };
        shutdown.cancel();
        let _ = dispatcher.await;
        // Every run has ended: this host's cgroups go.
        runner.release_cgroups();
        served
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(embedded);
    result.with_context(|| format!("cannot serve on {}", config.listen))
}

/// Waits for SIGTERM or SIGINT and names it.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for signals; stop the host with SIGKILL");
            std::future::pending().await
        }
    }
}

fn flatten(ended: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    ended.unwrap_or_else(|e| Err(std::io::Error::other(format!("the HTTP server stopped: {e}"))))
}

/// Applies migrations to `DATABASE_URL` and exits.
pub fn migrate() -> anyhow::Result<()> {
    init_logging();
    let config = Config::from_env()?;
    let url = config
        .database_url
        .context("set DATABASE_URL to the database to migrate")?;
    Db::connect(&url).context("migration failed")?;
    println!("migrations applied");
    Ok(())
}

fn pulse_config(config: &Config) -> PulseConfig {
    let duration = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    PulseConfig {
        catch_up_max: config.catch_up_max,
        on_time: duration(config.on_time),
        idempotency_window: duration(config.idempotency_window),
    }
}

fn runner_config(config: &Config) -> anyhow::Result<RunnerConfig> {
    // Unique per process even where every container's host process is pid 1.
    let nonce: u32 = rand::random();
    let host_id = format!("{}-{}-{nonce:08x}", hostname(), std::process::id());
    let settings = &config.sandbox;
    let sandbox = Sandbox::probe(&ProbeOptions {
        run_as: settings.run_as.clone(),
        policy: settings.policy,
        off: settings.off.clone(),
        host_id: host_id.clone(),
        create_user: true,
    })
    .map_err(anyhow::Error::msg)?;
    for (protection, missing) in &sandbox.offers {
        if let Some(reason) = missing {
            tracing::warn!(protection = protection.as_str(), "{reason}");
        }
    }
    Ok(RunnerConfig {
        host_id,
        machine: hostname(),
        data_dir: std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone()),
        max_concurrent_runs: config.max_concurrent_runs,
        default_run_timeout: config.default_run_timeout,
        kill_grace: config.kill_grace,
        output_cap_bytes: config.output_cap_bytes,
        env_allow: config.env_allow.clone(),
        binary_dirs: crate::exec::BinaryDirs::new(config.binary_dirs.clone()),
        lease: config.lease,
        hook_failures_before_pause: config.hook_failures_before_pause,
        retention: crate::runner::Retention {
            days: config.retain_days,
            missed_days: config.retain_missed_days,
            every: config.retention_interval,
        },
        sandbox: Arc::new(sandbox),
        step_limits: settings.limits.clone(),
        resources: crate::exec::resources::ResourceCache::new(
            std::path::absolute(&config.data_dir)
                .unwrap_or_else(|_| config.data_dir.clone())
                .join("resources"),
            settings.resource_max_bytes,
            settings.resource_cache_bytes,
        ),
        service_lease: (config.mode == crate::config::Mode::Server).then_some(config.service_lease),
        serverless: config.mode == crate::config::Mode::Serverless,
        capacity: crate::runner::policy::Room {
            memory_bytes: settings.capacity_memory_bytes.min(i64::MAX as u64) as i64,
            cpu_millicores: settings.capacity_cpu_millicores.min(i64::MAX as u64) as i64,
        },
    })
}

/// The interpreter Python steps' venvs are made from: `configured`, unless
/// the step user cannot run it (an interpreter under root's home, as pyenv
/// installs) and a system one exists that it can.
fn python_for(configured: &str, user: &crate::exec::sandbox::user::RunAs) -> String {
    use crate::exec::sandbox::user::check_reachable;
    let usable = |program: &Path| {
        std::fs::canonicalize(program)
            .is_ok_and(|real| check_reachable(&real, user).is_ok() && real.is_file())
    };
    let found = crate::exec::python::resolve(configured);
    if usable(&found) {
        return configured.to_string();
    }
    let fallback = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| usable(Path::new(p)));
    match fallback {
        Some(system) => {
            tracing::info!(unusable = %found.display(), using = system, user = %user.name, "the step user cannot run the configured Python; using the system's");
            system.to_string()
        }
        None => {
            tracing::warn!(python = %found.display(), user = %user.name, "the step user cannot run this Python: Python steps will fail; set PULSEHOST_PYTHON to an interpreter outside private home directories");
            configured.to_string()
        }
    }
}

/// Modes of the data dir: steps may walk through it to their scratch
/// directory (`work/`, each run's owned by the step user) and read the venvs,
/// but not list it nor read the token, the database password, the database
/// or the compiled plugins.
fn protect_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let modes = [
        ("", 0o711),
        ("work", 0o711),
        ("venvs", 0o711),
        ("compiled", 0o700),
    ];
    for (dir, mode) in modes {
        let path = data_dir.join(dir);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    Ok(())
}

/// With no `PULSEHOST_ADMIN_TOKEN`, an admin token is generated once and kept in
/// the data dir (mode 0600), where the CLI on the same machine finds it.
fn generated_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok(existing.trim().to_string());
        }
    }
    let token: String = {
        use rand::Rng;
        let bytes: [u8; 24] = rand::thread_rng().gen();
        hex::encode(bytes)
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{token}")?;
    tracing::info!(path = %path.display(), "PULSEHOST_ADMIN_TOKEN is not set; generated an admin token");
    Ok(token)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
