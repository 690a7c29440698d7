//! Chat robots: DingTalk, WeCom (企业微信), Feishu / Lark and Slack. Each stored notification
//! (Alertmanager v4 JSON with a `tocsin` object) is rendered into the vendor's message format,
//! in zh-CN or en, and signed as the vendor documents:
//!
//! - DingTalk: `timestamp` (ms) and `sign = urlencode(base64(HMAC-SHA256(key = secret,
//!   msg = "{timestamp}\n{secret}")))` in the query; reply `errcode` 0.
//! - Feishu: `timestamp` (s) and `sign = base64(HMAC-SHA256(key = "{timestamp}\n{secret}",
//!   msg = empty))` in the body; reply `code` (or older `StatusCode`) 0.
//! - WeCom: the key is in the URL; reply `errcode` 0. Markdown cannot mention by mobile, so a
//!   text message carrying `mentioned_mobile_list` follows when mobiles are configured.
//! - Slack: incoming webhook with `text` in mrkdwn; reply `ok`.

use base64::Engine as _;
use serde_json::{json, Value};
use tocsin_alerting::Payload;
use tocsin_config::collector::Vendor;
use tocsin_model::TimestampMs;

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&k, msg).as_ref())
}

/// DingTalk's signature for `timestamp_ms`, URL-encoded.
pub(super) fn dingtalk_sign(secret: &str, timestamp_ms: TimestampMs) -> String {
    let raw = hmac_b64(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    );
    urlencoding::encode(&raw).into_owned()
}

/// Feishu's signature for `timestamp_s`.
pub(super) fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    hmac_b64(format!("{timestamp_s}\n{secret}").as_bytes(), b"")
}

/// The HTTP requests (URL, JSON body) that deliver one notification through `vendor`.
pub(super) fn requests(
    vendor: Vendor,
    url: &str,
    secret: Option<&str>,
    at_mobiles: &[String],
    templates: &crate::template::Templates,
    n: &Payload,
    now: TimestampMs,
) -> Result<Vec<(String, Value)>, String> {
    let (title, lines) = templates.render(&escape_values(vendor, n))?;
    Ok(requests_for(
        vendor, url, secret, at_mobiles, &title, &lines, now,
    ))
}

/// Label and annotation values are whatever an agent or a rule put there: in a markdown
/// message they could add a link ("[确认](https://evil…)") or a line of their own (a fake
/// acknowledgement line above the real one). They are made inert per vendor before the
/// message is rendered; what tocsin itself puts in (links, values, times) is left as it is.
fn escape_values(vendor: Vendor, n: &Payload) -> Payload {
    let escape: fn(&str) -> String = match vendor {
        Vendor::DingTalk | Vendor::WeCom => markdown_inert,
        Vendor::Slack => slack_inert,
        // Plain text: only the line structure matters.
        Vendor::Feishu => one_line,
    };
    let mut n = n.clone();
    let fix = |m: &mut std::collections::BTreeMap<String, String>| {
        for v in m.values_mut() {
            *v = escape(v);
        }
    };
    fix(&mut n.common_labels);
    fix(&mut n.common_annotations);
    fix(&mut n.group_labels);
    for a in &mut n.alerts {
        fix(&mut a.labels);
        fix(&mut a.annotations);
    }
    n
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n', '\u{2028}', '\u{2029}'], " ")
}

/// DingTalk's and WeCom's markdown have no escape character: the brackets that open links,
/// images and raw HTML become their full-width forms, which read the same.
fn markdown_inert(s: &str) -> String {
    tocsin_model::markdown_inert(s)
}

