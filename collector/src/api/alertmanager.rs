//! Alertmanager's API v2 over tocsin's alerts and silences, so the tools people already use
//! with Alertmanager work against the collector: `amtool alert query`, `amtool silence
//! add|query|expire`, and Grafana's Alertmanager data source (its alert list and silences).
//! Reads need what `/api/v1` reads need; adding or expiring a silence is a change (admin,
//! audited), as through `/api/v1/silences`.
//!
//! What differs from Alertmanager: alerts come from the collector's own rules (nothing is
//! posted here: `POST /api/v2/alerts` is refused with the reason); an alert under an escalation policy is
//! a group of its own, named by the policy; a firing alert's `endsAt` is five minutes
//! on, as for an alert Prometheus keeps sending; `inhibitedBy` is empty though the state says
//! `suppressed` (an inhibited alert's source is not kept); silence ids are the collector's
//! numbers written as UUIDs (`00000000-0000-4000-8000-00000000002a` is silence 42), and a
//! maintenance window's `schedule` rides along as an extra field.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_alerting::silence::{MatcherSpec, Silence};
use tocsin_model::{now_ms, Labels};
use tocsin_rules::AlertState;

use super::error::{json_body, ApiError};
use super::silences::{create, end, state, NewSilence};
use super::AppState;
use crate::view::View;

/// The Alertmanager whose API v2 is answered, as `status` reports it (the collector's own
/// version is in `revision`): clients that compare versions (amtool) find what they know.
const COMPATIBLE_VERSION: &str = "0.25.0";

/// How far on a firing alert's `endsAt` is put.
const ENDS_AFTER_MS: i64 = 5 * 60 * 1000;

/// Silence 42 as `00000000-0000-4000-8000-00000000002a`.
fn silence_uuid(id: i64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", id)
}

/// The silence a UUID of [`silence_uuid`] (or a plain number) names.
fn silence_id(s: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request(format!("{s:?} is not a silence id of this collector"));
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let hex = s
        .strip_prefix("00000000-0000-4000-8000-")
        .filter(|h| h.len() == 12)
        .ok_or_else(bad)?;
    i64::from_str_radix(hex, 16).map_err(|_| bad())
}

