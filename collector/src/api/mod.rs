//! The collector's HTTP surface: remote-write receiver, JSON API, acknowledgement pages, own
//! metrics and health. One module per resource; access is decided in middleware before any
//! body is read (`crate::access`).

mod ack_page;
mod actions;
mod alertmanager;
mod alerts;
mod audit;
pub mod changes;
mod console;
mod error;
mod incidents;
mod ingest;
mod metrics;
mod notifications;
mod query;
mod reports;
mod rules;
mod session;
mod silences;
mod tokens;

#[cfg(test)]
pub(crate) mod testing;

pub use alerts::AckBody;
pub use changes::ChangeBody;
// What the collector's report job reads, as the API reads it.
pub(crate) use changes::load as load_changes;
pub use error::ApiError;
pub(crate) use error::{with_outbox, with_records};
pub(crate) use incidents::{load_feedback, load_incidents};
pub use incidents::{FeedbackBody, IncidentBody};
pub use silences::NewSilence;
pub use tokens::NewToken;
pub use tokens::{load_agent_tokens, token_hash, AgentTokens};

use std::sync::{Arc, RwLock};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tocsin_config::Secret;
use tokio::sync::mpsc;

use crate::access::{Access, Need};
use crate::view::View;
use crate::writer::Msg;
use crate::Telemetry;
use tokens::authenticate_agent;

#[derive(Clone)]
pub struct AppState {
    pub writer: mpsc::Sender<Msg>,
    /// Looks up the series of a decoded request, off the writer's thread.
    pub resolver: tocsin_store::Resolver,
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
    /// Agent tokens, stored incidents, the audit log (another connection).
    pub records: Arc<std::sync::Mutex<tocsin_store::Records>>,
    pub agent_tokens: Arc<RwLock<AgentTokens>>,
    /// The longest any request may take, body included.
    pub request_timeout: std::time::Duration,
    /// Whether /metrics carries the newest sample of every series too.
    pub federate: bool,
    /// PromQL over the stored history, on readers of its own.
    pub query: Arc<crate::query::QueryService>,
    /// Console sessions.
    pub sessions: crate::session::Sessions,
    /// Session cookies marked `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// Change freezes, and how far before an incident changes are shown.
    pub changes: Arc<changes::ChangePolicy>,
    /// The zone, language, schedules and services of reports.
    pub reporting: Arc<crate::reports::Reporting>,
    /// Reloads the configuration (`POST /-/reload`); none where nothing can be reloaded.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
}

