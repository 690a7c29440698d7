//! Receivers: one module per kind, each a [`Channel`] that sends one stored notification its
//! own way. [`build`] is the one place that knows every kind; the worker knows only the trait.

mod alertmanager;
mod aliyun;
mod chat;
mod email;
mod http;
mod log;
mod sms_gateway;
mod tencent;
mod webhook;

use std::future::Future;
use std::pin::Pin;

use tocsin_alerting::Payload;
use tocsin_config::collector::{ReceiverConfig, ReceiverKind};
use tocsin_reports::Report;

/// Why a notification did not go out; the worker retries it, then dead-letters it.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No answer: connection, TLS, timeout (said without the URL, which may carry a secret).
    #[error("{0}")]
    Transport(String),
    /// The receiver answered with a status other than 2xx.
    #[error("HTTP {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        /// The start of its reply.
        body: String,
    },
    /// The receiver answered 2xx, but its reply says it did not take the message.
    #[error("{0}")]
    Refused(String),
    /// The message could not be made (a stored payload unreadable, a template failing, an
    /// endpoint that is not a URL).
    #[error("{0}")]
    Message(String),
    /// A local write failed (the log file).
    #[error("{0}")]
    Local(String),
}

/// A send in progress.
pub(crate) type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// One receiver's way of sending.
pub(crate) trait Channel: Send + Sync {
    /// Sends one stored notification: `n`, read from `raw` (the webhook JSON the outbox holds);
    /// `id` is its outbox id, stable across retries, which webhooks get as
    /// `X-Tocsin-Notification-Id` to deduplicate the rare resend after a crash.
    fn send<'a>(&'a self, raw: &'a str, n: &'a Payload, id: i64) -> Sending<'a>;

    /// Sends a scheduled report (`raw`: `{"tocsinReport": …}`). Receivers that only carry
    /// alerts (SMS, Alertmanager) refuse; the configuration does not let a report reach them.
    fn send_report<'a>(&'a self, _raw: &'a str, _r: &'a Report, _id: i64) -> Sending<'a> {
        Box::pin(async {
            Err(DeliveryError::Message(
                "this kind of receiver cannot carry a report".into(),
            ))
        })
    }
}

/// The channel a receiver's configuration describes.
pub(crate) fn build(r: &ReceiverConfig) -> Result<Box<dyn Channel>, String> {
    let client = |timeout| http::client(&r.name, timeout);
    Ok(match &r.kind {
        ReceiverKind::Webhook {
            url,
            timeout,
            max_alerts,
        } => Box::new(webhook::Webhook {
            client: client(*timeout)?,
            url: url.clone(),
            max_alerts: *max_alerts,
        }),
        ReceiverKind::Log { path } => Box::new(log::Log { path: path.clone() }),
        ReceiverKind::TencentSms(c) => Box::new(tencent::TencentSms {
            client: client(c.timeout)?,
            cfg: c.clone(),
        }),
        ReceiverKind::AliyunSms(c) => Box::new(aliyun::AliyunSms {
            client: client(c.timeout)?,
            cfg: c.clone(),
        }),
        ReceiverKind::Email(c) => Box::new(
            email::Mailer::new(c, &r.template).map_err(|e| format!("receiver {}: {e}", r.name))?,
        ),
        ReceiverKind::SmsGateway(c) => Box::new(sms_gateway::SmsGateway {
            client: client(c.timeout)?,
            cfg: c.clone(),
            templates: crate::template::Templates::new(c.locale, &r.template),
        }),
        ReceiverKind::Alertmanager {
            url,
            timeout,
            resend_interval,
        } => Box::new(alertmanager::Alertmanager {
            client: client(*timeout)?,
            url: url.clone(),
            lease_ms: 4 * resend_interval.as_millis() as i64,
        }),
        ReceiverKind::Chat {
            vendor,
            url,
            secret,
            at_mobiles,
            locale,
            timeout,
        } => Box::new(chat::Chat {
            client: client(*timeout)?,
            vendor: *vendor,
            url: url.clone(),
            secret: secret.clone(),
            at_mobiles: at_mobiles.clone(),
            templates: crate::template::Templates::new(*locale, &r.template),
        }),
    })
}

/// Says at start-up where a receiver sends (never its secrets).
pub fn log_receiver(r: &ReceiverConfig) {
    use tocsin_config::redact_url;
    use tracing::info;
    match &r.kind {
        ReceiverKind::Webhook { url, .. } => {
            info!(receiver = %r.name, url = %redact_url(url), "webhook receiver")
        }
        ReceiverKind::Alertmanager { url, .. } => {
            info!(receiver = %r.name, url = %redact_url(url), "Alertmanager receiver")
        }
        ReceiverKind::TencentSms(t) => {
            info!(receiver = %r.name, template = %t.template_id, to = ?t.phone_numbers, "Tencent SMS receiver")
        }
        ReceiverKind::AliyunSms(a) => {
            info!(receiver = %r.name, template = %a.template_code, to = ?a.phone_numbers, "Aliyun SMS receiver")
        }
        ReceiverKind::Email(e) => {
            info!(receiver = %r.name, host = %e.host, port = e.port, to = ?e.to, "e-mail receiver")
        }
        ReceiverKind::Log { path } => {
            info!(receiver = %r.name, path = %path.display(), "log receiver")
        }
        ReceiverKind::Chat { vendor, locale, .. } => {
            info!(receiver = %r.name, vendor = vendor.name(), locale = ?locale, "chat robot receiver")
        }
        ReceiverKind::SmsGateway(g) => {
            info!(receiver = %r.name, url = %redact_url(&g.url), to = ?g.phone_numbers, "SMS gateway receiver")
        }
    }
}

/// Alert fields an SMS template parameter can take: alertname, host, level, status, value,
/// summary, threshold, or any label of the first alert.
pub(crate) fn field(n: &Payload, name: &str) -> String {
    let a = &n.alerts[0];
    let t = &n.tocsin.first;
    match name {
        "level" => t.level.as_str().to_string(),
        "status" => if n.firing() { "firing" } else { "resolved" }.to_string(),
        // As JSON writes it (95.0), which is what SMS templates were approved with.
        "value" => t
            .value
            .map(|v| serde_json::Value::from(v).to_string())
            .unwrap_or_default(),
        "summary" => a.annotation("summary").to_string(),
        "threshold" => t.threshold.clone(),
        // How many alerts the message tells of (a digest's template can say "and N more").
        "count" => n.alerts.len().to_string(),
        label => a.label(label).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::field;
    use crate::testing::payload;

    #[test]
    fn sms_fields_read_the_first_alert_as_vendors_templates_expect() {
        let n = payload(json!({
            "status": "firing",
            "alerts": [{
                "labels": { "alertname": "DiskFull", "host": "db-1", "level": "critical", "team": "dba" },
                "annotations": { "summary": "disk 95% full" },
                "tocsin": { "value": 95.0, "threshold": "> 90" },
            }],
        }));
        let got: Vec<String> = [
            "alertname",
            "host",
            "level",
            "status",
            "value",
            "summary",
            "threshold",
            "team",
            "nope",
            "count",
        ]
        .iter()
        .map(|f| field(&n, f))
        .collect();
        assert_eq!(
            got,
            [
                "DiskFull",
                "db-1",
                "critical",
                "firing",
                "95.0",
                "disk 95% full",
                "> 90",
                "dba",
                "",
                "1",
            ]
        );
    }
}
