//! `/api/v1/session`: signing in to the console with the admin or the read credential.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tocsin_model::now_ms;

use super::error::{json_body, ApiError};
use super::AppState;
use crate::session::{set_cookie, Session};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// Who signs in: recorded with every change they make.
    user: String,
    credential: String,
}

fn describe(s: &Session) -> Value {
    json!({ "user": s.user, "role": s.role.as_str(), "csrf": s.csrf, "open": false })
}

/// `POST /api/v1/session` `{"user", "credential"}`: a session cookie and its CSRF token. A
/// wrong credential is refused after a pause, counted, logged and audited (without it).
pub(crate) async fn sign_in(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if super::cross_site(&headers) {
        return Err(ApiError::Forbidden(
            "signing in from another site is refused".into(),
        ));
    }
    let b: SignIn = json_body(&body, "sign-in")?;
    let user = b.user.trim();
    if user.is_empty() || user.len() > 64 || user.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "user is required: a name of at most 64 characters, recorded with your changes",
        ));
    }
    let Some(role) = st.access.sign_in(&b.credential) else {
        // Slows down guessing; the credential itself is never logged.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let msg = "wrong credential";
        st.tel.api_denied("sign_in", "/api/v1/session", msg);
        super::audit(&st, user, "sign in refused", "/api/v1/session", StatusCode::UNAUTHORIZED, b"").await;
        return Err(ApiError::Unauthorized(msg.into()));
    };
    let (id, s) = st.sessions.start(user, role, now_ms());
    tracing::info!(user, role = role.as_str(), "console sign-in");
    super::audit(&st, &s.actor(), "sign in", "/api/v1/session", StatusCode::OK, b"").await;
    Ok((
        [(header::SET_COOKIE, set_cookie(&id, st.secure_cookies))],
        Json(json!({ "status": "success", "data": describe(&s) })),
    )
        .into_response())
}

/// `GET /api/v1/session`: who this browser is signed in as; on a collector open without
/// credential (loopback, none configured), what anybody may do.
pub(crate) async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = st.sessions.get(&headers, now_ms()) {
        return Ok(Json(json!({ "status": "success", "data": describe(&s) })));
    }
    match st.access.without_credential() {
        Some(role) => Ok(Json(json!({ "status": "success", "data": {
            "user": null, "role": role.as_str(), "csrf": "", "open": true
        } }))),
        None => Err(ApiError::Unauthorized("not signed in".into())),
    }
}

/// `DELETE /api/v1/session`: signs out.
pub(crate) async fn sign_out(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(s) = st.sessions.get(&headers, now_ms()) {
        if !crate::session::csrf_ok(&headers, &s) {
            return ApiError::Forbidden("missing or wrong X-CSRF-Token for this session".into())
                .into_response();
        }
        st.sessions.end(&headers);
        super::audit(&st, &s.actor(), "sign out", "/api/v1/session", StatusCode::OK, b"").await;
    }
    (
        [(header::SET_COOKIE, set_cookie("", st.secure_cookies))],
        Json(json!({ "status": "success" })),
    )
        .into_response()
}
