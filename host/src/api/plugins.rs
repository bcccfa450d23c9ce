//! `POST /v1/plugins` (upload a component) and `GET /v1/plugins`.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::auth::{require, Role};
use super::{ApiError, AppState};
use crate::plugin::{PluginError, WIT_PACKAGE};
use crate::pulse;
use crate::store::plugins::{self, NewPluginVersion};

/// Validates an uploaded component completely, then records it as a new version.
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let limit = state.max_plugin_bytes;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload failed: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(PluginError::TooLarge {
                size: bytes.len() + chunk.len(),
                limit,
            }
            .into());
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send the component's bytes (Content-Type: application/wasm)",
        ));
    }
    let bytes: std::sync::Arc<[u8]> = std::sync::Arc::from(&bytes[..]);
    let inspected = state
        .plugins
        .inspect(std::sync::Arc::clone(&bytes), &state.rules)
        .await?;
    let sha256 = inspected.sha256.clone();
    let registered = state
        .db
        .run(move |tx| {
            let new = NewPluginVersion {
                sha256: &inspected.sha256,
                component: &bytes,
                wit_package: WIT_PACKAGE,
                manifest: &inspected.manifest,
            };
            pulse::register(tx, &new)
        })
        .await?;
    tracing::info!(plugin = %registered.plugin, version = registered.version, tasks = registered.tasks.len(), "plugin registered");
    Ok(HttpResponse::Created().json(serde_json::json!({
        "plugin": registered.plugin,
        "plugin_id": registered.plugin_id,
        "version": registered.version,
        "version_id": registered.version_id,
        "sha256": sha256,
        "tasks": registered.tasks,
    })))
}

/// Every plugin and its active version.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let plugins = state.db.run(plugins::list_plugins).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "plugins": plugins })))
}
