//! `/api/v1/incidents`: incidents, their timelines, reports and statistics, and changes by people.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::IncidentOp;
use tocsin_model::now_ms;

use super::error::json_body;
use super::error::op_error;
use super::error::with_records;
use super::error::writer_reply;
use super::error::ApiError;
use super::AppState;
use crate::writer::Msg;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentQuery {
    pub(crate) state: Option<tocsin_incidents::State>,
    pub(crate) severity: Option<String>,
    pub(crate) host: Option<String>,
    /// RFC 3339 or Unix seconds; default: 7 days ago.
    pub(crate) from: Option<String>,
    /// Default: now.
    pub(crate) to: Option<String>,
    pub(crate) limit: Option<usize>,
}

pub(crate) fn window(q: &IncidentQuery) -> Result<(i64, i64), ApiError> {
    let now = now_ms();
    let t = |s: &Option<String>, d: i64| match s {
        None => Ok(d),
        Some(s) => tocsin_model::parse_timestamp(s)
            .ok_or_else(|| ApiError::bad_request(format!("invalid time {s:?}"))),
    };
    let from = t(&q.from, now - 7 * 86_400_000)?;
    let to = t(&q.to, now + 1)?;
    if to <= from {
        return Err(ApiError::bad_request("to must be after from"));
    }
    Ok((from, to))
}

pub(crate) async fn load_incidents(
    st: &AppState,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<tocsin_incidents::Incident>, ApiError> {
    let rows = with_records(st, "listing incidents", move |o| {
        o.incidents(from, to, limit)
    })
    .await?;
    let mut unreadable = 0usize;
    let list = rows
        .iter()
        .filter_map(|j| {
            serde_json::from_str(j)
                .inspect_err(|_| unreadable += 1)
                .ok()
        })
        .collect();
    if unreadable > 0 {
        // Left out of the answer, not failing it: the rest of the history stays readable.
        tracing::warn!(
            unreadable,
            "stored incidents that cannot be read were left out"
        );
    }
    Ok(list)
}

pub(crate) fn incident_json(i: &tocsin_incidents::Incident) -> Value {
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
pub(crate) async fn list(
    State(st): State<AppState>,
    super::error::Query(q): super::error::Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = window(&q)?;
    let severity = match &q.severity {
        None => None,
        Some(s) => Some(
            s.parse::<tocsin_model::Level>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let all = load_incidents(&st, from, to, q.limit.unwrap_or(200).min(5000)).await?;
    let list: Vec<Value> = all
        .iter()
        .filter(|i| q.state.is_none_or(|s| i.state == s))
        .filter(|i| severity.is_none_or(|l| i.severity >= l))
        .filter(|i| q.host.as_ref().is_none_or(|h| i.hosts.contains(h)))
        .map(incident_json)
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "incidents": list } }),
    ))
}

pub(crate) async fn incident_with_timeline(
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
    let (data, events) = with_records(st, "reading an incident", move |o| {
        Ok((o.incident(&id2)?, o.incident_events(&id2)?))
    })
    .await?;
    let inc: tocsin_incidents::Incident = data
        .and_then(|d| serde_json::from_str(&d).ok())
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let events = events
        .into_iter()
        .map(|e| tocsin_incidents::TimelineEvent {
            incident: id.clone(),
            at: e.at_ms,
            kind: e.kind,
            text: e.text,
        })
        .collect();
    Ok((inc, events))
}

/// What people added around an incident: the changes before it and the feedback on its
/// alerts, each also as timeline entries in time order.
pub(crate) struct Context {
    pub(crate) changes: Vec<tocsin_incidents::Change>,
    pub(crate) feedback: Vec<tocsin_incidents::Feedback>,
}

pub(crate) async fn context(
    st: &AppState,
    inc: &tocsin_incidents::Incident,
    events: &mut Vec<tocsin_incidents::TimelineEvent>,
) -> Result<Context, ApiError> {
    let changes = super::changes::of_incident(st, inc).await?;
    let id = inc.id.clone();
    let feedback: Vec<tocsin_incidents::Feedback> =
        with_records(st, "reading feedback", move |o| o.feedback_of(&id))
            .await?
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
    for c in &changes {
        events.push(tocsin_incidents::TimelineEvent {
            incident: inc.id.clone(),
            at: c.start_ms,
            kind: "change".into(),
            text: format!("{} of {} by {}: {}", c.kind, c.service, c.by, c.summary),
        });
    }
    for f in &feedback {
        events.push(tocsin_incidents::TimelineEvent {
            incident: inc.id.clone(),
            at: f.at,
            kind: "feedback".into(),
            text: format!("{} said {} of {}", f.by, f.verdict.as_str(), f.rule),
        });
    }
    // Stable: stored events keep their order among themselves.
    events.sort_by_key(|e| e.at);
    Ok(Context { changes, feedback })
}

