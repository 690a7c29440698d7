//! The collector's HTTP surface: remote-write receiver, JSON API, own metrics and health.

use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_config::Secret;
use tocsin_model::now_ms;
use tokio::sync::{mpsc, oneshot};

use crate::access::{constant_time_eq, Access, Need};
use crate::writer::{AckFailure, Msg, OpFailure, Origin, View, WriteError};
use crate::Telemetry;
use tocsin_alerting::IncidentOp;

#[derive(Clone)]
pub struct AppState {
    pub writer: mpsc::Sender<Msg>,
    pub view: Arc<RwLock<View>>,
    pub tel: Telemetry,
    pub token: Option<Secret>,
    /// Who may read and change state through the API.
    pub access: Access,
    pub limits: tocsin_wire::Limits,
    pub max_body_bytes: usize,
    /// Request bodies decoded at once.
    pub decode_permits: Arc<tokio::sync::Semaphore>,
    /// Samples further ahead of the collector's clock are refused (the store's limit).
    pub max_future_ms: i64,
    /// Verifies acknowledgement links.
    pub ack_secret: Arc<Vec<u8>>,
    /// The lifetime links are made with: none valid for longer is genuine.
    pub ack_ttl_ms: i64,
    /// Reads the notification outbox (its own database connection).
    pub outbox: Arc<std::sync::Mutex<tocsin_store::Outbox>>,
    pub agent_tokens: Arc<RwLock<AgentTokens>>,
    /// The longest any request may take, body included.
    pub request_timeout: std::time::Duration,
    /// Whether /metrics carries the newest sample of every series too.
    pub federate: bool,
}

/// Per-agent tokens as the ingest path checks them.
#[derive(Debug, Default)]
pub struct AgentTokens {
    /// SHA-256 hex of each live token → the host it may write for.
    pub live: std::collections::HashMap<String, String>,
    /// Once any token was issued (even if all are revoked now), writes need a token.
    pub required: bool,
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads the agent tokens from the store.
pub fn load_agent_tokens(ob: &tocsin_store::Outbox) -> tocsin_store::Result<AgentTokens> {
    let all = ob.tokens()?;
    Ok(AgentTokens {
        required: !all.is_empty(),
        live: all
            .into_iter()
            .filter(|t| t.5.is_none())
            .map(|t| (t.2, t.1))
            .collect(),
    })
}

/// Who is writing: `Ok(None)` may write for any host (the shared ingest token, or no
/// authentication configured at all), `Ok(Some(host))` only for that host (a per-agent token).
fn authenticate_agent(headers: &HeaderMap, st: &AppState) -> Result<Option<String>, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let tokens = st.agent_tokens.read().unwrap_or_else(|p| p.into_inner());
    if let (Some(shared), Some(g)) = (&st.token, given) {
        if constant_time_eq(g.as_bytes(), shared.expose().as_bytes()) {
            return Ok(None);
        }
    }
    if let Some(g) = given {
        // A map lookup on the hash: the lookup's timing says nothing about the token.
        if let Some(host) = tokens.live.get(&token_hash(g)) {
            return Ok(Some(host.clone()));
        }
    }
    if st.token.is_none() && !tokens.required {
        return Ok(None);
    }
    st.tel
        .ingest_rejected("unauthorized", "missing, wrong or revoked bearer token");
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing, wrong or revoked bearer token",
    ))
}

pub fn app(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state as with;
    // Agents: their token is checked before the body is read.
    let agents = Router::new()
        .route("/api/v1/write", post(write))
        .route("/api/v1/actions/poll", get(poll_actions))
        .route("/api/v1/actions/{id}/result", post(action_result))
        .route_layer(with(state.clone(), agent_guard));
    // People and tools: reads need the read (or admin) credential, changes the admin one.
    let api = Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(expire_silence),
        )
        .route("/api/v1/alerts/{id}/ack", post(ack_api))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/actions", get(list_actions))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/tokens", get(list_tokens).post(issue_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/stats", get(incident_stats))
        .route("/api/v1/incidents/{id}", get(show_incident))
        .route("/api/v1/incidents/{id}/report", get(incident_report))
        .route("/api/v1/incidents/{id}/ack", post(incident_ack))
        .route("/api/v1/incidents/{id}/resolve", post(incident_resolve))
        .route("/api/v1/incidents/{id}/notes", post(incident_note))
        .route("/api/v1/notifications/{id}/retry", post(retry_notification))
        .route("/metrics", get(metrics))
        .route_layer(with(state.clone(), api_guard));
    Router::new()
        .merge(agents)
        .merge(api)
        // Acknowledgement links carry their own signature.
        .route("/ack", get(ack_page).post(ack_link))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(with(state.clone(), request_deadline))
        .with_state(state)
}

