//! Message text: a title and lines rendered by minijinja templates from a stored notification
//! (Alertmanager v4 JSON with `tocsin` objects), with default templates in zh-CN and en. Every
//! text channel (chat robots, e-mail, SMS gateways) reads through here.
//!
//! Template variables: `head` (e.g. 【告警】 / [FIRING]), `level`, `level_word`, `alertname`,
//! `count`, `status`, `kind` (changed, repeat, escalation, digest), `step`, `external_url`,
//! `alerts` (each: `alertname`, `firing`, `status_word`, `event`, `level`, `level_word`, `host`,
//! `summary`, `description`, `value`, `threshold`, `since`, `until`, `duration`, `since_utc`,
//! `until_utc`, `labels`, `annotations`, `ack` {by, comment}, `ack_url`, `dashboard_url`) and
//! `payload` (the whole notification).
//!
//! Times are shown in the configured zone with their offset (`2026-12-05 03:22:27 (UTC+8)`),
//! a resolved alert with how long it lasted; `summary` and `description` are the rule's
//! `summary_zh` / `description_zh` for a zh-CN receiver (`summary_en` / `description_en` for
//! an en one) when the rule gives them, its `summary` / `description` otherwise.

use serde_json::{json, Value};
use tocsin_alerting::{Kind, Payload};
use tocsin_config::collector::{Locale, MessageTemplate};
use tocsin_dispatch::Event;

const TITLE_ZH: &str =
    "{{ head }}{{ level_word }} {{ alertname }}{% if count > 1 %} 等{{ count }}条{% endif %}";
const TITLE_EN: &str = "{{ head }}{{ level_word }} {{ alertname }}{% if count > 1 %} (+{{ count - 1 }} more){% endif %}";

const BODY_ZH: &str = "
{%- for a in alerts %}
{%- if count > 1 %}
{{ loop.index }}. {{ a.status_word }} {{ a.alertname }} {{ a.level_word }}
{%- endif %}
摘要：{{ a.summary }}
主机：{{ a.host }}
当前值：{{ a.value }} (阈值 {{ a.threshold }})
开始时间：{{ a.since }}
{%- if not a.firing %}
恢复时间：{{ a.until }}（持续 {{ a.duration }}）
{%- endif %}
{%- if a.ack %}
已确认：{{ a.ack.by }}{% if a.ack.comment %}（{{ a.ack.comment }}）{% endif %}
{%- elif a.ack_url %}
确认：{{ a.ack_url }}
{%- endif %}
{%- if a.dashboard_url %}
看板：{{ a.dashboard_url }}
{%- endif %}
{%- endfor %}";

const BODY_EN: &str = "
{%- for a in alerts %}
{%- if count > 1 %}
{{ loop.index }}. {{ a.status_word }} {{ a.alertname }} {{ a.level_word }}
{%- endif %}
Summary: {{ a.summary }}
Host: {{ a.host }}
Value: {{ a.value }} (threshold {{ a.threshold }})
Since: {{ a.since }}
{%- if not a.firing %}
Resolved at: {{ a.until }} (lasted {{ a.duration }})
{%- endif %}
{%- if a.ack %}
Acknowledged by {{ a.ack.by }}{% if a.ack.comment %} ({{ a.ack.comment }}){% endif %}
{%- elif a.ack_url %}
Acknowledge: {{ a.ack_url }}
{%- endif %}
{%- if a.dashboard_url %}
Dashboard: {{ a.dashboard_url }}
{%- endif %}
{%- endfor %}";

/// The most characters of `text` an SMS gateway's body gets: 500, what Chinese providers
/// take in one long message (Aliyun, Tencent Cloud); a mass outage's group would otherwise be
/// hundreds of texts, or refused.
pub const TEXT_CHARS: usize = 500;

/// A receiver's templates.
#[derive(Debug, Clone)]
pub struct Templates {
    locale: Locale,
    title: String,
    body: String,
    zone: tocsin_clock::Zone,
}

/// An annotation in the receiver's language: `NAME_zh` or `NAME_en` when given.
fn annotation<'a>(a: &'a tocsin_alerting::PayloadAlert, name: &str, locale: Locale) -> &'a str {
    let suffix = locale.pick("zh", "en");
    a.annotations
        .get(&format!("{name}_{suffix}"))
        .map(String::as_str)
        .unwrap_or_else(|| a.annotation(name))
}

