//! HTTP: the only module that speaks actix-web. Routes, authentication, request
//! and response shapes, and the mapping of every stage's errors to statuses.

mod auth;
mod dashboard;
mod error;
mod filters;
mod health;
mod history;
mod manage;
mod plugins;
mod pulse;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};

pub use error::ApiError;

use crate::config::Tokens;
use crate::plugin::{PluginHost, Rules};
use crate::runner::Runner;
use crate::store::Db;

/// What every handler can reach.
pub struct AppState {
    /// The database.
    pub db: Db,
    /// Compiles and calls plugins.
    pub plugins: PluginHost,
    /// Executes queued runs.
    pub runner: Arc<Runner>,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// Upload validation rules.
    pub rules: Rules,
    /// Largest accepted upload.
    pub max_plugin_bytes: usize,
    /// Versions per plugin whose component bytes are kept.
    pub keep_versions: u32,
    /// Evaluates pulses.
    pub pulser: Arc<crate::pulse::Pulser>,
    /// Longest a `?wait=true` pulse holds its answer.
    pub pulse_wait_max: std::time::Duration,
    /// Set when the host is shutting down: pulses are refused with 503.
    pub draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set once every active plugin was loaded after start.
    pub warmed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `/metrics` needs no token.
    pub metrics_public: bool,
    /// Longest expected gap between pulses.
    pub expected_pulse_interval: std::time::Duration,
}

/// Binds the API on `listen`. The returned server serves once polled (await or
/// spawn it) and stops through [`actix_web::dev::Server::handle`]: it does not
/// handle signals itself, the caller drains first (see `cli::serve`).
pub fn serve(state: AppState, listen: &str) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
        .workers(2)
        .disable_signals()
        .shutdown_timeout(10)
        .bind(listen)?;
    tracing::info!(listen, "pulsehost listening");
    Ok(server.run())
}

/// Every route, with JSON errors for malformed paths and queries.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request(format!("bad query string: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::bad_request(format!("bad path: {e}")).into()),
    )
    .configure(dashboard::routes)
    .route("/healthz", web::get().to(health::live))
    .route("/readyz", web::get().to(health::ready))
    .route("/metrics", web::get().to(health::metrics))
    .route("/v1/plugins", web::post().to(plugins::upload))
    .route("/v1/plugins", web::get().to(plugins::list))
    .route("/v1/plugins/{name}", web::delete().to(plugins::retire))
    .route(
        "/v1/plugins/{name}/versions",
        web::get().to(plugins::list_versions),
    )
    .route(
        "/v1/plugins/{name}/versions/{version}/activate",
        web::post().to(plugins::activate),
    )
    .route("/v1/tasks", web::get().to(history::tasks))
    .route("/v1/tasks/{id}", web::get().to(history::task))
    .route("/v1/tasks/{id}/stats", web::get().to(history::task_stats))
    .route("/v1/stats", web::get().to(history::all_stats))
    .route("/v1/tasks/{id}/run", web::post().to(manage::trigger))
    .route("/v1/tasks/{id}/resume", web::post().to(manage::resume))
    .route("/v1/runs/{id}/cancel", web::post().to(manage::cancel))
    .route("/v1/pulse", web::post().to(pulse::pulse))
    .route("/v1/pulses", web::get().to(pulse::list))
    .route("/v1/runs", web::get().to(history::runs))
    .route("/v1/runs/{id}", web::get().to(history::run))
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see the README's API section",
        ))
    }));
}