/// The host a per-agent token binds its requests to (`None`: any host).
#[derive(Clone)]
struct Bound(Option<String>);

/// Agents' routes: the bearer token before anything of the body is read.
async fn agent_guard(
    State(st): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authenticate_agent(req.headers(), &st) {
        Ok(bound) => {
            req.extensions_mut().insert(Bound(bound));
            next.run(req).await
        }
        Err(e) => {
            if req.uri().path() == "/api/v1/write" {
                st.tel
                    .requests
                    .with_label_values(&[e.status.as_str()])
                    .inc();
            }
            e.into_response()
        }
    }
}

/// People's routes: GET reads, anything else changes state (docs/OPERATIONS.md, "Security
/// model"). `/metrics` is open unless it federates every series.
async fn api_guard(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if path == "/metrics" && !st.federate {
        return next.run(req).await;
    }
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    // Listing tokens tells who can write: admin only.
    let need = if reads && !path.starts_with("/api/v1/tokens") {
        Need::Read
    } else {
        Need::Admin
    };
    match st.access.check(req.headers(), need) {
        Ok(()) => next.run(req).await,
        Err(d) => {
            st.tel.api_denied(d.reason, req.uri().path(), &d.message);
            let mut r = ApiError::new(d.status, d.message).into_response();
            if d.status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            r
        }
    }
}

/// Set once a request's body has been read in full.
#[derive(Clone)]
pub struct BodyReceived(Arc<std::sync::atomic::AtomicBool>);

impl BodyReceived {
    fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Cuts off a request that takes longer than `ingest.request_timeout`. A client still sending
/// its body (slow, or trickling on purpose) gets 408; a request whose body is in but whose
/// answer waits on slow storage gets 503 with `Retry-After`, so senders keep their data and
/// retry (a retry of samples that did get stored is dropped as a duplicate). Counted and logged.
async fn request_deadline(
    State(st): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let received = BodyReceived(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    req.extensions_mut().insert(received.clone());
    match tokio::time::timeout(st.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) if received.0.load(std::sync::atomic::Ordering::Relaxed) => {
            let msg = format!(
                "request to {path} not answered within {:?}: storage is slow; retry later",
                st.request_timeout
            );
            st.tel.ingest_rejected("storage_slow", &msg);
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg);
            e.retry_after = Some(5);
            e.into_response()
        }
        Err(_) => {
            let msg = format!(
                "request to {path} took longer than {:?}; cut off (slow client?)",
                st.request_timeout
            );
            st.tel.ingest_rejected("timeout", &msg);
            ApiError::new(StatusCode::REQUEST_TIMEOUT, msg).into_response()
        }
    }
}

/// An error answer: status plus a message for the client, never internals.
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
    /// Samples stored although the request is refused (`tocsin_wire::ACCEPTED_HEADER`).
    accepted: Option<usize>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            accepted: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "status": "error", "error": self.message })),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(n) = self.accepted {
            r.headers_mut()
                .insert(tocsin_wire::ACCEPTED_HEADER, HeaderValue::from(n));
        }
        r
    }
}

/// A write taken: 204, saying how many samples were not stored because their series held a
/// newer one (`tocsin_wire::NOT_NEWER_HEADER`), so the sender counts them instead of taking
/// them as stored.
struct Written(usize);

impl IntoResponse for Written {
    fn into_response(self) -> Response {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if self.0 > 0 {
            r.headers_mut()
                .insert(tocsin_wire::NOT_NEWER_HEADER, HeaderValue::from(self.0));
        }
        r
    }
}

async fn write(
    State(st): State<AppState>,
    received: Option<axum::Extension<BodyReceived>>,
    axum::Extension(Bound(bound)): axum::Extension<Bound>,
    req: axum::extract::Request,
) -> Result<Written, ApiError> {
    let result = write_inner(&st, bound, received, req).await;
    let code = match &result {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(e) => e.status,
    };
    st.tel.requests.with_label_values(&[code.as_str()]).inc();
    result
}

/// Refuses what is not a remote-write 1.0 body before it is read: 415, as the specification
/// asks (a 2.0 body read as 1.0 decodes to nothing and would be acknowledged and lost).
fn check_media_type(headers: &HeaderMap) -> Result<(), (&'static str, String)> {
    check_content_type(headers).map_err(|m| ("media_type", m))?;
    check_content_encoding(headers).map_err(|m| ("encoding", m))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), String> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(ctype) = ctype else {
        return Err(format!(
            "no Content-Type: remote-write 1.0 bodies are {}",
            tocsin_wire::CONTENT_TYPE
        ));
    };
    let mut parts = ctype.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let proto = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    if !media.eq_ignore_ascii_case(tocsin_wire::CONTENT_TYPE)
        || proto.is_some_and(|p| p != "prometheus.WriteRequest")
    {
        return Err(format!(
            "unsupported Content-Type {ctype:?}: this collector takes remote-write 1.0 ({}, proto=prometheus.WriteRequest)",
            tocsin_wire::CONTENT_TYPE
        ));
    }
    Ok(())
}

