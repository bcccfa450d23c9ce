//! Bearer tokens per role, compared in constant time. The admin token may do
//! everything; the pulse token only pulses; the read token only reads.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use constant_time_eq::constant_time_eq;

use super::error::ApiError;
use crate::config::Tokens;

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Upload and manage plugins and runs.
    Admin,
    /// `POST /v1/pulse`.
    Pulse,
    /// History and listings.
    Read,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Pulse => "pulse",
            Role::Read => "read",
        }
    }
}

/// Admits the request if it carries the token of `role` or the admin token.
pub fn require(req: &HttpRequest, tokens: &Tokens, role: Role) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(unauthorized(format!(
            "this endpoint needs {}: send 'Authorization: Bearer <token>'",
            accepted(role)
        )));
    };
    let matches = |t: &Option<String>| {
        t.as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
    };
    let allowed = matches(&tokens.admin)
        || match role {
            Role::Admin => false,
            Role::Pulse => matches(&tokens.pulse),
            Role::Read => matches(&tokens.read),
        };
    if allowed {
        Ok(())
    } else {
        Err(unauthorized(format!(
            "the token is not valid for this endpoint: it needs {}",
            accepted(role)
        )))
    }
}

/// The tokens a role's endpoints accept, in words.
fn accepted(role: Role) -> String {
    match role {
        Role::Admin => "the admin token".into(),
        other => format!("the {} token or the admin token", other.name()),
    }
}

fn unauthorized(message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}
