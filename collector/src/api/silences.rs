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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NewSilence {
    pub(crate) matchers: Vec<tocsin_alerting::silence::MatcherSpec>,
    pub(crate) starts_at: Option<String>,
    pub(crate) ends_at: Option<String>,
    /// Instead of endsAt, e.g. "2h".
    pub(crate) duration: Option<String>,
    pub(crate) created_by: String,
    pub(crate) comment: String,
    /// A recurring window within startsAt..endsAt: a maintenance window.
    pub(crate) schedule: Option<tocsin_alerting::silence::ScheduleSpec>,
}

/// How far a recurring window with no end reaches.
pub(crate) const FOREVER_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

pub(crate) async fn add(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
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
    let id = ask_writer(&st, "adding a silence", |reply| Msg::AddSilence {
        silence,
        reply,
    })
    .await?;
    Ok(Json(
        json!({ "status": "success", "data": { "silenceId": id } }),
    ))
}

pub(crate) async fn expire(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if ask_writer(&st, "expiring a silence", |reply| Msg::ExpireSilence {
        id,
        reply,
    })
    .await?
    {
        Ok(Json(json!({ "status": "success" })))
    } else {
        Err(ApiError::not_found(format!("no silence {id}")))
    }
}

pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
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
