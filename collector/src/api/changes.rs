//! `/api/v1/changes`: deploys, configuration and infrastructure changes, recorded by people
//! and by CI/CD, checked against the change freezes, shown with the incidents that follow
//! them.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_config::services::Freeze;
use tocsin_incidents::{format_time, Change, CHANGE_KINDS};
use tocsin_model::{now_ms, TimestampMs};

use super::error::{json_body, with_records, ApiError};
use super::AppState;

/// What the API and the CLI's `change add` send.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    pub service: String,
    pub summary: String,
    pub by: String,
    /// deploy (default), config, infra or other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// RFC 3339, `2026-12-05 10:00:00` (UTC) or Unix seconds; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Why the change goes ahead inside a refusing freeze.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

/// Change freezes and how far before an incident its changes are shown.
#[derive(Debug, Clone, Default)]
pub struct ChangePolicy {
    pub freezes: Vec<Freeze>,
    pub show_before_ms: i64,
}

const MAX_TEXT: usize = 1000;

fn time(s: &Option<String>, default: TimestampMs) -> Result<TimestampMs, ApiError> {
    match s {
        None => Ok(default),
        Some(s) => tocsin_model::parse_timestamp(s)
            .ok_or_else(|| ApiError::bad_request(format!("invalid time {s:?}"))),
    }
}

/// The change a body asks for, checked; the freezes decide whether it may go ahead.
pub(crate) fn check(
    b: ChangeBody,
    policy: &ChangePolicy,
    now: TimestampMs,
) -> Result<(Change, Vec<String>), ApiError> {
    let bad = |m: String| Err(ApiError::bad_request(m));
    for (field, v) in [
        ("service", &b.service),
        ("summary", &b.summary),
        ("by", &b.by),
    ] {
        if v.trim().is_empty() {
            return bad(format!("{field} is required"));
        }
        // Only a summary may run over several lines; a service or a name is one.
        let allowed = |c: char| field == "summary" && c == '\n';
        if v.len() > MAX_TEXT || v.chars().any(|c| c.is_control() && !allowed(c)) {
            return bad(format!(
                "{field} must be at most {MAX_TEXT} bytes of text without control characters"
            ));
        }
    }
    let kind = b.kind.unwrap_or_else(|| "deploy".into());
    if !CHANGE_KINDS.contains(&kind.as_str()) {
        return bad(format!(
            "kind {kind:?} is not one of {}",
            CHANGE_KINDS.join(", ")
        ));
    }
    if let Some(l) = &b.link {
        if !(l.starts_with("https://") || l.starts_with("http://")) || l.len() > MAX_TEXT {
            return bad("link must be an http(s) URL".into());
        }
    }
    if b.hosts.len() > 100
        || b.hosts
            .iter()
            .any(|h| h.is_empty() || h.len() > 253 || h.chars().any(char::is_control))
    {
        return bad("hosts: at most 100 host names".into());
    }
    let start_ms = time(&b.start, now)?;
    let end_ms = b.end.as_ref().map(|_| time(&b.end, now)).transpose()?;
    if end_ms.is_some_and(|e| e < start_ms) {
        return bad("end is before start".into());
    }
    let mut warnings = Vec::new();
    let mut freeze = Vec::new();
    for f in policy
        .freezes
        .iter()
        .filter(|f| f.holds(&b.service, start_ms))
    {
        let until = format_time(f.ends_after(start_ms));
        match (&b.override_reason, f.refuse) {
            (None, true) => {
                return Err(ApiError::Conflict(format!(
                    "change freeze {:?} holds for {} until {until}: changes are refused; \
                     give an override reason to go ahead anyway",
                    f.name, b.service
                )))
            }
            (Some(reason), true) => {
                warnings.push(format!(
                    "inside change freeze {:?} (until {until}), overridden: {reason}",
                    f.name
                ));
                freeze.push(format!("{} (overridden: {reason})", f.name));
            }
            (_, false) => {
                warnings.push(format!(
                    "inside change freeze {:?} (until {until}): recorded with a warning",
                    f.name
                ));
                freeze.push(format!("{} (warned)", f.name));
            }
        }
    }
    Ok((
        Change {
            id: 0,
            service: b.service,
            hosts: b.hosts,
            kind,
            summary: b.summary,
            by: b.by,
            link: b.link,
            start_ms,
            end_ms,
            freeze: (!freeze.is_empty()).then(|| freeze.join("; ")),
        },
        warnings,
    ))
}

/// `POST /api/v1/changes`.
pub(crate) async fn add(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b: ChangeBody = json_body(&body, "body")?;
    let (change, warnings) = match check(b, &st.changes, now_ms()) {
        Ok(c) => c,
        Err(e) => {
            let refused = matches!(e, ApiError::Conflict(_));
            st.tel
                .changes
                .with_label_values(&[if refused { "refused" } else { "invalid" }])
                .inc();
            if refused {
                tracing::warn!(reason = e.message(), "change refused by a freeze");
            }
            return Err(e);
        }
    };
    let json = serde_json::to_string(&change).map_err(|_| ApiError::Internal)?;
    let start = change.start_ms;
    let id = with_records(&st, "recording a change", move |o| {
        o.add_change(start, &json)
    })
    .await?;
    st.tel
        .changes
        .with_label_values(&[if warnings.is_empty() {
            "recorded"
        } else {
            "recorded_in_freeze"
        }])
        .inc();
    tracing::info!(id, service = %change.service, kind = %change.kind, by = %change.by, "change recorded");
    Ok(Json(json!({
        "status": "success",
        "data": { "id": id, "warnings": warnings }
    })))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeQuery {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) service: Option<String>,
}

