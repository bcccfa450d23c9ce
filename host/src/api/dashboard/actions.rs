//! Signing in and out, and the admin actions: run now, resume, cancel,
//! rollback. Each action needs an admin session and its CSRF token; a refused
//! or failed action shows the same page again with the reason.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::session::{self, Role, Session};
use super::{flash_query, html, redirect, session_cookie, signed_in, Refused};
use crate::api::{manage, plugins, AppState};

/// The sign-in form.
pub async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if super::session_of(&req, &state).is_some() {
        return redirect("/");
    }
    html(StatusCode::OK, "login.html", json!({ "title": "Sign in" }))
}

/// What the sign-in form sends.
#[derive(Deserialize)]
pub struct Credentials {
    token: String,
}

/// Signs in with the admin or read token; a wrong one is refused (401).
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<Credentials>,
) -> HttpResponse {
    let Some(role) = session::role_of(&state.tokens, &form.token) else {
        tracing::warn!(peer = ?req.peer_addr(), "dashboard sign-in with a wrong token");
        return html(
            StatusCode::UNAUTHORIZED,
            "login.html",
            json!({ "title": "Sign in", "error": "That token is neither the admin nor the read token." }),
        );
    };
    let value = session::issue(&state.tokens, role, chrono::Utc::now().timestamp());
    let mut answer = redirect("/");
    let _ = answer.add_cookie(&session_cookie(&req, value, session::LIFETIME_SECS));
    answer
}

/// What every action form sends.
#[derive(Deserialize)]
pub struct Action {
    csrf: String,
    /// Where to go afterwards (a path on this dashboard).
    back: Option<String>,
}

/// Signs out (the cookie is emptied and expires).
pub async fn logout(req: HttpRequest, state: web::Data<AppState>, form: web::Form<Action>) -> HttpResponse {
    if let Err(refused) = admitted(&req, &state, &form, None) {
        return refused.answer();
    }
    let mut answer = redirect("/ui/login");
    let _ = answer.add_cookie(&session_cookie(&req, String::new(), 0));
    answer
}

/// The session when it may do this: signed in, CSRF token right, and admin
/// when `need` says so.
fn admitted(
    req: &HttpRequest,
    state: &AppState,
    form: &Action,
    need: Option<Role>,
) -> Result<Session, Refused> {
    let session = signed_in(req, state)?;
    if !session::csrf_holds(&state.tokens, &session, &form.csrf) {
        return Err(Refused::Stale);
    }
    if need.is_some_and(|role| role != session.role) {
        return Err(Refused::NotAdmin);
    }
    Ok(session)
}

/// Back to `form.back` (when it is a dashboard path) with a notice or an error.
fn back(state: &AppState, form: &Action, fallback: &str, outcome: Result<String, String>) -> HttpResponse {
    let to = form
        .back
        .as_deref()
        .filter(|b| b.starts_with("/ui/") || *b == "/")
        .unwrap_or(fallback);
    let (kind, text) = match outcome {
        Ok(notice) => ("notice", notice),
        Err(error) => ("error", error),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    redirect(&format!("{to}{sep}{}", flash_query(state, kind, &text)))
}

/// Queues a run of a task now.
pub async fn run_now(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    form: web::Form<Action>,
) -> HttpResponse {
    if let Err(refused) = admitted(&req, &state, &form, Some(Role::Admin)) {
        return refused.answer();
    }
    let outcome = manage::queue_now(&state, id.into_inner(), None).await;
    match outcome {
        Ok(run) => redirect(&format!(
            "/ui/runs/{}?{}",
            run["run_id"],
            flash_query(&state, "notice", "queued")
        )),
        Err(e) => back(&state, &form, "/ui/tasks", Err(e.message)),
    }
}

/// Resumes a paused task.
pub async fn resume(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    form: web::Form<Action>,
) -> HttpResponse {
    if let Err(refused) = admitted(&req, &state, &form, Some(Role::Admin)) {
        return refused.answer();
    }
    let outcome = manage::unpause(&state, id.into_inner()).await;
    back(
        &state,
        &form,
        "/ui/tasks",
        outcome
            .map(|t| format!("resumed {}", t["name"]))
            .map_err(|e| e.message),
    )
}

/// Cancels a queued or running run.
pub async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    form: web::Form<Action>,
) -> HttpResponse {
    if let Err(refused) = admitted(&req, &state, &form, Some(Role::Admin)) {
        return refused.answer();
    }
    let id = id.into_inner();
    let outcome = manage::stop(&state, id).await;
    let fallback = format!("/ui/runs/{id}");
    back(
        &state,
        &form,
        &fallback,
        outcome
            .map(|_| "cancel requested".to_owned())
            .map_err(|e| e.message),
    )
}

/// Makes a plugin version active (rollback or roll forward).
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i32)>,
    form: web::Form<Action>,
) -> HttpResponse {
    if let Err(refused) = admitted(&req, &state, &form, Some(Role::Admin)) {
        return refused.answer();
    }
    let (name, version) = path.into_inner();
    let outcome = plugins::switch_to(&state, name.clone(), version).await;
    back(
        &state,
        &form,
        "/ui/plugins",
        outcome
            .map(|_| format!("{name} version {version} is active"))
            .map_err(|e| e.message),
    )
}
