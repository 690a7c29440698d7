//! Text about endpoints that is safe to log or answer: receiver and forwarding URLs often carry
//! their credential (a DingTalk `access_token` or WeCom `key` in the query, a Slack webhook's
//! path, `user:password@`), and an HTTP client's error text repeats the whole URL.

/// `scheme://host[:port]/…`: enough to tell endpoints apart, nothing of the path, query or
/// user info. A string that is not a URL becomes `<url>`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<url>".to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let more = rest.len() > authority.len() && rest[authority.len()..] != *"/";
    format!("{scheme}://{host}{}", if more { "/…" } else { "" })
}

/// An error and its causes, `outer: inner: …`, each once. For an HTTP client's error, pass
/// the error without its URL (reqwest's `without_url`), since the URL may hold a secret.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_only_scheme_host_and_port() {
        for (url, want) in [
            (
                "https://oapi.dingtalk.com/robot/send?access_token=SECRET",
                "https://oapi.dingtalk.com/…",
            ),
            (
                "https://hooks.slack.com/services/T0/B0/SECRET",
                "https://hooks.slack.com/…",
            ),
            ("http://user:SECRET@127.0.0.1:9093", "http://127.0.0.1:9093"),
            ("http://127.0.0.1:9093/", "http://127.0.0.1:9093"),
            ("http://[::1]:80/x?key=SECRET#f", "http://[::1]:80/…"),
            ("SECRET", "<url>"),
        ] {
            let got = redact_url(url);
            assert_eq!(got, want);
            assert!(!got.contains("SECRET"));
        }
    }

    #[test]
    fn error_chains_name_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "error sending request",
            Some(Box::new(E("connection refused", None))),
        );
        assert_eq!(error_chain(&e), "error sending request: connection refused");
    }
}
