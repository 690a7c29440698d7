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
    let n = escape_values(vendor, n);
    let (title, lines) = templates.render(&n)?;
    // Within `TEXT_MAX`, with room for what `requests_for` adds (DingTalk's mentions).
    let budget = TEXT_MAX - TEXT_RESERVE;
    let lines = templates.fit(&n, lines, budget, |lines| text(vendor, &title, lines).len())?;
    Ok(requests_for(
        vendor, url, secret, at_mobiles, &title, &lines, now,
    ))
}

/// The most bytes of text one chat message carries. WeCom refuses a markdown message over
/// 4,096 bytes (errcode 40058), and a notification group of a mass outage renders thousands of
/// alerts: refused, retried and dead-lettered, it would tell nobody of the outage at all. Held
/// to the same size for every vendor (Feishu takes a 20 KB request, Slack truncates at 40,000
/// characters), it is also what reads on a phone; the console and the API list the rest.
pub(super) const TEXT_MAX: usize = 4096;

/// The message's text as the vendor gets it (mentions aside).
fn text(vendor: Vendor, title: &str, lines: &[String]) -> String {
    let (head, bullet) = match vendor {
        Vendor::DingTalk => (format!("### {title}"), "- "),
        Vendor::WeCom => (format!("### {title}"), "> "),
        Vendor::Feishu => (title.to_string(), ""),
        Vendor::Slack => (format!("*{title}*"), "• "),
    };
    let mut t = head;
    for l in lines {
        t.push('\n');
        t.push_str(bullet);
        t.push_str(l);
    }
    t
}

/// Room kept for what `requests_for` adds to the text (DingTalk's mentions).
const TEXT_RESERVE: usize = 512;

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
            let mut text = text(vendor, title, lines);
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
            let content = text(vendor, title, lines);
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
                "content": { "text": text(vendor, title, lines) },
            });
            if let Some(s) = secret {
                let ts = now / 1000;
                body["timestamp"] = json!(ts.to_string());
                body["sign"] = json!(feishu_sign(s, ts));
            }
            vec![(url.to_string(), body)]
        }
        Vendor::Slack => {
            vec![(
                url.to_string(),
                json!({ "text": text(vendor, title, lines) }),
            )]
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

    /// The text of the first request, whatever the vendor's field.
    fn first_text(reqs: &[(String, Value)]) -> String {
        let b = &reqs[0].1;
        b["markdown"]["text"]
            .as_str()
            .or(b["markdown"]["content"].as_str())
            .or(b["text"].as_str())
            .or(b["content"]["text"].as_str())
            .unwrap()
            .to_string()
    }

    fn outage(alerts: usize, summary: &str) -> tocsin_alerting::Payload {
        let all: Vec<Value> = (0..alerts)
            .map(|i| {
                json!({
                    "status": "firing",
                    "labels": { "alertname": "NodeDown", "host": format!("node-{i:04}"), "level": "critical" },
                    "annotations": { "summary": summary },
                })
            })
            .collect();
        crate::testing::payload(json!({
            "alerts": all,
            "commonLabels": { "alertname": "NodeDown" },
            "tocsin": { "kind": "changed", "event": "firing" },
        }))
    }

    /// A notification group of a mass outage (2,000 alerts) is one message of at most
    /// `TEXT_MAX` bytes per vendor — WeCom refuses more (errcode 40058), and a refused message
    /// tells nobody — with the first alerts whole, a line counting the rest and the title
    /// counting all; an alert too long for a message on its own is cut.
    #[test]
    fn a_mass_outage_fits_one_message_and_counts_what_it_leaves_out() {
        let zh = crate::template::Templates::new(
            tocsin_config::collector::Locale::ZhCn,
            &tocsin_config::collector::MessageTemplate::default(),
        );
        let en = crate::template::Templates::new(
            tocsin_config::collector::Locale::En,
            &tocsin_config::collector::MessageTemplate::default(),
        );
        let n = outage(2_000, "node unreachable");
        for vendor in [
            Vendor::DingTalk,
            Vendor::WeCom,
            Vendor::Slack,
            Vendor::Feishu,
        ] {
            let reqs = requests(
                vendor,
                "http://x",
                None,
                &["13800000000".into()],
                &zh,
                &n,
                0,
            )
            .unwrap();
            let text = first_text(&reqs);
            assert!(text.len() <= TEXT_MAX, "{vendor:?}: {} bytes", text.len());
            assert!(
                text.contains("等2000条"),
                "{vendor:?}: the title counts all: {text}"
            );
            assert!(
                text.contains("node-0000") && text.contains("node-0001"),
                "{vendor:?}: {text}"
            );
            let listed = (0..2_000)
                .filter(|i| text.contains(&format!("node-{i:04}")))
                .count();
            assert!(listed >= 10, "{vendor:?}: as many as fit: {listed}");
            let rest = 2_000 - listed;
            assert!(
                text.contains(&format!("另有 {rest} 条未列出（共 2000 条）")),
                "{vendor:?}: the rest counted: {:?}",
                text.lines().last()
            );
        }
        let text = first_text(&requests(Vendor::WeCom, "http://x", None, &[], &en, &n, 0).unwrap());
        assert!(text.contains("more not listed (2000 in all)"), "{text}");
        // A group that fits is sent whole, as before.
        let small = first_text(
            &requests(
                Vendor::WeCom,
                "http://x",
                None,
                &[],
                &zh,
                &outage(3, "s"),
                0,
            )
            .unwrap(),
        );
        assert!(
            !small.contains("未列出") && small.contains("node-0002"),
            "{small}"
        );
        // One alert whose summary alone is larger than a message.
        let long = outage(1, &"磁盘".repeat(3_000));
        for vendor in [
            Vendor::DingTalk,
            Vendor::WeCom,
            Vendor::Slack,
            Vendor::Feishu,
        ] {
            let text = first_text(&requests(vendor, "http://x", None, &[], &zh, &long, 0).unwrap());
            assert!(text.len() <= TEXT_MAX, "{vendor:?}: {} bytes", text.len());
            assert!(
                text.contains("磁盘磁盘") && text.contains('…'),
                "{vendor:?}"
            );
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