pub fn app(state: AppState) -> Router {
    rules::mark_started();
    use axum::middleware::from_fn_with_state as with;
    use axum::routing::delete;
    // Agents: their token is checked before the body is read.
    let agents = Router::new()
        .route("/api/v1/write", post(ingest::write))
        .route("/api/v1/actions/poll", get(actions::poll))
        .route("/api/v1/actions/{id}/result", post(actions::result))
        .route_layer(with(state.clone(), agent_guard));
    // People and tools: reads need the read (or admin) credential, changes the admin one.
    let api = Router::new()
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{id}/ack", post(alerts::ack))
        .route("/api/v1/hosts", get(alerts::hosts))
        .route("/api/v1/hosts/{host}", delete(alerts::forget_host))
        .route("/api/v1/silences", get(silences::list).post(silences::add))
        .route("/api/v1/silences/preview", post(silences::preview))
        .route("/api/v1/silences/{id}", delete(silences::expire))
        .route("/api/v1/rules", get(rules::list))
        // Alertmanager's API, for amtool and Grafana's Alertmanager data source.
        .route("/api/v2/status", get(alertmanager::status))
        .route("/api/v2/receivers", get(alertmanager::receivers))
        .route(
            "/api/v2/alerts",
            get(alertmanager::alerts).post(alertmanager::post_alerts),
        )
        .route("/api/v2/alerts/groups", get(alertmanager::groups))
        .route(
            "/api/v2/silences",
            get(alertmanager::silences).post(alertmanager::add),
        )
        .route(
            "/api/v2/silence/{id}",
            get(alertmanager::silence).delete(alertmanager::expire),
        )
        .route("/api/v1/status/collector", get(rules::collector_status))
        .route("/api/v1/notifications", get(notifications::list))
        .route(
            "/api/v1/notifications/{id}/retry",
            post(notifications::retry),
        )
        .route("/api/v1/actions", get(actions::list))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::issue))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/stats", get(incidents::stats))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/report", get(incidents::report))
        .route("/api/v1/incidents/{id}/ack", post(incidents::ack))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/api/v1/incidents/{id}/notes", post(incidents::note))
        .route("/api/v1/incidents/{id}/feedback", post(incidents::feedback))
        .route("/api/v1/incidents/{id}/assign", post(incidents::assign))
        .route("/api/v1/incidents/{id}/cause", post(incidents::cause))
        .route("/api/v1/incidents/{id}/impact", post(incidents::impact))
        .route(
            "/api/v1/incidents/{id}/follow-ups",
            post(incidents::follow_up),
        )
        .route(
            "/api/v1/incidents/{id}/follow-ups/{n}",
            post(incidents::follow_up_state),
        )
        .route("/api/v1/changes", get(changes::list).post(changes::add))
        .route("/api/v1/reports/{kind}", get(reports::report))
        .route("/metrics", get(metrics::metrics))
        // The Prometheus query API (Grafana, promtool): reads, by GET or form POST.
        .route("/api/v1/query", get(query::query).post(query::query))
        .route(
            "/api/v1/query_range",
            get(query::query_range).post(query::query_range),
        )
        .route("/api/v1/series", get(query::series).post(query::series))
        .route("/api/v1/labels", get(query::labels).post(query::labels))
        .route("/api/v1/label/{name}/values", get(query::label_values))
        .route("/api/v1/metadata", get(query::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(query::exemplars).post(query::exemplars),
        )
        .route("/api/v1/status/buildinfo", get(query::buildinfo))
        // Prometheus' and Alertmanager's lifecycle endpoint (SIGHUP does the same).
        .route("/-/reload", post(reload))
        .route_layer(with(state.clone(), error::refusals))
        .route_layer(with(state.clone(), api_guard));
    Router::new()
        .merge(agents)
        .merge(api)
        // Acknowledgement links carry their own signature.
        .route("/ack", get(ack_page::page).post(ack_page::submit))
        .route("/ack/feedback", post(ack_page::feedback))
        .route("/healthz", get(|| async { "ok\n" }))
        // The console signs in here; its pages and assets hold no data.
        .route(
            "/api/v1/session",
            get(session::show)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/", get(console::index))
        .route("/console/{asset}", get(console::asset))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(with(state.clone(), request_deadline))
        .with_state(state)
}

/// Reloads the configuration: 200 with what it did, or 400 with every reason it was refused
/// (the previous configuration stays in force).
async fn reload(
    State(st): State<AppState>,
    actor: Option<axum::Extension<Actor>>,
) -> Result<axum::Json<crate::reload::Outcome>, ApiError> {
    let Some(r) = &st.reloader else {
        return Err(ApiError::bad_request(
            "this collector cannot reload its configuration",
        ));
    };
    let by = actor.map_or_else(|| "the API".to_string(), |a| a.0 .0.clone());
    r.reload(&by)
        .await
        .map(axum::Json)
        .map_err(ApiError::bad_request)
}

/// A request to the writer that answers done or a failure.
pub(crate) async fn writer_op(
    st: &AppState,
    msg: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), crate::writer::OpFailure>>) -> Msg,
) -> Result<(), ApiError> {
    error::writer_reply(st, msg).await?.map_err(error::op_error)
}

/// The host a per-agent token binds its requests to (`None`: any host).
#[derive(Clone)]
pub(crate) struct Bound(Option<String>);

/// Agents' routes: the bearer token before anything of the body is read.
pub(crate) async fn agent_guard(
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
                    .with_label_values(&[e.status().as_str()])
                    .inc();
            }
            e.into_response()
        }
    }
}

/// Who made a request, for the audit log.
#[derive(Clone, Debug)]
pub(crate) struct Actor(pub String);

/// People's routes: GET reads, anything else changes state (docs/OPERATIONS.md, "Security
/// model"). `/metrics` is open unless it federates every series. A request carries a bearer
/// token, or the console's session cookie (then a state change must echo the session's CSRF
/// token), or nothing (a collector open on loopback). Every state change that succeeds is
/// recorded in the audit log with who made it.
pub(crate) async fn api_guard(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    if path == "/metrics" && !st.federate {
        return next.run(req).await;
    }
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) || (*req.method() == axum::http::Method::POST && query_reads(&path));
    // Alerts raised elsewhere, posted as to an Alertmanager: their senders' credential, and
    // counted rather than audited (a Prometheus posts every minute).
    let sends = *req.method() == axum::http::Method::POST && path == "/api/v2/alerts";
    // Listing tokens tells who can write: admin only.
    let need = if sends {
        Need::Send
    } else if reads && !path.starts_with("/api/v1/tokens") {
        Need::Read
    } else {
        Need::Admin
    };
    let changes = !reads;
    let actor = match who(&st, req.headers(), need, changes) {
        Ok(a) => a,
        Err(d) => {
            st.tel.api_denied(d.reason, &path, &d.message);
            let e = if d.status == StatusCode::UNAUTHORIZED {
                ApiError::Unauthorized(d.message)
            } else {
                ApiError::Forbidden(d.message)
            };
            return e.into_response();
        }
    };
    if !changes || sends {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the body: {e}")).into_response()
        }
    };
    let mut req = axum::extract::Request::from_parts(parts, axum::body::Body::from(body.clone()));
    req.extensions_mut().insert(actor.clone());
    let resp = next.run(req).await;
    if resp.status().is_success() {
        let event = format!("{method} {path}");
        audit(&st, &actor.0, &event, resp.status(), &body).await;
    }
    resp
}

