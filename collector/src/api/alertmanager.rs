//! Alertmanager's API v2 over tocsin's alerts and silences, so the tools people already use
//! with Alertmanager work against the collector: `amtool alert query`, `amtool silence
//! add|query|expire`, and Grafana's Alertmanager data source (its alert list and silences).
//! Reads need what `/api/v1` reads need; adding or expiring a silence is a change (admin,
//! audited), as through `/api/v1/silences`.
//!
//! Alerts raised elsewhere (a Prometheus's `alerting`) are posted to `POST /api/v2/alerts` with
//! the senders' credential (`external_alerts.token`, or admin): see `tocsin_rules::external`.
//!
//! What differs from Alertmanager: an alert under an escalation policy is
//! a group of its own, named by the policy; a rule's firing alert's `endsAt` is five minutes
//! on, as for an alert Prometheus keeps sending; silence ids are the collector's
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
use crate::writer::{Msg, OpFailure};
use tocsin_rules::external::{PostOutcome, Posted, REASONS_NAMED};

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
        let (silenced_by, inhibited_by) = view.held.get(&id).cloned().unwrap_or_default();
        let inhibited = !inhibited_by.is_empty();
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
                "inhibitedBy": inhibited_by,
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

/// Alertmanager's `postableAlert`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PostableAlert {
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
}

/// Alerts in one request, at most (Prometheus sends batches of 64).
const MAX_ALERTS_PER_REQUEST: usize = 10_000;

/// Annotations per alert, and the length of one, at most (a summary, a description, a
/// runbook link: not a log).
const MAX_ANNOTATIONS: usize = 64;
const MAX_ANNOTATION_LEN: usize = 16 * 1024;
/// A `generatorURL`, at most: a link, carried into notifications.
const MAX_URL_LEN: usize = 2048;

/// An RFC 3339 time (`2026-12-06T10:00:00.123Z`, `…+08:00`) in milliseconds; `None` for the
/// zero time Go sends for "unset" (`0001-01-01T00:00:00Z`) and for an empty text.
fn rfc3339(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{s:?} is not an RFC 3339 time");
    if s.len() < 20 || s.as_bytes()[10] != b'T' && s.as_bytes()[10] != b't' {
        return Err(bad());
    }
    let base = tocsin_model::parse_timestamp(s).ok_or_else(bad)?;
    let offset_ms = if s.ends_with(['Z', 'z']) {
        0
    } else {
        let (head, tz) = s.split_at(s.len() - 6);
        let b = tz.as_bytes();
        if head.len() < 19 || !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
            return Err(bad());
        }
        let hh: i64 = tz[1..3].parse().map_err(|_| bad())?;
        let mm: i64 = tz[4..6].parse().map_err(|_| bad())?;
        let sign = if b[0] == b'-' { -1 } else { 1 };
        sign * (hh * 3600 + mm * 60) * 1000
    };
    let t = base - offset_ms;
    Ok((t >= 0).then_some(t))
}

/// One posted alert, checked: label names, `alertname`, sizes, times. Labels with an empty
/// value are left out (as Prometheus leaves them out).
fn postable(a: PostableAlert, limits: &tocsin_wire::Limits) -> Result<Posted, String> {
    let name = a.labels.get("alertname").cloned().unwrap_or_default();
    let what = if name.is_empty() {
        "alert".to_string()
    } else {
        format!("alert {name:?}")
    };
    let fail = |e: String| format!("{what}: {e}");
    if name.is_empty() {
        return Err(fail("labels need a non-empty alertname".into()));
    }
    if a.labels.len() > limits.max_labels_per_series {
        return Err(fail(format!(
            "{} labels, at most {}",
            a.labels.len(),
            limits.max_labels_per_series
        )));
    }
    for (k, v) in &a.labels {
        if !tocsin_model::is_valid_label_name(k) || k.starts_with("__") {
            return Err(fail(format!("{k:?} is not a label name")));
        }
        if k.len() > limits.max_label_name_len || v.len() > limits.max_label_value_len {
            return Err(fail(format!(
                "label {k:?} longer than {} (name) or {} (value) bytes",
                limits.max_label_name_len, limits.max_label_value_len
            )));
        }
    }
    if a.annotations.len() > MAX_ANNOTATIONS
        || a.annotations.values().any(|v| v.len() > MAX_ANNOTATION_LEN)
    {
        return Err(fail(format!(
            "at most {MAX_ANNOTATIONS} annotations of at most {MAX_ANNOTATION_LEN} bytes"
        )));
    }
    let generator_url = a.generator_url.filter(|u| !u.is_empty());
    if let Some(u) = &generator_url {
        let web = u.starts_with("http://") || u.starts_with("https://");
        if !web || u.len() > MAX_URL_LEN || u.chars().any(char::is_control) {
            return Err(fail(format!(
                "generatorURL: an http or https link of at most {MAX_URL_LEN} bytes"
            )));
        }
    }
    let time = |s: &Option<String>, field: &str| {
        s.as_deref()
            .map(rfc3339)
            .transpose()
            .map(Option::flatten)
            .map_err(|e| fail(format!("{field}: {e}")))
    };
    Ok(Posted {
        starts_at: time(&a.starts_at, "startsAt")?,
        ends_at: time(&a.ends_at, "endsAt")?,
        labels: Labels::from_pairs(a.labels.into_iter().filter(|(_, v)| !v.is_empty())),
        annotations: a.annotations,
        generator_url,
    })
}

