//! The dashboard: server-rendered pages over the same store queries as the
//! API, signed in with the admin or read token (kept as a signed session in
//! an HttpOnly SameSite=Strict cookie). Admin actions are forms that carry the
//! session's CSRF token. Pages run no script at all: a running run's page
//! reloads itself every two seconds.

mod actions;
mod pages;
mod render;
mod runs;
mod session;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::AppState;
pub use session::Session;

/// Every dashboard route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(pages::overview))
        .route("/ui", web::get().to(pages::overview))
        .route("/ui/login", web::get().to(actions::login_form))
        .route("/ui/login", web::post().to(actions::login))
        .route("/ui/logout", web::post().to(actions::logout))
        .route("/ui/tasks", web::get().to(pages::tasks))
        .route("/ui/tasks/{id}/run", web::post().to(actions::run_now))
        .route("/ui/tasks/{id}/resume", web::post().to(actions::resume))
        .route("/ui/runs", web::get().to(runs::list))
        .route("/ui/runs/{id}", web::get().to(runs::detail))
        .route("/ui/runs/{id}/cancel", web::post().to(actions::cancel))
        .route("/ui/pulses", web::get().to(pages::pulses))
        .route("/ui/services", web::get().to(pages::services))
        .route("/ui/plugins", web::get().to(pages::plugins))
        .route(
            "/ui/plugins/{name}/versions/{version}/activate",
            web::post().to(actions::rollback),
        );
}

/// The signed-in session of `req`, if any.
fn session_of(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let cookie = req.cookie(session::COOKIE)?;
    session::verify(&state.tokens, cookie.value(), chrono::Utc::now().timestamp())
}

/// Why a request is not served.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// Nobody is signed in: to the sign-in page.
    SignIn,
    /// The form's CSRF token is not this session's.
    Stale,
    /// The action needs the admin token.
    NotAdmin,
}

impl Refused {
    fn answer(self) -> HttpResponse {
        match self {
            Refused::SignIn => redirect("/ui/login"),
            Refused::Stale => HttpResponse::Forbidden()
                .body("this form is stale or was not sent by the dashboard; reload the page"),
            Refused::NotAdmin => {
                HttpResponse::Forbidden().body("this action needs the admin token; sign in with it")
            }
        }
    }
}

/// The session, or why there is none.
fn signed_in(req: &HttpRequest, state: &AppState) -> Result<Session, Refused> {
    session_of(req, state).ok_or(Refused::SignIn)
}

/// A 303 to `to`.
fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// The session cookie (HttpOnly, SameSite=Strict; Secure over HTTPS).
fn session_cookie(req: &HttpRequest, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(session::COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

/// What every page shows around its content.
fn frame(state: &AppState, session: &Session, title: &str, section: &str) -> Value {
    let nav: Vec<Value> = [
        ("overview", "/"),
        ("tasks", "/ui/tasks"),
        ("runs", "/ui/runs"),
        ("pulses", "/ui/pulses"),
        ("services", "/ui/services"),
        ("plugins", "/ui/plugins"),
    ]
    .iter()
    .map(|(name, href)| json!({ "name": name, "href": href }))
    .collect();
    json!({
        "title": title,
        "section": section,
        "nav": nav,
        "role": match session.role { session::Role::Admin => "admin", session::Role::Read => "read" },
        "can_act": session.role == session::Role::Admin,
        "csrf": session::csrf(&state.tokens, session),
    })
}

/// Renders `template` with `context` (plus the frame) as an HTML answer.
fn html(status: actix_web::http::StatusCode, template: &str, context: Value) -> HttpResponse {
    match render::page(template, &context) {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "dashboard page failed to render");
            HttpResponse::InternalServerError().body("the page could not be rendered; see the host's log")
        }
    }
}

/// The query that makes the next page show `message` as a `notice` or an
/// `error`, sealed so that only the dashboard can make it.
fn flash_query(state: &AppState, kind: &str, message: &str) -> String {
    let seal = session::seal(&state.tokens, &format!("{kind}\0{message}"));
    serde_urlencoded::to_string([(kind, message), ("seal", seal.as_str())]).unwrap_or_default()
}

/// The sealed `notice` and `error` of a request's query (unsealed ones are ignored).
fn flashes(state: &AppState, query: &[(String, String)]) -> Value {
    let seal = query
        .iter()
        .find(|(k, _)| k == "seal")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let pick = |kind: &str| {
        query
            .iter()
            .find(|(k, v)| k == kind && session::sealed(&state.tokens, &format!("{kind}\0{v}"), seal))
            .map(|(_, v)| v.clone())
    };
    json!({ "notice": pick("notice"), "error": pick("error") })
}

/// `frame` with `extra` merged in.
fn with(mut frame: Value, extra: Value) -> Value {
    if let (Some(f), Value::Object(e)) = (frame.as_object_mut(), extra) {
        f.extend(e);
    }
    frame
}