/// Changes starting in [from, to).
pub(crate) async fn load(
    st: &AppState,
    from: TimestampMs,
    to: TimestampMs,
) -> Result<Vec<Change>, ApiError> {
    let rows = with_records(st, "listing changes", move |o| o.changes(from, to)).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, j)| {
            let mut c: Change = serde_json::from_str(&j).ok()?;
            c.id = id;
            Some(c)
        })
        .collect())
}

pub(crate) fn change_json(c: &Change) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    v["start"] = json!(format_time(c.start_ms));
    v["end"] = json!(c.end_ms.map(format_time));
    v
}

/// `GET /api/v1/changes?from=&to=&service=` (default: the last 7 days).
pub(crate) async fn list(
    State(st): State<AppState>,
    super::error::Query(q): super::error::Query<ChangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let from = time(&q.from, now - 7 * 86_400_000)?;
    let to = time(&q.to, now + 1)?;
    let list: Vec<Value> = load(&st, from, to)
        .await?
        .iter()
        .filter(|c| q.service.as_ref().is_none_or(|s| &c.service == s))
        .map(change_json)
        .collect();
    Ok(Json(
        json!({ "status": "success", "data": { "changes": list } }),
    ))
}

/// The changes shown with an incident: on its services or hosts, from `show_before` before it
/// opened until it resolved.
pub(crate) async fn of_incident(
    st: &AppState,
    i: &tocsin_incidents::Incident,
) -> Result<Vec<Change>, ApiError> {
    let now = now_ms();
    let before = st.changes.show_before_ms;
    let all = load(st, i.opened_at - before, i.resolved_at.unwrap_or(now) + 1).await?;
    Ok(all
        .into_iter()
        .filter(|c| c.concerns(i, before, now))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ChangePolicy {
        let raw: Vec<tocsin_config::services::RawFreeze> = serde_yaml_ng::from_str(
            "- { name: year-end, services: [members], start: \"2026-12-24 00:00:00\", end: \"2027-01-02 00:00:00\" }\n\
             - { name: fridays, days: [fri], from: \"00:00\", to: \"24:00\", policy: warn }\n",
        )
        .unwrap();
        let mut p = tocsin_config::Problems::default();
        let freezes = tocsin_config::services::validate_freezes(&mut p, raw);
        ChangePolicy {
            freezes,
            show_before_ms: 6 * 3_600_000,
        }
    }

    fn body(service: &str) -> ChangeBody {
        ChangeBody {
            service: service.into(),
            summary: "v2.4.1".into(),
            by: "ci".into(),
            ..ChangeBody::default()
        }
    }

    #[test]
    fn a_freeze_refuses_warns_or_is_overridden() {
        let p = policy();
        let xmas = tocsin_model::parse_timestamp("2026-12-25 12:00:00").unwrap(); // a Friday
        let e = check(body("members"), &p, xmas).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::CONFLICT);
        assert!(
            e.message().starts_with(
                "change freeze \"year-end\" holds for members until 2027-01-02T00:00:00Z"
            ),
            "{}",
            e.message()
        );
        let (c, w) = check(
            ChangeBody {
                override_reason: Some("security fix".into()),
                ..body("members")
            },
            &p,
            xmas,
        )
        .unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            c.freeze.as_deref(),
            Some("year-end (overridden: security fix); fridays (warned)")
        );
        let (c, w) = check(body("search"), &p, xmas).unwrap();
        assert_eq!((c.kind.as_str(), w.len()), ("deploy", 1));
        let thursday = xmas - 86_400_000;
        let (c, w) = check(body("search"), &p, thursday).unwrap();
        assert!(w.is_empty() && c.freeze.is_none());
    }

    #[test]
    fn bad_changes_are_told_what_to_fix() {
        let p = ChangePolicy::default();
        let msg = |b: ChangeBody| check(b, &p, 0).unwrap_err().message().to_string();
        assert_eq!(msg(body("")), "service is required");
        assert_eq!(
            msg(ChangeBody {
                kind: Some("rollout".into()),
                ..body("a")
            }),
            "kind \"rollout\" is not one of deploy, config, infra, other"
        );
        assert_eq!(
            msg(ChangeBody {
                link: Some("javascript:alert(1)".into()),
                ..body("a")
            }),
            "link must be an http(s) URL"
        );
        assert_eq!(
            msg(ChangeBody {
                start: Some("2026-12-05 10:00:00".into()),
                end: Some("2026-12-05 09:00:00".into()),
                ..body("a")
            }),
            "end is before start"
        );
        // A service or a name is one line; a summary may run over several.
        assert!(msg(body("a\nb")).starts_with("service must be at most"));
        assert!(msg(ChangeBody {
            by: "ci\nadmin".into(),
            ..body("a")
        })
        .starts_with("by must be at most"));
        assert_eq!(
            msg(ChangeBody {
                hosts: vec!["web\n1".into()],
                ..body("a")
            }),
            "hosts: at most 100 host names"
        );
        assert!(check(
            ChangeBody {
                summary: "v2\n- fix a\n- fix b".into(),
                ..body("a")
            },
            &p,
            0
        )
        .is_ok());
    }
}