/// `POST /api/v2/alerts`: alerts raised elsewhere (a Prometheus whose `alerting` points here),
/// taken into the collector's routes, silences, escalation and incidents. As Alertmanager,
/// the valid alerts of a request are taken even when others are refused (400 naming each);
/// 200 once those taken are durable.
pub(crate) async fn post_alerts(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let raw: Vec<PostableAlert> = json_body(&body, "alerts")?;
    if raw.len() > MAX_ALERTS_PER_REQUEST {
        return Err(ApiError::TooLarge(format!(
            "{} alerts in one request, at most {MAX_ALERTS_PER_REQUEST}",
            raw.len()
        )));
    }
    let mut o = PostOutcome::default();
    let mut alerts = Vec::new();
    for a in raw {
        match postable(a, &st.limits) {
            Ok(p) => alerts.push(p),
            Err(e) => o.refused.push(e),
        }
    }
    st.tel.count_external(&o);
    if !alerts.is_empty() {
        match super::error::writer_reply(&st, |reply| Msg::PostAlerts { alerts, reply }).await? {
            Ok(()) => {}
            // Those the writer refused (a rule's name), with those refused here.
            Err(OpFailure::Refused(m)) => o.refused.push(m),
            Err(e) => return Err(super::error::op_error(e)),
        }
    }
    if o.refused.is_empty() {
        Ok(Json(json!({})))
    } else {
        Err(ApiError::bad_request(o.reasons(REASONS_NAMED)))
    }
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
        .map(|a| (format!("{:016x}", a.fingerprint()), &**a))
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
    fn times_are_read_as_rfc_3339() {
        let t = rfc3339("2026-12-06T10:00:00.5Z").unwrap().unwrap();
        assert_eq!(t % 1000, 500);
        assert_eq!(rfc3339("2026-12-06T18:00:00.5+08:00"), Ok(Some(t)));
        assert_eq!(rfc3339("2026-12-06T05:30:00.500-04:30"), Ok(Some(t)));
        assert_eq!(rfc3339("2026-12-06T10:00:00.500000000Z"), Ok(Some(t)));
        assert_eq!(
            rfc3339("0001-01-01T00:00:00Z"),
            Ok(None),
            "Go's zero time: unset"
        );
        assert_eq!(rfc3339(""), Ok(None));
        for bad in [
            "2026-12-06 10:00:00Z",
            "yesterday",
            "2026-12-06T10:00:00+0800",
            "1700000000",
        ] {
            assert!(rfc3339(bad).is_err(), "{bad}");
        }
    }

    /// Alerts raised elsewhere: taken, listed, resolved; a rule's name, a missing alertname,
    /// a label name that is not one, an unknown field and a bad time refused with the reason,
    /// the valid alerts of the same request still taken.
    #[tokio::test]
    async fn alerts_posted_from_elsewhere_fire_and_resolve() {
        let api = crate::api::testing::TestApi::new(
            "",
            "rules:\n  - name: Busy\n    expr: cpu\n    levels: { warning: \"> 90\" }\n",
        );
        let post = |body: Value| api.call("POST", "/api/v2/alerts", None, Some(body));
        let later = format_rfc3339(now_ms() + 3_600_000);
        let disk = json!({
            "labels": {"alertname": "DiskFull", "host": "db-1", "severity": "critical", "empty": ""},
            "annotations": {"summary": "/ is full"},
            "startsAt": format_rfc3339(now_ms() - 60_000),
            "endsAt": later,
            "generatorURL": "http://prometheus:9090/graph",
        });
        let r = post(json!([disk])).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.json);
        let a = api
            .wait_for("/api/v2/alerts", |a| {
                a.json.as_array().is_some_and(|v| !v.is_empty())
            })
            .await;
        let got = &a.json[0];
        assert_eq!(got["labels"]["alertname"], "DiskFull");
        assert_eq!(got["labels"]["level"], "critical", "level from severity");
        assert!(
            got["labels"].get("empty").is_none(),
            "empty labels left out"
        );
        assert_eq!(got["annotations"]["summary"], "/ is full");
        let v1 = api.get("/api/v1/alerts").await.json;
        assert_eq!(v1["data"]["alerts"][0]["source"], "posted", "{v1}");
        assert!(v1["data"]["alerts"][0]["value"].is_null(), "{v1}");
        let r = post(json!([
            {"labels": {"alertname": "Busy", "host": "a"}},
            {"labels": {"host": "a"}},
            {"labels": {"alertname": "X", "bad-name": "a"}},
            {"labels": {"alertname": "Y"}, "endsAt": "tomorrow"},
            {"labels": {"alertname": "U"}, "generatorURL": "javascript:alert(1)"},
            {"labels": {"alertname": "Other"}, "endsAt": later},
        ]))
        .await;
        assert_eq!(r.status.as_u16(), 400, "{}", r.json);
        let text = r.json.to_string();
        for want in [
            "alert \\\"Busy\\\": a rule of this collector has that name",
            "labels need a non-empty alertname",
            "\\\"bad-name\\\" is not a label name",
            "endsAt: \\\"tomorrow\\\" is not an RFC 3339 time",
            "generatorURL: an http or https link",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        api.wait_for("/api/v2/alerts?filter=alertname%3D%22Other%22", |a| {
            a.json.as_array().is_some_and(|v| v.len() == 1)
        })
        .await;
        let flood: Vec<Value> = (0..=MAX_ALERTS_PER_REQUEST)
            .map(|i| json!({"labels": {"alertname": format!("F{i}")}}))
            .collect();
        let r = post(Value::Array(flood)).await;
        assert_eq!(r.status.as_u16(), 413, "{}", r.json);
        let r = post(json!([{"labels": {"alertname": "Z"}, "unknown": 1}])).await;
        assert_eq!(r.status.as_u16(), 400, "{}", r.json);
        assert!(r.json.to_string().contains("unknown field"), "{}", r.json);
        // Resolved by an end in the past.
        let mut resolved = disk.clone();
        resolved["endsAt"] = json!(format_rfc3339(now_ms() - 1_000));
        let r = post(json!([resolved])).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.json);
        api.wait_for("/api/v2/alerts?filter=alertname%3D%22DiskFull%22", |a| {
            a.json == json!([])
        })
        .await;
        let m = api.get("/metrics").await.json;
        let m = m.as_str().unwrap_or_default();
        for want in [
            "tocsin_external_alerts_received_total{result=\"fired\"} 2",
            "tocsin_external_alerts_received_total{result=\"resolved\"} 1",
            "tocsin_external_alerts_received_total{result=\"refused\"} 5",
        ] {
            assert!(m.contains(want), "{want}");
        }
    }

    /// Senders need their own credential (or the admin one) beyond loopback; the read token
    /// is not enough, and without either the route is off.
    #[tokio::test]
    async fn posting_alerts_needs_the_senders_credential() {
        let body = Some(json!([{"labels": {"alertname": "A"}}]));
        let api = crate::api::testing::TestApi::new(
            "listen: 0.0.0.0:0\nread_token: r-s3cret\nadmin_token: a-s3cret\nexternal_alerts: { token: s-s3cret }\n",
            "",
        );
        for (token, want) in [
            (None, 401),
            (Some("r-s3cret"), 401),
            (Some("wrong"), 401),
            (Some("s-s3cret"), 200),
            (Some("a-s3cret"), 200),
        ] {
            let r = api
                .call("POST", "/api/v2/alerts", token, body.clone())
                .await;
            assert_eq!(r.status.as_u16(), want, "{token:?}: {}", r.json);
            assert!(!r.json.to_string().contains("s3cret"));
        }
        // Reading the alerts back is a read, as before.
        let r = api
            .call("GET", "/api/v2/alerts", Some("s-s3cret"), None)
            .await;
        assert_eq!(r.status.as_u16(), 401);
        let api = crate::api::testing::TestApi::new("listen: 0.0.0.0:0\nread_token: r\n", "");
        let r = api.call("POST", "/api/v2/alerts", Some("r"), body).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.json);
        assert!(
            r.json.to_string().contains("external_alerts.token"),
            "{}",
            r.json
        );
    }

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
        let r = api.get("/api/v2/status").await;
        assert_eq!(r.json["cluster"]["status"], "disabled");
        assert_eq!(
            r.json["config"]["original"], "",
            "no configuration (secrets) shown"
        );
    }
}
