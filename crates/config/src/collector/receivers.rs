//! The `receivers` section: each entry sets exactly one kind; one validator per kind.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::defaults as d;
use super::*;
use crate::http_url_problem;
use crate::Problems;

/// The receivers, or a log receiver under `data_dir` when the file names none.
pub(super) fn validate(
    p: &mut Problems,
    raw: Vec<RawReceiver>,
    data_dir: &Path,
    zone: &tocsin_clock::Zone,
) -> Vec<ReceiverConfig> {
    let mut receivers = Vec::new();
    let mut names = BTreeSet::new();
    for (idx, r) in raw.into_iter().enumerate() {
        let at = format!("receivers[{idx}] ({:?})", r.name);
        if r.name.is_empty() {
            p.push(format!("receivers[{idx}]: name must not be empty"));
        }
        if !names.insert(r.name.clone()) {
            p.push(format!("{at}: duplicate receiver name"));
        }
        if let Some(c) = receiver(p, &at, r, data_dir, zone) {
            receivers.push(c);
        }
    }
    if receivers.is_empty() && names.is_empty() {
        receivers.push(ReceiverConfig {
            name: "log".into(),
            kind: ReceiverKind::Log {
                path: data_dir.join(d::ALERT_LOG),
            },
            max_attempts: d::MAX_ATTEMPTS,
            template: MessageTemplate {
                zone: zone.clone(),
                ..MessageTemplate::default()
            },
            rate_limits: Vec::new(),
        });
    }
    receivers
}

fn receiver(
    p: &mut Problems,
    at: &str,
    r: RawReceiver,
    data_dir: &Path,
    zone: &tocsin_clock::Zone,
) -> Option<ReceiverConfig> {
    let chats = [
        (Vendor::DingTalk, r.dingtalk),
        (Vendor::WeCom, r.wecom),
        (Vendor::Feishu, r.feishu),
        (Vendor::Slack, r.slack),
    ];
    let set = [
        r.webhook.is_some(),
        r.log.is_some(),
        r.alertmanager.is_some(),
        r.email.is_some(),
        r.aliyun_sms.is_some(),
        r.tencent_sms.is_some(),
        r.sms_gateway.is_some(),
    ]
    .into_iter()
    .chain(chats.iter().map(|(_, c)| c.is_some()))
    .filter(|b| *b)
    .count();
    let chat = chats.into_iter().find_map(|(v, c)| c.map(|c| (v, c)));
    let mut max_attempts = d::MAX_ATTEMPTS;
    let kind = if set != 1 {
        p.push(format!(
            "{at}: set exactly one of `webhook`, `log`, `email`, `aliyun_sms`, `tencent_sms`, `sms_gateway`, `alertmanager`, `dingtalk`, `wecom`, `feishu` or `slack`"
        ));
        None
    } else if let Some(g) = r.sms_gateway {
        Some(sms_gateway(p, at, g))
    } else if let Some(t) = r.tencent_sms {
        tencent_sms(p, at, t)
    } else if let Some(a) = r.aliyun_sms {
        aliyun_sms(p, at, a)
    } else if let Some(e) = r.email {
        Some(email(p, at, e))
    } else if let Some(am) = r.alertmanager {
        Some(alertmanager(p, at, am))
    } else if let Some((vendor, c)) = chat {
        Some(chat_robot(p, at, vendor, c))
    } else if let Some(w) = r.webhook {
        max_attempts = w.max_attempts.unwrap_or(d::MAX_ATTEMPTS);
        Some(webhook(p, at, w))
    } else {
        r.log.map(|l| ReceiverKind::Log {
            path: if l.path.is_absolute() {
                l.path
            } else {
                data_dir.join(l.path)
            },
        })
    };
    let mut template = MessageTemplate::default();
    if let Some(t) = r.template {
        for (field, src) in [("title", &t.title), ("body", &t.body)] {
            if let Some(src) = src {
                p.take(
                    &format!("{at}: template.{field}"),
                    check_message_template(src, &[]),
                );
            }
        }
        template = MessageTemplate {
            title: t.title,
            body: t.body,
            ..MessageTemplate::default()
        };
    }
    template.zone = match &r.timezone {
        Some(z) => p
            .take(&format!("{at}: timezone"), tocsin_clock::Zone::parse(z))
            .unwrap_or_else(|| zone.clone()),
        None => zone.clone(),
    };
    let rate_limits = match r.rate_limit {
        Some(RawRateLimits { windows, list }) => {
            if windows.is_empty() {
                p.push(format!(
                    "{at}: rate_limit: an empty list (leave it out for the default)"
                ));
            }
            windows
                .into_iter()
                .enumerate()
                .map(|(i, rl)| {
                    let at = if !list {
                        format!("{at}: rate_limit")
                    } else {
                        format!("{at}: rate_limit[{i}]")
                    };
                    rate_window(p, &at, rl)
                })
                .collect()
        }
        None => match &kind {
            Some(ReceiverKind::Chat { vendor, .. }) => vec![vendor.rate_limit()],
            // Providers cap what one number receives (Tencent Cloud: 10 a day by default,
            // Aliyun: 50 a day per template): a storm must not spend the day's messages in
            // minutes, leaving the next incident without a text, nor the texts the provider
            // allows in a day, which it would then refuse.
            Some(
                ReceiverKind::AliyunSms(_)
                | ReceiverKind::TencentSms(_)
                | ReceiverKind::SmsGateway(_),
            ) => d::SMS_RATE_LIMITS.to_vec(),
            // Mail relays throttle a sender (Exchange Online: 30 messages a minute) and a
            // throttled relay fails deliveries; a storm goes out as digests instead.
            Some(ReceiverKind::Email(_)) => d::EMAIL_RATE_LIMITS.to_vec(),
            _ => Vec::new(),
        },
    };
    let kind = kind?;
    if max_attempts == 0 {
        p.push(format!("{at}: max_attempts must be at least 1"));
    }
    Some(ReceiverConfig {
        name: r.name,
        kind,
        max_attempts,
        template,
        rate_limits,
    })
}

