//! An Alertmanager-compatible webhook: the stored payload as it is.

use super::{http, parsed, Channel, Sending};

pub(super) struct Webhook {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
}

impl Channel for Webhook {
    fn send<'a>(&'a self, payload: &'a str, id: i64) -> Sending<'a> {
        Box::pin(async move {
            let headers = [("X-Tocsin-Notification-Id", id.to_string())];
            http::post_json(&self.client, &self.url, &parsed(payload)?, &headers)
                .await
                .map(drop)
        })
    }
}
