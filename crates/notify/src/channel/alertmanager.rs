//! A Prometheus Alertmanager: `POST {url}/api/v2/alerts` with the alerts in its API format.

use tocsin_alerting::Payload;

use super::{http, Channel, Sending};
use tocsin_model::now_ms;

pub(super) struct Alertmanager {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    /// How long a firing alert stays active in Alertmanager without being sent again.
    pub(super) lease_ms: i64,
}

impl Channel for Alertmanager {
    fn send<'a>(&'a self, _raw: &'a str, n: &'a Payload, _id: i64) -> Sending<'a> {
        Box::pin(async move {
            let alerts = alertmanager_alerts(n, now_ms(), self.lease_ms);
            let url = format!("{}/api/v2/alerts", self.url);
            http::post_json(&self.client, &url, &alerts, &[])
                .await
                .map(drop)
        })
    }
}

/// The alerts of a notification in Alertmanager's API format. Resolved alerts carry their end;
/// firing ones end `lease_ms` from now, so Alertmanager keeps them active while they are sent
/// again (every quarter lease) and lets them end if the sender is gone.
fn alertmanager_alerts(n: &Payload, now: i64, lease_ms: i64) -> serde_json::Value {
    n.alerts
        .iter()
        .map(|a| {
            let ends = if a.firing() {
                tocsin_alerting::format_rfc3339(now + lease_ms)
            } else {
                a.ends_at.clone()
            };
            serde_json::json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at,
                "endsAt": ends,
                "generatorURL": a.generator_url,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_gets_every_alert_firing_ones_on_a_lease() {
        let n = crate::testing::payload(serde_json::json!({ "alerts": [
            { "status": "firing", "labels": { "alertname": "A", "q": "1" }, "annotations": {},
              "startsAt": "2026-11-23T10:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
              "generatorURL": "http://c/api/v1/alerts" },
            { "status": "resolved", "labels": { "alertname": "A", "q": "2" }, "annotations": {},
              "startsAt": "2026-11-23T09:00:00.000Z", "endsAt": "2026-11-23T10:01:00.000Z",
              "generatorURL": "http://c/api/v1/alerts" },
        ]}));
        let now = 1_795_428_000_000; // 2026-11-23T10:00:00Z
        let out = alertmanager_alerts(&n, now, 240_000);
        assert_eq!(out.as_array().unwrap().len(), 2);
        assert_eq!(out[0]["labels"]["q"], "1");
        assert_eq!(out[0]["endsAt"], "2026-11-23T10:04:00.000Z");
        assert_eq!(out[1]["endsAt"], "2026-11-23T10:01:00.000Z");
        assert_eq!(out[1]["startsAt"], "2026-11-23T09:00:00.000Z");
    }
}