fn timeout(p: &mut Problems, field: String, v: Option<&str>) -> Duration {
    p.duration_min(&field, v, d::RECEIVER_TIMEOUT, Duration::from_millis(100))
}

fn sms_gateway(p: &mut Problems, at: &str, g: RawSmsGateway) -> ReceiverKind {
    if let Some(why) = http_url_problem(&g.url) {
        p.push(format!("{at}: sms_gateway.url {why}"));
    }
    if g.phone_numbers.is_empty() {
        p.push(format!(
            "{at}: sms_gateway.phone_numbers needs at least one number"
        ));
    }
    let method = g.method.unwrap_or_else(|| "POST".into()).to_uppercase();
    if method != "POST" && method != "PUT" {
        p.push(format!("{at}: sms_gateway.method must be POST or PUT"));
    }
    let body = g.body.unwrap_or_else(|| SMS_GATEWAY_BODY.to_string());
    p.take(
        &format!("{at}: sms_gateway.body"),
        check_message_template(&body, SMS_BODY_NAMES),
    );
    let success_match = g.success_match.as_deref().and_then(|re| {
        p.take(
            &format!("{at}: sms_gateway.success_match"),
            regex::Regex::new(re),
        )
    });
    let headers = g
        .headers
        .into_iter()
        .filter_map(|(k, v)| {
            let s = p.take(&format!("{at}: sms_gateway.headers.{k}"), v.resolve())?;
            // As the HTTP client will read them; the value is not shown (it may be a key).
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                p.push(format!("{at}: sms_gateway.headers: {k:?} is not a header name"));
            }
            if http::HeaderValue::from_str(s.expose()).is_err() {
                p.push(format!(
                    "{at}: sms_gateway.headers.{k}: the value holds a line break or control character"
                ));
            }
            Some((k, s))
        })
        .collect();
    let timeout = timeout(
        p,
        format!("{at}: sms_gateway.timeout"),
        g.timeout.as_deref(),
    );
    let locale = p
        .take(
            &format!("{at}: sms_gateway"),
            Locale::parse(g.locale.as_deref(), "zh-CN"),
        )
        .unwrap_or(Locale::ZhCn);
    ReceiverKind::SmsGateway(SmsGatewayConfig {
        url: g.url,
        method,
        headers,
        content_type: g.content_type.unwrap_or_else(|| "application/json".into()),
        body,
        phone_numbers: g.phone_numbers,
        success_match,
        timeout,
        locale,
    })
}

