//! Any HTTP SMS gateway: the request body is a template over the notification.

use tocsin_alerting::Payload;

use super::{http, Channel, DeliveryError, Sending};

pub(super) struct SmsGateway {
    pub(super) client: reqwest::Client,
    pub(super) cfg: tocsin_config::collector::SmsGatewayConfig,
    pub(super) templates: crate::template::Templates,
}

impl Channel for SmsGateway {
    fn send<'a>(&'a self, _raw: &'a str, n: &'a Payload, _id: i64) -> Sending<'a> {
        Box::pin(async move {
            let (client, cfg) = (&self.client, &self.cfg);
            let body = self
                .templates
                .render_with(
                    &cfg.body,
                    n,
                    serde_json::json!({ "phone_numbers": cfg.phone_numbers }),
                )
                .map_err(DeliveryError::Message)?;
            let mut req = if cfg.method == "PUT" {
                client.put(&cfg.url)
            } else {
                client.post(&cfg.url)
            };
            req = req.header("content-type", &cfg.content_type);
            for (k, v) in &cfg.headers {
                req = req.header(k.as_str(), v.expose());
            }
            let resp = req.body(body).send().await.map_err(http::transport_error)?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(DeliveryError::Status {
                    status,
                    body: http::short(&text),
                });
            }
            match &cfg.success_match {
                Some(re) if !re.is_match(&text) => Err(DeliveryError::Refused(format!(
                    "reply does not match success_match: {}",
                    http::short(&text)
                ))),
                _ => Ok(()),
            }
        })
    }
}
