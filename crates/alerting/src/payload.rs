//! The notification every channel renders from: Alertmanager's webhook version 4, plus a
//! `tocsin` object on each alert (event, level, value against threshold, acknowledgement and
//! its link) and on the notification (why it was sent, and the first alert's fields for simple
//! consumers). Typed on both ends: built here, stored in the outbox as JSON, read back by the
//! channels as the same struct.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tocsin_dispatch::{AlertInfo, Event, Notification, Why};
use tocsin_model::{Labels, Level, TimestampMs};

/// RFC 3339 with milliseconds, UTC, as Alertmanager writes times.
pub fn format_rfc3339(ms: TimestampMs) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Alertmanager's "zero" time, used for `endsAt` of alerts still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// Why a notification went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Its group changed.
    Changed,
    /// Its group is unchanged and still firing.
    Repeat,
    /// A step of an escalation policy.
    Escalation,
    /// Several queued notifications merged because the receiver's rate limit was reached.
    Digest,
}

/// One notification as stored and sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u32,
    pub status: Status,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<PayloadAlert>,
    pub tocsin: Summary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadAlert {
    pub status: Status,
    /// The alert's labels and its `level`.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
    pub tocsin: Extras,
}

impl PayloadAlert {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    pub fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).map_or("", String::as_str)
    }

    pub fn firing(&self) -> bool {
        self.status == Status::Firing
    }
}

/// What tocsin adds to an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extras {
    pub id: String,
    /// What changed last.
    pub event: Event,
    pub level: Level,
    #[serde(default)]
    pub previous_level: Option<Level>,
    /// None when not a finite number.
    #[serde(default)]
    pub value: Option<f64>,
    pub threshold: String,
    pub rule: String,
    pub at: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub ack: Option<AckView>,
    #[serde(default)]
    pub ack_url: Option<String>,
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

/// An acknowledgement as a notification shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckView {
    pub by: String,
    pub comment: String,
    pub at: String,
    pub level: Level,
}

/// The notification's own `tocsin` object: the first alert's fields, and why it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(flatten)]
    pub first: Extras,
    pub kind: Kind,
    /// The escalation step (1-based).
    #[serde(default)]
    pub step: Option<usize>,
    #[serde(default)]
    pub repeat: u32,
    #[serde(default)]
    pub policy: Option<String>,
    pub alert_count: usize,
    /// Notifications a digest stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<usize>,
}

impl Payload {
    /// The stored and sent form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payload of strings and finite numbers serializes")
    }

    /// Reads a stored notification back.
    pub fn parse(text: &str) -> Result<Payload, String> {
        serde_json::from_str(text).map_err(|e| format!("stored payload: {e}"))
    }

    pub fn firing(&self) -> bool {
        self.status == Status::Firing
    }
}

fn map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

/// Makes the acknowledgement link of an alert, if links are on.
pub type AckLinker<'a> = &'a dyn Fn(&AlertInfo) -> Option<String>;