fn check_content_encoding(headers: &HeaderMap) -> Result<(), String> {
    let mut enc = headers.get_all(header::CONTENT_ENCODING).iter().peekable();
    if enc.peek().is_none() {
        return Err("no Content-Encoding: remote-write bodies are snappy-compressed".into());
    }
    for e in enc {
        if e.as_bytes() != tocsin_wire::CONTENT_ENCODING.as_bytes() {
            return Err(format!(
                "unsupported Content-Encoding {:?}: remote-write bodies are snappy-compressed",
                String::from_utf8_lossy(e.as_bytes())
            ));
        }
    }
    Ok(())
}

async fn write_inner(
    st: &AppState,
    bound: Option<String>,
    received: Option<axum::Extension<BodyReceived>>,
    req: axum::extract::Request,
) -> Result<Written, ApiError> {
    if let Err((reason, msg)) = check_media_type(req.headers()) {
        st.tel.ingest_rejected(reason, &msg);
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg));
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), st.max_body_bytes)
        .await
        .map_err(|_| {
            let msg = format!(
                "body over ingest.max_body ({} bytes), or cut short",
                st.max_body_bytes
            );
            st.tel.ingest_rejected("body", &msg);
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg)
        })?;
    if let Some(axum::Extension(r)) = received {
        r.mark();
    }
    // Decoding is CPU work bounded by the body's size: off the async workers, a few at a time,
    // so a flood of large bodies neither stalls the server nor multiplies its memory.
    let permit = Arc::clone(&st.decode_permits)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let limits = st.limits;
    let decoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        tocsin_wire::decode(&body, &limits)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed"))?;
    let batch = decoded.map_err(|e| {
        let msg = e.to_string();
        st.tel.ingest_rejected(e.kind(), &msg);
        let status = match e {
            tocsin_wire::WireError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, msg)
    })?;
    if let Err(e) = tocsin_wire::check_timestamps(&batch, now_ms(), st.max_future_ms) {
        let msg = e.to_string();
        st.tel.ingest_rejected(e.kind(), &msg);
        return Err(ApiError::new(StatusCode::BAD_REQUEST, msg));
    }
    if let Some(host) = &bound {
        if let Some(other) = batch
            .iter()
            .find_map(|s| s.labels.get("host").filter(|h| h != host))
        {
            let msg =
                format!("this token belongs to host {host:?}; series for host {other:?} refused");
            st.tel.ingest_rejected("wrong_host", &msg);
            return Err(ApiError::new(StatusCode::FORBIDDEN, msg));
        }
        if let Some(s) = batch.iter().find(|s| s.labels.get("host").is_none()) {
            let msg = format!(
                "this token belongs to host {host:?}; every series needs that host label ({} has none)",
                s.labels
            );
            st.tel.ingest_rejected("wrong_host", &msg);
            return Err(ApiError::new(StatusCode::FORBIDDEN, msg));
        }
    }
    if batch.is_empty() {
        return Ok(Written(0));
    }
    let (reply, rx) = oneshot::channel();
    let marked = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"1");
    let origin = if marked(tocsin_wire::LIVE_HEADER) {
        Origin::Live
    } else if marked(tocsin_wire::FORWARDED_HEADER) {
        Origin::Peer
    } else {
        Origin::Sender
    };
    if origin == Origin::Live {
        let n = batch.iter().map(|s| s.samples.len() as u64).sum();
        st.tel.samples.with_label_values(&["live"]).inc_by(n);
    }
    if let Err(e) = st.writer.try_send(Msg::Ingest {
        batch,
        origin,
        reply,
    }) {
        let (status, msg) = match e {
            mpsc::error::TrySendError::Full(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "ingest queue is full; retry later",
            ),
            mpsc::error::TrySendError::Closed(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "collector is shutting down",
            ),
        };
        st.tel.ingest_rejected("backpressure", msg);
        let mut err = ApiError::new(status, msg);
        err.retry_after = Some(1);
        return Err(err);
    }
    // The series come back with the answer, to be freed here.
    match rx.await.map(|answer| answer.result) {
        Ok(Ok(stats)) if stats.refused_series > 0 => {
            // The rest of the request is stored; say what was not, so the sender does not
            // retry it.
            let msg = format!(
                "{} new series ({} samples) refused: their host has reached ingest.max_series_per_host, or the collector ingest.max_hosts; {} samples accepted",
                stats.refused_series, stats.over_limit, stats.accepted
            );
            st.tel.ingest_rejected("cardinality", &msg);
            let mut e = ApiError::new(StatusCode::BAD_REQUEST, msg);
            e.accepted = Some(stats.accepted);
            Err(e)
        }
        Ok(Ok(stats)) => Ok(Written(stats.out_of_order)),
        Ok(Err(WriteError::Unavailable(e))) => {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("storage temporarily unavailable: {e}"),
            );
            err.retry_after = Some(5);
            Err(err)
        }
        Ok(Err(WriteError::Failed(e))) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("samples could not be stored: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is shutting down: try again",
        )),
    }
}

