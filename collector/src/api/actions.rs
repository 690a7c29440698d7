//! `/api/v1/actions`: remediation requests, polled by agents, and their results.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;

use super::error::ask_writer;
use super::error::json_body;
use super::error::op_error;
use super::error::writer_reply;
use super::error::ApiError;
use super::AppState;
use super::Bound;
use crate::writer::Msg;

/// An agent on the action API; a per-agent token only for its own host.
pub(crate) fn require_host(bound: &Option<String>, host: Option<&str>) -> Result<(), ApiError> {
    match (bound, host) {
        (Some(bound), Some(h)) if bound != h => Err(ApiError::Forbidden(format!(
            "this token belongs to host {bound:?}, not {h:?}"
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn request_json(r: &tocsin_remedy::Request) -> Value {
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
pub(crate) struct PollQuery {
    pub(crate) host: String,
}

/// `GET /api/v1/actions/poll?host=H` (agent token): this host's action requests, each once.
pub(crate) async fn poll(
    State(st): State<AppState>,
    axum::Extension(Bound(bound)): axum::Extension<Bound>,
    super::error::Query(q): super::error::Query<PollQuery>,
) -> Result<Json<Value>, ApiError> {
    require_host(&bound, Some(&q.host))?;
    let reqs = ask_writer(&st, "handing out action requests", |reply| {
        Msg::PollActions {
            host: q.host,
            reply,
        }
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
pub(crate) struct ResultBody {
    pub(crate) status: tocsin_remedy::ResultStatus,
    #[serde(default)]
    pub(crate) summary: String,
    #[serde(default)]
    pub(crate) output: String,
}

/// `POST /api/v1/actions/{id}/result` (agent token): 409 when the request is not waiting for
/// a result (unknown, or answered already).
pub(crate) async fn result(
    State(st): State<AppState>,
    axum::Extension(Bound(bound)): axum::Extension<Bound>,
    super::error::Path(id): super::error::Path<String>,
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

pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = view.actions.iter().map(request_json).collect();
    Json(json!({ "status": "success", "data": { "actions": list } }))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testing::TestApi;

    #[tokio::test]
    async fn an_agent_polls_for_its_host_and_reports_results_of_what_it_was_given() {
        let api = TestApi::new("", "");
        let a = api.get("/api/v1/actions/poll?host=h1").await;
        assert_eq!(
            (a.status, &a.json["data"]["actions"]),
            (StatusCode::OK, &json!([]))
        );
        let a = api.get("/api/v1/actions/poll").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = api
            .call(
                "POST",
                "/api/v1/actions/act-1/result",
                None,
                Some(json!({"status": "succeeded"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.json);
        let a = api
            .call(
                "POST",
                "/api/v1/actions/act-1/result",
                None,
                Some(json!({"status": "fine"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        let a = api.get("/api/v1/actions").await;
        assert_eq!(
            (a.status, &a.json["data"]["actions"]),
            (StatusCode::OK, &json!([]))
        );
    }

    #[tokio::test]
    async fn a_per_agent_token_polls_only_for_its_own_host() {
        let api = TestApi::new("", "");
        let t = api
            .call("POST", "/api/v1/tokens", None, Some(json!({"host": "h1"})))
            .await;
        let token = t.json["data"]["token"].as_str().unwrap().to_string();
        let a = api
            .call("GET", "/api/v1/actions/poll?host=h2", Some(&token), None)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.json);
        let a = api
            .call("GET", "/api/v1/actions/poll?host=h1", Some(&token), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let a = api
            .call("GET", "/api/v1/actions/poll?host=h1", None, None)
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
}
