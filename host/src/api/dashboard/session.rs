//! Dashboard sign-in: a session cookie (HttpOnly, SameSite=Strict) holding the
//! role and an expiry signed with HMAC-SHA256, and a CSRF token per session
//! that every admin form carries. The signing key is derived from the admin
//! and read tokens, so sessions hold across replicas and restarts and end
//! when a token changes. Neither token is ever stored in the cookie.

use constant_time_eq::constant_time_eq;
use sha2::{Digest, Sha256};

use crate::config::Tokens;

/// Name of the session cookie.
pub const COOKIE: &str = "pulsehost_session";
/// How long a sign-in lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;

/// Who signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads and acts (run now, cancel, resume, rollback).
    Admin,
    /// Reads only.
    Read,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }
}

/// A valid session, read from its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its role.
    pub role: Role,
    /// The cookie's value, which the CSRF token is bound to.
    pub cookie: String,
}

/// The role `token` signs in as, if any (compared in constant time).
pub fn role_of(tokens: &Tokens, token: &str) -> Option<Role> {
    let token = token.trim();
    let matches = |t: &Option<String>| {
        t.as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    };
    if token.is_empty() {
        None
    } else if matches(&tokens.admin) {
        Some(Role::Admin)
    } else if matches(&tokens.read) {
        Some(Role::Read)
    } else {
        None
    }
}

fn key(tokens: &Tokens) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"pulsehost dashboard session\0");
    hash.update(tokens.admin.as_deref().unwrap_or("").as_bytes());
    hash.update(b"\0");
    hash.update(tokens.read.as_deref().unwrap_or("").as_bytes());
    hash.finalize().to_vec()
}

fn sign(tokens: &Tokens, text: &str) -> String {
    crate::signing::mac_hex(&key(tokens), text.as_bytes())
}

/// The cookie value of a new session of `role`, valid until `now + LIFETIME_SECS`.
pub fn issue(tokens: &Tokens, role: Role, now: i64) -> String {
    let body = format!("{}.{}", role.name(), now + LIFETIME_SECS);
    format!("{body}.{}", sign(tokens, &body))
}

/// The session `cookie` carries, when its signature holds and it has not expired.
pub fn verify(tokens: &Tokens, cookie: &str, now: i64) -> Option<Session> {
    let (body, signature) = cookie.rsplit_once('.')?;
    if !constant_time_eq(sign(tokens, body).as_bytes(), signature.as_bytes()) {
        return None;
    }
    let (role, expires) = body.split_once('.')?;
    let expires: i64 = expires.parse().ok()?;
    let role = match role {
        "admin" => Role::Admin,
        "read" => Role::Read,
        _ => return None,
    };
    (expires > now).then(|| Session {
        role,
        cookie: cookie.to_owned(),
    })
}

/// A signature of a message the dashboard shows after an action (carried in
/// the redirect's query), so that no one else can make a page show their text.
pub fn seal(tokens: &Tokens, message: &str) -> String {
    sign(tokens, &format!("flash\0{message}"))
}

/// True when `signature` is [`seal`]'s for `message`.
pub fn sealed(tokens: &Tokens, message: &str, signature: &str) -> bool {
    constant_time_eq(seal(tokens, message).as_bytes(), signature.as_bytes())
}

/// The CSRF token of a session: forms carry it, actions check it.
pub fn csrf(tokens: &Tokens, session: &Session) -> String {
    sign(tokens, &format!("csrf\0{}", session.cookie))
}

/// True when `presented` is the session's CSRF token.
pub fn csrf_holds(tokens: &Tokens, session: &Session, presented: &str) -> bool {
    constant_time_eq(csrf(tokens, session).as_bytes(), presented.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(admin: &str) -> Tokens {
        Tokens {
            admin: Some(admin.into()),
            pulse: None,
            read: Some("reader".into()),
        }
    }

    #[test]
    fn a_session_holds_until_it_expires_or_a_token_changes() {
        let t = tokens("root");
        let cookie = issue(&t, Role::Admin, 1_000);
        assert_eq!(verify(&t, &cookie, 1_001).unwrap().role, Role::Admin);
        assert!(verify(&t, &cookie, 1_000 + LIFETIME_SECS).is_none(), "expired");
        assert!(
            verify(&tokens("rotated"), &cookie, 1_001).is_none(),
            "token changed"
        );
        let forged = cookie.replacen("admin", "read", 1);
        assert!(verify(&t, &forged, 1_001).is_none(), "edited");
        assert!(!cookie.contains("root"), "the token is never in the cookie");
    }

    #[test]
    fn the_csrf_token_is_bound_to_its_session_and_roles_come_from_tokens() {
        let t = tokens("root");
        let a = verify(&t, &issue(&t, Role::Admin, 1), 2).unwrap();
        let b = verify(&t, &issue(&t, Role::Admin, 5), 6).unwrap();
        assert!(csrf_holds(&t, &a, &csrf(&t, &a)));
        assert!(!csrf_holds(&t, &b, &csrf(&t, &a)));
        assert_eq!(role_of(&t, " root "), Some(Role::Admin));
        assert_eq!(role_of(&t, "reader"), Some(Role::Read));
        assert_eq!(role_of(&t, "wrong"), None);
        assert_eq!(role_of(&t, ""), None);
    }
}