/// A JSON request body, or 400 saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid {what}: {e}")))
}

/// Sends a request to the writer thread and waits for its reply, whatever its type; 503 when
/// the writer is gone (shutting down) before it answers.
async fn writer_reply<R>(
    st: &AppState,
    msg: impl FnOnce(oneshot::Sender<R>) -> Msg,
) -> Result<R, ApiError> {
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "collector is shutting down",
        )
    };
    let (reply, rx) = oneshot::channel();
    st.writer.send(msg(reply)).await.map_err(|_| gone())?;
    // The writer answers every request it takes, a failed write too; it drops one only when
    // it stops.
    rx.await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is shutting down: try again",
        )
    })
}

/// Sends a request to the writer thread and waits for its answer; its error is a 500.
async fn ask_writer<T>(
    st: &AppState,
    msg: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Msg,
) -> Result<T, ApiError> {
    writer_reply(st, msg)
        .await?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewSilence {
    matchers: Vec<tocsin_alerting::silence::MatcherSpec>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    /// Instead of endsAt, e.g. "2h".
    duration: Option<String>,
    created_by: String,
    comment: String,
    /// A recurring window within startsAt..endsAt: a maintenance window.
    schedule: Option<tocsin_alerting::silence::ScheduleSpec>,
}

/// How far a recurring window with no end reaches.
const FOREVER_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

async fn add_silence(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let n: NewSilence = json_body(&body, "silence")?;
    tocsin_alerting::silence::validate(&n.matchers).map_err(bad)?;
    let time = |s: &str| {
        tocsin_model::parse_timestamp(s).ok_or_else(|| bad(format!("invalid time {s:?}")))
    };
    let now = now_ms();
    let starts = n.starts_at.as_deref().map(time).transpose()?.unwrap_or(now);
    if let Some(sc) = &n.schedule {
        tocsin_alerting::silence::validate_schedule(sc)
            .map_err(|e| bad(format!("schedule: {e}")))?;
    }
    let ends = match (&n.ends_at, &n.duration) {
        (Some(e), None) => time(e)?,
        (None, Some(d)) => {
            starts + tocsin_config::parse_duration(d).map_err(bad)?.as_millis() as i64
        }
        (None, None) if n.schedule.is_some() => starts + FOREVER_MS,
        _ => return Err(bad("give exactly one of endsAt and duration".into())),
    };
    if ends <= starts || ends <= now {
        return Err(bad(
            "the silence must end after it starts, and in the future".into(),
        ));
    }
    if n.created_by.trim().is_empty() || n.comment.trim().is_empty() {
        return Err(bad("createdBy and comment are required".into()));
    }
    let silence = tocsin_store::Silence {
        id: 0,
        matchers: serde_json::to_string(&n.matchers).expect("matchers serialize"),
        starts_ms: starts,
        ends_ms: ends,
        author: n.created_by,
        comment: n.comment,
        created_ms: now,
        schedule: n
            .schedule
            .as_ref()
            .map(|sc| serde_json::to_string(sc).expect("schedule serializes")),
    };
    let id = ask_writer(&st, |reply| Msg::AddSilence { silence, reply }).await?;
    Ok(Json(
        json!({ "status": "success", "data": { "silenceId": id } }),
    ))
}

async fn expire_silence(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if ask_writer(&st, |reply| Msg::ExpireSilence { id, reply }).await? {
        Ok(Json(json!({ "status": "success" })))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no silence {id}"),
        ))
    }
}

async fn list_silences(State(st): State<AppState>) -> Json<Value> {
    let now = now_ms();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = view
        .silences
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "matchers": serde_json::from_str::<Value>(&s.matchers).unwrap_or(Value::Null),
                "startsAt": format_rfc3339(s.starts_ms),
                "endsAt": format_rfc3339(s.ends_ms),
                "createdBy": s.author,
                "comment": s.comment,
                "schedule": s.schedule.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
                "state": if s.starts_ms > now { "pending" } else if s.ends_ms <= now { "expired" } else { "active" },
            })
        })
        .collect();
    Json(json!({ "status": "success", "data": { "silences": list } }))
}

