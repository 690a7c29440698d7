//! What the HTTP channels share: a client per receiver, JSON posts, errors without URLs.

use std::time::Duration;

use super::DeliveryError;

/// What went wrong sending a request, without its URL: receiver URLs carry their secrets.
pub(super) fn transport_error(e: reqwest::Error) -> DeliveryError {
    DeliveryError::Transport(tocsin_config::error_chain(&e.without_url()))
}

/// An HTTP client for one receiver.
pub(super) fn client(name: &str, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("receiver {name}: {e}"))
}

/// POSTs a JSON body; the reply body on 2xx, the status and the start of the body otherwise.
pub(super) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    headers: &[(&str, String)],
) -> Result<String, DeliveryError> {
    post_raw(client, url, &body.to_string(), headers).await
}

/// POSTs JSON text as it is.
pub(super) async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(&str, String)],
) -> Result<String, DeliveryError> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(text)
    } else {
        Err(DeliveryError::Status {
            status,
            body: short(&text),
        })
    }
}

/// The start of a reply, for an error message.
pub(super) fn short(text: &str) -> String {
    text.chars().take(200).collect()
}
