//! Error answers: one enum of what can go wrong, each kind with its status code. Messages are
//! for the client and say what to change; failures inside the collector (storage, a task that
//! died) are logged with their detail and answered with a generic text, so no SQLite error,
//! path or secret reaches a client.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::error;

use super::AppState;
use crate::writer::{Msg, OpFailure};

/// What the client is told when the collector's storage failed.
const STORAGE: &str = "storage temporarily unavailable; retry later";
/// … and when something inside the collector failed.
const INTERNAL: &str = "internal error; the collector's log has the details";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is wrong; the message says how.
    BadRequest(String),
    /// 400, although part of it was stored: `accepted` samples (`X-Tocsin-Accepted-Samples`).
    Partial { message: String, accepted: usize },
    /// 401: no or a wrong credential (`WWW-Authenticate: Bearer`).
    Unauthorized(String),
    /// 403: the credential may not do this.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 408: the client took too long to send its request.
    Timeout(String),
    /// 409: the request contradicts the current state.
    Conflict(String),
    /// 413.
    TooLarge(String),
    /// 415.
    UnsupportedMedia(String),
    /// 405: a route this collector knows, with a method it does not serve there.
    MethodNotAllowed(String),
    /// 429: try again after `retry_after` seconds.
    Busy { message: String, retry_after: u32 },
    /// 503: shutting down, or storage failing; try again (after `retry_after` when given).
    Unavailable {
        message: String,
        retry_after: Option<u32>,
    },
    /// 500: a failure inside the collector, already logged; the client gets a generic text.
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Partial { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text the client reads.
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Timeout(m)
            | ApiError::Conflict(m)
            | ApiError::TooLarge(m)
            | ApiError::UnsupportedMedia(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::Partial { message: m, .. }
            | ApiError::Busy { message: m, .. }
            | ApiError::Unavailable { message: m, .. } => m,
            ApiError::Internal => INTERNAL,
        }
    }

    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError::BadRequest(m.into())
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        ApiError::NotFound(m.into())
    }

    pub fn unavailable(m: impl Into<String>) -> Self {
        ApiError::Unavailable {
            message: m.into(),
            retry_after: None,
        }
    }

    /// The collector is stopping: the client should try again (elsewhere, or later).
    pub fn shutting_down() -> Self {
        ApiError::unavailable("the collector is shutting down: try again")
    }

    /// Storage failed: logged with `detail`, answered 503 with a generic text.
    pub fn storage(what: &str, detail: impl std::fmt::Display) -> Self {
        error!(error = %detail, "{what}: storage failed");
        ApiError::Unavailable {
            message: STORAGE.into(),
            retry_after: Some(5),
        }
    }

    /// Something inside the collector failed: logged with `detail`, answered 500.
    pub fn internal(what: &str, detail: impl std::fmt::Display) -> Self {
        error!(error = %detail, "{what}");
        ApiError::Internal
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status(),
            Json(json!({ "status": "error", "error": self.message() })),
        )
            .into_response();
        if self.status().is_client_error() {
            r.extensions_mut()
                .insert(Refusal(Arc::from(self.message())));
        }
        let h = r.headers_mut();
        match self {
            ApiError::Busy { retry_after, .. }
            | ApiError::Unavailable {
                retry_after: Some(retry_after),
                ..
            } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::Partial { accepted, .. } => {
                h.insert(tocsin_wire::ACCEPTED_HEADER, HeaderValue::from(accepted));
            }
            ApiError::Unauthorized(_) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        r
    }
}

/// What a request was refused for, left on the answer for `refusals`.
#[derive(Clone)]
pub(crate) struct Refusal(Arc<str>);

/// Counts and logs the requests a handler refused for what they asked (`ApiError`'s 4xx
/// answers), by route: a credential refused is counted and logged before (`api_guard`).
pub(crate) async fn refusals(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let r = next.run(req).await;
    if let Some(Refusal(error)) = r.extensions().get::<Refusal>() {
        st.tel
            .api_refused(method.as_str(), &route, r.status().as_u16(), error);
    }
    r
}

/// A URL's query string read into `T` as axum reads it, or 400 in JSON saying what is wrong
/// with it (axum's own answer is plain text).
pub(crate) struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| {
                // The field at fault and why, without axum's own wording around it.
                let why =
                    std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                ApiError::bad_request(format!("invalid query string: {why}"))
            })
    }
}

/// The parameters of a route's path (`/api/v1/incidents/{id}`), or 400 in JSON saying what is
/// wrong with them (`notifications/abc/retry`).
pub(crate) struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Path<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// A JSON request body, or 400 saying what is wrong with it.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

/// Sends a request to the writer thread and waits for its reply, whatever its type; 503 when
/// the writer is gone (shutting down) before it answers.
pub(crate) async fn writer_reply<R>(
    st: &AppState,
    msg: impl FnOnce(oneshot::Sender<R>) -> Msg,
) -> Result<R, ApiError> {
    let (reply, rx) = oneshot::channel();
    st.writer
        .send(msg(reply))
        .await
        .map_err(|_| ApiError::shutting_down())?;
    // The writer answers every request it takes, a failed write too; it drops one only when
    // it stops.
    rx.await.map_err(|_| ApiError::shutting_down())
}