async fn alerts(State(st): State<AppState>) -> Json<Value> {
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let mut list: Vec<Value> = view
        .alerts
        .iter()
        .map(|a| {
            json!({
                "rule": a.rule,
                "state": if a.level.is_some() { "firing" } else { "pending" },
                "level": a.level.map(|l| l.as_str()),
                "labels": a.labels,
                "annotations": a.annotations,
                "since": a.active_at.or(a.pending_since()).map(format_rfc3339),
                "levelSince": a.level_since.map(format_rfc3339),
                "value": a.value,
                "fingerprint": format!("{:016x}", a.fingerprint()),
                "id": format!("{:016x}", a.fingerprint()),
                "ack": view.acks.get(&format!("{:016x}", a.fingerprint())).map(ack_json),
            })
        })
        .collect();
    list.sort_by(|a, b| {
        a["rule"]
            .as_str()
            .cmp(&b["rule"].as_str())
            .then(a["fingerprint"].as_str().cmp(&b["fingerprint"].as_str()))
    });
    Json(json!({ "status": "success", "data": { "alerts": list } }))
}

async fn hosts(State(st): State<AppState>) -> Json<Value> {
    let now = now_ms();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = view
        .hosts
        .iter()
        .map(|h| {
            json!({
                "host": h.host,
                "up": h.up,
                "lastSeen": format_rfc3339(h.last_seen),
                "lastSeenAgeSeconds": ((now - h.last_seen).max(0) as f64) / 1000.0,
                "intervalSeconds": h.interval_ms.map(|i| i as f64 / 1000.0),
                "clockAheadSeconds": h.clock_ahead_ms.map(|i| i as f64 / 1000.0),
            })
        })
        .collect();
    Json(json!({ "status": "success", "data": { "hosts": list } }))
}

