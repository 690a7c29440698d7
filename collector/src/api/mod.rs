//! The collector's HTTP surface: remote-write receiver, JSON API, acknowledgement pages, own
//! metrics and health. One module per resource; access is decided in middleware before any
//! body is read (`crate::access`).

mod ack_page;
mod actions;
mod alerts;
mod audit;
mod error;
mod incidents;
mod ingest;
mod metrics;
mod notifications;
mod query;
mod silences;
mod tokens;

#[cfg(test)]
pub(crate) mod testing;

pub use alerts::AckBody;
pub use error::ApiError;
pub use incidents::IncidentBody;
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
}

pub fn app(state: AppState) -> Router {
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
        .route("/api/v1/silences", get(silences::list).post(silences::add))
        .route("/api/v1/silences/{id}", delete(silences::expire))
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
        .route_layer(with(state.clone(), api_guard));
    Router::new()
        .merge(agents)
        .merge(api)
        // Acknowledgement links carry their own signature.
        .route("/ack", get(ack_page::page).post(ack_page::submit))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(with(state.clone(), request_deadline))
        .with_state(state)
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

/// People's routes: GET reads, anything else changes state (docs/OPERATIONS.md, "Security
/// model"). `/metrics` is open unless it federates every series.
pub(crate) async fn api_guard(
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
    ) || (*req.method() == axum::http::Method::POST && query_reads(path));
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
            let e = if d.status == StatusCode::UNAUTHORIZED {
                ApiError::Unauthorized(d.message)
            } else {
                ApiError::Forbidden(d.message)
            };
            e.into_response()
        }
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
