//! An Alertmanager-compatible webhook: the stored payload as it is.

use tocsin_alerting::Payload;

use super::{http, Channel, Sending};

pub(super) struct Webhook {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
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
    fn send<'a>(&'a self, raw: &'a str, _n: &'a Payload, id: i64) -> Sending<'a> {
        self.post(raw, id)
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
