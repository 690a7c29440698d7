use serde_json::{json, Map, Value};
use tocsin_model::{Labels, TimestampMs};
use tocsin_rules::{Transition, TransitionKind};

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

/// The body of one webhook notification in Alertmanager's version-4 format, with one alert,
/// plus a `tocsin` object saying what changed.
pub fn webhook_payload(t: &Transition, receiver: &str, external_url: &str) -> Value {
    let status = if t.kind.firing() {
        "firing"
    } else {
        "resolved"
    };
    let mut labels = t.labels.clone();
    labels.set("level", t.level.as_str());
    let labels = map(&labels);
    let annotations: Map<String, Value> = t
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let event = t.kind.as_str();
    let previous = match t.kind {
        TransitionKind::LevelChanged { from } => Some(from.as_str()),
        _ => None,
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}}}", t.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": { "alertname": t.rule },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": format_rfc3339(t.starts_at),
            "endsAt": t.ends_at.map(format_rfc3339).unwrap_or_else(|| ZERO_TIME.to_string()),
            "generatorURL": format!("{external_url}/api/v1/alerts"),
            "fingerprint": format!("{:016x}", t.labels.fingerprint()),
        }],
        "tocsin": {
            "event": event,
            "level": t.level.as_str(),
            "previousLevel": previous,
            "value": t.value,
            "threshold": t.threshold,
            "rule": t.rule,
            "at": format_rfc3339(t.at),
            "reason": t.reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tocsin_model::Level;

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
        let v = webhook_payload(&t, "ops", "http://c:9760");
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["groupKey"], "{}:{alertname=\"Busy\"}");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["level"], "critical");
        assert_eq!(a["labels"]["host"], "web1");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], ZERO_TIME);
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        assert_eq!(v["tocsin"]["event"], "level_changed");
        assert_eq!(v["tocsin"]["previousLevel"], "warning");
    }
}
