//! Liveness, readiness and Prometheus metrics. Every answer comes within two
//! seconds whatever state the database is in: a probe that cannot reach it
//! in time reports it unavailable.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::store::{health, stats};

/// Longest a probe waits for the database.
const PROBE_WAIT: Duration = Duration::from_millis(1500);

/// 200 while the process serves HTTP: liveness never depends on the database
/// (restarting a host does not bring PostgreSQL back).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process serves HTTP", body = serde_json::Value)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 when this host can do its work: the database answers, every migration
/// this binary knows is applied, and the active plugins were loaded. Reports
/// the last pulse's age, `late` when it is older than the expected interval
/// (a late pulse is reported, not a reason to take the host out of service).
/// In serverless mode it also evaluates and delivers alerts, so an overdue
/// pulse is reported on the next probe.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "Ready: database, migrations, plugins; with the last pulse's age", body = serde_json::Value), (status = 503, description = "Not ready, naming what is missing", body = serde_json::Value)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    // Serverless: no ticker looks for an overdue pulse, so every probe is a
    // contact that does (delivery cut short here resumes at the next one).
    if state.runner.serverless() {
        let _ = tokio::time::timeout(PROBE_WAIT, state.alerter.round()).await;
    }
    let warmed = state.warmed.load(Ordering::SeqCst);
    let probe = tokio::time::timeout(PROBE_WAIT, state.db.run(health::probe)).await;
    let expected = state.expected_pulse_interval.as_secs_f64();
    let (database, migrations, pulse) = match probe {
        Ok(Ok(p)) => {
            let age = p.last_pulse_age_seconds;
            let pulse = serde_json::json!({
                "last_at": p.last_pulse_at,
                "age_seconds": age,
                "expected_interval_seconds": expected,
                "status": match age {
                    None => "none yet",
                    Some(age) if age > expected => "late",
                    Some(_) => "on time",
                },
            });
            let migrations = if p.pending_migrations == 0 {
                "applied".to_owned()
            } else {
                format!("{} pending", p.pending_migrations)
            };
            ("ok", migrations, pulse)
        }
        Ok(Err(_)) | Err(_) => ("unavailable", "unknown".to_owned(), serde_json::Value::Null),
    };
    let ok = database == "ok" && migrations == "applied" && warmed;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(serde_json::json!({
        "status": if ok { "ready" } else { "not ready" },
        "database": database,
        "migrations": migrations,
        "plugins": if warmed { "warmed" } else { "warming" },
        "pulse": pulse,
        "mode": if state.runner.serverless() { "serverless" } else { "server" },
    }))
}

/// OpenMetrics text: read token, or none when `PULSEHOST_METRICS_PUBLIC=true`.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("read" = [])), responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.metrics_public {
        require(&req, &state.tokens, Role::Read)?;
    }
    let cluster = tokio::time::timeout(PROBE_WAIT, state.db.run(stats::cluster))
        .await
        .map_err(|_| crate::store::StoreError::Unavailable("the database did not answer in time".into()))??;
    let text = crate::metrics::render(&cluster)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}
