//! Sending one remote-write request: the protocol's headers, an optional bearer token, and what
//! the endpoint answered, with its `Retry-After`. What to do about a refusal is the caller's.

use std::time::Duration;

use tocsin_model::error_chain;

/// What a remote-write endpoint answered.
#[derive(Debug)]
pub enum Answer {
    /// 2xx; the count is of samples the receiver did not store because their series already
    /// held a newer one (`NOT_NEWER_HEADER`; 0 when it does not say).
    Accepted { not_newer: u64 },
    /// A non-2xx status, the `Retry-After` it gave (seconds form) and the start of its body.
    Refused {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
        /// Samples of the request stored anyway (`ACCEPTED_HEADER`), when the receiver says.
        accepted: Option<u64>,
    },
    /// No answer: connection, TLS or timeout error.
    Unreachable(String),
}

/// POSTs an encoded (snappy) remote-write body to `url`.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    send_with(client, url, bearer, body, &[]).await
}

/// As `send`, with extra request headers.
pub async fn send_with(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = client
        .post(url)
        .header("Content-Type", crate::CONTENT_TYPE)
        .header("Content-Encoding", crate::CONTENT_ENCODING)
        .header(crate::VERSION_HEADER, crate::VERSION)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Answer::Accepted {
            not_newer: r
                .headers()
                .get(crate::NOT_NEWER_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        },
        Ok(r) => {
            let status = r.status();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let accepted = r
                .headers()
                .get(crate::ACCEPTED_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = r.text().await.unwrap_or_default();
            Answer::Refused {
                status: status.as_u16(),
                retry_after,
                accepted,
                message: format!(
                    "HTTP {status}: {}",
                    text.trim().chars().take(300).collect::<String>()
                ),
            }
        }
        // Without its URL, which may carry a credential; with its causes (refused, timed out).
        Err(e) => Answer::Unreachable(error_chain(&e.without_url())),
    }
}
