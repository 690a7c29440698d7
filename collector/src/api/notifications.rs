//! `/api/v1/notifications`: the outbox, dead letters and retries.

use super::error::with_outbox;
use super::error::ApiError;
use super::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_model::now_ms;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotificationsQuery {
    /// pending, delivered or dead.
    pub(crate) status: Option<String>,
    pub(crate) limit: Option<usize>,
}

/// `GET /api/v1/notifications?status=dead&limit=100`: the newest outbox rows.
pub(crate) async fn list(
    State(st): State<AppState>,
    super::error::Query(q): super::error::Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.status {
        if !["pending", "delivered", "dead"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status {s:?} must be pending, delivered or dead"
            )));
        }
    }
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = with_outbox(&st, "listing notifications", move |o| {
        o.list(q.status.as_deref(), limit)
    })
    .await?;
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
pub(crate) async fn retry(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if with_outbox(&st, "retrying a notification", move |o| {
        o.retry_dead(id, now_ms())
    })
    .await?
    {
        Ok(Json(json!({ "status": "success" })))
    } else {
        Err(ApiError::not_found(format!(
            "no dead-lettered notification {id}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::api::alerts::tests::firing;

    #[tokio::test]
    async fn the_outbox_lists_what_was_queued_and_refuses_unknown_filters() {
        let config = "receivers: [{ name: hook, webhook: { url: \"http://127.0.0.1:9/x\" } }]\n";
        let (api, _) = firing(config, 10.0).await;
        let a = api
            .wait_for("/api/v1/notifications", |a| {
                a.json["data"]["notifications"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            })
            .await;
        let n = &a.json["data"]["notifications"][0];
        assert_eq!(
            (&n["receiver"], &n["notificationStatus"]),
            (&"hook".into(), &"firing".into())
        );
        assert_eq!(n["alerts"][0]["alertname"], "Hot");
        let a = api.get("/api/v1/notifications?status=lost").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        // Only a dead letter can be retried.
        let id = n["id"].as_i64().unwrap();
        let a = api
            .call(
                "POST",
                &format!("/api/v1/notifications/{id}/retry"),
                None,
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.json);
    }
}
