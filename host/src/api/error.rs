//! Every error the API returns, as one JSON shape:
//! `{"error": {"code": "...", "message": "...", "problems": [{"field", "message"}]}}`.
//! Stage errors are mapped to HTTP statuses here and nowhere else.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::plugin::{PluginError, Problem};
use crate::store::StoreError;

/// An error response.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Field-level problems, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(serde_json::json!({ "error": self }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::Refused(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message.clone()),
            StoreError::Unavailable(_) | StoreError::Conflict(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )
            }
            _ => {
                tracing::error!(error = %e, "database error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let message = e.to_string();
        match e {
            PluginError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "plugin_too_large", message)
            }
            PluginError::NotWasm => ApiError::new(StatusCode::BAD_REQUEST, "not_wasm", message),
            PluginError::CoreModule => ApiError::new(StatusCode::BAD_REQUEST, "not_a_component", message),
            PluginError::Compile(_) | PluginError::Malformed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_component", message)
            }
            PluginError::UnsupportedImports { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported_imports", message)
            }
            PluginError::NotReady => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message),
            PluginError::WrongWorld(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "wrong_world", message)
            }
            PluginError::ManifestTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "manifest_too_large", message)
            }
            PluginError::Timeout { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_timeout", message)
            }
            PluginError::OutOfMemory { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_out_of_memory", message)
            }
            PluginError::Trap { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_trapped", message)
            }
            PluginError::Described(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "describe_failed", message)
            }
            PluginError::Invalid(problems) => ApiError {
                problems,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_tasks", message)
            },
        }
    }
}