async fn metrics(State(st): State<AppState>) -> Response {
    if !st.federate {
        return tocsin_runtime::metrics_response(&st.tel.registry);
    }
    let families = st.tel.registry.gather();
    let mut text = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
        .into_response();
    }
    let skip = families.iter().map(|f| f.name().to_string()).collect();
    let (reply, rx) = oneshot::channel();
    if st.writer.send(Msg::Federate { skip, reply }).await.is_err() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    match rx.await {
        Ok(series) => {
            text.push_str(&series);
            ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
        }
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_not_stored_is_answered_503_so_it_is_sent_again() {
        let status = |e| op_error(e).status;
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
}

fn ack_json(a: &tocsin_dispatch::Ack) -> Value {
    json!({
        "by": a.by,
        "comment": a.comment,
        "at": format_rfc3339(a.at),
        "level": a.level.as_str(),
    })
}

/// Acknowledges through the writer; 404 when not firing, 409 when the level rose past a link.
async fn acknowledge(
    st: &AppState,
    id: String,
    link_level: Option<tocsin_model::Level>,
    by: String,
    comment: String,
) -> Result<tocsin_dispatch::Ack, ApiError> {
    let reply = writer_reply(st, |reply| Msg::Ack {
        id,
        link_level,
        by,
        comment,
        reply,
    })
    .await?;
    match reply {
        Ok(a) => Ok(a),
        Err(AckFailure::Refused(e @ tocsin_dispatch::AckError::NotFiring)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(AckFailure::Refused(e)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(AckFailure::Storage(e)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/alerts/{id}/ack` with `{"by": …, "comment": …}` (admin token if set).
async fn ack_api(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let b: AckBody = json_body(&body, "ack")?;
    if b.by.trim().is_empty() {
        return Err(bad("by is required: who acknowledges".into()));
    }
    let a = acknowledge(&st, id, None, b.by, b.comment).await?;
    Ok(Json(
        json!({ "status": "success", "data": { "ack": ack_json(&a) } }),
    ))
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head><body><h2>{title}</h2>{body}</body></html>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(serde::Deserialize)]
struct AckQuery {
    t: String,
}

/// What a link names, if it is genuine and for the alert's current firing (a link kept from
/// an earlier one acknowledges nothing).
fn verify_link(st: &AppState, token: &str) -> Result<tocsin_alerting::ack::Link, String> {
    let link = tocsin_alerting::ack::verify(&st.ack_secret, token, now_ms(), st.ack_ttl_ms)?;
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let current = view
        .alerts
        .iter()
        .find(|a| format!("{:016x}", a.fingerprint()) == link.id)
        .and_then(|a| a.active_at);
    match current {
        Some(t) if t.div_euclid(1000) != link.since_s => {
            Err("this link was sent for an earlier firing of the alert".into())
        }
        _ => Ok(link),
    }
}

/// `GET /ack?t=TOKEN`: a confirmation page (link previews must not acknowledge anything).
async fn ack_page(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<AckQuery>,
) -> Response {
    match verify_link(&st, &q.t) {
        Err(e) => {
            st.tel.ack_refused.inc();
            html(
                StatusCode::FORBIDDEN,
                "Acknowledgement refused",
                &escape(&e),
            )
        }
        Ok(tocsin_alerting::ack::Link { id, level, .. }) => {
            let view = st.view.read().unwrap_or_else(|p| p.into_inner());
            let what = view
                .alerts
                .iter()
                .find(|a| format!("{:016x}", a.fingerprint()) == id)
                .map(|a| format!("{} {}", a.rule, a.labels))
                .unwrap_or_else(|| id.clone());
            html(
                StatusCode::OK,
                "Acknowledge alert / 确认告警",
                &format!(
                    "<p>{} ({})</p><form method=\"post\" action=\"ack\"><input type=\"hidden\" name=\"t\" value=\"{}\"><p><input name=\"by\" placeholder=\"name / 姓名\" required></p><p><input name=\"comment\" placeholder=\"comment / 备注\"></p><p><button type=\"submit\">Acknowledge / 确认</button></p></form>",
                    escape(&what),
                    level.as_str(),
                    escape(&q.t)
                ),
            )
        }
    }
}

#[derive(serde::Deserialize)]
struct AckForm {
    t: String,
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /ack` (form: t, by, comment): acknowledges with a signed link.
async fn ack_link(State(st): State<AppState>, body: Bytes) -> Response {
    let form: AckForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                "Acknowledgement refused",
                &escape(&format!("invalid form: {e}")),
            )
        }
    };
    let (id, level) = match verify_link(&st, &form.t) {
        Ok(l) => (l.id, l.level),
        Err(e) => {
            st.tel.ack_refused.inc();
            return html(
                StatusCode::FORBIDDEN,
                "Acknowledgement refused",
                &escape(&e),
            );
        }
    };
    let by = if form.by.trim().is_empty() {
        "link".to_string()
    } else {
        form.by
    };
    match acknowledge(&st, id, Some(level), by, form.comment).await {
        Ok(a) => html(
            StatusCode::OK,
            "Acknowledged / 已确认",
            &escape(&format!("{} at {}", a.by, format_rfc3339(a.at))),
        ),
        Err(e) => html(e.status, "Acknowledgement refused", &escape(&e.message)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsQuery {
    /// pending, delivered or dead.
    status: Option<String>,
    limit: Option<usize>,
}

/// Runs `f` on the outbox connection off the async threads.
async fn with_outbox<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&tocsin_store::Outbox) -> tocsin_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let ob = Arc::clone(&st.outbox);
    tokio::task::spawn_blocking(move || f(&ob.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// `GET /api/v1/notifications?status=dead&limit=100`: the newest outbox rows.
async fn notifications(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.status {
        if !["pending", "delivered", "dead"].contains(&s.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("status {s:?} must be pending, delivered or dead"),
            ));
        }
    }
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = with_outbox(&st, move |o| o.list(q.status.as_deref(), limit)).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
            let alerts: Vec<Value> = body["alerts"]
                .as_array()
                .map(|a| a.iter().map(|x| x["labels"].clone()).collect())
                .unwrap_or_default();
            json!({
                "id": r.id,
                "receiver": r.receiver,
                "status": r.status,
                "attempts": r.attempts,
                "createdAt": format_rfc3339(r.created_ms),
                "nextAttemptAt": format_rfc3339(r.next_attempt_ms),
                "lastError": r.last_error,
                "notificationStatus": body["status"],
                "kind": body["tocsin"]["kind"],
                "alerts": alerts,
            })
        })
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "notifications": list } }),
    ))
}

/// `POST /api/v1/notifications/{id}/retry`: a dead letter goes back in line (admin).
async fn retry_notification(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if with_outbox(&st, move |o| o.retry_dead(id, now_ms())).await? {
        Ok(Json(json!({ "status": "success" })))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no dead-lettered notification {id}"),
        ))
    }
}

/// An agent on the action API; a per-agent token only for its own host.
fn require_host(bound: &Option<String>, host: Option<&str>) -> Result<(), ApiError> {
    match (bound, host) {
        (Some(bound), Some(h)) if bound != h => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token belongs to host {bound:?}, not {h:?}"),
        )),
        _ => Ok(()),
    }
}

fn request_json(r: &tocsin_remedy::Request) -> Value {
    json!({
        "id": r.id,
        "rule": r.rule,
        "alert": r.alert_id,
        "host": r.host,
        "action": r.action,
        "params": r.params,
        "state": r.state.as_str(),
        "createdAt": format_rfc3339(r.created),
        "dispatchedAt": r.dispatched.map(format_rfc3339),
        "finishedAt": r.finished.map(format_rfc3339),
        "outcome": r.outcome,
        "output": r.output,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    host: String,
}

/// `GET /api/v1/actions/poll?host=H` (agent token): this host's action requests, each once.
async fn poll_actions(
    State(st): State<AppState>,
    axum::Extension(Bound(bound)): axum::Extension<Bound>,
    axum::extract::Query(q): axum::extract::Query<PollQuery>,
) -> Result<Json<Value>, ApiError> {
    require_host(&bound, Some(&q.host))?;
    let reqs = ask_writer(&st, |reply| Msg::PollActions {
        host: q.host,
        reply,
    })
    .await?;
    let list: Vec<Value> = reqs
        .iter()
        .map(|r| json!({ "id": r.id, "action": r.action, "params": r.params }))
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "actions": list } }),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultBody {
    status: tocsin_remedy::ResultStatus,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    output: String,
}