fn level_word(level: &str, locale: Locale) -> String {
    match (locale, level) {
        (Locale::ZhCn, "warning") => "警告".into(),
        (Locale::ZhCn, "critical") => "严重".into(),
        (Locale::ZhCn, "emergency") => "紧急".into(),
        (_, other) => other.to_uppercase(),
    }
}

fn head(n: &Payload, locale: Locale) -> String {
    let t = &n.tocsin;
    let zh = locale == Locale::ZhCn;
    let step = t.step.unwrap_or(0);
    match (n.firing(), t.kind, t.first.event) {
        (false, _, _) => if zh { "【已恢复】" } else { "[RESOLVED] " }.into(),
        (true, Kind::Digest, _) => if zh { "【汇总】" } else { "[DIGEST] " }.into(),
        (true, Kind::Escalation, _) if step > 1 => {
            if zh {
                format!("【升级·第{step}级】")
            } else {
                format!("[ESCALATED L{step}] ")
            }
        }
        (true, Kind::Repeat, _) => if zh {
            "【重复提醒】"
        } else {
            "[REPEAT] "
        }
        .into(),
        (true, _, Event::LevelChanged) => if zh {
            "【级别变化】"
        } else {
            "[LEVEL CHANGED] "
        }
        .into(),
        (true, _, Event::Flapping) => if zh {
            "【频繁抖动】"
        } else {
            "[FLAPPING] "
        }
        .into(),
        _ => if zh { "【告警】" } else { "[FIRING] " }.into(),
    }
}

/// The variables templates see.
pub fn context(n: &Payload, locale: Locale, zone: &tocsin_clock::Zone) -> Value {
    let local = |t: &str| match tocsin_model::parse_timestamp(t) {
        Some(ms) if ms > 0 => zone.format(ms),
        _ => t.to_string(),
    };
    let items: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            let firing = a.firing();
            let level = a.tocsin.level;
            let status_word = match (locale, firing) {
                (Locale::ZhCn, true) => "告警",
                (Locale::ZhCn, false) => "已恢复",
                (_, true) => "FIRING",
                (_, false) => "RESOLVED",
            };
            json!({
                "alertname": a.label("alertname"),
                "firing": firing,
                "status_word": status_word,
                "event": a.tocsin.event,
                "level": level.as_str(),
                "level_word": level_word(level.as_str(), locale),
                "host": a.label("host"),
                "summary": annotation(a, "summary", locale),
                "description": annotation(a, "description", locale),
                "value": a.tocsin.value.map(|v| v.to_string()).unwrap_or_default(),
                "threshold": a.tocsin.threshold,
                "since": local(&a.starts_at),
                "until": if firing { String::new() } else { local(&a.ends_at) },
                "since_utc": a.starts_at,
                "until_utc": a.ends_at,
                "duration": match (
                    tocsin_model::parse_timestamp(&a.starts_at),
                    tocsin_model::parse_timestamp(&a.ends_at),
                ) {
                    (Some(s), Some(e)) if !firing && e >= s => {
                        tocsin_clock::duration(e - s, locale)
                    }
                    _ => String::new(),
                },
                "labels": a.labels,
                "annotations": a.annotations,
                "ack": a.tocsin.ack,
                "ack_url": a.tocsin.ack_url,
                "dashboard_url": a.tocsin.dashboard_url,
            })
        })
        .collect();
    // The title speaks of the highest level among firing alerts (or the first alert).
    let level = n
        .alerts
        .iter()
        .filter(|a| a.firing())
        .map(|a| a.tocsin.level)
        .max()
        .or_else(|| n.alerts.first().map(|a| a.tocsin.level))
        .map(|l| l.as_str())
        .unwrap_or_default();
    let alertname = n
        .common_labels
        .get("alertname")
        .map(String::as_str)
        .or_else(|| n.alerts.first().map(|a| a.label("alertname")))
        .unwrap_or_default();
    json!({
        "head": head(n, locale),
        "level": level,
        "level_word": level_word(level, locale),
        "alertname": alertname,
        "count": items.len(),
        "status": n.status,
        "kind": n.tocsin.kind,
        "step": n.tocsin.step,
        "external_url": n.external_url,
        "alerts": items,
        "payload": n,
    })
}

