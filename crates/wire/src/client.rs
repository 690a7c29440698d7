//! Sending one remote-write request: the protocol's headers, an optional bearer token, and what
//! the endpoint answered, with its `Retry-After`; and what every tocsin sender (the agent, the
//! collector's forwarder) does about an answer: [`Answer::verdict`].

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

/// POSTs an encoded (snappy) remote-write body to `url`, with extra request headers.
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

/// What a sender does with an answer. One policy for every remote-write sender in tocsin.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Taken; the count is of samples the receiver did not store because their series held a
    /// newer one.
    Sent { not_newer: u64 },
    /// The receiver will never take this request (a 4xx about the data, or 403: this
    /// credential may not write it): drop it. `accepted` of its samples were stored anyway.
    Drop { message: String, accepted: u64 },
    /// Keep it and try again later (after `after`, when the receiver said); `kind` names why,
    /// for metrics: `throttled`, `timeout`, `unauthorized`, `not_found`, `status_5xx`,
    /// `connect`.
    Retry {
        kind: &'static str,
        message: String,
        after: Option<Duration>,
    },
}

impl Answer {
    /// What to do: nothing is dropped for a problem people fix (a credential, a URL, a
    /// receiver that is down or slow); only what the receiver refuses for its content.
    pub fn verdict(self, url: &str) -> Verdict {
        let (status, after, message, accepted) = match self {
            Answer::Accepted { not_newer } => return Verdict::Sent { not_newer },
            Answer::Unreachable(message) => {
                return Verdict::Retry {
                    kind: "connect",
                    message,
                    after: None,
                }
            }
            Answer::Refused {
                status,
                retry_after,
                message,
                accepted,
            } => (status, retry_after, message, accepted),
        };
        let retry = |kind, message| Verdict::Retry {
            kind,
            message,
            after,
        };
        match status {
            429 => retry("throttled", message),
            // Timed out: nothing wrong with the data.
            408 => retry("timeout", message),
            // A missing or wrong credential is fixed by people, not by dropping data.
            401 => retry("unauthorized", message),
            // A wrong URL (a base URL, another service) is a configuration error: the data
            // stays queued until it is fixed, and the log says so.
            404 | 405 => retry(
                "not_found",
                format!("{message}: {url:?} is not a remote-write endpoint (…/api/v1/write)"),
            ),
            500..=599 => retry("status_5xx", message),
            _ => Verdict::Drop {
                message,
                accepted: accepted.unwrap_or(0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16) -> Answer {
        Answer::Refused {
            status,
            retry_after: Some(Duration::from_secs(7)),
            message: format!("HTTP {status}"),
            accepted: Some(3),
        }
    }

    #[test]
    fn only_a_refusal_of_the_content_drops_data() {
        let kind = |a: Answer| match a.verdict("http://c/api/v1/write") {
            Verdict::Sent { .. } => "sent",
            Verdict::Drop { .. } => "drop",
            Verdict::Retry { kind, .. } => kind,
        };
        let table = [
            (200, "sent"),
            (204, "sent"),
            (400, "drop"),
            (401, "unauthorized"),
            (403, "drop"),
            (404, "not_found"),
            (405, "not_found"),
            (408, "timeout"),
            (413, "drop"),
            (415, "drop"),
            (429, "throttled"),
            (500, "status_5xx"),
            (503, "status_5xx"),
        ];
        for (status, want) in table {
            let a = if status < 300 {
                Answer::Accepted { not_newer: 0 }
            } else {
                refused(status)
            };
            assert_eq!(kind(a), want, "HTTP {status}");
        }
        assert_eq!(kind(Answer::Unreachable("refused".into())), "connect");
    }

    #[test]
    fn a_retry_keeps_the_receivers_wait_and_a_drop_counts_what_was_stored() {
        match refused(503).verdict("u") {
            Verdict::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(7))),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            refused(400).verdict("u"),
            Verdict::Drop {
                message: "HTTP 400".into(),
                accepted: 3
            }
        );
        match refused(404).verdict("http://c/") {
            Verdict::Retry { message, .. } => {
                assert!(message.contains("\"http://c/\" is not a remote-write endpoint"))
            }
            v => panic!("{v:?}"),
        }
    }
}