/// `POST /api/v1/actions/{id}/result` (agent token): 409 when the request is not waiting for
/// a result (unknown, or answered already).
async fn action_result(
    State(st): State<AppState>,
    axum::Extension(Bound(bound)): axum::Extension<Bound>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let host = {
        let view = st.view.read().unwrap_or_else(|p| p.into_inner());
        view.actions
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| r.host.clone())
    };
    require_host(&bound, Some(host.as_deref().unwrap_or("")))?;
    let b: ResultBody = json_body(&body, "result")?;
    let reply = writer_reply(&st, |reply| Msg::ActionResult {
        id,
        status: b.status,
        summary: b.summary.chars().take(1000).collect(),
        output: b.output.chars().take(16_384).collect(),
        reply,
    })
    .await?;
    reply
        .map(|()| Json(json!({ "status": "success" })))
        .map_err(op_error)
}

/// The answer to a refused or failed request about an incident or an action: a storage
/// failure is a 503, so the sender tries again.
fn op_error(e: OpFailure) -> ApiError {
    let status = match e {
        OpFailure::NotFound(_) => StatusCode::NOT_FOUND,
        OpFailure::Refused(_) => StatusCode::CONFLICT,
        OpFailure::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

async fn list_actions(State(st): State<AppState>) -> Json<Value> {
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = view.actions.iter().map(request_json).collect();
    Json(json!({ "status": "success", "data": { "actions": list } }))
}

/// `GET /api/v1/audit?limit=N`: the newest rows of the append-only remediation audit log.
async fn audit(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = with_outbox(&st, move |o| o.audit(limit)).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(at, actor, event, detail)| {
            json!({
                "at": format_rfc3339(at),
                "actor": actor,
                "event": event,
                "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::String(detail)),
            })
        })
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "audit": list } }),
    ))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    state: Option<String>,
    severity: Option<String>,
    host: Option<String>,
    /// RFC 3339 or Unix seconds; default: 7 days ago.
    from: Option<String>,
    /// Default: now.
    to: Option<String>,
    limit: Option<usize>,
}

fn window(q: &IncidentQuery) -> Result<(i64, i64), ApiError> {
    let now = now_ms();
    let t = |s: &Option<String>, d: i64| match s {
        None => Ok(d),
        Some(s) => tocsin_model::parse_timestamp(s)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid time {s:?}"))),
    };
    let from = t(&q.from, now - 7 * 86_400_000)?;
    let to = t(&q.to, now + 1)?;
    if to <= from {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "to must be after from",
        ));
    }
    Ok((from, to))
}

async fn load_incidents(
    st: &AppState,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<tocsin_incidents::Incident>, ApiError> {
    let rows = with_outbox(st, move |o| o.incidents(from, to, limit)).await?;
    Ok(rows
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect())
}

fn incident_json(i: &tocsin_incidents::Incident) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    v["opened_at"] = json!(tocsin_incidents::format_time(i.opened_at));
    v["acked_at"] = json!(i.acked_at.map(tocsin_incidents::format_time));
    v["resolved_at"] = json!(i.resolved_at.map(tocsin_incidents::format_time));
    v["time_to_ack_seconds"] = json!(i.time_to_ack_ms().map(|m| m as f64 / 1000.0));
    v["time_to_resolve_seconds"] = json!(i.time_to_resolve_ms().map(|m| m as f64 / 1000.0));
    v["time_to_remediate_seconds"] = json!(i.time_to_remediate_ms().map(|m| m as f64 / 1000.0));
    v
}

/// `GET /api/v1/incidents?state=&severity=&host=&from=&to=`.
async fn list_incidents(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = window(&q)?;
    let severity = match &q.severity {
        None => None,
        Some(s) => Some(
            s.parse::<tocsin_model::Level>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
    };
    let all = load_incidents(&st, from, to, q.limit.unwrap_or(200).min(5000)).await?;
    let list: Vec<Value> = all
        .iter()
        .filter(|i| q.state.as_deref().is_none_or(|s| i.state.as_str() == s))
        .filter(|i| severity.is_none_or(|l| i.severity >= l))
        .filter(|i| q.host.as_ref().is_none_or(|h| i.hosts.contains(h)))
        .map(incident_json)
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "incidents": list } }),
    ))
}