#[cfg(test)]
mod markers {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::api::testing::TestApi;

    /// The vector `query` answers, as (kind, value), by kind.
    async fn by_kind(api: &TestApi, query: &str) -> Vec<(String, f64)> {
        let a = api.get(&format!("/api/v1/query?query={query}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let mut m: Vec<(String, f64)> = a.json["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                let kind = s["metric"]["kind"].as_str().unwrap_or_default().to_string();
                (kind, s["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        m
    }

    /// Returns once the writer has done what was sent to it before: it takes its messages in
    /// order, and answers a write after its commit.
    async fn synced(api: &TestApi) {
        let sync = tocsin_model::SeriesSamples {
            labels: tocsin_model::Labels::from_pairs([("__name__", "sync"), ("host", "t")]),
            samples: vec![tocsin_model::Sample::new(tocsin_model::now_ms(), 1.0)],
        };
        assert_eq!(api.write(&[sync]).await, StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn each_change_gets_one_marker_from_its_row_and_a_planned_one_waits_for_its_start() {
        let api = TestApi::new("", "");
        let add = |body: serde_json::Value| api.call("POST", "/api/v1/changes", None, Some(body));
        let deploy = add(json!({"service": "members", "summary": "v2", "by": "ci"})).await;
        assert_eq!(deploy.status, StatusCode::OK, "{}", deploy.json);
        let deploy = deploy.json["data"]["id"].as_i64().unwrap();
        // Planned an hour ahead: a marker written now would be refused as from the future; the
        // row waits for its start (the store's `changes_to_mark` test).
        let start = (tocsin_model::now_ms() + 3_600_000) / 1000;
        let config = add(json!({
            "service": "members", "summary": "pool size", "by": "ci", "kind": "config",
            "start": start.to_string(),
        }))
        .await;
        assert_eq!(config.status, StatusCode::OK, "{}", config.json);
        // A change whose collector stopped before its marker was written: only the row.
        let at = tocsin_model::now_ms() - 60_000;
        let infra = crate::api::error::with_records(&api.state, "test", move |o| {
            o.add_change(
                at,
                &format!(
                    r#"{{"service":"members","kind":"infra","summary":"disk","by":"ops","start_ms":{at}}}"#
                ),
            )
        })
        .await
        .unwrap();
        // And a row that does not read: counted, and no marker.
        crate::api::error::with_records(&api.state, "test", move |o| o.add_change(at, "{not json"))
            .await
            .unwrap();
        for _ in 0..3 {
            api.tick().await;
        }
        synced(&api).await;
        assert_eq!(
            by_kind(&api, "tocsin_change").await,
            vec![
                ("deploy".into(), deploy as f64),
                ("infra".into(), infra as f64)
            ],
            "the planned change has no marker yet"
        );
        assert_eq!(
            by_kind(&api, "count_over_time(tocsin_change[1h])").await,
            vec![("deploy".into(), 1.0), ("infra".into(), 1.0)],
            "each written once"
        );
        let counted = |r: &str| api.state.tel.change_markers.with_label_values(&[r]).get();
        assert_eq!(
            (
                counted("written"),
                counted("unreadable"),
                counted("out_of_order")
            ),
            (2, 1, 0)
        );
        // A deploy recorded late, starting an hour before the one marked: its service and
        // kind's series holds samples in time order, so the marker gets a series of its own,
        // which an annotation query on `tocsin_change` shows beside the other.
        let start = (tocsin_model::now_ms() - 3_600_000) / 1000;
        let late = add(json!({
            "service": "members", "summary": "v1.9", "by": "ci", "start": start.to_string(),
        }))
        .await;
        assert_eq!(late.status, StatusCode::OK, "{}", late.json);
        let late = late.json["data"]["id"].as_i64().unwrap();
        api.tick().await;
        synced(&api).await;
        assert_eq!((counted("late"), counted("out_of_order")), (1, 0));
        let a = api
            .get(&format!(
                "/api/v1/query_range?query=tocsin_change&start={}&end={}&step=60",
                start - 60,
                tocsin_model::now_ms() / 1000 + 60
            ))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let mut series: Vec<(Option<String>, f64)> = a.json["data"]["result"]
            .as_array()
            .expect("a matrix")
            .iter()
            .filter(|s| s["metric"]["kind"] == "deploy")
            .map(|s| {
                let change = s["metric"]["change"].as_str().map(str::to_string);
                (change, s["values"][0][1].as_str().unwrap().parse().unwrap())
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            series,
            vec![(None, deploy as f64), (Some(late.to_string()), late as f64)],
            "both deploys marked, the late one in a series of its own"
        );
    }
}
