use serde_json::{json, Map, Value};
use tocsin_dispatch::{AlertInfo, Notification, Why};
use tocsin_model::{Labels, TimestampMs};

/// RFC 3339 with milliseconds, UTC, as Alertmanager writes times.
pub fn format_rfc3339(ms: TimestampMs) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Alertmanager's "zero" time, used for `endsAt` of alerts still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn map(l: &Labels) -> Map<String, Value> {
    l.iter()
        .map(|x| (x.name.clone(), Value::String(x.value.clone())))
        .collect()
}

/// Makes the acknowledgement link of an alert, if links are on.
pub type AckLinker<'a> = &'a dyn Fn(&AlertInfo) -> Option<String>;

/// The dashboard link of an alert: `template` rendered with the alert's labels (and `level`),
/// each percent-encoded: a label value cannot add a parameter or change where the link goes.
fn dashboard_url(template: Option<&str>, a: &AlertInfo) -> Option<String> {
    let t = template?;
    let mut ctx: std::collections::BTreeMap<String, String> = a
        .labels
        .iter()
        .map(|l| (l.name.clone(), urlencoding::encode(&l.value).into_owned()))
        .collect();
    ctx.insert("level".into(), a.level.as_str().into());
    minijinja::Environment::new()
        .render_str(t, &ctx)
        .map_err(|e| tracing::warn!(error = %e, "dashboard link template failed"))
        .ok()
}

fn alert_extras(a: &AlertInfo, ack_url: Option<String>, dashboard: Option<String>) -> Value {
    json!({
        "id": a.id,
        "event": a.event,
        "level": a.level.as_str(),
        "previousLevel": a.previous_level.map(|l| l.as_str()),
        "value": a.value,
        "threshold": a.threshold,
        "rule": a.rule,
        "at": format_rfc3339(a.at),
        "reason": a.reason,
        "ack": a.ack.as_ref().map(|k| json!({
            "by": k.by,
            "comment": k.comment,
            "at": format_rfc3339(k.at),
            "level": k.level.as_str(),
        })),
        "ackUrl": ack_url,
        "dashboardUrl": dashboard,
    })
}

/// Labels (or annotations) every alert shares.
fn common(maps: &[Map<String, Value>]) -> Map<String, Value> {
    let mut out = maps.first().cloned().unwrap_or_default();
    for m in &maps[1.min(maps.len())..] {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// The body of one notification in Alertmanager's webhook version-4 format, plus a `tocsin`
/// object on each alert (event, level, value vs threshold, acknowledgement and its link) and on
/// the notification (why it was sent, and the first alert's fields for simple consumers).
pub fn webhook_payload(
    n: &Notification,
    external_url: &str,
    ack_link: AckLinker<'_>,
    dashboard: Option<&str>,
) -> Value {
    let firing = n.alerts.iter().any(|a| a.firing);
    let status = if firing { "firing" } else { "resolved" };
    let mut label_maps = Vec::new();
    let mut annotation_maps = Vec::new();
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            let mut labels = a.labels.clone();
            labels.set("level", a.level.as_str());
            let labels = map(&labels);
            let annotations: Map<String, Value> = a
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            label_maps.push(labels.clone());
            annotation_maps.push(annotations.clone());
            let link = if a.firing { ack_link(a) } else { None };
            json!({
                "status": if a.firing { "firing" } else { "resolved" },
                "labels": labels,
                "annotations": annotations,
                "startsAt": format_rfc3339(a.starts_at),
                "endsAt": a.ends_at.map(format_rfc3339).unwrap_or_else(|| ZERO_TIME.to_string()),
                "generatorURL": format!("{external_url}/api/v1/alerts"),
                "fingerprint": a.id,
                "tocsin": alert_extras(a, link, dashboard_url(dashboard, a)),
            })
        })
        .collect();
    let mut summary = alerts
        .first()
        .map(|a| a["tocsin"].clone())
        .unwrap_or_else(|| json!({}));
    let (kind, step, repeat, policy) = match &n.why {
        Why::Changed => ("changed", None, 0, None),
        Why::Repeat { n } => ("repeat", None, *n, None),
        Why::Escalation {
            policy,
            step,
            repeat,
        } => ("escalation", Some(*step), *repeat, Some(policy.clone())),
    };
    summary["kind"] = json!(kind);
    summary["step"] = json!(step);
    summary["repeat"] = json!(repeat);
    summary["policy"] = json!(policy);
    summary["alertCount"] = json!(alerts.len());
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": n.receiver,
        "groupLabels": map(&n.group_labels),
        "commonLabels": common(&label_maps),
        "commonAnnotations": common(&annotation_maps),
        "externalURL": external_url,
        "alerts": alerts,
        "tocsin": summary,
    })
}

