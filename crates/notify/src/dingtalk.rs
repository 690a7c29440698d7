//! DingTalk custom robot: a markdown message rendered from the stored notification, sent to the
//! robot's webhook with the documented signature (`timestamp` in milliseconds and
//! `sign = urlencode(base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")))`). A reply with
//! `errcode != 0` is a failure even under HTTP 200.

use base64::Engine as _;
use serde_json::{json, Value};
use tocsin_config::collector::Locale;

/// The signature DingTalk expects for `timestamp_ms`, URL-encoded.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp_ms}\n{secret}").as_bytes());
    urlencoding::encode(&base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
        .into_owned()
}

/// The webhook URL with `timestamp` and `sign` appended when a secret is set.
pub fn signed_url(url: &str, secret: Option<&str>, timestamp_ms: i64) -> String {
    match secret {
        Some(s) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!(
                "{url}{sep}timestamp={timestamp_ms}&sign={}",
                sign(s, timestamp_ms)
            )
        }
        None => url.to_string(),
    }
}

fn level_word(level: &str, locale: Locale) -> &str {
    match (locale, level) {
        (Locale::ZhCn, "warning") => "警告",
        (Locale::ZhCn, "critical") => "严重",
        (Locale::ZhCn, "emergency") => "紧急",
        (_, other) => other,
    }
}

/// Renders one stored notification (Alertmanager v4 JSON with a `tocsin` object) as a DingTalk
/// markdown message.
pub fn message(n: &Value, locale: Locale, at_mobiles: &[String]) -> Value {
    let a = &n["alerts"][0];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let labels = &a["labels"];
    let alertname = s(&labels["alertname"]);
    let level = s(&n["tocsin"]["level"]);
    let event = s(&n["tocsin"]["event"]);
    let host = s(&labels["host"]);
    let summary = s(&a["annotations"]["summary"]);
    let value = n["tocsin"]["value"]
        .as_f64()
        .map(|v| format!("{v}"))
        .unwrap_or_default();
    let threshold = s(&n["tocsin"]["threshold"]);
    let resolved = n["status"] == "resolved";
    let lw = level_word(&level, locale);
    let (title, lines) = match locale {
        Locale::ZhCn => {
            let head = match (resolved, event.as_str()) {
                (true, _) => "【已恢复】",
                (false, "level_changed") => "【级别变化】",
                (false, "flapping") => "【频繁抖动】",
                _ => "【告警】",
            };
            (
                format!("{head}{lw} {alertname}"),
                vec![
                    format!("### {head}{lw} {alertname}"),
                    format!("- **摘要**：{summary}"),
                    format!("- **主机**：{host}"),
                    format!("- **当前值**：{value}（阈值 {threshold}）"),
                    format!("- **开始时间**：{}", s(&a["startsAt"])),
                ],
            )
        }
        Locale::En => {
            let head = match (resolved, event.as_str()) {
                (true, _) => "[RESOLVED]",
                (false, "level_changed") => "[LEVEL CHANGED]",
                (false, "flapping") => "[FLAPPING]",
                _ => "[FIRING]",
            };
            (
                format!("{head} {} {alertname}", level.to_uppercase()),
                vec![
                    format!("### {head} {} {alertname}", level.to_uppercase()),
                    format!("- **Summary**: {summary}"),
                    format!("- **Host**: {host}"),
                    format!("- **Value**: {value} (threshold {threshold})"),
                    format!("- **Since**: {}", s(&a["startsAt"])),
                ],
            )
        }
    };
    let mut text = lines.join("\n");
    if resolved {
        text.push_str(&format!(
            "\n- **{}**：{}",
            if locale == Locale::En {
                "Resolved at"
            } else {
                "恢复时间"
            },
            s(&a["endsAt"])
        ));
    }
    // DingTalk only notifies the people whose numbers also appear in the text.
    for m in at_mobiles {
        text.push_str(&format!(" @{m}"));
    }
    json!({
        "msgtype": "markdown",
        "markdown": { "title": title, "text": text },
        "at": { "atMobiles": at_mobiles, "isAtAll": false },
    })
}

/// DingTalk answers 200 with `errcode` 0 on success.
pub fn check_reply(body: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(body).map_err(|_| {
        format!(
            "unexpected reply: {}",
            body.chars().take(200).collect::<String>()
        )
    })?;
    match v["errcode"].as_i64() {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "errcode {code}: {}",
            v["errmsg"].as_str().unwrap_or("")
        )),
        None => Err(format!(
            "reply without errcode: {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_urlencoded_base64_of_hmac() {
        let s = sign("SECabc", 1_700_000_000_000);
        assert!(
            !s.contains('+') && !s.contains('/') && !s.contains('='),
            "{s}"
        );
        assert!(
            signed_url("https://x/robot/send?access_token=t", Some("SECabc"), 1)
                .starts_with("https://x/robot/send?access_token=t&timestamp=1&sign=")
        );
        assert_eq!(signed_url("https://x", None, 1), "https://x");
    }

    #[test]
    fn replies() {
        assert!(check_reply(r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert_eq!(
            check_reply(r#"{"errcode":310000,"errmsg":"sign not match"}"#).unwrap_err(),
            "errcode 310000: sign not match"
        );
        assert!(check_reply("<html>").is_err());
    }
}