fn tencent_sms(p: &mut Problems, at: &str, t: RawTencentSms) -> Option<ReceiverKind> {
    let endpoint = t
        .endpoint
        .unwrap_or_else(|| "https://sms.tencentcloudapi.com/".into());
    if let Some(why) = http_url_problem(&endpoint) {
        p.push(format!("{at}: tencent_sms.endpoint {why}"));
    }
    if t.phone_numbers.is_empty() {
        p.push(format!(
            "{at}: tencent_sms.phone_numbers needs at least one number"
        ));
    }
    let key = p.take(
        &format!("{at}: tencent_sms.secret_key"),
        t.secret_key.resolve(),
    );
    let timeout = timeout(
        p,
        format!("{at}: tencent_sms.timeout"),
        t.timeout.as_deref(),
    );
    key.map(|secret_key| {
        ReceiverKind::TencentSms(TencentSmsConfig {
            endpoint,
            secret_id: t.secret_id,
            secret_key,
            app_id: t.app_id,
            sign_name: t.sign_name,
            template_id: t.template_id,
            phone_numbers: t.phone_numbers,
            template_params: t.template_params.unwrap_or_else(|| {
                ["alertname", "host", "level", "value"]
                    .map(String::from)
                    .to_vec()
            }),
            region: t.region.unwrap_or_else(|| "ap-guangzhou".into()),
            timeout,
        })
    })
}

