//! An Alertmanager-compatible webhook: the stored payload as it is.

use tocsin_alerting::Payload;

use super::{http, Channel, Sending};

pub(super) struct Webhook {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
}

impl Channel for Webhook {
    fn send<'a>(&'a self, raw: &'a str, _n: &'a Payload, id: i64) -> Sending<'a> {
        Box::pin(async move {
            let headers = [("X-Tocsin-Notification-Id", id.to_string())];
            http::post_raw(&self.client, &self.url, raw, &headers)
                .await
                .map(drop)
        })
    }
}