pub(crate) async fn show(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (inc, mut events) = incident_with_timeline(&st, id).await?;
    let cx = context(&st, &inc, &mut events).await?;
    let timeline: Vec<Value> = events
        .iter()
        .map(|e| json!({ "at": tocsin_incidents::format_time(e.at), "atMs": e.at, "kind": e.kind, "text": e.text }))
        .collect();
    let mut v = incident_json(&inc);
    v["timeline"] = json!(timeline);
    v["changes"] = json!(cx
        .changes
        .iter()
        .map(super::changes::change_json)
        .collect::<Vec<_>>());
    v["feedback"] = json!(cx.feedback);
    Ok(Json(json!({ "status": "success", "data": v })))
}

/// `GET /api/v1/incidents/{id}/report`: the post-incident report in Markdown.
pub(crate) async fn report(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
) -> Result<Response, ApiError> {
    let (inc, mut events) = incident_with_timeline(&st, id).await?;
    let cx = context(&st, &inc, &mut events).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        tocsin_incidents::report(&inc, &events, &cx.changes, &cx.feedback),
    )
        .into_response())
}

/// `GET /api/v1/incidents/stats?from=&to=`.
pub(crate) async fn stats(
    State(st): State<AppState>,
    super::error::Query(q): super::error::Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = window(&q)?;
    // Incidents opened before the window may still be down inside it: look back a day more.
    let all = load_incidents(&st, from - 86_400_000, to, 100_000).await?;
    let s = tocsin_incidents::stats(&all, from, to, now_ms().min(to));
    let feedback = load_feedback(&st, from, to).await?;
    let rules = tocsin_incidents::rule_review(&all, &feedback, from, to);
    let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
    v["rules_to_review"] = json!(rules
        .iter()
        .filter(|r| r.review.is_some())
        .collect::<Vec<_>>());
    v["rules"] = json!(rules);
    Ok(Json(json!({ "status": "success", "data": v })))
}

pub(crate) async fn load_feedback(
    st: &AppState,
    from: i64,
    to: i64,
) -> Result<Vec<tocsin_incidents::Feedback>, ApiError> {
    Ok(
        with_records(st, "reading feedback", move |o| o.feedback(from, to))
            .await?
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect(),
    )
}

/// `POST /api/v1/incidents/{id}/feedback`: what someone says of one of its alerts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    pub by: String,
    /// useful, noise, wrong_level or duplicate.
    pub verdict: String,
    /// The alert's rule; may be left out when the incident has alerts of one rule only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default)]
    pub comment: String,
}

pub(crate) async fn feedback(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: FeedbackBody = json_body(&body, "body")?;
    let bad = |m: String| ApiError::bad_request(m);
    super::required(Some(&b.by), "by").map_err(bad)?;
    if b.comment.len() > 2000 {
        return Err(bad("comment: at most 2000 bytes".into()));
    }
    let verdict = tocsin_incidents::Verdict::parse(&b.verdict).ok_or_else(|| {
        bad(format!(
            "verdict {:?} is not one of useful, noise, wrong_level, duplicate",
            b.verdict
        ))
    })?;
    let (inc, _) = incident_with_timeline(&st, id.clone()).await?;
    let rules: std::collections::BTreeSet<&str> =
        inc.alerts.values().map(|a| a.rule.as_str()).collect();
    let rule = match (&b.rule, rules.len()) {
        (Some(r), _) if rules.contains(r.as_str()) => r.clone(),
        (None, 1) => rules.first().map(|r| r.to_string()).unwrap_or_default(),
        _ => {
            return Err(bad(format!(
                "rule must name one of the incident's alerts: {}",
                rules.into_iter().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    record_feedback(
        &st,
        tocsin_incidents::Feedback {
            incident: id,
            rule,
            verdict,
            by: b.by,
            comment: b.comment,
            at: now_ms(),
        },
    )
    .await?;
    Ok(Json(json!({ "status": "success" })))
}

/// Feedback one incident may gather.
const MAX_FEEDBACK: usize = 200;

/// Stores feedback (from the API or an acknowledgement page) and counts it.
pub(crate) async fn record_feedback(
    st: &AppState,
    f: tocsin_incidents::Feedback,
) -> Result<(), ApiError> {
    let json = serde_json::to_string(&f).map_err(|_| ApiError::Internal)?;
    let (at, id, verdict) = (f.at, f.incident.clone(), f.verdict);
    // Bounded per incident: a signed link in a message can give feedback without a
    // credential, and must not be able to fill the database.
    let stored = with_records(st, "recording feedback", move |o| {
        if o.feedback_of(&id)?.len() >= MAX_FEEDBACK {
            return Ok(false);
        }
        o.add_feedback(at, &id, &json).map(|_| true)
    })
    .await?;
    if !stored {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_FEEDBACK} pieces of feedback per incident"
        )));
    }
    st.tel.feedback.with_label_values(&[verdict.as_str()]).inc();
    Ok(())
}

/// `POST /api/v1/incidents/{id}/ack|resolve|notes|assign|cause|impact|follow-ups[/{n}]`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentBody {
    pub by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// assign: the person or team; follow-ups: who does it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// cause: one of change, configuration, capacity, hardware, network, dependency,
    /// software, human, external, unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// follow-ups/{n}: open, done or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

const MAX_FIELD: usize = 2000;

fn text_of(b: &IncidentBody) -> Result<String, String> {
    if b.text.trim().is_empty() || b.text.len() > MAX_FIELD {
        return Err(format!("text is required (at most {MAX_FIELD} bytes)"));
    }
    Ok(b.text.clone())
}

fn edit(b: IncidentBody, e: tocsin_incidents::Edit) -> IncidentOp {
    IncidentOp::Edit { by: b.by, edit: e }
}

pub(crate) async fn assign(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        let owner = super::required(b.owner.as_deref(), "owner")?;
        Ok(edit(b, tocsin_incidents::Edit::Assign { owner }))
    })
    .await
}