fn aliyun_sms(p: &mut Problems, at: &str, a: RawAliyunSms) -> Option<ReceiverKind> {
    let endpoint = a
        .endpoint
        .unwrap_or_else(|| "https://dysmsapi.aliyuncs.com/".into());
    if let Some(why) = http_url_problem(&endpoint) {
        p.push(format!("{at}: aliyun_sms.endpoint {why}"));
    }
    if a.phone_numbers.is_empty() {
        p.push(format!(
            "{at}: aliyun_sms.phone_numbers needs at least one number"
        ));
    }
    let secret = p.take(
        &format!("{at}: aliyun_sms.access_key_secret"),
        a.access_key_secret.resolve(),
    );
    let timeout = timeout(p, format!("{at}: aliyun_sms.timeout"), a.timeout.as_deref());
    let template_params = a.template_params.unwrap_or_else(|| {
        [
            ("alert", "alertname"),
            ("host", "host"),
            ("level", "level"),
            ("value", "value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    });
    secret.map(|access_key_secret| {
        ReceiverKind::AliyunSms(AliyunSmsConfig {
            endpoint,
            access_key_id: a.access_key_id,
            access_key_secret,
            sign_name: a.sign_name,
            template_code: a.template_code,
            phone_numbers: a.phone_numbers,
            template_params,
            timeout,
        })
    })
}

fn email(p: &mut Problems, at: &str, e: RawEmail) -> ReceiverKind {
    let hp = e
        .smarthost
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)));
    if hp.is_none() {
        p.push(format!(
            "{at}: email.smarthost {:?} must be HOST:PORT",
            e.smarthost
        ));
    }
    if e.to.is_empty() {
        p.push(format!("{at}: email.to needs at least one address"));
    }
    // As the mailer will read them (`Name <a@b>` or `a@b`), so a bad one is found here, with
    // its line and every other problem, not when the collector starts its receivers.
    for (field, a) in std::iter::once(("from", &e.from)).chain(e.to.iter().map(|a| ("to", a))) {
        if let Err(err) = a.parse::<lettre::message::Mailbox>() {
            p.push(format!(
                "{at}: email.{field} {a:?} is not an e-mail address ({err})"
            ));
        }
    }
    let tls = match e.tls.as_deref().unwrap_or("starttls") {
        "starttls" => EmailTls::StartTls,
        "tls" => EmailTls::Tls,
        "none" => EmailTls::None,
        o => {
            p.push(format!(
                "{at}: email.tls {o:?} must be starttls, tls or none"
            ));
            EmailTls::StartTls
        }
    };
    let password = e
        .password
        .and_then(|s| p.take(&format!("{at}: email.password"), s.resolve()));
    let locale = p
        .take(
            &format!("{at}: email"),
            Locale::parse(e.locale.as_deref(), "zh-CN"),
        )
        .unwrap_or(Locale::ZhCn);
    let timeout = p.duration_min(
        &format!("{at}: email.timeout"),
        e.timeout.as_deref(),
        d::EMAIL_TIMEOUT,
        Duration::from_millis(100),
    );
    let (host, port) = hp.unwrap_or_default();
    ReceiverKind::Email(EmailConfig {
        host,
        port,
        from: e.from,
        to: e.to,
        tls,
        username: e.username,
        password,
        locale,
        timeout,
    })
}

fn alertmanager(p: &mut Problems, at: &str, am: RawAlertmanager) -> ReceiverKind {
    if let Some(why) = http_url_problem(&am.url) {
        p.push(format!("{at}: alertmanager.url {why}"));
    }
    let timeout = timeout(
        p,
        format!("{at}: alertmanager.timeout"),
        am.timeout.as_deref(),
    );
    let resend_interval = p.duration_min(
        &format!("{at}: alertmanager.resend_interval"),
        am.resend_interval.as_deref(),
        d::RESEND_INTERVAL,
        Duration::from_secs(1),
    );
    ReceiverKind::Alertmanager {
        url: am.url.trim_end_matches('/').to_string(),
        timeout,
        resend_interval,
    }
}

fn chat_robot(p: &mut Problems, at: &str, vendor: Vendor, c: RawChat) -> ReceiverKind {
    let v = vendor.name();
    if let Some(why) = http_url_problem(&c.url) {
        p.push(format!("{at}: {v}.url {why}"));
    }
    let timeout = timeout(p, format!("{at}: {v}.timeout"), c.timeout.as_deref());
    let secret = c
        .secret
        .and_then(|s| p.take(&format!("{at}: {v}.secret"), s.resolve()));
    let default_locale = if vendor == Vendor::Slack {
        "en"
    } else {
        "zh-CN"
    };
    let locale = p.take(
        &format!("{at}: {v}"),
        Locale::parse(c.locale.as_deref(), default_locale),
    );
    ReceiverKind::Chat {
        vendor,
        url: c.url,
        secret,
        at_mobiles: c.at_mobiles,
        locale: locale.unwrap_or(Locale::ZhCn),
        timeout,
    }
}

fn webhook(p: &mut Problems, at: &str, w: RawWebhook) -> ReceiverKind {
    if let Some(why) = http_url_problem(&w.url) {
        p.push(format!("{at}: webhook.url {why}"));
    }
    let timeout = timeout(p, format!("{at}: webhook.timeout"), w.timeout.as_deref());
    ReceiverKind::Webhook {
        url: w.url,
        timeout,
        max_alerts: w.max_alerts,
    }
}

/// One rate-limit window, checked: at least two messages (one is kept for a digest), a
/// period from a second to a week, at most 10,000 messages (each is remembered for the
/// period, across restarts).
fn rate_window(p: &mut Problems, at: &str, rl: RawRateLimit) -> RateLimit {
    let per = p.duration_min(
        &format!("{at}.per"),
        Some(&rl.per),
        d::RATE_LIMIT_PER,
        Duration::from_secs(1),
    );
    if per > d::RATE_LIMIT_MAX_PER {
        p.push(format!("{at}.per: {} is above the maximum of 7d", rl.per));
    }
    if rl.count < 2 {
        p.push(format!(
            "{at}.count must be at least 2 (one is kept for a digest)"
        ));
    }
    if rl.count > d::RATE_LIMIT_MAX_COUNT {
        p.push(format!(
            "{at}.count: {} is above the maximum of {}",
            rl.count,
            d::RATE_LIMIT_MAX_COUNT
        ));
    }
    RateLimit {
        count: rl.count,
        per: per.min(d::RATE_LIMIT_MAX_PER),
    }
}
