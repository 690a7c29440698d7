//! Console sessions: someone who signed in with the admin or the read credential gets a random
//! session id in an HttpOnly, SameSite=Strict cookie and a CSRF token that every state change
//! must echo in a header. Sessions live in memory (a restart signs everyone out), expire after
//! a day or after `IDLE` without a request, and are bounded in number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use tocsin_model::TimestampMs;

use crate::access::{constant_time_eq, Role};

/// The cookie's name.
pub const COOKIE: &str = "tocsin_session";
/// The header a state change carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request...
const IDLE_MS: i64 = 8 * 3600 * 1000;
/// ... and after this long in any case.
pub const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Sessions kept at most; signing in beyond it ends the oldest.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub started_ms: TimestampMs,
    pub seen_ms: TimestampMs,
}

impl Session {
    /// Who did it, for the audit log and the acknowledgements.
    pub fn actor(&self) -> String {
        format!("{} (console, {})", self.user, self.role.as_str())
    }
}

/// Live sessions, by the SHA-256 of their id (a memory dump does not hand out sessions).
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    /// Starts a session; returns its id (for the cookie) and the session.
    pub fn start(&self, user: &str, role: Role, now: TimestampMs) -> (String, Session) {
        let id = tocsin_alerting::ack::new_secret();
        let s = Session {
            user: user.to_string(),
            role,
            csrf: tocsin_alerting::ack::new_secret(),
            started_ms: now,
            seen_ms: now,
        };
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| live(s, now));
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.seen_ms)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(key(&id), s.clone());
        (id, s)
    }

    /// The session a request's cookie names, if live; marks it used.
    pub fn get(&self, headers: &HeaderMap, now: TimestampMs) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(id);
        match m.get_mut(&k) {
            Some(s) if live(s, now) => {
                s.seen_ms = now;
                Some(s.clone())
            }
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session a request's cookie names.
    pub fn end(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, COOKIE) else {
            return false;
        };
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&key(id)).is_some()
    }
}

fn live(s: &Session, now: TimestampMs) -> bool {
    now - s.seen_ms < IDLE_MS && now - s.started_ms < MAX_AGE_MS
}

fn key(id: &str) -> String {
    crate::api::token_hash(id)
}

/// Whether a state change carries the session's CSRF token.
pub fn csrf_ok(headers: &HeaderMap, s: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), s.csrf.as_bytes()))
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The Set-Cookie value for a session id (empty and expired: signs out). `secure` when served
/// over TLS.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let age = if id.is_empty() { 0 } else { MAX_AGE_MS / 1000 };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends() {
        let s = Sessions::default();
        let (id, sess) = s.start("alice", Role::Admin, 1_000);
        let h = with_cookie(&format!("theme=dark; {COOKIE}={id}"));
        assert_eq!(s.get(&h, 2_000).unwrap().user, "alice");
        assert!(s
            .get(&with_cookie(&format!("{COOKIE}=x{id}")), 2_000)
            .is_none());
        let mut h2 = h.clone();
        h2.insert(CSRF_HEADER, sess.csrf.parse().unwrap());
        assert!(csrf_ok(&h2, &sess));
        h2.insert(CSRF_HEADER, "nope".parse().unwrap());
        assert!(!csrf_ok(&h2, &sess));
        assert!(!csrf_ok(&h, &sess), "no header, no change");
        assert!(s.end(&h));
        assert!(s.get(&h, 2_000).is_none());
    }

    #[test]
    fn sessions_expire_when_idle_and_in_any_case() {
        let s = Sessions::default();
        let (id, _) = s.start("bob", Role::Read, 0);
        let h = with_cookie(&format!("{COOKIE}={id}"));
        assert!(s.get(&h, IDLE_MS - 1).is_some());
        assert!(s.get(&h, 2 * IDLE_MS - 2).is_some(), "use keeps it");
        assert!(s.get(&h, 2 * IDLE_MS + IDLE_MS).is_none(), "idle too long");
        let (id, _) = s.start("bob", Role::Read, 0);
        let h = with_cookie(&format!("{COOKIE}={id}"));
        let mut t = 0;
        while t < MAX_AGE_MS - IDLE_MS {
            t += IDLE_MS / 2;
            assert!(s.get(&h, t).is_some());
        }
        assert!(s.get(&h, MAX_AGE_MS).is_none(), "a day at most");
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = set_cookie("abc", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(set_cookie("", false).contains("Max-Age=0"));
    }
}