/// The dashboard link of an alert: `template` rendered with the alert's labels (and `level`),
/// each percent-encoded: a label value cannot add a parameter or change where the link goes.
fn dashboard_url(template: Option<&str>, a: &AlertInfo) -> Option<String> {
    let t = template?;
    let mut ctx: BTreeMap<String, String> = a
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

fn extras(a: &AlertInfo, ack_url: Option<String>, dashboard: Option<String>) -> Extras {
    Extras {
        id: a.id.clone(),
        event: a.event,
        level: a.level,
        previous_level: a.previous_level,
        value: Some(a.value).filter(|v| v.is_finite()),
        threshold: a.threshold.clone(),
        rule: a.rule.clone(),
        at: format_rfc3339(a.at),
        reason: a.reason.clone(),
        ack: a.ack.as_ref().map(|k| AckView {
            by: k.by.clone(),
            comment: k.comment.clone(),
            at: format_rfc3339(k.at),
            level: k.level,
        }),
        ack_url,
        dashboard_url: dashboard,
    }
}

/// Labels (or annotations) every alert shares.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = maps.next().cloned().unwrap_or_default();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

fn status(firing: bool) -> Status {
    if firing {
        Status::Firing
    } else {
        Status::Resolved
    }
}

/// The body of one notification. `n` has at least one alert.
pub fn webhook_payload(
    n: &Notification,
    external_url: &str,
    ack_link: AckLinker<'_>,
    dashboard: Option<&str>,
) -> Payload {
    let alerts: Vec<PayloadAlert> = n
        .alerts
        .iter()
        .map(|a| {
            let mut labels = a.labels.clone();
            labels.set("level", a.level.as_str());
            let link = if a.firing { ack_link(a) } else { None };
            PayloadAlert {
                status: status(a.firing),
                labels: map(&labels),
                annotations: a.annotations.clone(),
                starts_at: format_rfc3339(a.starts_at),
                ends_at: a
                    .ends_at
                    .map(format_rfc3339)
                    .unwrap_or_else(|| ZERO_TIME.to_string()),
                generator_url: a
                    .generator_url
                    .clone()
                    .unwrap_or_else(|| format!("{external_url}/api/v1/alerts")),
                fingerprint: a.id.clone(),
                tocsin: extras(a, link, dashboard_url(dashboard, a)),
            }
        })
        .collect();
    let (kind, step, repeat, policy) = match &n.why {
        Why::Changed => (Kind::Changed, None, 0, None),
        Why::Repeat { n } => (Kind::Repeat, None, *n, None),
        Why::Escalation {
            policy,
            step,
            repeat,
        } => (Kind::Escalation, Some(*step), *repeat, Some(policy.clone())),
    };
    Payload {
        version: "4".into(),
        group_key: n.group_key.clone(),
        truncated_alerts: 0,
        status: status(n.alerts.iter().any(|a| a.firing)),
        receiver: n.receiver.clone(),
        group_labels: map(&n.group_labels),
        common_labels: common(alerts.iter().map(|a| &a.labels)),
        common_annotations: common(alerts.iter().map(|a| &a.annotations)),
        external_url: external_url.to_string(),
        tocsin: Summary {
            first: alerts
                .first()
                .map(|a| a.tocsin.clone())
                .expect("a notification has an alert"),
            kind,
            step,
            repeat,
            policy,
            alert_count: alerts.len(),
            merged: None,
        },
        alerts,
    }
}

/// One message standing for several queued notifications (at least one), when a receiver's
/// rate limit leaves room for only one more: every alert of every notification, in order, as
/// one body of kind `digest`, `merged` saying how many notifications it replaces.
pub fn digest(items: &[Payload]) -> Payload {
    let alerts: Vec<PayloadAlert> = items.iter().flat_map(|n| n.alerts.clone()).collect();
    let first = items
        .first()
        .expect("a digest of at least one notification");
    Payload {
        version: "4".into(),
        group_key: "digest".into(),
        truncated_alerts: 0,
        status: status(alerts.iter().any(PayloadAlert::firing)),
        receiver: first.receiver.clone(),
        group_labels: BTreeMap::new(),
        common_labels: common(alerts.iter().map(|a| &a.labels)),
        common_annotations: common(alerts.iter().map(|a| &a.annotations)),
        external_url: first.external_url.clone(),
        tocsin: Summary {
            kind: Kind::Digest,
            merged: Some(items.len()),
            alert_count: alerts.len(),
            ..first.tocsin.clone()
        },
        alerts,
    }
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
            external: false,
            generator_url: None,
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
        let typed = webhook_payload(
            &n,
            "http://c:9760",
            &link,
            Some("http://grafana/d/host?var-host={{ host }}&lvl={{ level }}"),
        );
        // What a receiver gets is the JSON; it reads back as the same payload.
        let v: serde_json::Value = serde_json::from_str(&typed.to_json()).unwrap();
        assert_eq!(Payload::parse(&typed.to_json()).unwrap(), typed);
        assert_eq!(
            v["alerts"][1]["tocsin"]["dashboardUrl"],
            "http://grafana/d/host?var-host=web2&lvl=critical"
        );
        let mut evil = n.alerts[1].clone();
        evil.labels.set("host", "x&to=https://evil.example/#");
        let ev = serde_json::to_value(webhook_payload(
            &Notification {
                alerts: vec![evil],
                ..n.clone()
            },
            "http://c:9760",
            &link,
            Some("http://grafana/d/host?var-host={{ host }}"),
        ))
        .unwrap();
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

    fn notification(value: f64, host: &str, firing: bool) -> Notification {
        let labels = Labels::from_pairs([("alertname", "Disk"), ("host", host)]);
        let t = Transition {
            kind: if firing {
                TransitionKind::Firing
            } else {
                TransitionKind::Resolved
            },
            rule: "Disk".into(),
            labels: labels.clone(),
            annotations: BTreeMap::new(),
            level: Level::Warning,
            value,
            threshold: "> 90".into(),
            starts_at: 1_700_000_000_000,
            ends_at: (!firing).then_some(1_700_000_060_000),
            at: 1_700_000_000_000,
            reason: None,
            external: false,
            generator_url: None,
        };
        Notification {
            receiver: "ops".into(),
            group_key: "k".into(),
            group_labels: labels,
            why: Why::Changed,
            alerts: vec![AlertInfo::from_transition(&t)],
        }
    }

    #[test]
    fn a_value_that_is_not_a_number_is_sent_as_null() {
        let p = webhook_payload(
            &notification(f64::NAN, "a", true),
            "http://c",
            &|_| None,
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(v["alerts"][0]["tocsin"]["value"], serde_json::Value::Null);
        assert_eq!(v["tocsin"]["value"], serde_json::Value::Null);
        assert_eq!(
            Payload::parse(&p.to_json()).unwrap().tocsin.first.value,
            None
        );
    }

    /// Outbox rows written before the payload was typed (the same fields, nulls where empty)
    /// still read back after an upgrade.
    #[test]
    fn a_stored_payload_of_the_earlier_shape_reads_back() {
        let stored = r#"{"alerts":[{"annotations":{},"endsAt":"0001-01-01T00:00:00Z","fingerprint":"1f2e","generatorURL":"http://c/api/v1/alerts","labels":{"alertname":"Disk","host":"a","level":"warning"},"startsAt":"2023-11-14T22:13:20.000Z","status":"firing","tocsin":{"ack":null,"ackUrl":null,"at":"2023-11-14T22:13:20.000Z","dashboardUrl":null,"event":"firing","id":"1f2e","level":"warning","previousLevel":null,"reason":null,"rule":"Disk","threshold":"> 90","value":95.0}}],"commonAnnotations":{},"commonLabels":{"alertname":"Disk","host":"a","level":"warning"},"externalURL":"http://c","groupKey":"k","groupLabels":{"alertname":"Disk"},"receiver":"ops","status":"firing","tocsin":{"ack":null,"ackUrl":null,"alertCount":1,"at":"2023-11-14T22:13:20.000Z","dashboardUrl":null,"event":"firing","id":"1f2e","kind":"changed","level":"warning","policy":null,"previousLevel":null,"reason":null,"repeat":0,"rule":"Disk","step":null,"threshold":"> 90","value":95.0},"truncatedAlerts":0,"version":"4"}"#;
        let p = Payload::parse(stored).unwrap();
        assert_eq!(p.alerts[0].label("host"), "a");
        assert_eq!(p.tocsin.kind, Kind::Changed);
        assert_eq!(p.tocsin.first.value, Some(95.0));
        let again: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        let before: serde_json::Value = serde_json::from_str(stored).unwrap();
        assert_eq!(again, before, "nothing lost or renamed on the way through");
    }

    #[test]
    fn a_digest_holds_every_alert_in_order_and_says_how_many_it_replaces() {
        let none = |_: &AlertInfo| None;
        let a = webhook_payload(&notification(95.0, "a", true), "http://c", &none, None);
        let b = webhook_payload(&notification(91.0, "b", false), "http://c", &none, None);
        let d = digest(&[a.clone(), b]);
        assert_eq!(d.tocsin.kind, Kind::Digest);
        assert_eq!(d.tocsin.merged, Some(2));
        assert_eq!(d.tocsin.alert_count, 2);
        let hosts: Vec<&str> = d.alerts.iter().map(|x| x.label("host")).collect();
        assert_eq!(hosts, ["a", "b"]);
        assert_eq!(d.status, Status::Firing);
        assert_eq!(
            d.common_labels.get("alertname").map(String::as_str),
            Some("Disk")
        );
        assert!(!d.common_labels.contains_key("host"));
        assert_eq!(digest(&[a]).tocsin.merged, Some(1));
    }
}
