//! Plugins and their versions: `POST /v1/plugins` (upload a component),
//! `GET /v1/plugins`, `GET /v1/plugins/{name}/versions`,
//! `POST /v1/plugins/{name}/versions/{n}/activate` and `DELETE /v1/plugins/{name}`.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::plugin::{sha256_hex, PluginError};
use crate::pulse;
use crate::store::plugins::{self, NewPluginVersion, RegisteredVersion};
use crate::store::{versions, StoreError};

/// Validates an uploaded component completely, then records it as a new
/// version (201). Bytes identical to a stored version return that version
/// (200), made active if it was not, without compiling anything.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins", security(("admin" = [])), request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"), responses((status = 201, description = "A new version, active", body = serde_json::Value), (status = 200, description = "Identical to a stored version", body = serde_json::Value), (status = 413, description = "Too large", body = ErrorBody), (status = 422, description = "Invalid component or description", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let bytes = read_body(body, state.max_plugin_bytes).await?;
    let sha256 = sha256_hex(&bytes);
    let sha = sha256.clone();
    let identical = state
        .db
        .run(move |tx| {
            let Some(stored) = versions::find_by_sha(tx, &sha)? else {
                return Ok(None);
            };
            if stored.pruned {
                return Ok(None);
            }
            match pulse::activate(tx, &stored.plugin, stored.version) {
                Ok(registered) => Ok(Some((registered, !stored.active))),
                // Pruned since it was looked up: the upload restores the bytes.
                Err(StoreError::Refused(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
    if let Some((registered, activated)) = identical {
        pulse::warm::start(&state.db, &state.plugins, &sha256, registered.version_id);
        tracing::info!(plugin = %registered.plugin, version = registered.version, activated, "identical upload");
        return Ok(HttpResponse::Ok().json(answer(&registered, activated)));
    }
    let inspected = state.plugins.inspect(Arc::clone(&bytes), &state.rules).await?;
    let wit_package = inspected.wit_package;
    let keep_versions = state.keep_versions;
    let recorded = state
        .db
        .run(move |tx| {
            let new = NewPluginVersion {
                sha256: &inspected.sha256,
                component: &bytes,
                wit_package: inspected.wit_package,
                manifest: &inspected.manifest,
                keep_versions,
            };
            pulse::register(tx, &new)
        })
        .await;
    let registered = match recorded {
        Ok(registered) => registered,
        Err(e) => {
            state.plugins.discard(&sha256);
            return Err(e.into());
        }
    };
    state.plugins.keep(&sha256).await;
    tracing::info!(plugin = %registered.plugin, version = registered.version, tasks = registered.tasks.len(), "plugin registered");
    let status = if registered.created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    let mut body = answer(&registered, !registered.created);
    body["wit_package"] = wit_package.into();
    Ok(HttpResponse::build(status).json(body))
}

/// Reads the upload, refusing more than `limit` bytes as soon as it passes it.
async fn read_body(mut body: web::Payload, limit: usize) -> Result<Arc<[u8]>, ApiError> {
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
    Ok(Arc::from(&bytes[..]))
}

/// The body answering an upload or an activation.
fn answer(registered: &RegisteredVersion, activated: bool) -> serde_json::Value {
    serde_json::json!({
        "plugin": registered.plugin,
        "plugin_id": registered.plugin_id,
        "version": registered.version,
        "version_id": registered.version_id,
        "sha256": registered.sha256,
        "tasks": registered.tasks,
        "created": registered.created,
        "activated": activated,
    })
}

/// Every plugin in service and its active version.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", security(("read" = [])), responses((status = 200, description = "Plugins in service and their active versions", body = serde_json::Value), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let plugins = state.db.run(plugins::list_plugins).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "plugins": plugins })))
}

/// Every version of a plugin, newest first.
#[utoipa::path(get, path = "/v1/plugins/{name}/versions", tag = "plugins", security(("read" = [])), params(("name" = String, Path, description = "Plugin name")), responses((status = 200, description = "Every version, newest first", body = serde_json::Value), (status = 404, description = "No such plugin", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list_versions(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let name = name.into_inner();
    let plugin = name.clone();
    let versions = state.db.run(move |tx| versions::list(tx, &plugin)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "plugin": name, "versions": versions })))
}

/// Makes version `n` of a plugin the active one, in one transaction.
#[utoipa::path(post, path = "/v1/plugins/{name}/versions/{version}/activate", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "Plugin name"), ("version" = i32, Path, description = "Version number")), responses((status = 200, description = "Now active", body = serde_json::Value), (status = 409, description = "Its bytes were pruned", body = ErrorBody), (status = 404, description = "No such plugin or version", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn activate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i32)>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let (name, version) = path.into_inner();
    Ok(HttpResponse::Ok().json(switch_to(&state, name, version).await?))
}

/// What [`activate`] does once the caller is admitted (the dashboard's too).
pub async fn switch_to(state: &AppState, name: String, version: i32) -> Result<serde_json::Value, ApiError> {
    let registered = state
        .db
        .run(move |tx| pulse::activate(tx, &name, version))
        .await?;
    pulse::warm::start(
        &state.db,
        &state.plugins,
        &registered.sha256,
        registered.version_id,
    );
    tracing::info!(plugin = %registered.plugin, version = registered.version, "plugin version activated");
    Ok(answer(&registered, true))
}

/// Retires a plugin: its tasks stop being due; versions and history stay.
#[utoipa::path(delete, path = "/v1/plugins/{name}", tag = "plugins", security(("admin" = [])), params(("name" = String, Path, description = "Plugin name")), responses((status = 200, description = "Retired", body = serde_json::Value), (status = 404, description = "No such plugin", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn retire(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let name = name.into_inner();
    let plugin = name.clone();
    let retired = state.db.run(move |tx| versions::retire(tx, &plugin)).await?;
    tracing::info!(plugin = %name, retired, "plugin retired");
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "plugin": name, "retired": true, "was_retired": !retired })))
}
