//! HTTP: the only module that speaks actix-web. Routes, authentication, request
//! and response shapes, and the mapping of every stage's errors to statuses.

mod alerts;
mod auth;
mod dashboard;
mod error;
mod filters;
mod health;
mod history;
mod manage;
mod openapi;
mod plugins;
mod pulse;
mod schedule;
mod services;
mod signed;

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
    /// Keys and window of signed pulses.
    pub pulse_signing: crate::config::PulseSigning,
    /// Upload validation rules.
    pub rules: Rules,
    /// Largest accepted upload.
    pub max_plugin_bytes: usize,
    /// Versions per plugin whose component bytes are kept.
    pub keep_versions: u32,
    /// Evaluates pulses.
    pub pulser: Arc<crate::pulse::Pulser>,
    /// Records and delivers alerts.
    pub alerter: Arc<crate::alerts::Alerter>,
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

/// Declares the JSON API's routes once: [`api_routes`] registers them and
/// lists them, and the OpenAPI document must describe every one listed.
macro_rules! api {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Registers the JSON API's routes on `cfg` (when given) and returns
        /// them as (method, path).
        pub fn api_routes(cfg: Option<&mut web::ServiceConfig>) -> &'static [(&'static str, &'static str)] {
            if let Some(cfg) = cfg {
                $( cfg.route($path, web::$method().to($handler)); )*
            }
            &[$( (stringify!($method), $path) ),*]
        }
    };
}

api! {
    get "/healthz" => health::live,
    get "/readyz" => health::ready,
    get "/metrics" => health::metrics,
    get "/v1/openapi.json" => openapi::document,
    post "/v1/plugins" => plugins::upload,
    get "/v1/plugins" => plugins::list,
    delete "/v1/plugins/{name}" => plugins::retire,
    get "/v1/plugins/{name}/versions" => plugins::list_versions,
    post "/v1/plugins/{name}/versions/{version}/activate" => plugins::activate,
    get "/v1/tasks" => history::tasks,
    get "/v1/tasks/{id}" => history::task,
    get "/v1/tasks/{id}/stats" => history::task_stats,
    get "/v1/stats" => history::all_stats,
    post "/v1/tasks/{id}/run" => manage::trigger,
    post "/v1/tasks/{id}/resume" => manage::resume,
    post "/v1/tasks/{id}/pause" => schedule::pause,
    post "/v1/tasks/{id}/unpause" => schedule::unpause,
    get "/v1/tasks/{id}/schedule" => schedule::preview,
    post "/v1/tasks/{id}/backfill" => schedule::backfill,
    post "/v1/runs/{id}/cancel" => manage::cancel,
    post "/v1/pulse" => pulse::pulse,
    get "/v1/pulses" => pulse::list,
    get "/v1/alerts" => alerts::list,
    get "/v1/services" => services::list,
    get "/v1/services/{id}/log" => services::log,
    get "/v1/runs" => history::runs,
    get "/v1/runs/{id}" => history::run,
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
    .configure(|cfg| _ = api_routes(Some(cfg)))
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see the README's API section",
        ))
    }));
}
