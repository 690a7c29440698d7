//! `/api/v1/silences`: silences and maintenance windows.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_model::now_ms;

use super::error::ask_writer;
use super::error::json_body;
use super::error::ApiError;
use super::AppState;
use crate::writer::Msg;

/// `POST /api/v1/silences`, as the API takes it and the CLI sends it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewSilence {
    pub matchers: Vec<tocsin_alerting::silence::MatcherSpec>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// Instead of endsAt, e.g. "2h".
    pub duration: Option<String>,
    pub created_by: String,
    pub comment: String,
    /// A recurring window within startsAt..endsAt: a maintenance window.
    pub schedule: Option<tocsin_alerting::silence::ScheduleSpec>,
}

/// How far a recurring window with no end reaches.
pub(crate) const FOREVER_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

pub(crate) async fn add(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let n: NewSilence = json_body(&body, "silence")?;
    let id = create(&st, n).await?;
    Ok(Json(
        json!({ "status": "success", "data": { "silenceId": id } }),
    ))
}

/// Checks a new silence and stores it; its id.
pub(crate) async fn create(st: &AppState, n: NewSilence) -> Result<i64, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    tocsin_alerting::silence::validate(&n.matchers).map_err(|e| bad(e.to_string()))?;
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
    super::required(Some(&n.created_by), "createdBy").map_err(bad)?;
    if n.comment.len() > 2000 {
        return Err(bad("comment: at most 2000 bytes".into()));
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
    ask_writer(st, "adding a silence", |reply| Msg::AddSilence {
        silence,
        reply,
    })
    .await
}

pub(crate) async fn expire(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    end(&st, id).await?;
    Ok(Json(json!({ "status": "success" })))
}

/// Ends a silence now; 404 when there is none of that id.
pub(crate) async fn end(st: &AppState, id: i64) -> Result<(), ApiError> {
    if ask_writer(st, "expiring a silence", |reply| Msg::ExpireSilence {
        id,
        reply,
    })
    .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no silence {id}")))
    }
}

/// A stored silence's state at `now`.
pub(crate) fn state(s: &tocsin_store::Silence, now: i64) -> &'static str {
    if s.starts_ms > now {
        "pending"
    } else if s.ends_ms <= now {
        "expired"
    } else {
        "active"
    }
}

/// `POST /api/v1/silences/preview` `{"matchers": [...]}` (a read): the alerts a silence with
/// these matchers would catch now, so a person sees what they mute before they do.
pub(crate) async fn preview(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Preview {
        matchers: Vec<tocsin_alerting::silence::MatcherSpec>,
    }
    let p: Preview = json_body(&body, "preview")?;
    let now = now_ms();
    let s = tocsin_alerting::silence::Silence::matching(&p.matchers)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let caught: Vec<Value> = view
        .alerts
        .iter()
        .filter(|a| s.matches(&a.labels, now))
        .map(|a| {
            json!({
                "id": format!("{:016x}", a.fingerprint()),
                "rule": a.rule,
                "level": a.level.map(|l| l.as_str()),
                "labels": a.labels,
            })
        })
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "alerts": caught } }),
    ))
}

pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
    let now = now_ms();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = view
        .silences
        .iter()
        // In force or to come (Alertmanager's API lists the ended ones too).
        .filter(|s| s.ends_ms > now)
        .map(|s| {
            json!({
                "id": s.id,
                "matchers": serde_json::from_str::<Value>(&s.matchers).unwrap_or(Value::Null),
                "startsAt": format_rfc3339(s.starts_ms),
                "endsAt": format_rfc3339(s.ends_ms),
                "createdBy": s.author,
                "comment": s.comment,
                "schedule": s.schedule.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
                "state": state(s, now),
            })
        })
        .collect();
    Json(json!({ "status": "success", "data": { "silences": list } }))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testing::TestApi;

    fn silence(matchers: serde_json::Value) -> serde_json::Value {
        json!({"matchers": matchers, "duration": "1h", "createdBy": "alice", "comment": "maintenance"})
    }

    #[tokio::test]
    async fn a_silence_is_added_listed_and_expired() {
        let api = TestApi::new("", "");
        let a = api
            .call(
                "POST",
                "/api/v1/silences",
                None,
                Some(silence(
                    json!([{"name": "host", "value": "db-.*", "isRegex": true}]),
                )),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let id = a.json["data"]["silenceId"].as_i64().unwrap();
        let listed = api.get("/api/v1/silences").await.json;
        let s = &listed["data"]["silences"][0];
        assert_eq!(
            (s["id"].as_i64(), &s["state"], &s["createdBy"]),
            (Some(id), &json!("active"), &json!("alice"))
        );
        assert_eq!(s["matchers"][0]["isRegex"], true);
        let a = api
            .call("DELETE", &format!("/api/v1/silences/{id}"), None, None)
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let a = api.call("DELETE", "/api/v1/silences/999", None, None).await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("no silence 999"))
        );
    }

    #[tokio::test]
    async fn a_bad_silence_is_refused_with_what_is_wrong() {
        let api = TestApi::new("", "");
        let cases = [
            (silence(json!([])), "a silence needs at least one matcher"),
            (
                silence(json!([{"name": "host", "value": "(", "isRegex": true}])),
                "regex",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "duration": "1h", "endsAt": "2030-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}),
                "exactly one of endsAt and duration",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "endsAt": "2001-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}),
                "in the future",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "duration": "1h", "createdBy": " ", "comment": "c"}),
                "createdBy and comment are required",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "duration": "1h", "createdBy": "a\nb", "comment": "c"}),
                "createdBy is required (one line",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "duration": "1h", "createdBy": "a", "comment": "c".repeat(2001)}),
                "comment: at most 2000 bytes",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "duration": "1h", "createdBy": "a", "comment": "c", "owner": "x"}),
                "invalid silence",
            ),
            (
                json!({"matchers": [{"name": "a", "value": "b"}], "createdBy": "a", "comment": "c", "schedule": {"start": "25:00", "end": "02:00"}}),
                "schedule",
            ),
        ];
        for (body, says) in cases {
            let a = api
                .call("POST", "/api/v1/silences", None, Some(body.clone()))
                .await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
            let msg = a.json["error"].as_str().unwrap_or_default();
            assert!(msg.contains(says), "{body}: {msg}");
        }
        assert_eq!(
            api.get("/api/v1/silences").await.json["data"]["silences"],
            json!([])
        );
    }

    #[tokio::test]
    async fn with_an_admin_token_a_silence_needs_it() {
        let api = TestApi::new("admin_token: s3cret\n", "");
        let body = silence(json!([{"name": "host", "value": "a"}]));
        let a = api
            .call("POST", "/api/v1/silences", None, Some(body.clone()))
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.headers["www-authenticate"], "Bearer");
        let a = api
            .call(
                "POST",
                "/api/v1/silences",
                Some("wrong"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let a = api
            .call("POST", "/api/v1/silences", Some("s3cret"), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
}
