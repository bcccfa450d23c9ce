//! `POST /v1/pulse`: the hosted-cron entry point.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{require, Role};
use super::{ApiError, AppState};
use crate::pulse;

/// Works out what is due now, claims it, and wakes the runner.
pub async fn pulse(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Pulse)?;
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this host is shutting down and takes no pulses; send the pulse to another replica or retry",
        ));
    }
    let source = req
        .headers()
        .get("x-pulse-source")
        .or_else(|| req.headers().get("user-agent"))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect());
    let report = pulse::pulse(&state.db, source, chrono::Utc::now()).await?;
    if !report.claimed.is_empty() {
        state.runner.wake();
    }
    Ok(HttpResponse::Ok().json(report))
}