fn render(
    title: &str,
    body: &str,
    n: &Payload,
    locale: Locale,
    zone: &tocsin_clock::Zone,
) -> Result<(String, Vec<String>), String> {
    let ctx = context(n, locale, zone);
    let env = minijinja::Environment::new();
    let title = env
        .render_str(title, &ctx)
        .map_err(|e| format!("title template: {e}"))?;
    let body = env
        .render_str(body, &ctx)
        .map_err(|e| format!("body template: {e}"))?;
    let lines = body
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok((title.trim().to_string(), lines))
}

impl Templates {
    pub fn new(locale: Locale, t: &MessageTemplate) -> Templates {
        let (title, body) = match locale {
            Locale::ZhCn => (TITLE_ZH, BODY_ZH),
            Locale::En => (TITLE_EN, BODY_EN),
        };
        Templates {
            locale,
            title: t.title.clone().unwrap_or_else(|| title.to_string()),
            body: t.body.clone().unwrap_or_else(|| body.to_string()),
            zone: t.zone.clone(),
        }
    }

    pub fn locale(&self) -> Locale {
        self.locale
    }

    /// The title and the non-empty lines of one notification. A custom template that fails
    /// on this notification falls back to the default one, with the error as the last line:
    /// a message is never lost to a template.
    pub fn render(&self, n: &Payload) -> Result<(String, Vec<String>), String> {
        match render(&self.title, &self.body, n, self.locale, &self.zone) {
            Ok(r) => Ok(r),
            Err(e) => {
                let d = Templates::new(self.locale, &MessageTemplate::default());
                let (title, mut lines) = render(&d.title, &d.body, n, self.locale, &self.zone)?;
                tracing::warn!(error = %e, "message template failed; default used");
                lines.push(format!("(template error: {e})"));
                Ok((title, lines))
            }
        }
    }

    /// The lines of a message whose size (`size` of the lines, in the channel's unit) is at
    /// most `budget`: all of them when they fit; else those of as many of the first alerts as
    /// fit and a last line counting the rest (the title, rendered from all, counts them all);
    /// a single alert too long on its own is cut (`…`). A notification group of a mass outage
    /// renders thousands of alerts, more than any chat robot or text message takes.
    pub fn fit(
        &self,
        n: &Payload,
        lines: Vec<String>,
        budget: usize,
        size: impl Fn(&[String]) -> usize,
    ) -> Result<Vec<String>, String> {
        let fits = |lines: &[String]| size(lines) <= budget;
        if fits(&lines) {
            return Ok(lines);
        }
        let total = n.alerts.len();
        let count = |k: usize| {
            let rest = total - k;
            (rest > 0).then(|| match self.locale {
                Locale::ZhCn => format!("…… 另有 {rest} 条未列出（共 {total} 条）"),
                Locale::En => format!("… {rest} more not listed ({total} in all)"),
            })
        };
        // The notification copied once; each step puts in only the k alerts it tries.
        let mut shell = n.clone();
        let mut first = |k: usize| -> Result<Vec<String>, String> {
            shell.alerts = n.alerts[..k].to_vec();
            Ok(self.render(&shell)?.1)
        };
        // The most alerts that fit with the line counting the rest, by halving (a render per
        // step: a dozen for thousands).
        let (mut lo, mut hi) = (1, total.saturating_sub(1));
        let mut best = None;
        while lo <= hi {
            let k = lo + (hi - lo) / 2;
            let mut lines = first(k)?;
            lines.extend(count(k));
            if fits(&lines) {
                best = Some(lines);
                lo = k + 1;
            } else {
                hi = k - 1;
            }
        }
        if let Some(lines) = best {
            return Ok(lines);
        }
        // Not even one alert fits (its annotations, a long title): its last lines are cut,
        // the line counting the rest kept.
        let k = total.min(1);
        let mut lines = first(k)?;
        let tail = count(k);
        let with_tail = |lines: &[String]| {
            let mut all = lines.to_vec();
            all.extend(tail.clone());
            all
        };
        while !fits(&with_tail(&lines)) {
            let over = size(&with_tail(&lines)) - budget;
            let Some(last) = lines.last_mut() else { break };
            // `over` is in the channel's unit; bytes are at least as many.
            if last.len() > over + 3 {
                let mut cut = last.len() - over - 3;
                while !last.is_char_boundary(cut) {
                    cut -= 1;
                }
                last.truncate(cut);
                last.push('…');
            } else {
                lines.pop();
            }
        }
        lines.extend(tail);
        Ok(lines)
    }

