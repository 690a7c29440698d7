//! Delivery: turns alert transitions into notification payloads (Alertmanager webhook v4 JSON)
//! and runs one worker per receiver that drains the durable outbox in order, with retries,
//! exponential backoff and a dead-letter state. Rule evaluation never calls into this crate;
//! the collector joins the two.

mod channel;

pub use channel::{log_receiver, DeliveryError};
pub mod template;
mod worker;

#[cfg(test)]
mod testing;

pub use worker::{backoff_ms, run_workers, workers, DeliveryMetrics, RateLimiter, Urgent};

/// Sends one test message through a receiver as configured — the same channel, signature and
/// template as an alert's, outside its rate limit and outbox — so that a new receiver (a robot's secret, an SMS
/// template, a mail relay) is tried before an incident needs it. Its alert is `TocsinTest`
/// at warning, on `host`; the answer is the receiver's error, if any.
pub async fn send_test(
    r: &tocsin_config::collector::ReceiverConfig,
    external_url: &str,
    host: &str,
    now: tocsin_model::TimestampMs,
) -> Result<(), String> {
    let channel = channel::build(r)?;
    let labels = tocsin_model::Labels::from_pairs([("alertname", "TocsinTest"), ("host", host)]);
    let annotations = [
        (
            "summary",
            format!("Test message from tocsin: receiver {} works", r.name),
        ),
        (
            "summary_zh",
            format!("tocsin 测试消息：接收方 {} 可用", r.name),
        ),
        (
            "description",
            "Sent by `tocsin-collector test-receiver`; nothing is wrong.".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let alert = tocsin_dispatch::AlertInfo {
        id: tocsin_dispatch::alert_id(&labels),
        rule: "TocsinTest".into(),
        labels,
        annotations,
        firing: true,
        event: tocsin_dispatch::Event::Firing,
        level: tocsin_model::Level::Warning,
        previous_level: None,
        value: 0.0,
        threshold: String::new(),
        starts_at: now,
        ends_at: None,
        at: now,
        reason: None,
        ack: None,
        generator_url: None,
    };
    let n = tocsin_dispatch::Notification {
        receiver: r.name.clone(),
        group_key: "tocsin-test".into(),
        group_labels: tocsin_model::Labels::from_pairs([("alertname", "TocsinTest")]),
        why: tocsin_dispatch::Why::Changed,
        alerts: vec![alert],
    };
    let payload = tocsin_alerting::webhook_payload(&n, external_url, &|_| None, None);
    let raw = payload.to_json();
    channel
        .send(&raw, &payload, 0)
        .await
        .map_err(|e| e.to_string())
}

/// Whether a receiver's channel can be built as the collector builds it at start (its HTTP
/// client, TLS settings, e-mail transport), for `check-config`.
pub fn check_receiver(r: &tocsin_config::collector::ReceiverConfig) -> Result<(), String> {
    channel::build(r).map(drop)
}
