//! Getting plugins ready without making anyone wait: at start the host loads
//! every active version's component in the background (its compiled artifact
//! from disk, or its bytes from PostgreSQL when another replica uploaded it),
//! and a pulse that meets a component that is not ready starts the same
//! loading and defers the question to a later pulse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::plugin::{FetchBytes, PluginHost, Readiness};
use crate::store::{plugins, Db};

/// Reads the bytes of plugin version `version_id` when they must be compiled.
pub fn fetch_from(db: &Db, version_id: i64) -> FetchBytes {
    let db = db.clone();
    Box::new(move || {
        db.run_blocking(|tx| plugins::component(tx, version_id))
            .map_err(|e| e.to_string())
    })
}

/// Starts loading the component `sha256` of version `version_id` unless it is
/// ready or already loading.
pub fn start(db: &Db, host: &PluginHost, sha256: &str, version_id: i64) {
    if matches!(host.readiness(sha256), Readiness::Absent) {
        let (host, sha, fetch) = (host.clone(), sha256.to_string(), fetch_from(db, version_id));
        tokio::spawn(async move {
            if let Err(e) = host.warm(&sha, fetch).await {
                tracing::warn!(component = %sha, error = %e, "could not prepare a plugin");
            }
        });
    }
}

/// Loads every active version's component, one after the other, in the
/// background; logs how long it took and then sets `warmed`.
pub fn active(db: Db, host: PluginHost, warmed: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let versions = loop {
            match db.run(plugins::active_components).await {
                Ok(versions) => break versions,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list the active plugins to warm; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        let count = versions.len();
        for (version_id, sha) in versions {
            if let Err(e) = host.warm(&sha, fetch_from(&db, version_id)).await {
                tracing::warn!(component = %sha, error = %e, "could not prepare a plugin");
            }
        }
        tracing::info!(
            components = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugins warmed"
        );
        warmed.store(true, Ordering::SeqCst);
    })
}