/// Sends a request to the writer thread and waits for its answer; its error is a storage
/// failure (503, logged).
pub(crate) async fn ask_writer<T>(
    st: &AppState,
    what: &str,
    msg: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Msg,
) -> Result<T, ApiError> {
    writer_reply(st, msg)
        .await?
        .map_err(|e| ApiError::storage(what, e))
}

/// Runs `f` on one of the API's database connections off the async threads.
async fn with_conn<C: Send + 'static, T: Send + 'static>(
    conn: &Arc<std::sync::Mutex<C>>,
    what: &'static str,
    f: impl FnOnce(&C) -> tocsin_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let c = Arc::clone(conn);
    tokio::task::spawn_blocking(move || f(&c.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|e| ApiError::internal(what, e))?
        .map_err(|e| ApiError::storage(what, e))
}

/// Runs `f` on the outbox connection.
pub(crate) async fn with_outbox<T: Send + 'static>(
    st: &AppState,
    what: &'static str,
    f: impl FnOnce(&tocsin_store::Outbox) -> tocsin_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    with_conn(&st.outbox, what, f).await
}

/// Runs `f` on the records connection (tokens, incidents, audit).
pub(crate) async fn with_records<T: Send + 'static>(
    st: &AppState,
    what: &'static str,
    f: impl FnOnce(&tocsin_store::Records) -> tocsin_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    with_conn(&st.records, what, f).await
}

/// The answer to a refused or failed change the writer was asked for (an incident, an
/// action's result, a host taken out of service): a storage failure is a 503, so the sender
/// tries again.
pub(crate) fn op_error(e: OpFailure) -> ApiError {
    match e {
        OpFailure::NotFound(m) => ApiError::NotFound(m),
        OpFailure::Refused(m) => ApiError::Conflict(m),
        OpFailure::Full(message) => ApiError::Busy {
            message,
            retry_after: 60,
        },
        OpFailure::Storage(m) => ApiError::storage("a change to the collector's state", m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_not_stored_is_answered_503_so_it_is_sent_again() {
        let status = |e| op_error(e).status();
        assert_eq!(
            status(OpFailure::Storage("disk full".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(OpFailure::Refused("finished".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(OpFailure::NotFound("no such incident".into())),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn internal_failures_answer_a_generic_text_and_keep_their_detail_out() {
        for e in [
            ApiError::storage(
                "adding a silence",
                "database disk image is malformed at /var/lib/x",
            ),
            ApiError::internal("listing notifications", "task 12 panicked"),
            op_error(OpFailure::Storage("disk I/O error".into())),
        ] {
            let status = e.status();
            let r = e.into_response();
            assert!(status.is_server_error());
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let text = String::from_utf8(body.to_vec()).unwrap();
            for secret in ["malformed", "/var/lib", "panicked", "I/O"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[tokio::test]
    async fn each_kind_carries_its_headers() {
        let r = ApiError::Busy {
            message: "queue full".into(),
            retry_after: 1,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::Partial {
            message: "3 series refused".into(),
            accepted: 7,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[tocsin_wire::ACCEPTED_HEADER], "7");
        let r = ApiError::Unauthorized("missing token".into()).into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    /// A malformed or unknown parameter is a JSON answer saying which, counted by route and
    /// code (and logged), like any other refusal of what a request asked.
    #[tokio::test]
    async fn a_bad_parameter_is_refused_in_json_and_counted_by_route() {
        let api = crate::api::testing::TestApi::new("", "");
        let refused = |route: &str, code: &str| {
            api.state
                .tel
                .refused
                .with_label_values(&[route, code])
                .get()
        };
        for (path, route, says) in [
            ("/api/v1/audit?limit=abc", "/api/v1/audit", "limit"),
            (
                "/api/v1/incidents?state=closed",
                "/api/v1/incidents",
                "unknown variant `closed`, expected one of `open`, `acknowledged`, `resolved`",
            ),
            (
                "/api/v1/changes?from=abc",
                "/api/v1/changes",
                "invalid time",
            ),
        ] {
            let a = api.get(path).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(a.json["status"], "error", "{path}: {}", a.json);
            let error = a.json["error"].as_str().unwrap();
            assert!(error.contains(says), "{path}: {error}");
            assert_eq!(refused(route, "400"), 1, "{path}");
        }
        let a = api.get("/api/v1/incidents/nope").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(refused("/api/v1/incidents/{id}", "404"), 1);
        // A path parameter that does not parse: JSON too (axum's own answer is plain text).
        let a = api
            .call("POST", "/api/v1/notifications/abc/retry", None, None)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let error = a.json["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("invalid path: "), "{}", a.json);
        assert_eq!(refused("/api/v1/notifications/{id}/retry", "400"), 1);
        // The query API answers in its own format.
        let a = api.get("/api/v1/label/%ff/values").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.json["errorType"], "bad_data", "{}", a.json);
        // A link page without its token is refused on the page, for a person.
        let a = api.get("/ack").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "as any link refused");
        assert!(
            a.json
                .as_str()
                .unwrap_or_default()
                .contains("Acknowledgement refused"),
            "{}",
            a.json
        );
        // A good request is not counted.
        let a = api.get("/api/v1/incidents?state=open").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        assert_eq!(refused("/api/v1/incidents", "400"), 1);
    }
}
