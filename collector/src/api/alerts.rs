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
    let rules: std::collections::HashMap<&str, &tocsin_rules::Rule> =
        view.rules.iter().map(|r| (r.name.as_str(), &**r)).collect();
    let mut list: Vec<Value> = view
        .alerts
        .iter()
        .map(|a| {
            let id = format!("{:016x}", a.fingerprint());
            let (silenced_by, inhibited_by) = view.held.get(&id).cloned().unwrap_or_default();
            let rule = rules.get(a.rule.as_str());
            json!({
                "rule": a.rule,
                "state": if a.level.is_some() { "firing" } else { "pending" },
                "level": a.level.map(|l| l.as_str()),
                "labels": a.labels,
                "annotations": a.annotations,
                "since": a.active_at.or(a.pending_since()).map(format_rfc3339),
                "levelSince": a.level_since.map(format_rfc3339),
                "value": a.value,
                "score": rule.and_then(|r| r.dynamic.as_ref()).map(|_| a.score),
                "thresholds": rule.map(|r| super::rules::levels_json(r)),
                "expr": rule.map(|r| r.expr_text.as_str()),
                "silencedBy": silenced_by,
                // Raised by a rule here, or posted from elsewhere (whose names no rule has).
                "source": if rule.is_some() { "rule" } else { "posted" },
                "inhibited": !inhibited_by.is_empty(),
                "inhibitedBy": inhibited_by,
                "fingerprint": id,
                "id": id,
                "ack": view.acks.get(&id).map(ack_json),
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

/// `DELETE /api/v1/hosts/{host}` (admin): take a host out of service — it is forgotten (no
/// `HostDown` for it) and its alerts resolve, reason `host removed`. An agent still running
/// there brings it back with its next request.
pub(crate) async fn forget_host(
    State(st): State<AppState>,
    super::error::Path(host): super::error::Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::error::writer_reply(&st, |reply| Msg::ForgetHost {
        host: host.clone(),
        reply,
    })
    .await?
    .map(|()| Json(json!({ "status": "success", "data": { "host": host } })))
    .map_err(super::error::op_error)
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
                "clockBehindSeconds": h.clock_behind_ms.map(|i| i as f64 / 1000.0),
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

/// `POST /api/v1/alerts/{id}/ack`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub by: String,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/alerts/{id}/ack` with `{"by": …, "comment": …}` (admin token if set).
pub(crate) async fn ack(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let b: AckBody = json_body(&body, "ack")?;
    super::required(Some(&b.by), "by (who acknowledges)").map_err(bad)?;
    let a = acknowledge(&st, id, None, b.by, b.comment).await?;
    Ok(Json(
        json!({ "status": "success", "data": { "ack": ack_json(&a) } }),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testing::{series, TestApi};

    /// One rule: `Hot` fires at warning above 5, at critical above 50.
    pub(crate) const HOT: &str = r#"
rules:
  - name: Hot
    expr: t_value
    levels:
      warning: { when: "> 5" }
      critical: { when: "> 50" }
    labels: { category: host }
"#;

    /// A collector with `Hot` firing at `value` on host h1; the alert's id.
    pub(crate) async fn firing(config: &str, value: f64) -> (TestApi, String) {
        let api = TestApi::new(config, HOT);
        let s = series(&[("__name__", "t_value"), ("host", "h1")], value);
        assert_eq!(api.write(&[s]).await, StatusCode::NO_CONTENT);
        let a = api
            .wait_for("/api/v1/alerts", |a| {
                a.json["data"]["alerts"][0]["state"] == "firing"
            })
            .await;
        let id = a.json["data"]["alerts"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        (api, id)
    }

    #[tokio::test]
    async fn a_firing_alert_and_its_host_are_listed() {
        let (api, id) = firing("", 60.0).await;
        let a = api.get("/api/v1/alerts").await.json;
        let alert = &a["data"]["alerts"][0];
        assert_eq!(alert["rule"], "Hot");
        assert_eq!(alert["level"], "critical");
        assert_eq!(alert["labels"]["host"], "h1");
        assert_eq!(alert["value"], 60.0);
        assert_eq!(alert["ack"], json!(null));
        assert_eq!(id.len(), 16);
        // Hosts are judged on the writer's ticks.
        api.tick().await;
        let h = api
            .wait_for("/api/v1/hosts", |a| {
                a.json["data"]["hosts"][0]["host"] == "h1"
            })
            .await;
        assert_eq!(h.json["data"]["hosts"][0]["up"], true);
    }

    #[tokio::test]
    async fn an_acknowledgement_is_kept_and_shown_and_refused_for_what_does_not_fire() {
        let (api, id) = firing("", 10.0).await;
        let path = format!("/api/v1/alerts/{id}/ack");
        let a = api
            .call("POST", &path, None, Some(json!({"comment": "x"})))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        let a = api
            .call("POST", &path, None, Some(json!({"by": " "})))
            .await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some(
                    "by (who acknowledges) is required (one line of at most 200 bytes, no control characters)"
                )
            )
        );
        let a = api
            .call(
                "POST",
                &path,
                None,
                Some(json!({"by": "alice", "comment": "on it"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        assert_eq!(a.json["data"]["ack"]["level"], "warning");
        let shown = api
            .wait_for("/api/v1/alerts", |a| {
                a.json["data"]["alerts"][0]["ack"]["by"] == "alice"
            })
            .await;
        assert_eq!(shown.json["data"]["alerts"][0]["ack"]["comment"], "on it");
        let a = api
            .call(
                "POST",
                "/api/v1/alerts/0000000000000000/ack",
                None,
                Some(json!({"by": "bob"})),
            )
            .await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("the alert is not firing"))
        );
    }
}