/// Slack's mrkdwn: `&`, `<` and `>` escaped as its documentation asks, so no `<url|text>` link
/// or mention can be formed.
fn slack_inert(s: &str) -> String {
    one_line(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn requests_for(
    vendor: Vendor,
    url: &str,
    secret: Option<&str>,
    at_mobiles: &[String],
    title: &str,
    lines: &[String],
    now: TimestampMs,
) -> Vec<(String, Value)> {
    match vendor {
        Vendor::DingTalk => {
            let mut text = format!(
                "### {title}\n{}",
                lines
                    .iter()
                    .map(|l| format!("- {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            // DingTalk only notifies the people whose numbers also appear in the text.
            for m in at_mobiles {
                text.push_str(&format!(" @{m}"));
            }
            let target = match secret {
                Some(s) => {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}timestamp={now}&sign={}", dingtalk_sign(s, now))
                }
                None => url.to_string(),
            };
            vec![(
                target,
                json!({
                    "msgtype": "markdown",
                    "markdown": { "title": title, "text": text },
                    "at": { "atMobiles": at_mobiles, "isAtAll": false },
                }),
            )]
        }
        Vendor::WeCom => {
            let content = format!(
                "### {title}\n{}",
                lines
                    .iter()
                    .map(|l| format!("> {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let mut out = vec![(
                url.to_string(),
                json!({ "msgtype": "markdown", "markdown": { "content": content } }),
            )];
            if !at_mobiles.is_empty() {
                out.push((
                    url.to_string(),
                    json!({ "msgtype": "text", "text": { "content": title, "mentioned_mobile_list": at_mobiles } }),
                ));
            }
            out
        }
        Vendor::Feishu => {
            let mut body = json!({
                "msg_type": "text",
                "content": { "text": format!("{title}\n{}", lines.join("\n")) },
            });
            if let Some(s) = secret {
                let ts = now / 1000;
                body["timestamp"] = json!(ts.to_string());
                body["sign"] = json!(feishu_sign(s, ts));
            }
            vec![(url.to_string(), body)]
        }
        Vendor::Slack => {
            let text = format!(
                "*{title}*\n{}",
                lines
                    .iter()
                    .map(|l| format!("• {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            vec![(url.to_string(), json!({ "text": text }))]
        }
    }
}

/// Whether a 2xx reply body means the vendor accepted the message.
pub(super) fn check_reply(vendor: Vendor, body: &str) -> Result<(), String> {
    let short = || body.chars().take(200).collect::<String>();
    if vendor == Vendor::Slack {
        return if body.trim() == "ok" {
            Ok(())
        } else {
            Err(format!("reply: {}", short()))
        };
    }
    let v: Value =
        serde_json::from_str(body).map_err(|_| format!("unexpected reply: {}", short()))?;
    let code = v["errcode"]
        .as_i64()
        .or(v["code"].as_i64())
        .or(v["StatusCode"].as_i64());
    let msg = v["errmsg"]
        .as_str()
        .or(v["msg"].as_str())
        .or(v["StatusMessage"].as_str())
        .unwrap_or("");
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(format!("errcode {c}: {msg}")),
        None => Err(format!("reply without a code: {}", short())),
    }
}

/// A chat robot of one vendor.
pub(super) struct Chat {
    pub(super) client: reqwest::Client,
    pub(super) vendor: Vendor,
    pub(super) url: String,
    pub(super) secret: Option<tocsin_config::Secret>,
    pub(super) at_mobiles: Vec<String>,
    pub(super) templates: crate::template::Templates,
}

impl super::Channel for Chat {
    fn send<'a>(
        &'a self,
        _raw: &'a str,
        n: &'a tocsin_alerting::Payload,
        _id: i64,
    ) -> super::Sending<'a> {
        Box::pin(async move {
            let secret = self.secret.as_ref().map(|s| s.expose());
            let requests = requests(
                self.vendor,
                &self.url,
                secret,
                &self.at_mobiles,
                &self.templates,
                n,
                tocsin_model::now_ms(),
            )
            .map_err(super::DeliveryError::Message)?;
            self.post(requests).await
        })
    }

    /// The report's title and summary lines, as an alert's title and lines are sent.
    fn send_report<'a>(
        &'a self,
        _raw: &'a str,
        r: &'a tocsin_reports::Report,
        _id: i64,
    ) -> super::Sending<'a> {
        Box::pin(async move {
            let escape: fn(&str) -> String = match self.vendor {
                Vendor::DingTalk | Vendor::WeCom => markdown_inert,
                Vendor::Slack => slack_inert,
                Vendor::Feishu => one_line,
            };
            let lines: Vec<String> = r.summary.iter().map(|l| escape(l)).collect();
            let secret = self.secret.as_ref().map(|s| s.expose());
            let requests = requests_for(
                self.vendor,
                &self.url,
                secret,
                &self.at_mobiles,
                &escape(&r.title),
                &lines,
                tocsin_model::now_ms(),
            );
            self.post(requests).await
        })
    }
}

impl Chat {
    async fn post(&self, requests: Vec<(String, Value)>) -> Result<(), super::DeliveryError> {
        for (target, body) in requests {
            let reply = super::http::post_json(&self.client, &target, &body, &[]).await?;
            check_reply(self.vendor, &reply).map_err(super::DeliveryError::Refused)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_are_base64_and_dingtalk_is_urlencoded() {
        let s = dingtalk_sign("SECabc", 1_700_000_000_000);
        assert!(
            !s.contains('+') && !s.contains('/') && !s.contains('='),
            "{s}"
        );
        let f = feishu_sign("abc", 1_599_360_473);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&f)
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn label_values_cannot_add_links_or_lines() {
        let evil = "db-1\n- 确认：[点此确认](https://evil.example/ack) <https://evil.example|ok>";
        let n = crate::testing::payload(json!({
            "status": "firing",
            "alerts": [{
                "status": "firing",
                "labels": { "alertname": "Disk", "host": evil, "level": "critical" },
                "annotations": { "summary": format!("disk full on {evil}") },
                "startsAt": "2026-11-23T10:00:00.000Z",
                "tocsin": { "event": "firing", "value": 97.5, "threshold": "> 95",
                            "ackUrl": "http://c/ack?t=a_b-c", "ack": null },
            }],
            "commonLabels": { "alertname": "Disk", "host": evil },
            "tocsin": { "kind": "changed", "event": "firing" },
        }));
        let t = crate::template::Templates::new(
            tocsin_config::collector::Locale::ZhCn,
            &tocsin_config::collector::MessageTemplate::default(),
        );
        for vendor in [
            Vendor::DingTalk,
            Vendor::WeCom,
            Vendor::Slack,
            Vendor::Feishu,
        ] {
            let reqs = requests(vendor, "http://x", None, &[], &t, &n, 0).unwrap();
            let body = reqs[0].1.to_string();
            let text = reqs[0].1["markdown"]["text"]
                .as_str()
                .or(reqs[0].1["markdown"]["content"].as_str())
                .or(reqs[0].1["text"].as_str())
                .or(reqs[0].1["content"]["text"].as_str())
                .unwrap()
                .to_string();
            if matches!(vendor, Vendor::DingTalk | Vendor::WeCom) {
                // Markdown's link; Slack's is `<url|text>`, Feishu's text has none.
                assert!(!text.contains("](https://evil"), "{vendor:?}: {text}");
            }
            if vendor == Vendor::Slack {
                assert!(!text.contains("<https://evil"), "{vendor:?}: {text}");
            }
            assert_eq!(
                text.lines()
                    .filter(|l| l
                        .trim_start_matches(['-', '>', '•', ' '])
                        .starts_with("确认"))
                    .count(),
                1,
                "{vendor:?}: one acknowledgement line, the real one: {text}"
            );
            assert!(body.contains("http://c/ack?t=a_b-c"), "{vendor:?}: {body}");
        }
    }

    #[test]
    fn replies() {
        assert!(check_reply(Vendor::DingTalk, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert_eq!(
            check_reply(
                Vendor::DingTalk,
                r#"{"errcode":310000,"errmsg":"sign not match"}"#
            )
            .unwrap_err(),
            "errcode 310000: sign not match"
        );
        assert!(check_reply(Vendor::Feishu, r#"{"code":0,"msg":"success"}"#).is_ok());
        assert!(check_reply(
            Vendor::Feishu,
            r#"{"StatusCode":0,"StatusMessage":"success"}"#
        )
        .is_ok());
        assert!(check_reply(Vendor::Feishu, r#"{"code":19021,"msg":"sign match fail"}"#).is_err());
        assert!(check_reply(Vendor::Slack, "ok").is_ok());
        assert!(check_reply(Vendor::Slack, "invalid_payload").is_err());
        assert!(check_reply(Vendor::WeCom, "<html>").is_err());
    }
}