    /// Renders another template (e.g. an SMS gateway body) with the same variables plus
    /// `title`, `text` (title and lines, at most `TEXT_CHARS` characters: `fit`) and `extra`.
    pub fn render_with(&self, src: &str, n: &Payload, extra: Value) -> Result<String, String> {
        let (title, lines) = self.render(n)?;
        let text_chars = |lines: &[String]| {
            title.chars().count() + lines.iter().map(|l| 1 + l.chars().count()).sum::<usize>()
        };
        let lines = self.fit(n, lines, TEXT_CHARS, text_chars)?;
        let mut ctx = context(n, self.locale, &self.zone);
        ctx["title"] = json!(title);
        ctx["text"] = json!(format!("{title}\n{}", lines.join("\n")));
        if let Value::Object(m) = extra {
            for (k, v) in m {
                ctx[k] = v;
            }
        }
        minijinja::Environment::new()
            .render_str(src, &ctx)
            .map_err(|e| format!("template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::payload;

    /// The names the configuration lets a message template use are exactly what it is
    /// rendered with, and the shipped templates use only those.
    #[test]
    fn a_message_is_rendered_with_the_names_the_configuration_allows() {
        use tocsin_config::collector::{check_message_template, MESSAGE_NAMES};
        let n = payload(json!({ "status": "firing", "alerts": [alert("db-1", "critical", true)] }));
        let ctx = context(&n, Locale::En, &tocsin_clock::Zone::utc());
        let mut keys: Vec<&str> = ctx
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut allowed = MESSAGE_NAMES.to_vec();
        allowed.sort_unstable();
        assert_eq!(keys, allowed);
        for t in [TITLE_ZH, TITLE_EN, BODY_ZH, BODY_EN] {
            check_message_template(t, &[]).unwrap();
        }
    }

    fn alert(host: &str, level: &str, firing: bool) -> Value {
        json!({
            "status": if firing { "firing" } else { "resolved" },
            "labels": { "alertname": "DiskFull", "host": host, "level": level },
            "annotations": { "summary": format!("disk full on {host}") },
            "startsAt": "2026-11-23T10:00:00.000Z",
            "endsAt": "2026-11-23T10:05:00.000Z",
            "tocsin": { "event": "firing", "value": 97.5, "threshold": "> 95",
                        "ackUrl": "http://c/ack?t=x", "ack": null },
        })
    }

    #[test]
    fn one_alert_and_a_group() {
        let shanghai = MessageTemplate {
            zone: tocsin_clock::Zone::parse("Asia/Shanghai").unwrap(),
            ..MessageTemplate::default()
        };
        let t = Templates::new(Locale::ZhCn, &shanghai);
        let one = payload(
            json!({ "status": "firing", "alerts": [alert("db-1", "critical", true)],
                          "commonLabels": { "alertname": "DiskFull" },
                          "tocsin": { "kind": "changed", "event": "firing" } }),
        );
        let (title, lines) = t.render(&one).unwrap();
        assert_eq!(title, "【告警】严重 DiskFull");
        assert_eq!(
            lines,
            vec![
                "摘要：disk full on db-1",
                "主机：db-1",
                "当前值：97.5 (阈值 > 95)",
                "开始时间：2026-11-23 18:00:00 (UTC+8)",
                "确认：http://c/ack?t=x",
            ]
        );
        let group = payload(json!({ "status": "firing",
            "alerts": [alert("db-1", "warning", true), alert("db-2", "emergency", true), alert("db-3", "warning", false)],
            "commonLabels": { "alertname": "DiskFull" },
            "tocsin": { "kind": "digest" } }));
        let en = Templates::new(Locale::En, &shanghai);
        let (title, lines) = en.render(&group).unwrap();
        assert_eq!(title, "[DIGEST] EMERGENCY DiskFull (+2 more)");
        assert_eq!(lines[0], "1. FIRING DiskFull WARNING");
        assert!(lines.contains(&"3. RESOLVED DiskFull WARNING".to_string()));
        assert!(
            lines.contains(&"Resolved at: 2026-11-23 18:05:00 (UTC+8) (lasted 5 min)".to_string())
        );
        // A resolve in zh-CN says how long it lasted; a zh summary is picked for zh-CN.
        let mut resolved = alert("db-3", "critical", false);
        resolved["annotations"]["summary_zh"] = json!("db-3 磁盘将满");
        let n = payload(json!({ "status": "resolved", "alerts": [resolved],
            "commonLabels": { "alertname": "DiskFull" }, "tocsin": { "kind": "changed" } }));
        let (title, lines) = t.render(&n).unwrap();
        assert_eq!(title, "【已恢复】严重 DiskFull");
        assert_eq!(lines[0], "摘要：db-3 磁盘将满");
        assert!(
            lines.contains(&"恢复时间：2026-11-23 18:05:00 (UTC+8)（持续 5 分）".to_string()),
            "{lines:?}"
        );
        let (_, lines) = en.render(&n).unwrap();
        assert_eq!(
            lines[0], "Summary: disk full on db-3",
            "no summary_en: the summary"
        );
    }

    #[test]
    fn custom_templates_and_errors() {
        let t = Templates::new(
            Locale::En,
            &MessageTemplate {
                title: Some("{{ alertname }}!".into()),
                body: Some(
                    "{% for a in alerts %}{{ a.host }}={{ a.labels.level }}\n{% endfor %}".into(),
                ),
                ..MessageTemplate::default()
            },
        );
        let n = payload(
            json!({ "status": "firing", "alerts": [alert("db-1", "critical", true)],
                        "tocsin": { "kind": "repeat" } }),
        );
        assert_eq!(
            t.render(&n).unwrap(),
            ("DiskFull!".to_string(), vec!["db-1=critical".to_string()])
        );
        let body = t
            .render_with(
                "{{ phone_numbers|tojson }} {{ text|tojson }}",
                &n,
                json!({ "phone_numbers": ["1"] }),
            )
            .unwrap();
        assert_eq!(body, "[\"1\"] \"DiskFull!\\ndb-1=critical\"");
        let bad = Templates::new(
            Locale::En,
            &MessageTemplate {
                title: None,
                body: Some("{{ nope(1) }}".into()),
                ..MessageTemplate::default()
            },
        );
        let (title, lines) = bad.render(&n).unwrap();
        assert_eq!(
            title, "[REPEAT] CRITICAL DiskFull",
            "the default, not nothing"
        );
        assert!(lines
            .last()
            .unwrap()
            .starts_with("(template error: body template:"));
    }

    /// An SMS gateway's `text` for a group of `alerts` of DiskFull, within `TEXT_CHARS`.
    fn sms_text(t: &Templates, alerts: Vec<Value>) -> String {
        let n = payload(json!({ "status": "firing", "alerts": alerts,
            "commonLabels": { "alertname": "DiskFull" } }));
        let text = t.render_with("{{ text }}", &n, json!({})).unwrap();
        assert!(
            text.chars().count() <= TEXT_CHARS,
            "{} chars",
            text.chars().count()
        );
        text
    }

    /// An SMS gateway's `text` of a mass outage (2,000 alerts) is at most `TEXT_CHARS`
    /// characters: the first alerts, a line counting the rest; one alert goes whole.
    #[test]
    fn a_text_message_of_a_mass_outage_is_bounded() {
        let t = Templates::new(Locale::ZhCn, &MessageTemplate::default());
        let all: Vec<Value> = (0..2_000)
            .map(|i| alert(&format!("db-{i:04}"), "critical", true))
            .collect();
        let text = sms_text(&t, all);
        assert!(text.starts_with("【告警】严重 DiskFull 等2000条"), "{text}");
        assert!(text.contains("db-0000"), "{text}");
        let listed = (0..2_000)
            .filter(|i| text.contains(&format!("db-{i:04}")))
            .count();
        assert!(listed >= 1, "{text}");
        assert!(
            text.ends_with(&format!("另有 {} 条未列出（共 2000 条）", 2_000 - listed)),
            "{text}"
        );
        let text = sms_text(&t, vec![alert("db-1", "critical", true)]);
        assert!(!text.contains("未列出") && text.contains("db-1"), "{text}");
    }

    /// A first alert too long for the message on its own is cut, and the line counting the
    /// alerts left out stays.
    #[test]
    fn a_cut_message_still_counts_what_it_leaves_out() {
        let t = Templates::new(Locale::ZhCn, &MessageTemplate::default());
        let mut long = alert("db-1", "critical", true);
        long["annotations"]["summary"] = json!("磁盘".repeat(1_000));
        let text = sms_text(&t, vec![long, alert("db-2", "critical", true)]);
        assert!(text.contains("磁盘磁盘") && text.contains('…'), "{text}");
        assert!(text.ends_with("另有 1 条未列出（共 2 条）"), "{text}");
    }
}