/// One message standing for several queued notifications, when a receiver's rate limit leaves
/// room for only one more: every alert of every notification, in order, as one v4 body with
/// `tocsin.kind = "digest"` and `tocsin.merged` = how many notifications it replaces.
pub fn digest(items: &[Value]) -> Value {
    let alerts: Vec<Value> = items
        .iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .collect();
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    let labels: Vec<Map<String, Value>> = alerts
        .iter()
        .map(|a| a["labels"].as_object().cloned().unwrap_or_default())
        .collect();
    let annotations: Vec<Map<String, Value>> = alerts
        .iter()
        .map(|a| a["annotations"].as_object().cloned().unwrap_or_default())
        .collect();
    let first = items.first().cloned().unwrap_or_else(|| json!({}));
    let mut summary = first["tocsin"].clone();
    summary["kind"] = json!("digest");
    summary["merged"] = json!(items.len());
    summary["alertCount"] = json!(alerts.len());
    json!({
        "version": "4",
        "groupKey": "digest",
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": first["receiver"],
        "groupLabels": {},
        "commonLabels": common(&labels),
        "commonAnnotations": common(&annotations),
        "externalURL": first["externalURL"],
        "alerts": alerts,
        "tocsin": summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tocsin_model::Level;
    use tocsin_rules::{Transition, TransitionKind};

    #[test]
    fn alertmanager_shape() {
        let t = Transition {
            kind: TransitionKind::LevelChanged {
                from: Level::Warning,
            },
            rule: "Busy".into(),
            labels: Labels::from_pairs([("alertname", "Busy"), ("host", "web1")]),
            annotations: BTreeMap::from([("summary".to_string(), "hot".to_string())]),
            level: Level::Critical,
            value: 95.5,
            threshold: "> 90".into(),
            starts_at: 1_700_000_000_000,
            ends_at: None,
            at: 1_700_000_010_000,
            reason: None,
        };
        let mut other = AlertInfo::from_transition(&t);
        other.labels.set("host", "web2");
        let n = Notification {
            receiver: "ops".into(),
            group_key: "ops|route|{alertname=\"Busy\"}".into(),
            group_labels: Labels::from_pairs([("alertname", "Busy")]),
            why: Why::Repeat { n: 2 },
            alerts: vec![AlertInfo::from_transition(&t), other],
        };
        let link = |a: &AlertInfo| Some(format!("http://c/ack?t={}", a.id));
        let v = webhook_payload(
            &n,
            "http://c:9760",
            &link,
            Some("http://grafana/d/host?var-host={{ host }}&lvl={{ level }}"),
        );
        assert_eq!(
            v["alerts"][1]["tocsin"]["dashboardUrl"],
            "http://grafana/d/host?var-host=web2&lvl=critical"
        );
        let mut evil = n.alerts[1].clone();
        evil.labels.set("host", "x&to=https://evil.example/#");
        let ev = webhook_payload(
            &Notification {
                alerts: vec![evil],
                ..n.clone()
            },
            "http://c:9760",
            &link,
            Some("http://grafana/d/host?var-host={{ host }}"),
        );
        assert_eq!(
            ev["alerts"][0]["tocsin"]["dashboardUrl"],
            "http://grafana/d/host?var-host=x%26to%3Dhttps%3A%2F%2Fevil.example%2F%23"
        );
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["groupLabels"]["alertname"], "Busy");
        assert_eq!(v["commonLabels"]["alertname"], "Busy");
        assert!(v["commonLabels"].get("host").is_none(), "hosts differ");
        assert_eq!(v["commonAnnotations"]["summary"], "hot");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["level"], "critical");
        assert_eq!(a["labels"]["host"], "web1");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], ZERO_TIME);
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        assert!(a["tocsin"]["ackUrl"]
            .as_str()
            .unwrap()
            .starts_with("http://c/ack?t="));
        assert_eq!(v["tocsin"]["event"], "level_changed");
        assert_eq!(v["tocsin"]["previousLevel"], "warning");
        assert_eq!(v["tocsin"]["kind"], "repeat");
        assert_eq!(v["tocsin"]["repeat"], 2);
        assert_eq!(v["tocsin"]["alertCount"], 2);
    }
}
