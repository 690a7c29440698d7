//! Notifications for tests, written as only the JSON a test cares about.

use serde_json::{json, Value};
use tocsin_alerting::Payload;

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn extras() -> Value {
    json!({ "id": "0000000000000000", "event": "firing", "level": "warning", "threshold": "",
            "rule": "R", "at": "2026-11-23T10:00:00.000Z" })
}

/// A whole payload from `partial`: what it leaves out takes plain values; each alert's
/// `tocsin.level` follows its `labels.level` when it gives one.
pub(crate) fn payload(partial: Value) -> Payload {
    let mut n = json!({
        "version": "4", "groupKey": "g", "truncatedAlerts": 0, "status": "firing",
        "receiver": "r", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://c", "alerts": [],
        "tocsin": extras(),
    });
    n["tocsin"]["kind"] = json!("changed");
    n["tocsin"]["alertCount"] = json!(1);
    let mut partial = partial;
    let alerts = partial
        .as_object_mut()
        .and_then(|o| o.remove("alerts"))
        .and_then(|a| a.as_array().cloned())
        .unwrap_or_default();
    let summary = partial
        .as_object_mut()
        .and_then(|o| o.remove("tocsin"))
        .unwrap_or_else(|| json!({}));
    merge(&mut n, partial);
    let alerts: Vec<Value> = alerts
        .into_iter()
        .map(|a| {
            let mut base = json!({
                "status": "firing", "labels": {}, "annotations": {},
                "startsAt": "2026-11-23T10:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://c/api/v1/alerts", "fingerprint": "0000000000000000",
                "tocsin": extras(),
            });
            if let Some(l) = a["labels"]["level"].as_str() {
                base["tocsin"]["level"] = json!(l);
            }
            merge(&mut base, a);
            base
        })
        .collect();
    // The summary is the first alert's fields, then what the test says of it.
    if let Some(first) = alerts.first() {
        let mut t = first["tocsin"].clone();
        t["kind"] = json!("changed");
        t["alertCount"] = json!(alerts.len());
        n["tocsin"] = t;
    }
    merge(&mut n["tocsin"], summary);
    n["alerts"] = Value::Array(alerts);
    serde_json::from_value(n).expect("a test payload")
}
