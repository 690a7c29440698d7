//! An Alertmanager-compatible webhook: the stored payload as it is.

use tocsin_alerting::Payload;

use super::{http, Channel, Sending};

pub(super) struct Webhook {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    /// The most alerts a message carries (0: all).
    pub(super) max_alerts: usize,
}

/// The body with at most `max` alerts (0: all), the first ones, and the number left out in
/// `truncatedAlerts`, as Alertmanager's webhook sends it: a group of a mass outage is
/// thousands of alerts, a body some receivers refuse (a proxy's 1 MiB limit).
fn truncated<'a>(raw: &'a str, n: &Payload, max: usize) -> std::borrow::Cow<'a, str> {
    if max == 0 || n.alerts.len() <= max {
        return raw.into();
    }
    let mut m = n.clone();
    let left_out = m.alerts.len() - max;
    m.alerts.truncate(max);
    m.truncated_alerts = u32::try_from(left_out).unwrap_or(u32::MAX);
    serde_json::to_string(&m)
        .map(Into::into)
        .unwrap_or_else(|_| raw.into())
}

impl Webhook {
    fn post<'a>(&'a self, raw: &'a str, id: i64) -> Sending<'a> {
        Box::pin(async move {
            let headers = [("X-Tocsin-Notification-Id", id.to_string())];
            http::post_raw(&self.client, &self.url, raw, &headers)
                .await
                .map(drop)
        })
    }
}

impl Channel for Webhook {
    fn send<'a>(&'a self, raw: &'a str, n: &'a Payload, id: i64) -> Sending<'a> {
        Box::pin(async move {
            let body = truncated(raw, n, self.max_alerts);
            self.post(&body, id).await
        })
    }

    fn send_report<'a>(
        &'a self,
        raw: &'a str,
        _r: &'a tocsin_reports::Report,
        id: i64,
    ) -> Sending<'a> {
        self.post(raw, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn max_alerts_keeps_the_first_and_counts_the_rest_as_alertmanager_does() {
        let alerts: Vec<Value> = (0..5)
            .map(|i| json!({ "labels": { "alertname": "NodeDown", "host": format!("n{i}") } }))
            .collect();
        let n = crate::testing::payload(json!({ "alerts": alerts }));
        let raw = serde_json::to_string(&n).unwrap();
        assert_eq!(truncated(&raw, &n, 0), raw, "0: all");
        assert_eq!(truncated(&raw, &n, 5), raw, "as many as allowed: as stored");
        let v: Value = serde_json::from_str(&truncated(&raw, &n, 2)).unwrap();
        let hosts: Vec<&str> = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["host"].as_str().unwrap())
            .collect();
        assert_eq!(hosts, ["n0", "n1"]);
        assert_eq!(v["truncatedAlerts"], 3);
        assert_eq!(v["version"], "4");
    }
}