/// Who a request is, or why it is refused.
fn who(
    st: &AppState,
    headers: &axum::http::HeaderMap,
    need: Need,
    changes: bool,
) -> Result<Actor, crate::access::Denied> {
    let refuse = |status, reason, message: &str| crate::access::Denied {
        status,
        reason,
        message: message.to_string(),
    };
    if changes && cross_site(headers) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "cross_site",
            "a state change from another site is refused",
        ));
    }
    if crate::access::bearer(headers).is_some() {
        st.access.check(headers, need)?;
        return Ok(Actor(format!("{} token", need.as_str())));
    }
    if let Some(s) = st.sessions.get(headers, tocsin_model::now_ms()) {
        if !s.role.allows(need) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "read_only",
                "this session signed in with the read credential: it cannot change anything",
            ));
        }
        if changes && !crate::session::csrf_ok(headers, &s) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token for this session",
            ));
        }
        return Ok(Actor(s.actor()));
    }
    st.access.check(headers, need)?;
    Ok(Actor("loopback (no credential)".into()))
}

/// A browser says so when a page of another site sends the request (`Sec-Fetch-Site`), or
/// its `Origin` is not the host it is sent to.
pub(crate) fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|v| v == "cross-site" || v == "same-site") {
        return true;
    }
    match (get("origin"), get("host")) {
        (Some(o), Some(h)) => {
            let o = o.split_once("://").map_or(o, |(_, rest)| rest);
            o != h
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// Records a state change: who, what, and the request body when it is small JSON (no route
/// that changes state takes a secret in its body; sign-in is recorded on its own).
pub(crate) async fn audit(
    st: &AppState,
    actor: &str,
    event: &str,
    status: StatusCode,
    body: &[u8],
) {
    let mut detail = serde_json::json!({ "status": status.as_u16() });
    if body.len() <= 4096 {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            detail["body"] = v;
        }
    }
    let (actor, event, detail) = (actor.to_string(), event.to_string(), detail.to_string());
    let now = tocsin_model::now_ms();
    if let Err(e) = error::with_records(st, "recording the audit log", move |o| {
        o.append_audit(now, &actor, &event, &detail)
    })
    .await
    {
        tracing::error!(error = ?e, "cannot record a state change in the audit log");
    }
}

/// The query API's POSTs read (Grafana sends its queries as forms).
fn query_reads(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/query"
            | "/api/v1/query_range"
            | "/api/v1/series"
            | "/api/v1/labels"
            | "/api/v1/query_exemplars"
            | "/api/v1/silences/preview"
    )
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
pub(crate) async fn request_deadline(
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
            ApiError::Unavailable {
                message: msg,
                retry_after: Some(5),
            }
            .into_response()
        }
        Err(_) => {
            let msg = format!(
                "request to {path} took longer than {:?}; cut off (slow client?)",
                st.request_timeout
            );
            st.tel.ingest_rejected("timeout", &msg);
            ApiError::Timeout(msg).into_response()
        }
    }
}

/// A name (who, an owner, a rule, a category): one line of at most 200 bytes, without control
/// characters — it becomes a label (`owner` routes the assignment notice) and a table cell.
pub(crate) fn required(v: Option<&str>, what: &str) -> Result<String, String> {
    match v {
        Some(v) if !v.trim().is_empty() && fits_name(v) => Ok(v.to_string()),
        _ => Err(format!(
            "{what} is required (one line of at most 200 bytes, no control characters)"
        )),
    }
}

/// Whether `v` fits as a name: one line of at most 200 bytes, without control characters.
pub(crate) fn fits_name(v: &str) -> bool {
    v.len() <= 200 && !v.chars().any(char::is_control)
}
