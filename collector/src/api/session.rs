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
        super::audit(&st, user, "sign in refused", StatusCode::UNAUTHORIZED, b"").await;
        return Err(ApiError::Unauthorized(msg.into()));
    };
    let (id, s) = st.sessions.start(user, role, now_ms());
    tracing::info!(user, role = role.as_str(), "console sign-in");
    super::audit(&st, &s.actor(), "sign in", StatusCode::OK, b"").await;
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
        super::audit(&st, &s.actor(), "sign out", StatusCode::OK, b"").await;
    }
    (
        [(header::SET_COOKIE, set_cookie("", st.secure_cookies))],
        Json(json!({ "status": "success" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{json, Value};

    use crate::api::testing::{Answer, TestApi};

    const CONFIG: &str =
        "listen: 0.0.0.0:9760\nadmin_token: adm1n-s3cret\nread_token: r3ad-s3cret\n";

    async fn with_cookie(
        api: &TestApi,
        method: &str,
        path: &str,
        cookie: &str,
        csrf: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Cookie", cookie)
            .header("Content-Type", "application/json");
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        api.send(req.body(body).unwrap()).await
    }

    /// Signs in; the cookie to send back and the CSRF token.
    async fn sign_in(api: &TestApi, user: &str, credential: &str) -> (String, String) {
        let a = api
            .call(
                "POST",
                "/api/v1/session",
                None,
                Some(json!({"user": user, "credential": credential})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let set = a.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        (cookie, a.json["data"]["csrf"].as_str().unwrap().to_string())
    }

    fn silence() -> Value {
        json!({"matchers": [{"name": "host", "value": "h1"}], "duration": "1h",
               "createdBy": "alice", "comment": "maintenance"})
    }

    #[tokio::test]
    async fn a_session_reads_and_changes_with_its_csrf_token_and_is_audited() {
        let api = TestApi::new(CONFIG, "");
        let wrong = api
            .call(
                "POST",
                "/api/v1/session",
                None,
                Some(json!({"user": "mallory", "credential": "guess"})),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.headers.get("set-cookie").is_none());
        let (cookie, csrf) = sign_in(&api, "alice", "adm1n-s3cret").await;
        let me = with_cookie(&api, "GET", "/api/v1/session", &cookie, None, &[], None).await;
        assert_eq!(me.json["data"]["role"], "admin");
        let r = with_cookie(&api, "GET", "/api/v1/alerts", &cookie, None, &[], None).await;
        assert_eq!(r.status, StatusCode::OK);
        // A change needs the CSRF token, and must not come from another site.
        let post = |csrf, extra| {
            with_cookie(
                &api,
                "POST",
                "/api/v1/silences",
                &cookie,
                csrf,
                extra,
                Some(silence()),
            )
        };
        assert_eq!(post(None, &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(post(Some("x"), &[]).await.status, StatusCode::FORBIDDEN);
        let cross = [
            ("Origin", "https://evil.example"),
            ("Host", "collector:9760"),
        ];
        assert_eq!(
            post(Some(&csrf), &cross).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(post(Some(&csrf), &[]).await.status, StatusCode::OK);
        let audit = api
            .call("GET", "/api/v1/audit", Some("adm1n-s3cret"), None)
            .await;
        let rows = audit.json["data"]["audit"].as_array().unwrap().clone();
        assert_eq!(rows[0]["event"], "POST /api/v1/silences");
        assert_eq!(rows[0]["actor"], "alice (console, admin)");
        assert_eq!(rows[0]["detail"]["body"]["comment"], "maintenance");
        assert_eq!(rows[1]["event"], "sign in");
        assert!(rows
            .iter()
            .any(|r| r["event"] == "sign in refused" && r["actor"] == "mallory"));
        assert!(
            !audit.json.to_string().contains("s3cret"),
            "no credential in the audit log"
        );
        // Signed out, the cookie opens nothing.
        let out = with_cookie(
            &api,
            "DELETE",
            "/api/v1/session",
            &cookie,
            Some(&csrf),
            &[],
            None,
        )
        .await;
        assert!(out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let r = with_cookie(&api, "GET", "/api/v1/alerts", &cookie, None, &[], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_read_session_cannot_change_anything() {
        let api = TestApi::new(CONFIG, "");
        let (cookie, csrf) = sign_in(&api, "bob", "r3ad-s3cret").await;
        let r = with_cookie(&api, "GET", "/api/v1/silences", &cookie, None, &[], None).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = with_cookie(
            &api,
            "POST",
            "/api/v1/silences",
            &cookie,
            Some(&csrf),
            &[],
            Some(silence()),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.json.to_string().contains("read credential"), "{}", r.json);
        let r = with_cookie(&api, "GET", "/api/v1/tokens", &cookie, None, &[], None).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "listing tokens is admin only"
        );
        // A read session may preview what a silence would catch (a read).
        let r = with_cookie(
            &api,
            "POST",
            "/api/v1/silences/preview",
            &cookie,
            None,
            &[],
            Some(json!({"matchers": [{"name": "host", "value": "h1"}]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }

    #[tokio::test]
    async fn the_console_page_is_served_with_a_strict_policy() {
        let api = TestApi::new(CONFIG, "");
        let r = api.get("/").await;
        assert_eq!(r.status, StatusCode::OK);
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(api.get("/console/app.js").await.status, StatusCode::OK);
        assert_eq!(
            api.get("/console/nope.js").await.status,
            StatusCode::NOT_FOUND
        );
        let etag = api.get("/console/app.css").await.headers["etag"].clone();
        let again = api
            .send(
                Request::builder()
                    .uri("/console/app.css")
                    .header("If-None-Match", etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        // Without a session or credential, the network listener opens nothing.
        assert_eq!(
            api.get("/api/v1/session").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}
