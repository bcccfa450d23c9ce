//! `POST /v1/pulse`: the hosted-cron entry point, and `GET /v1/pulses`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::pulse::PulseAnswer;
use crate::store::pulses;

/// How often `?wait=true` looks at the claimed runs.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// Longest `Idempotency-Key` accepted; a longer one is refused rather than
/// cut (two keys cut to the same prefix would collide).
const MAX_KEY_CHARS: usize = 200;

/// Query of `POST /v1/pulse`.
#[derive(Debug, Deserialize)]
pub struct PulseQuery {
    /// Hold the answer until the claimed runs have finished.
    #[serde(default)]
    wait: bool,
}

/// Works out what is due now, claims it, and wakes the runner.
#[utoipa::path(post, path = "/v1/pulse", tag = "pulses", security(("pulse" = []), ("pulse_signature" = [])), params(("wait" = Option<bool>, Query, description = "Answer once the claimed runs finished"), ("Idempotency-Key" = Option<String>, Header, description = "A retried delivery with the same key gets the first answer")), responses((status = 200, description = "What was due, claimed, skipped and missed", body = serde_json::Value), (status = 503, description = "Shutting down or the database is unreachable", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token, or a signature that does not match, is outside the window or was used already", body = ErrorBody)))]
pub async fn pulse(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<PulseQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    super::signed::admit_pulse(&req, &body, &state).await?;
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this host is shutting down and takes no pulses; send the pulse to another replica or retry",
        ));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let source = header("x-pulse-source")
        .or_else(|| header("user-agent"))
        .map(|s| s.chars().take(200).collect());
    let key = header("idempotency-key").map(str::to_string);
    if key.as_ref().is_some_and(|k| k.chars().count() > MAX_KEY_CHARS) {
        return Err(ApiError::bad_request(format!(
            "the Idempotency-Key header is longer than {MAX_KEY_CHARS} characters: send a shorter key \
             (a UUID or a hash of the delivery id)"
        )));
    }
    // Runs whose host died are finished (and retried) first, so that overlap
    // does not wait on a run nobody executes any more.
    if let Err(e) = state.runner.recover().await {
        if matches!(e, crate::store::StoreError::Unavailable(_)) {
            return Err(e.into());
        }
        tracing::warn!(error = %e, "recovering runs of lost hosts failed");
    }
    let runner = std::sync::Arc::clone(&state.runner);
    let wake = move || runner.wake();
    let started = std::time::Instant::now();
    let answer = state.pulser.pulse(source, key, &wake).await;
    // A pulse is a contact: an overdue pulse it ends, and whatever it
    // recorded as missed, is notified now rather than at the next tick. In
    // serverless mode nothing works after the answer: the pulse executes
    // what it can start, then notifies, before answering.
    let alerter = std::sync::Arc::clone(&state.alerter);
    if state.runner.serverless() {
        if matches!(answer, Ok(PulseAnswer::Fresh(_))) {
            // Its own task: a client that hangs up does not cut the runs short.
            let runner = std::sync::Arc::clone(&state.runner);
            let _ = tokio::spawn(async move { runner.work_now().await }).await;
        }
        alerter.round().await;
    } else {
        tokio::spawn(async move { alerter.round().await });
    }
    let outcome = match &answer {
        Ok(PulseAnswer::Fresh(_)) => "ok",
        Ok(PulseAnswer::Replayed(_)) => "replayed",
        Err(_) => "error",
    };
    crate::metrics::pulse_handled(outcome, started.elapsed().as_secs_f64());
    let report = match answer? {
        PulseAnswer::Replayed(previous) => {
            return Ok(HttpResponse::Ok()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(previous))
        }
        PulseAnswer::Fresh(report) => report,
    };
    for run_id in &report.replaced {
        state.runner.cancel_local(*run_id);
    }
    let mut body = serde_json::to_value(&report)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if query.wait {
        let ids: Vec<i64> = report.claimed.iter().map(|r| r.run_id).collect();
        body["runs"] = serde_json::json!(wait_for(&state, ids).await?);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// Polls until none of `ids` is queued or running (or the wait cap passes), for
/// platforms that freeze a process once it has answered.
async fn wait_for(state: &AppState, ids: Vec<i64>) -> Result<Vec<serde_json::Value>, ApiError> {
    let deadline = tokio::time::Instant::now() + state.pulse_wait_max;
    loop {
        let ids = ids.clone();
        let statuses = state.db.run(move |tx| pulses::run_statuses(tx, &ids)).await?;
        let done = statuses.iter().all(|(_, s)| s != "queued" && s != "running");
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(statuses
                .into_iter()
                .map(|(id, status)| serde_json::json!({ "run_id": id, "status": status }))
                .collect());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Query of `GET /v1/pulses`.
#[derive(Debug, Deserialize)]
pub struct PulsesQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

/// Recent pulses with their counts, lateness and errors, newest first.
#[utoipa::path(get, path = "/v1/pulses", tag = "pulses", security(("read" = [])), params(("limit" = Option<i64>, Query, description = "1 to 500 (default 50)"), ("before" = Option<i64>, Query, description = "Pulses before this id")), responses((status = 200, description = "Recent pulses, newest first", body = serde_json::Value), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<PulsesQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let limit = super::filters::page_limit(q.limit)?;
    let before = q.before;
    let rows = state
        .db
        .run(move |tx| pulses::list_pulses(tx, limit, before))
        .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "pulses": rows, "next_before": next_before })))
}
