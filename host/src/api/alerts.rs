//! The alerts recorded and every delivery attempt of each.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::store::alerts;

/// Query of `GET /v1/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

/// Alerts newest first, each with its delivery attempts (status code, error,
/// duration).
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", security(("read" = [])), params(("limit" = Option<i64>, Query, description = "1 to 500 (default 50)"), ("before" = Option<i64>, Query, description = "Alerts before this id")), responses((status = 200, description = "Alerts with their attempts, newest first", body = serde_json::Value), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let limit = super::filters::page_limit(q.limit)?;
    let before = q.before;
    let rows = state.db.run(move |tx| alerts::list(tx, limit, before)).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|(a, _)| a.id))
        .flatten();
    let listed: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(alert, attempts)| {
            let mut v = serde_json::to_value(alert).unwrap_or_default();
            v["attempt_log"] = serde_json::to_value(attempts).unwrap_or_default();
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "alerts": listed, "next_before": next_before })))
}
