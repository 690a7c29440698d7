//! `/api/v1/alerts`, `/api/v1/hosts`, and acknowledging an alert through the API.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_model::now_ms;

use super::error::json_body;
use super::error::writer_reply;
use super::error::ApiError;
use super::AppState;
use crate::writer::{AckFailure, Msg};

pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
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

pub(crate) async fn hosts(State(st): State<AppState>) -> Json<Value> {
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

pub(crate) fn ack_json(a: &tocsin_dispatch::Ack) -> Value {
    json!({
        "by": a.by,
        "comment": a.comment,
        "at": format_rfc3339(a.at),
        "level": a.level.as_str(),
    })
}

/// Acknowledges through the writer; 404 when not firing, 409 when the level rose past a link.
pub(crate) async fn acknowledge(
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
            Err(ApiError::not_found(e.to_string()))
        }
        Err(AckFailure::Refused(e)) => Err(ApiError::Conflict(e.to_string())),
        Err(AckFailure::Storage(e)) => Err(ApiError::unavailable(e)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    pub(crate) by: String,
    #[serde(default)]
    pub(crate) comment: String,
}

/// `POST /api/v1/alerts/{id}/ack` with `{"by": …, "comment": …}` (admin token if set).
pub(crate) async fn ack(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let b: AckBody = json_body(&body, "ack")?;
    if b.by.trim().is_empty() {
        return Err(bad("by is required: who acknowledges".into()));
    }
    let a = acknowledge(&st, id, None, b.by, b.comment).await?;
    Ok(Json(
        json!({ "status": "success", "data": { "ack": ack_json(&a) } }),
    ))
}
