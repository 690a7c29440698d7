//! `/api/v1/audit`: the audit log.

use super::error::with_records;
use super::error::ApiError;
use super::notifications::NotificationsQuery;
use super::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;

/// `GET /api/v1/audit?limit=N`: the newest rows of the append-only remediation audit log.
pub(crate) async fn list(
    State(st): State<AppState>,
    super::error::Query(q): super::error::Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = with_records(&st, "reading the audit log", move |o| o.audit(limit)).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "at": format_rfc3339(r.at_ms),
                "actor": r.actor,
                "event": r.event,
                "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::String(r.detail)),
            })
        })
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "audit": list } }),
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testing::TestApi;

    #[tokio::test]
    async fn the_audit_log_is_read_with_a_limit() {
        let api = TestApi::new("", "");
        let a = api.get("/api/v1/audit?limit=5").await;
        assert_eq!(
            (a.status, &a.json["data"]["audit"]),
            (StatusCode::OK, &json!([]))
        );
        let a = api.get("/api/v1/audit?limit=many").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
}