async fn incident_with_timeline(
    st: &AppState,
    id: String,
) -> Result<
    (
        tocsin_incidents::Incident,
        Vec<tocsin_incidents::TimelineEvent>,
    ),
    ApiError,
> {
    let id2 = id.clone();
    let (data, events) = with_outbox(st, move |o| {
        Ok((o.incident(&id2)?, o.incident_events(&id2)?))
    })
    .await?;
    let inc: tocsin_incidents::Incident = data
        .and_then(|d| serde_json::from_str(&d).ok())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no incident {id}")))?;
    let events = events
        .into_iter()
        .map(|(at, kind, text)| tocsin_incidents::TimelineEvent {
            incident: id.clone(),
            at,
            kind,
            text,
        })
        .collect();
    Ok((inc, events))
}

async fn show_incident(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (inc, events) = incident_with_timeline(&st, id).await?;
    let timeline: Vec<Value> = events
        .iter()
        .map(|e| json!({ "at": tocsin_incidents::format_time(e.at), "atMs": e.at, "kind": e.kind, "text": e.text }))
        .collect();
    let mut v = incident_json(&inc);
    v["timeline"] = json!(timeline);
    Ok(Json(json!({ "status": "success", "data": v })))
}

/// `GET /api/v1/incidents/{id}/report`: the post-incident report in Markdown.
async fn incident_report(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let (inc, events) = incident_with_timeline(&st, id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        tocsin_incidents::report(&inc, &events),
    )
        .into_response())
}

/// `GET /api/v1/incidents/stats?from=&to=`.
async fn incident_stats(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = window(&q)?;
    // Incidents opened before the window may still be down inside it: look back a day more.
    let all = load_incidents(&st, from - 86_400_000, to, 100_000).await?;
    let s = tocsin_incidents::stats(&all, from, to, now_ms().min(to));
    Ok(Json(json!({ "status": "success", "data": s })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentBody {
    by: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    text: String,
}

async fn incident_op(
    st: &AppState,
    id: String,
    body: &[u8],
    op: impl FnOnce(IncidentBody) -> Result<IncidentOp, String>,
) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let b: IncidentBody = json_body(body, "body")?;
    if b.by.trim().is_empty() {
        return Err(bad("by is required".into()));
    }
    let op = op(b).map_err(bad)?;
    writer_reply(st, |reply| Msg::Incident { id, op, reply })
        .await?
        .map(|()| Json(json!({ "status": "success" })))
        .map_err(op_error)
}

async fn incident_ack(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        Ok(IncidentOp::Ack {
            by: b.by,
            comment: b.comment,
        })
    })
    .await
}

async fn incident_resolve(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| Ok(IncidentOp::Resolve { by: b.by })).await
}

async fn incident_note(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        if b.text.trim().is_empty() {
            return Err("text is required".into());
        }
        Ok(IncidentOp::Note {
            by: b.by,
            text: b.text,
        })
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    host: String,
    #[serde(default)]
    comment: String,
}

fn reload_tokens(st: &AppState, ob: &tocsin_store::Outbox) -> tocsin_store::Result<()> {
    let t = load_agent_tokens(ob)?;
    *st.agent_tokens.write().unwrap_or_else(|p| p.into_inner()) = t;
    Ok(())
}

/// `POST /api/v1/tokens` (admin) `{"host", "comment"}`: a new token for that host's agent,
/// shown once; only its hash is kept.
async fn issue_token(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let n: NewToken = json_body(&body, "token request")?;
    if n.host.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "host is required"));
    }
    let token = format!("tcn_{}", tocsin_alerting::ack::new_secret());
    let hash = token_hash(&token);
    let st2 = st.clone();
    let host = n.host.clone();
    let id = with_outbox(&st, move |o| {
        let id = o.add_token(&host, &hash, &n.comment, now_ms())?;
        reload_tokens(&st2, o)?;
        Ok(id)
    })
    .await?;
    tracing::info!(id, host = %n.host, "agent token issued");
    Ok(Json(
        json!({ "status": "success", "data": { "id": id, "host": n.host, "token": token } }),
    ))
}

async fn list_tokens(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = with_outbox(&st, |o| o.tokens()).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(id, host, _, comment, created, revoked)| {
            json!({
                "id": id,
                "host": host,
                "comment": comment,
                "createdAt": format_rfc3339(created),
                "revokedAt": revoked.map(format_rfc3339),
            })
        })
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "tokens": list } }),
    ))
}

async fn revoke_token(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let st2 = st.clone();
    let done = with_outbox(&st, move |o| {
        let done = o.revoke_token(id, now_ms())?;
        reload_tokens(&st2, o)?;
        Ok(done)
    })
    .await?;
    if done {
        tracing::info!(id, "agent token revoked");
        Ok(Json(json!({ "status": "success" })))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live token {id}"),
        ))
    }
}