/// The query string's pairs, a name given more than once kept each time (`filter`).
fn params(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

fn flag(params: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match params.iter().rev().find(|(k, _)| k == name) {
        None => Ok(true),
        Some((_, v)) => v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{name}: {v:?} is not true or false"))),
    }
}

/// The `filter` matchers (`alertname="X"`, `host=~"db-.*"`, `a!=b`), as one matcher set.
fn filter(params: &[(String, String)]) -> Result<Option<Silence>, ApiError> {
    let specs = params
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| {
            let v = v.trim().trim_start_matches('{').trim_end_matches('}');
            MatcherSpec::parse(v)
                .ok_or_else(|| ApiError::bad_request(format!("filter: {v:?} is not a matcher")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() {
        return Ok(None);
    }
    Silence::matching(&specs)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("filter: {e}")))
}

/// `GET /api/v2/status`.
pub(crate) async fn status() -> Json<Value> {
    let started = super::rules::started_ms();
    Json(json!({
        "cluster": { "status": "disabled", "peers": [] },
        "versionInfo": {
            "version": COMPATIBLE_VERSION,
            "revision": format!("tocsin-collector {}", env!("CARGO_PKG_VERSION")),
            "branch": "", "buildUser": "", "buildDate": "", "goVersion": "",
        },
        // The configuration holds secrets: it is not shown.
        "config": { "original": "" },
        "uptime": format_rfc3339(started),
    }))
}

/// `GET /api/v2/receivers`.
pub(crate) async fn receivers(State(st): State<AppState>) -> Json<Value> {
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    Json(Value::Array(
        view.receiver_names
            .iter()
            .map(|n| json!({ "name": n }))
            .collect(),
    ))
}

/// Which alerts a request asks for: `active`, `silenced`, `inhibited` (true by default),
/// `filter` (matchers, repeatable) and `receiver` (a regex), as Alertmanager takes them.
struct AlertQuery {
    active: bool,
    silenced: bool,
    inhibited: bool,
    matchers: Option<Silence>,
    /// The receiver's regex, anchored, as a matcher on a label of that name.
    receiver: Option<Silence>,
}

impl AlertQuery {
    fn read(raw: Option<String>) -> Result<AlertQuery, ApiError> {
        let p = params(raw)?;
        let receiver = p
            .iter()
            .find(|(k, _)| k == "receiver")
            .map(|(_, r)| {
                let spec = [MatcherSpec {
                    name: "receiver".into(),
                    value: r.clone(),
                    is_regex: true,
                    is_equal: true,
                }];
                Silence::matching(&spec)
                    .map_err(|e| ApiError::bad_request(format!("receiver: {e}")))
            })
            .transpose()?;
        Ok(AlertQuery {
            active: flag(&p, "active")?,
            silenced: flag(&p, "silenced")?,
            inhibited: flag(&p, "inhibited")?,
            matchers: filter(&p)?,
            receiver,
        })
    }

    /// The alert in Alertmanager's shape, if it is firing and asked for.
    fn gettable(&self, view: &View, a: &AlertState, now: i64) -> Option<Value> {
        let level = a.level?;
        let mut labels: Labels = a.labels.clone();
        labels.set("level", level.as_str());
        if self
            .matchers
            .as_ref()
            .is_some_and(|m| !m.matches(&labels, now))
        {
            return None;
        }
        let id = format!("{:016x}", a.fingerprint());
        let receivers = view.route.as_deref().map_or_else(Vec::new, |r| {
            tocsin_alerting::routing::receivers_for(r, &a.labels, level)
        });
        if self.receiver.as_ref().is_some_and(|m| {
            !receivers
                .iter()
                .any(|r| m.matches(&Labels::from_pairs([("receiver", r.as_str())]), now))
        }) {
            return None;
        }
        let (silenced_by, inhibited) = view.held.get(&id).cloned().unwrap_or_default();
        let suppressed = !silenced_by.is_empty() || inhibited;
        let shown = match (suppressed, silenced_by.is_empty()) {
            (false, _) => self.active,
            (true, false) => self.silenced && (self.inhibited || !inhibited),
            (true, true) => self.inhibited,
        };
        if !shown {
            return None;
        }
        let starts = a.active_at.unwrap_or(now);
        Some(json!({
            "labels": labels,
            "annotations": a.annotations,
            "startsAt": format_rfc3339(starts),
            "updatedAt": format_rfc3339(a.level_since.unwrap_or(starts)),
            "endsAt": format_rfc3339(now + ENDS_AFTER_MS),
            "fingerprint": id,
            "receivers": receivers.iter().map(|r| json!({ "name": r })).collect::<Vec<_>>(),
            "status": {
                "state": if suppressed { "suppressed" } else { "active" },
                "silencedBy": silenced_by.iter().map(|s| silence_uuid(*s)).collect::<Vec<_>>(),
                "inhibitedBy": [],
            },
        }))
    }
}

/// `GET /api/v2/alerts`: the firing alerts.
pub(crate) async fn alerts(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = AlertQuery::read(q)?;
    let now = now_ms();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let out = view
        .alerts
        .iter()
        .filter_map(|a| query.gettable(&view, a, now))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `POST /api/v2/alerts`: refused with the reason, so a Prometheus pointed here by mistake
/// logs why its alerts go nowhere.
pub(crate) async fn post_alerts() -> ApiError {
    ApiError::MethodNotAllowed(
        "this collector takes no alerts from elsewhere: its own rules raise them (send samples to /api/v1/write instead)".into(),
    )
}

/// `GET /api/v2/alerts/groups`: the notification groups in flight with their firing alerts
/// (an alert under an escalation policy is a group of its own, named by the policy).
pub(crate) async fn groups(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = AlertQuery::read(q)?;
    let now = now_ms();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let by_id: std::collections::HashMap<String, &AlertState> = view
        .alerts
        .iter()
        .map(|a| (format!("{:016x}", a.fingerprint()), a))
        .collect();
    let out = view
        .groups
        .iter()
        .filter_map(|(receiver, labels, ids)| {
            let alerts: Vec<Value> = ids
                .iter()
                .filter_map(|id| by_id.get(id))
                .filter_map(|a| query.gettable(&view, a, now))
                .collect();
            (!alerts.is_empty()).then(
                || json!({ "labels": labels, "receiver": { "name": receiver }, "alerts": alerts }),
            )
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

fn silence_json(s: &tocsin_store::Silence, now: i64) -> Value {
    let matchers: Vec<MatcherSpec> = serde_json::from_str(&s.matchers).unwrap_or_default();
    json!({
        "id": silence_uuid(s.id),
        "status": { "state": state(s, now) },
        "updatedAt": format_rfc3339(s.created_ms),
        "matchers": matchers
            .iter()
            .map(|m| json!({ "name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal }))
            .collect::<Vec<_>>(),
        "startsAt": format_rfc3339(s.starts_ms),
        "endsAt": format_rfc3339(s.ends_ms),
        "createdBy": s.author,
        "comment": s.comment,
        "schedule": s.schedule.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
    })
}

/// `GET /api/v2/silences` (`filter`: silences whose equality matchers satisfy these).
pub(crate) async fn silences(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let matchers = filter(&params(q)?)?;
    let now = now_ms();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let out: Vec<Value> = view
        .silences
        .iter()
        .filter(|s| {
            matchers.as_ref().is_none_or(|m| {
                // As Alertmanager: the silence's equality matchers read as labels.
                let specs: Vec<MatcherSpec> = serde_json::from_str(&s.matchers).unwrap_or_default();
                let labels = Labels::from_pairs(
                    specs
                        .iter()
                        .filter(|x| x.is_equal && !x.is_regex)
                        .map(|x| (x.name.as_str(), x.value.as_str())),
                );
                m.matches(&labels, now)
            })
        })
        .map(|s| silence_json(s, now))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `GET /api/v2/silence/{id}`.
pub(crate) async fn silence(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = silence_id(&id)?;
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    view.silences
        .iter()
        .find(|s| s.id == id)
        .map(|s| Json(silence_json(s, now_ms())))
        .ok_or_else(|| ApiError::not_found(format!("no silence {id}")))
}

/// Alertmanager's `postableSilence`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PostableSilence {
    id: Option<String>,
    matchers: Vec<MatcherSpec>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
}

/// `POST /api/v2/silences`: a new silence, or with `id` a changed one (the old one ends, a new
/// one takes its place, as Alertmanager does when the matchers change).
pub(crate) async fn add(State(st): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let p: PostableSilence = json_body(&body, "silence")?;
    let old =
        p.id.as_deref()
            .filter(|s| !s.is_empty())
            .map(silence_id)
            .transpose()?;
    let starts = tocsin_model::parse_timestamp(&p.starts_at)
        .ok_or_else(|| ApiError::bad_request(format!("invalid time {:?}", p.starts_at)))?;
    let n = NewSilence {
        matchers: p.matchers,
        // A start in the past is now (Alertmanager's clients send the time they were run).
        starts_at: Some(format_rfc3339(starts.max(now_ms()))),
        ends_at: Some(p.ends_at),
        duration: None,
        created_by: p.created_by,
        comment: p.comment,
        schedule: None,
    };
    if let Some(old) = old {
        let view = st.view.read().unwrap_or_else(|p| p.into_inner());
        if !view.silences.iter().any(|s| s.id == old) {
            return Err(ApiError::not_found(format!("no silence {old}")));
        }
    }
    let id = create(&st, n).await?;
    if let Some(old) = old {
        end(&st, old).await?;
    }
    Ok(Json(json!({ "silenceID": silence_uuid(id) })))
}

/// `DELETE /api/v2/silence/{id}`.
pub(crate) async fn expire(
    State(st): State<AppState>,
    super::error::Path(id): super::error::Path<String>,
) -> Result<Json<Value>, ApiError> {
    end(&st, silence_id(&id)?).await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_ids_read_back() {
        assert_eq!(silence_uuid(42), "00000000-0000-4000-8000-00000000002a");
        assert_eq!(silence_id(&silence_uuid(42)).ok(), Some(42));
        assert_eq!(silence_id("42").ok(), Some(42));
        assert!(silence_id("5947eba9-c472-42c4-88fe-ad9b8cd781b0").is_err());
    }

    #[tokio::test]
    async fn bad_filters_and_flags_are_refused_with_the_reason() {
        let api = crate::api::testing::TestApi::new("", "");
        for (path, want) in [
            ("/api/v2/alerts?filter=host", "is not a matcher"),
            ("/api/v2/alerts?filter=host%3D~%22(%22", "invalid regex"),
            ("/api/v2/alerts?silenced=maybe", "is not true or false"),
            ("/api/v2/silence/abc", "is not a silence id"),
        ] {
            let r = api.get(path).await;
            assert_eq!(r.status.as_u16(), 400, "{path}: {}", r.json);
            assert!(r.json.to_string().contains(want), "{path}: {}", r.json);
        }
        let r = api
            .get("/api/v2/alerts?filter=alertname%3D%22X%22&active=true")
            .await;
        assert_eq!((r.status.as_u16(), r.json.clone()), (200, json!([])));
        let r = api
            .call(
                "POST",
                "/api/v2/alerts",
                None,
                Some(json!([{"labels": {"alertname": "X"}}])),
            )
            .await;
        assert_eq!(r.status.as_u16(), 405, "{}", r.json);
        assert!(
            r.json
                .to_string()
                .contains("takes no alerts from elsewhere"),
            "{}",
            r.json
        );
        let r = api.get("/api/v2/status").await;
        assert_eq!(r.json["cluster"]["status"], "disabled");
        assert_eq!(
            r.json["config"]["original"], "",
            "no configuration (secrets) shown"
        );
    }
}