pub(crate) async fn cause(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        let category = super::required(b.category.as_deref(), "category")?;
        if !tocsin_incidents::CAUSE_CATEGORIES.contains(&category.as_str()) {
            return Err(format!(
                "category {category:?} is not one of {}",
                tocsin_incidents::CAUSE_CATEGORIES.join(", ")
            ));
        }
        let text = text_of(&b)?;
        Ok(edit(b, tocsin_incidents::Edit::Cause { category, text }))
    })
    .await
}

pub(crate) async fn impact(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        let text = text_of(&b)?;
        Ok(edit(b, tocsin_incidents::Edit::Impact { text }))
    })
    .await
}

pub(crate) async fn follow_up(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        let text = text_of(&b)?;
        let owner = b.owner.clone().filter(|o| !o.trim().is_empty());
        Ok(edit(b, tocsin_incidents::Edit::FollowUp { text, owner }))
    })
    .await
}

pub(crate) async fn follow_up_state(
    State(st): State<AppState>,
    super::error::Path((id, n)): super::error::Path<(String, u32)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| {
        let state = super::required(b.state.as_deref(), "state")?;
        if !tocsin_incidents::FOLLOW_UP_STATES.contains(&state.as_str()) {
            return Err(format!("state {state:?} is not open, done or dropped"));
        }
        Ok(edit(
            b,
            tocsin_incidents::Edit::FollowUpState { id: n, state },
        ))
    })
    .await
}

pub(crate) async fn incident_op(
    st: &AppState,
    id: String,
    body: &[u8],
    op: impl FnOnce(IncidentBody) -> Result<IncidentOp, String>,
) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let b: IncidentBody = json_body(body, "body")?;
    super::required(Some(&b.by), "by").map_err(bad)?;
    let op = op(b).map_err(bad)?;
    writer_reply(st, |reply| Msg::Incident { id, op, reply })
        .await?
        .map(|()| Json(json!({ "status": "success" })))
        .map_err(op_error)
}

pub(crate) async fn ack(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
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

pub(crate) async fn resolve(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    incident_op(&st, id, &body, |b| Ok(IncidentOp::Resolve { by: b.by })).await
}

pub(crate) async fn note(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::alerts::tests::firing;

    #[tokio::test]
    async fn an_incident_opens_with_its_alert_and_takes_acks_notes_and_a_resolve() {
        let (api, _) = firing("", 60.0).await;
        let list = api
            .wait_for("/api/v1/incidents", |a| {
                a.json["data"]["incidents"]
                    .as_array()
                    .is_some_and(|l| l.len() == 1)
            })
            .await;
        let inc = &list.json["data"]["incidents"][0];
        assert_eq!(inc["severity"], "critical");
        let id = inc["id"].as_str().unwrap().to_string();
        let steps = [
            ("ack", "alice", StatusCode::OK),
            ("notes", "bob", StatusCode::OK),
            ("resolve", "alice", StatusCode::OK),
            ("resolve", "alice", StatusCode::CONFLICT),
        ];
        for (op, who, want) in steps {
            let body = json!({"by": who, "comment": "looking", "text": "db restarted"});
            let path = format!("/api/v1/incidents/{id}/{op}");
            let a = api.call("POST", &path, None, Some(body)).await;
            assert_eq!(a.status, want, "{op}: {}", a.json);
        }
        let shown = api.get(&format!("/api/v1/incidents/{id}")).await;
        assert_eq!(shown.status, StatusCode::OK);
        let kinds: Vec<&str> = shown.json["data"]["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        for k in ["opened", "acknowledged", "note", "resolved"] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        let report = api.get(&format!("/api/v1/incidents/{id}/report")).await;
        assert_eq!(report.status, StatusCode::OK);
        assert!(report.json.as_str().unwrap().contains("db restarted"));
        let stats = api.get("/api/v1/incidents/stats").await;
        assert_eq!(stats.status, StatusCode::OK, "{}", stats.json);
    }

    #[tokio::test]
    async fn unknown_incidents_and_bad_windows_are_told_apart() {
        let (api, _) = firing("", 10.0).await;
        let a = api.get("/api/v1/incidents/nope").await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("no incident nope"))
        );
        let a = api
            .call(
                "POST",
                "/api/v1/incidents/nope/ack",
                None,
                Some(json!({"by": "a"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        let a = api.get("/api/v1/incidents?from=yesterday").await;
        assert_eq!(
            (a.status, a.json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid time \"yesterday\""))
        );
        let a = api
            .get("/api/v1/incidents?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z")
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = api.get("/api/v1/incidents?severity=loud").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
}
