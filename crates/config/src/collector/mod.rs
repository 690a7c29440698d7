//! The collector's configuration file: its structs (`Raw*` as written, validated into
//! [`CollectorConfig`]); the validators per section are in `validate.rs` and `receivers.rs`,
//! every default in [`defaults`].

pub mod defaults;
mod receivers;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{RawSecret, Secret};

pub use defaults::LISTEN as DEFAULT_LISTEN;

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollectorConfig {
    /// Address of the HTTP API, remote-write receiver and `/metrics` ([`defaults::LISTEN`]).
    pub listen: Option<String>,
    /// Directory of the SQLite database and the default alert log ([`defaults::DATA_DIR`]).
    pub data_dir: Option<PathBuf>,
    /// Rule files or directories of `*.yaml` rule files ([`defaults::RULES`]).
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// How long samples are kept ([`defaults::RETENTION`]).
    pub retention: Option<String>,
    /// How often the in-memory head is written out as compressed chunks ([`defaults::CHECKPOINT_INTERVAL`]).
    pub checkpoint_interval: Option<String>,
    /// An alert whose series sends nothing for this long is resolved ([`defaults::STALE_AFTER`]).
    pub stale_after: Option<String>,
    /// Also expose the newest sample of every series (seen within `stale_after`) on /metrics,
    /// with its timestamp, so that one Prometheus scrape feeds dashboards (default false).
    pub federate: Option<bool>,
    /// URL under which people reach this collector, used in links (default http://LISTEN).
    pub external_url: Option<String>,
    /// A host that sends nothing for this long is down (`tocsin_host_up` 0). Default: three of
    /// the agent's intervals (30s when the interval is unknown).
    pub host_down_after: Option<String>,
    /// A host silent for this long is forgotten: no longer judged, no longer listed ([`defaults::HOST_FORGET_AFTER`]).
    pub host_forget_after: Option<String>,
    /// The collector pages about itself when its database has refused every write for this
    /// long ([`defaults::STORAGE_ALERT_AFTER`]; 0s: never). The page goes to the receivers the route gives a critical
    /// `TocsinStorageFailing` alert, straight from memory, since the outbox cannot be written.
    pub storage_alert_after: Option<String>,
    /// A dead man's switch: the collector calls this URL every `every` while it works (its
    /// database takes writes, its writer ticks), so a service outside it (healthchecks.io,
    /// Uptime Kuma's push monitor, a Dead Man's Snitch) pages when the calls stop — when the
    /// collector, its host or its disk is down and nothing inside can say so.
    pub heartbeat: Option<RawHeartbeat>,
    /// Remote-write receiver settings.
    #[serde(default)]
    pub ingest: RawIngest,
    /// The Prometheus query API over the stored history (`/api/v1/query`, `query_range`, ...).
    #[serde(default)]
    pub query: RawQuery,
    /// The collector's own metrics recorded into its store, so that dashboards over the
    /// collector need no scraper.
    #[serde(default)]
    pub self_metrics: RawSelfMetrics,
    /// Where notifications go. Default: one `log` receiver writing `DATA_DIR/alerts.log`.
    #[serde(default)]
    pub receivers: Vec<RawReceiver>,
    /// Which receivers get which alerts. Without it, every receiver gets every alert.
    pub route: Option<crate::route::RawRoute>,
    /// Named weekly times that route nodes are active in or muted in
    /// (`active_time_intervals`, `mute_time_intervals`): texts at night only, warnings in
    /// office hours only.
    #[serde(default)]
    pub time_intervals: Vec<crate::route::RawTimeInterval>,
    /// Bearer token of the admin API (silences, acknowledgements, incidents, tokens, retries).
    /// Without it the admin API answers only while the collector listens on loopback; on any
    /// other address it is off (403). It also grants everything `read_token` does.
    pub admin_token: Option<RawSecret>,
    /// Bearer token of the read API (alerts, hosts, silences, notifications, actions, audit,
    /// incidents, federation). Without it or `admin_token`, reads answer only while the
    /// collector listens on loopback.
    pub read_token: Option<RawSecret>,
    /// Alerts raised elsewhere (Prometheus' alerting rules) posted to `/api/v2/alerts`.
    #[serde(default)]
    pub external_alerts: RawExternalAlerts,
    /// While a source alert fires, matching target alerts are not notified. Default: `HostDown`
    /// inhibits the other alerts of the same host; `[]` switches inhibition off.
    pub inhibit_rules: Option<Vec<crate::inhibit::RawInhibitRule>>,
    /// Step-by-step notification of alerts nobody acknowledges, referenced by routes.
    #[serde(default)]
    pub escalation_policies: Vec<crate::escalation::RawPolicy>,
    /// Acknowledgement links placed in messages.
    #[serde(default)]
    pub ack: RawAck,
    /// A dashboard link placed in messages: a template over the alert's labels, e.g.
    /// `http://grafana:3000/d/tocsin-host?var-host={{ host }}`.
    pub dashboard_url: Option<String>,
    /// How alerts are grouped into incidents.
    #[serde(default)]
    pub incidents: RawIncidents,
    /// Limits over all remediation.
    #[serde(default)]
    pub remediation: RawRemediationLimits,
    /// Actions the collector itself runs (`on: collector` in a rule): its allowlist.
    #[serde(default)]
    pub actions: std::collections::BTreeMap<String, crate::actions::RawAction>,
    /// Serve HTTPS (remote-write and API) with this certificate; optionally require client
    /// certificates signed by `client_ca_file` (mutual TLS).
    pub tls: Option<RawServerTls>,
    /// Forward everything ingested to Prometheus-compatible TSDBs over remote-write
    /// (VictoriaMetrics, Mimir, Thanos, Prometheus with its receiver on).
    #[serde(default)]
    pub remote_write: Vec<RawRemoteWrite>,
    /// Services with their objectives, RTO, RPO and owners (docs/SERVICE-LEVELS.md).
    #[serde(default)]
    pub services: Vec<crate::services::RawService>,
    /// How soon incidents must be acknowledged and resolved, per severity.
    #[serde(default)]
    pub deadlines: crate::services::RawDeadlines,
    /// Windows in which changes to services are refused or warned about.
    #[serde(default)]
    pub change_freezes: Vec<crate::services::RawFreeze>,
    /// The zone times are shown in, in messages and reports: an IANA name
    /// (`Asia/Shanghai`), an offset (`+08:00`), `UTC`, or `local` (default: the host's).
    pub timezone: Option<String>,
    /// The daily inspection and the weekly and monthly service reports.
    #[serde(default)]
    pub reports: crate::reports::RawReports,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// The URL to GET (it usually carries the check's token: a secret, `{env: …}` or
    /// `{file: …}` allowed).
    pub url: RawSecret,
    /// Time between two calls ([`defaults::HEARTBEAT_EVERY`], at least 1s).
    pub every: Option<String>,
    /// How long one call may take ([`defaults::HEARTBEAT_TIMEOUT`]).
    pub timeout: Option<String>,
}

/// A validated `heartbeat`.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub url: Secret,
    pub every: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// PEM contents, read at validation so that a missing file is a configuration error.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWrite {
    /// Name in logs and metrics (default: the URL's host).
    pub name: Option<String>,
    pub url: String,
    /// Bearer token: a literal, `{env: NAME}` or `{file: PATH}`.
    pub bearer_token: Option<RawSecret>,
    /// Time limit of one request ([`defaults::REMOTE_WRITE_TIMEOUT`]).
    pub timeout: Option<String>,
    /// Samples held while the target is slow or down; beyond it the oldest are dropped and
    /// counted ([`defaults::QUEUE_MAX_SAMPLES`]).
    pub queue_max_samples: Option<usize>,
    /// Most samples in one request ([`defaults::MAX_SAMPLES_PER_SEND`]).
    pub max_samples_per_send: Option<usize>,
    /// The target is the other collector of a high-availability pair (default false): only
    /// what agents sent is forwarded (not the series this collector derives, which the peer
    /// derives itself), marked so that the peer does not forward it again.
    pub peer: Option<bool>,
    /// Labels added to every series sent that lacks them (Prometheus' `external_labels`),
    /// e.g. `{collector: dc1}`: several collectors forwarding into one TSDB each derive
    /// `tocsin_*` series of the same names (a service's error budget over its own hosts), which
    /// would collide there without one.
    #[serde(default)]
    pub external_labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    pub name: String,
    pub url: String,
    pub bearer_token: Option<Secret>,
    pub timeout: Duration,
    pub queue_max_samples: usize,
    pub max_samples_per_send: usize,
    pub peer: bool,
    /// Added to every series sent that lacks them, in name order.
    pub external_labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidents {
    /// Labels keying an incident, first present wins ([`defaults::INCIDENT_GROUP_BY`]).
    pub group_by: Option<Vec<String>>,
    /// A resolved incident whose key fires again within this reopens ([`defaults::INCIDENT_REOPEN_WITHIN`]).
    pub reopen_within: Option<String>,
    /// How long before an incident a change to its services or hosts is shown with it.
    pub changes_before: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemediationLimits {
    /// Actions pending or running at once over all hosts ([`defaults::REMEDIATION_MAX_CONCURRENT`]).
    pub max_concurrent: Option<usize>,
    /// … on one host ([`defaults::REMEDIATION_PER_HOST`]).
    pub per_host: Option<usize>,
    /// A dispatched action without a result after this is lost ([`defaults::REMEDIATION_ANSWER_WITHIN`]).
    pub answer_within: Option<String>,
    /// Record every action as a dry run: nothing runs (default false).
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct IncidentsConfig {
    pub group_by: Vec<String>,
    pub reopen_within: Duration,
    pub changes_before: Duration,
}

#[derive(Debug, Clone)]
pub struct RemediationLimits {
    pub max_concurrent: usize,
    pub per_host: usize,
    pub answer_within: Duration,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAck {
    /// Key that signs acknowledgement links. Default: a random key kept in the database.
    pub secret: Option<RawSecret>,
    /// How long a link stays valid ([`defaults::ACK_LINK_TTL`]).
    pub link_ttl: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AckConfig {
    pub secret: Option<Secret>,
    pub link_ttl: Duration,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    /// Queries evaluated at once; more wait ([`defaults::QUERY_MAX_CONCURRENT`]).
    pub max_concurrent: Option<usize>,
    /// The longest one query may take; then it fails with `timeout` ([`defaults::QUERY_TIMEOUT`]).
    pub timeout: Option<String>,
    /// Samples one query may read ([`defaults::QUERY_MAX_SAMPLES`]).
    pub max_samples: Option<usize>,
    /// Series one selector may match ([`defaults::QUERY_MAX_SERIES`]).
    pub max_series: Option<usize>,
    /// How far back an instant selector looks for a sample ([`defaults::QUERY_LOOKBACK`]).
    pub lookback_delta: Option<String>,
}

/// `external_alerts`: what senders of alerts (a Prometheus whose `alerting` points here) may
/// post to `/api/v2/alerts`, as to an Alertmanager.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExternalAlerts {
    /// Bearer token of senders (`admin_token` is taken too). Without either, only a collector
    /// listening on loopback takes alerts.
    pub token: Option<RawSecret>,
    /// An alert posted without `endsAt` resolves this long after its last post
    /// ([`defaults::EXTERNAL_RESOLVE_TIMEOUT`], Alertmanager's `resolve_timeout`).
    pub resolve_timeout: Option<String>,
    /// Alerts from elsewhere firing at once; new ones beyond are refused and counted
    /// ([`defaults::EXTERNAL_MAX_ALERTS`]).
    pub max_alerts: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ExternalAlertsConfig {
    pub token: Option<Secret>,
    pub resolve_timeout: Duration,
    pub max_alerts: usize,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfMetrics {
    /// How often ([`defaults::SELF_METRICS_INTERVAL`]; `0s`: never).
    pub interval: Option<String>,
    /// Also forward them to the `remote_write` targets (default false: a Prometheus that
    /// scrapes the collector has them already).
    pub forward: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct SelfMetricsConfig {
    pub interval: Option<Duration>,
    pub forward: bool,
}

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub max_concurrent: usize,
    pub timeout: Duration,
    pub max_samples: usize,
    pub max_series: usize,
    pub lookback_delta: Duration,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// Bearer token agents must present: a literal, `{env: NAME}` or `{file: PATH}`.
    pub token: Option<RawSecret>,
    /// Largest accepted (compressed) request body ([`defaults::MAX_BODY`]).
    pub max_body: Option<String>,
    /// The longest one request may take, body included; slower clients get 408 ([`defaults::REQUEST_TIMEOUT`]).
    pub request_timeout: Option<String>,
    /// Largest decompressed request ([`defaults::MAX_DECOMPRESSED`]).
    pub max_decompressed: Option<String>,
    /// Most samples in one request ([`defaults::MAX_SAMPLES_PER_REQUEST`]).
    pub max_samples_per_request: Option<usize>,
    /// Most labels on one series ([`defaults::MAX_LABELS_PER_SERIES`]).
    pub max_labels_per_series: Option<usize>,
    /// Most series one host may have (cardinality); new series beyond it are refused with 400
    /// ([`defaults::MAX_SERIES_PER_HOST`]; 0: no limit).
    pub max_series_per_host: Option<usize>,
    /// Most distinct hosts; series of a new host beyond it are refused with 400 (default
    /// 10000; 0: no limit). Series without a `host` label count as one host.
    pub max_hosts: Option<usize>,
    /// Most open connections, HTTP and HTTPS alike; more wait in the listen backlog
    /// ([`defaults::MAX_CONNECTIONS`]).
    pub max_connections: Option<usize>,
    /// A connection that sends no request headers for this long is closed: a silent or
    /// trickling client (slowloris) and an idle keep-alive alike ([`defaults::IDLE_TIMEOUT`]).
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Alertmanager-compatible webhook.
    pub webhook: Option<RawWebhook>,
    /// Append each notification as one JSON line to a file.
    pub log: Option<RawLog>,
    /// DingTalk custom robot (markdown, signed).
    pub dingtalk: Option<RawChat>,
    /// WeCom (企业微信) group robot (markdown, mentioned mobiles).
    pub wecom: Option<RawChat>,
    /// Feishu / Lark custom bot (text, signed).
    pub feishu: Option<RawChat>,
    /// Slack incoming webhook.
    pub slack: Option<RawChat>,
    /// Forward alerts to a Prometheus Alertmanager (`POST /api/v2/alerts`).
    pub alertmanager: Option<RawAlertmanager>,
    /// E-mail over SMTP.
    pub email: Option<RawEmail>,
    /// SMS through Aliyun (阿里云短信 SendSms).
    pub aliyun_sms: Option<RawAliyunSms>,
    /// SMS through Tencent Cloud (腾讯云短信 SendSms, TC3-HMAC-SHA256).
    pub tencent_sms: Option<RawTencentSms>,
    /// SMS through any HTTP gateway: the request body is a template.
    pub sms_gateway: Option<RawSmsGateway>,
    /// Message templates (minijinja) for the title and the body of chat, e-mail and SMS
    /// gateway messages; defaults per locale.
    pub template: Option<RawTemplate>,
    /// Most messages per period, e.g. `{count: 20, per: 1m}` (DingTalk and WeCom robots
    /// default to 20 a minute, Feishu to 5 a second), or a list of such windows, each of
    /// which must allow the message (`[{count: 4, per: 1h}, {count: 10, per: 24h}]`: a
    /// day's budget). Over the cap, waiting notifications are merged into one digest message.
    pub rate_limit: Option<RawRateLimits>,
    /// The zone its messages show times in (default: `timezone`), for a team elsewhere.
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub title: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageTemplate {
    pub title: Option<String>,
    pub body: Option<String>,
    /// The zone times are shown in (`timezone:`; default the host's).
    pub zone: tocsin_clock::Zone,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub count: u32,
    pub per: String,
}

/// One rate-limit window or a list of them. Read by hand rather than as an untagged enum,
/// so a mistake inside either form keeps its own error (and line) instead of "did not match
/// any variant".
#[derive(Debug, Clone)]
pub struct RawRateLimits {
    pub windows: Vec<RawRateLimit>,
    /// Written as a list (errors then name the window by its index).
    pub list: bool,
}

impl<'de> serde::Deserialize<'de> for RawRateLimits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawRateLimits;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a window {count, per} or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                let one = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                Ok(RawRateLimits {
                    windows: vec![one],
                    list: false,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                s: A,
            ) -> Result<Self::Value, A::Error> {
                let all = serde::Deserialize::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(s),
                )?;
                Ok(RawRateLimits {
                    windows: all,
                    list: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmsGateway {
    pub url: String,
    /// POST (default) or PUT.
    pub method: Option<String>,
    /// Extra request headers, e.g. an API key.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, RawSecret>,
    /// Content type of the body (default application/json).
    pub content_type: Option<String>,
    /// The body, a minijinja template over the message (`text`, `title`, `phone_numbers`,
    /// `alerts`, …). Default: `{"to": [...], "text": "..."}`.
    pub body: Option<String>,
    pub phone_numbers: Vec<String>,
    /// A regex the reply body must match for success (default: any 2xx reply).
    pub success_match: Option<String>,
    pub timeout: Option<String>,
    /// zh-CN (default) or en.
    pub locale: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SmsGatewayConfig {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, Secret)>,
    pub content_type: String,
    pub body: String,
    pub phone_numbers: Vec<String>,
    pub success_match: Option<regex::Regex>,
    pub timeout: Duration,
    pub locale: Locale,
}

/// The default body of an SMS gateway request.
pub const SMS_GATEWAY_BODY: &str =
    r#"{"to": {{ phone_numbers|tojson }}, "text": {{ text|tojson }}}"#;

/// A syntax check of a template.
pub fn check_template(src: &str) -> Result<(), String> {
    minijinja::Environment::new()
        .template_from_str(src)
        .map(drop)
        .map_err(|e| format!("template: {e}"))
}

/// What a receiver's message template (`template.title`, `template.body`) can name: the
/// notification's variables (docs/ALERTING.md; `tocsin_notify` renders with exactly these).
pub const MESSAGE_NAMES: &[&str] = &[
    "head",
    "level",
    "level_word",
    "alertname",
    "count",
    "status",
    "kind",
    "step",
    "external_url",
    "alerts",
    "payload",
];
/// An SMS gateway's body can name these too.
pub const SMS_BODY_NAMES: &[&str] = &["title", "text", "phone_numbers"];
/// The template language's own functions.
const TEMPLATE_FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug"];

/// A message template's syntax, and that it names only what a message has (`extra` too): a
/// misspelt name would render as nothing in every message.
pub fn check_message_template(src: &str, extra: &[&str]) -> Result<(), String> {
    let env = minijinja::Environment::new();
    let t = env
        .template_from_str(src)
        .map_err(|e| format!("template: {e}"))?;
    let mut unknown: Vec<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| {
            let v = v.as_str();
            !MESSAGE_NAMES.contains(&v) && !extra.contains(&v) && !TEMPLATE_FUNCTIONS.contains(&v)
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let names: Vec<&str> = MESSAGE_NAMES.iter().chain(extra).copied().collect();
    Err(format!(
        "template: unknown name {} (a message has {}; an alert's own are in `alerts`, e.g. {{% for a in alerts %}}{{{{ a.host }}}}{{% endfor %}})",
        unknown
            .iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", ")
    ))
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTencentSms {
    /// Default https://sms.tencentcloudapi.com/.
    pub endpoint: Option<String>,
    pub secret_id: String,
    pub secret_key: RawSecret,
    /// SmsSdkAppId.
    pub app_id: String,
    pub sign_name: String,
    pub template_id: String,
    /// E.164, e.g. +8613800000000.
    pub phone_numbers: Vec<String>,
    /// Alert fields for the template's {1}, {2}, … in order. Default: alertname, host, level,
    /// value.
    pub template_params: Option<Vec<String>>,
    /// Default ap-guangzhou.
    pub region: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAliyunSms {
    /// Default https://dysmsapi.aliyuncs.com/.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub access_key_secret: RawSecret,
    /// The approved signature name (签名).
    pub sign_name: String,
    /// The approved template (模板 CODE), e.g. SMS_123456.
    pub template_code: String,
    pub phone_numbers: Vec<String>,
    /// Template parameter → alert field (alertname, host, level, status, value, summary,
    /// threshold, or any label). Default: alert, host, level, value.
    pub template_params: Option<std::collections::BTreeMap<String, String>>,
    /// Time limit of one request (default 10s).
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// SMTP server, HOST:PORT.
    pub smarthost: String,
    pub from: String,
    pub to: Vec<String>,
    /// starttls (default), tls, or none (plain, for a local relay only).
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<RawSecret>,
    /// zh-CN (default) or en.
    pub locale: Option<String>,
    /// Time limit of one delivery (default 30s).
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    /// Base URL, e.g. http://alertmanager:9093.
    pub url: String,
    /// Time limit of one request (default 10s).
    pub timeout: Option<String>,
    /// Firing alerts are sent again this often, whatever the route's `repeat_interval`, and
    /// each is valid for four of these (`endsAt`), as Prometheus does: Alertmanager keeps them
    /// active while tocsin lives and lets them end if it is gone (default 1m).
    pub resend_interval: Option<String>,
}

/// A chat robot: DingTalk, WeCom, Feishu or Slack.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChat {
    /// The robot's webhook URL (with its token or key).
    pub url: String,
    /// Signing secret, for DingTalk ("SEC…") and Feishu robots with signature checks on.
    pub secret: Option<RawSecret>,
    /// Mobile numbers to @ in every message.
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    /// zh-CN (default; en for Slack) or en.
    pub locale: Option<String>,
    /// Time limit of one request (default 10s).
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    /// Time limit of one request (default 10s).
    pub timeout: Option<String>,
    /// The most alerts one message carries, the rest counted in `truncatedAlerts` (as
    /// Alertmanager's webhook; 0, the default: all).
    #[serde(default)]
    pub max_alerts: usize,
    /// Attempts before a notification is dead-lettered (default 20).
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// File to append to; relative paths are under data_dir.
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub rules: Vec<PathBuf>,
    pub retention: Duration,
    pub checkpoint_interval: Duration,
    pub stale_after: Duration,
    pub federate: bool,
    pub external_url: String,
    pub host_down_after: Option<Duration>,
    pub host_forget_after: Duration,
    /// None: the collector does not page about its own storage.
    pub storage_alert_after: Option<Duration>,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub self_metrics: SelfMetricsConfig,
    pub receivers: Vec<ReceiverConfig>,
    pub route: crate::route::Route,
    pub admin_token: Option<Secret>,
    pub read_token: Option<Secret>,
    pub external_alerts: ExternalAlertsConfig,
    pub inhibit_rules: Vec<crate::inhibit::InhibitRule>,
    pub escalation_policies: Vec<crate::escalation::Policy>,
    pub ack: AckConfig,
    pub dashboard_url: Option<String>,
    pub incidents: IncidentsConfig,
    pub remediation: RemediationLimits,
    pub actions: Vec<crate::actions::ActionSpec>,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub heartbeat: Option<HeartbeatConfig>,
    pub tls: Option<ServerTls>,
    pub services: Vec<crate::services::ServiceConfig>,
    pub deadlines: crate::services::Deadlines,
    pub change_freezes: Vec<crate::services::Freeze>,
    pub timezone: tocsin_clock::Zone,
    pub reports: crate::reports::ReportsConfig,
}

impl ReceiverKind {
    /// Whether it can carry a report or a notice to people (not an SMS gateway or an
    /// Alertmanager, which take alerts only).
    pub fn carries_text(&self) -> bool {
        !matches!(
            self,
            ReceiverKind::AliyunSms(_)
                | ReceiverKind::TencentSms(_)
                | ReceiverKind::SmsGateway(_)
                | ReceiverKind::Alertmanager { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub token: Option<Secret>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_decompressed_bytes: usize,
    pub max_samples_per_request: usize,
    pub max_labels_per_series: usize,
    pub max_series_per_host: usize,
    pub max_hosts: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub name: String,
    pub kind: ReceiverKind,
    pub max_attempts: u32,
    pub template: MessageTemplate,
    /// Windows each of which must allow a message (none: no limit).
    pub rate_limits: Vec<RateLimit>,
}

#[derive(Debug, Clone)]
pub enum ReceiverKind {
    Webhook {
        url: String,
        timeout: Duration,
        /// 0: every alert of a group.
        max_alerts: usize,
    },
    Alertmanager {
        url: String,
        timeout: Duration,
        resend_interval: Duration,
    },
    Email(EmailConfig),
    AliyunSms(AliyunSmsConfig),
    TencentSms(TencentSmsConfig),
    Log {
        path: PathBuf,
    },
    Chat {
        vendor: Vendor,
        url: String,
        secret: Option<Secret>,
        at_mobiles: Vec<String>,
        locale: Locale,
        timeout: Duration,
    },
    SmsGateway(SmsGatewayConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    DingTalk,
    WeCom,
    Feishu,
    Slack,
}

impl Vendor {
    /// The vendor's documented cap: DingTalk and WeCom robots 20 messages a minute, Feishu
    /// about 5 a second, Slack about 1 a second.
    pub fn rate_limit(self) -> RateLimit {
        let (count, secs) = match self {
            Vendor::DingTalk | Vendor::WeCom => (20, 60),
            Vendor::Feishu => (5, 1),
            Vendor::Slack => (60, 60),
        };
        RateLimit {
            count,
            per: Duration::from_secs(secs),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::DingTalk => "dingtalk",
            Vendor::WeCom => "wecom",
            Vendor::Feishu => "feishu",
            Vendor::Slack => "slack",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub to: Vec<String>,
    pub tls: EmailTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub locale: Locale,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AliyunSmsConfig {
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub sign_name: String,
    pub template_code: String,
    pub phone_numbers: Vec<String>,
    pub template_params: std::collections::BTreeMap<String, String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TencentSmsConfig {
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: Secret,
    pub app_id: String,
    pub sign_name: String,
    pub template_id: String,
    pub phone_numbers: Vec<String>,
    pub template_params: Vec<String>,
    pub region: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    StartTls,
    Tls,
    None,
}

pub use tocsin_model::Locale;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_yaml;

    #[test]
    fn shipped_examples_parse() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
        let text = std::fs::read_to_string(format!("{root}collector.yaml")).unwrap();
        parse_yaml::<RawCollectorConfig>(&text).unwrap();
        let text = std::fs::read_to_string(format!("{root}agent.yaml")).unwrap();
        parse_yaml::<crate::agent::RawAgentConfig>(&text).unwrap();
    }

    /// `examples/collector.yaml` shows every default it mentions: the values it sets where
    /// its comments say "defaults" are the ones validation uses.
    #[test]
    fn the_example_shows_the_defaults() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
        let text = std::fs::read_to_string(format!("{root}collector.yaml")).unwrap();
        let mut raw = parse_yaml::<RawCollectorConfig>(&text).unwrap();
        // What the example sets as examples, not defaults: receivers and their routing.
        raw.receivers.clear();
        raw.route = None;
        raw.escalation_policies.clear();
        let shown = raw.validate().unwrap();
        let d = RawCollectorConfig::default().validate().unwrap();
        assert_eq!(shown.listen, d.listen);
        assert_eq!(shown.data_dir, d.data_dir);
        assert_eq!(shown.rules, d.rules);
        assert_eq!(
            (
                shown.retention,
                shown.checkpoint_interval,
                shown.stale_after
            ),
            (d.retention, d.checkpoint_interval, d.stale_after)
        );
        assert_eq!(shown.storage_alert_after, d.storage_alert_after);
        assert_eq!(
            (
                shown.external_alerts.resolve_timeout,
                shown.external_alerts.max_alerts
            ),
            (
                d.external_alerts.resolve_timeout,
                d.external_alerts.max_alerts
            )
        );
        let (i, j) = (&shown.ingest, &d.ingest);
        assert_eq!(
            (
                i.max_body_bytes,
                i.max_decompressed_bytes,
                i.max_samples_per_request
            ),
            (
                j.max_body_bytes,
                j.max_decompressed_bytes,
                j.max_samples_per_request
            )
        );
        assert_eq!(
            (i.max_labels_per_series, i.max_series_per_host, i.max_hosts),
            (j.max_labels_per_series, j.max_series_per_host, j.max_hosts)
        );
        assert_eq!(
            (i.request_timeout, i.max_connections, i.idle_timeout),
            (j.request_timeout, j.max_connections, j.idle_timeout)
        );
        assert_eq!(shown.ack.link_ttl, d.ack.link_ttl);
        assert_eq!(shown.incidents.group_by, d.incidents.group_by);
        assert_eq!(shown.incidents.reopen_within, d.incidents.reopen_within);
        assert_eq!(shown.incidents.changes_before, d.incidents.changes_before);
        assert_eq!(shown.deadlines, d.deadlines);
        assert_eq!(shown.timezone, d.timezone);
        assert_eq!(shown.reports.locale, d.reports.locale);
        let (a, b) = (&shown.query, &d.query);
        assert_eq!(
            (
                a.max_concurrent,
                a.timeout,
                a.max_samples,
                a.max_series,
                a.lookback_delta
            ),
            (
                b.max_concurrent,
                b.timeout,
                b.max_samples,
                b.max_series,
                b.lookback_delta
            )
        );
        assert_eq!(
            (shown.self_metrics.interval, shown.self_metrics.forward),
            (d.self_metrics.interval, d.self_metrics.forward)
        );
        let (r, q) = (&shown.remediation, &d.remediation);
        assert_eq!(
            (r.max_concurrent, r.per_host, r.answer_within, r.dry_run),
            (q.max_concurrent, q.per_host, q.answer_within, q.dry_run)
        );
    }

    #[test]
    fn defaults() {
        let c = RawCollectorConfig::default().validate().unwrap();
        assert_eq!(c.receivers.len(), 1);
        assert!(
            matches!(&c.receivers[0].kind, ReceiverKind::Log { path } if path.ends_with("alerts.log"))
        );
        assert_eq!(c.ingest.max_body_bytes, 16 << 20);
    }

    #[test]
    fn receivers_show_times_in_the_collectors_zone_or_their_own() {
        let raw: RawCollectorConfig = parse_yaml(
            "timezone: Asia/Shanghai\nreceivers:\n- { name: cn, log: { path: a.log } }\n- { name: us, log: { path: b.log }, timezone: America/New_York }\n",
        )
        .unwrap();
        let c = raw.validate().unwrap();
        let zone = |i: usize| c.receivers[i].template.zone.clone();
        assert_eq!(zone(0), tocsin_clock::Zone::parse("Asia/Shanghai").unwrap());
        assert_eq!(
            zone(1),
            tocsin_clock::Zone::parse("America/New_York").unwrap()
        );
        let bad: RawCollectorConfig =
            parse_yaml("receivers:\n- { name: x, log: { path: a.log }, timezone: Nowhere/Land }\n")
                .unwrap();
        let e = bad.validate().unwrap_err().problems.join("\n");
        assert!(
            e.contains("receivers[0] (\"x\"): timezone: unknown time zone"),
            "{e}"
        );
    }

    #[test]
    fn receiver_problems_all_reported() {
        let raw: RawCollectorConfig =
            parse_yaml("receivers:\n- name: a\n- name: a\n  webhook: {url: x}\nretention: 1m\n")
                .unwrap();
        let e = raw.validate().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("retention: must be at least 1h"), "{text}");
        assert!(
            text.contains("receivers[0] (\"a\"): set exactly one of"),
            "{text}"
        );
        assert!(
            text.contains("receivers[1] (\"a\"): duplicate receiver name"),
            "{text}"
        );
        assert!(text.contains("must be http(s)"), "{text}");
    }

    /// Problems found after reading (a checked value, a name twice) name the line of what they
    /// are about, as syntax errors do; a zero period or timeout is one of them.
    #[test]
    fn problems_name_their_lines_and_zero_periods_are_refused() {
        let text = r#"listen: 127.0.0.1:9770
stale_after: 0s
receivers:
  - name: hook
    webhook: { url: "ftp://x" }
  - name: hook
    dingtalk:
      url: "https://oapi.dingtalk.com/robot/send?access_token=abc"
      timeout: 0s
route:
  receivers: [nope]
ingest:
  request_timeout: 0s
ack: { link_ttl: 1s }
"#;
        let raw: RawCollectorConfig = parse_yaml(text).unwrap();
        let mut e = raw.validate().unwrap_err();
        e.locate(std::path::Path::new("c.yaml"), text);
        let mut lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "c.yaml:11: route.receivers: no receiver named \"nope\"",
                "c.yaml:13: ingest.request_timeout: 0s is below the minimum of 1s",
                "c.yaml:14: ack.link_ttl: 1s is below the minimum of 1m",
                "c.yaml:2: stale_after: 0s is below the minimum of 1s",
                "c.yaml:5: receivers[0] (\"hook\"): webhook.url \"ftp://x\" must be http(s)",
                "c.yaml:6: receivers[1] (\"hook\"): duplicate receiver name",
                "c.yaml:9: receivers[1] (\"hook\"): dingtalk.timeout: 0s is below the minimum of 100ms",
            ]
        );
    }

    /// A message template naming what a message does not have is refused at its line (it
    /// would render as nothing); the shipped defaults name only what they have.
    #[test]
    fn message_templates_name_only_what_a_message_has() {
        let text = r#"receivers:
  - name: hook
    webhook: { url: "http://127.0.0.1:1/" }
    template:
      title: "{{ level_word }} {{ alertname }} ({{ count }})"
      body: "{% for a in alerts %}{{ a.host }} {{ host }}{% endfor %} {{ summary }}"
  - name: gw
    sms_gateway: { url: "http://127.0.0.1:1/", phone_numbers: ["1"], body: "{{ text }} {{ to }}" }
"#;
        let raw: RawCollectorConfig = parse_yaml(text).unwrap();
        let mut e = raw.validate().unwrap_err();
        e.locate(std::path::Path::new("c.yaml"), text);
        let lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "c.yaml:6: receivers[0] (\"hook\"): template.body: template: unknown name \"host\", \"summary\" (a message has head, level,"
            ),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with(
                "c.yaml:8: receivers[1] (\"gw\"): sms_gateway.body: template: unknown name \"to\" (a message has head,"
            ),
            "{lines:?}"
        );
        assert!(lines[1].contains("title, text, phone_numbers"), "{lines:?}");
        check_message_template(SMS_GATEWAY_BODY, SMS_BODY_NAMES).unwrap();
    }

    /// SMS and e-mail receivers get a rate limit unless they set one: a storm must not spend
    /// the day's texts a provider allows one number, nor get the mail relay to throttle.
    /// A limit is one window or a list of them (an hour's and a day's).
    #[test]
    fn sms_and_e_mail_receivers_are_rate_limited_by_default() {
        let raw: RawCollectorConfig = parse_yaml(
            "receivers:
- name: gw
  sms_gateway: { url: \"https://sms.example/send\", phone_numbers: [\"13800000000\"] }
- name: gw-fast
  sms_gateway: { url: \"https://sms.example/send\", phone_numbers: [\"13800000000\"] }
  rate_limit: { count: 10, per: 1m }
- name: gw-day
  sms_gateway: { url: \"https://sms.example/send\", phone_numbers: [\"13800000000\"] }
  rate_limit: [{ count: 5, per: 1h }, { count: 20, per: 1d }]
- name: hook
  webhook: { url: \"http://hook.example/\" }
- name: mail
  email: { smarthost: \"smtp.example:25\", from: \"tocsin@example.com\", to: [\"ops@example.com\"] }
",
        )
        .unwrap();
        let c = raw.validate().unwrap();
        let limit = |name: &str| -> Vec<(u32, u64)> {
            c.receivers
                .iter()
                .find(|r| r.name == name)
                .unwrap()
                .rate_limits
                .iter()
                .map(|l| (l.count, l.per.as_secs()))
                .collect()
        };
        assert_eq!(limit("gw"), [(4, 3600), (10, 86400)]);
        assert_eq!(limit("gw-fast"), [(10, 60)]);
        assert_eq!(limit("gw-day"), [(5, 3600), (20, 86400)]);
        assert_eq!(limit("hook"), []);
        assert_eq!(limit("mail"), [(30, 60)]);
    }

    /// Time intervals and the routes that name them are checked together, with their lines.
    #[test]
    fn time_intervals_and_their_routes_are_checked() {
        let raw: RawCollectorConfig = parse_yaml(
            "receivers:
- { name: ops, webhook: { url: \"http://hook.example/\" } }
time_intervals:
- name: office
  times: [{ days: [mon, fri], from: \"09:00\", to: \"25:00\" }]
- name: office
  times: []
route:
  receivers: [ops]
  routes:
  - { receivers: [ops], mute_time_intervals: [nights] }
",
        )
        .unwrap();
        let e = raw.validate().unwrap_err().to_string();
        for want in [
            "time_intervals[0].times[0]: invalid time of day \"25:00\"",
            "time_intervals[1] (\"office\"): duplicate name",
            "time_intervals[1] (\"office\"): times: at least one is required",
            "route.routes[0].mute_time_intervals: no time interval named \"nights\"",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }

    /// External labels must be label names a TSDB takes, and are not for a peer.
    #[test]
    fn external_labels_are_checked() {
        let raw: RawCollectorConfig = parse_yaml(
            "remote_write:
- { url: \"http://vm:8428/api/v1/write\", external_labels: { collector: dc1, __x: y, \"a-b\": c, d: \"\" } }
- { url: \"http://peer:9760/api/v1/write\", peer: true, external_labels: { collector: dc1 } }
",
        )
        .unwrap();
        let e = raw.validate().unwrap_err().to_string();
        for want in [
            "remote_write[0].external_labels: \"__x\" is not a label name",
            "remote_write[0].external_labels: \"a-b\" is not a label name",
            "remote_write[0].external_labels.d: empty value",
            "remote_write[1].external_labels: not for a peer",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        assert!(!e.contains("\"collector\" is not"), "{e}");
    }

    /// The heartbeat's URL is a secret: checked, never shown in the problem.
    #[test]
    fn a_heartbeat_url_that_cannot_work_is_refused_without_showing_it() {
        let raw: RawCollectorConfig =
            parse_yaml("heartbeat: { url: \"ftp://hc.example/ping/secret-uuid\", every: 0s }\n")
                .unwrap();
        let e = raw.validate().unwrap_err().to_string();
        assert!(e.contains("heartbeat.url: must be an http(s) URL"), "{e}");
        assert!(
            e.contains("heartbeat.every: 0s is below the minimum of 1s"),
            "{e}"
        );
        assert!(!e.contains("secret-uuid"), "{e}");
        let raw: RawCollectorConfig =
            parse_yaml("heartbeat: { url: \"https://hc.example/ping/x\" }\n").unwrap();
        let hb = raw.validate().unwrap().heartbeat.unwrap();
        assert_eq!((hb.every.as_secs(), hb.timeout.as_secs()), (60, 10));
    }

    /// A window that cannot work is named with its line, whichever form the limit takes.
    #[test]
    fn rate_limit_windows_are_checked_with_their_line() {
        let raw: RawCollectorConfig = parse_yaml(
            "receivers:
- name: a
  webhook: { url: \"http://hook.example/\" }
  rate_limit: { count: 1, per: 1m }
- name: b
  webhook: { url: \"http://hook.example/\" }
  rate_limit:
    - { count: 5, per: 1h }
    - { count: 20000, per: 30d }
- name: c
  webhook: { url: \"http://hook.example/\" }
  rate_limit: []
",
        )
        .unwrap();
        let e = raw.validate().unwrap_err().to_string();
        for want in [
            "receivers[0] (\"a\"): rate_limit.count must be at least 2",
            "receivers[1] (\"b\"): rate_limit[1].per: 30d is above the maximum of 7d",
            "receivers[1] (\"b\"): rate_limit[1].count: 20000 is above the maximum of 10000",
            "receivers[2] (\"c\"): rate_limit: an empty list",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        let bad: Result<RawCollectorConfig, _> = parse_yaml(
            "receivers:
- name: a
  webhook: { url: \"http://hook.example/\" }
  rate_limit: [{ count: 5, per: 1h, burst: 2 }]
",
        );
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("unknown field `burst`"), "{e}");
    }

    /// An address the mailer cannot read is a configuration problem, found with the others.
    #[test]
    fn e_mail_addresses_are_checked_as_the_mailer_reads_them() {
        let raw: RawCollectorConfig = parse_yaml(
            "receivers:
- name: mail
  email: { smarthost: \"smtp.example:25\", from: \"Ops <ops@example.com>\", to: [\"a@example.com\", \"x y@z\"] }
",
        )
        .unwrap();
        let e = raw.validate().unwrap_err();
        assert_eq!(
            e.problems,
            [r#"receivers[0] ("mail"): email.to "x y@z" is not an e-mail address (Invalid input)"#]
        );
    }

    /// A URL that cannot be used is found at start-up, shown without what may be secret; a
    /// gateway's header that HTTP does not allow too, its value never shown.
    #[test]
    fn urls_and_headers_are_checked_without_showing_secrets() {
        let raw: RawCollectorConfig = parse_yaml(
            r#"receivers:
- name: hook
  webhook: { url: "http://user:pw@hook.example:99999/x?key=SECRET1" }
- name: ding
  dingtalk: { url: "https://oapi.dingtalk.com:0x/robot/send?access_token=SECRET2" }
- name: gw
  sms_gateway:
    url: "https://sms.example/send"
    phone_numbers: ["1"]
    headers: { "Bad Header": "x", X-Key: "SECRET3\nX-Injected: 1" }
"#,
        )
        .unwrap();
        let text = raw.validate().unwrap_err().to_string();
        for secret in ["SECRET1", "SECRET2", "SECRET3", "pw", "user"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"receivers[0] ("hook"): webhook.url "http://hook.example:99999/…" is not a valid URL (invalid port number)"#,
                r#"receivers[1] ("ding"): dingtalk.url "https://oapi.dingtalk.com:0x/…" is not a valid URL (invalid port number)"#,
                r#"receivers[2] ("gw"): sms_gateway.headers.X-Key: the value holds a line break or control character"#,
                r#"receivers[2] ("gw"): sms_gateway.headers: "Bad Header" is not a header name"#,
            ]
        );
    }

    #[test]
    fn alertmanager_resend_interval_has_a_floor() {
        let raw: RawCollectorConfig = parse_yaml(
            "receivers:\n- name: am\n  alertmanager: {url: \"http://am:9093\", resend_interval: 0s}\n",
        )
        .unwrap();
        let text = raw.validate().unwrap_err().to_string();
        assert!(
            text.contains("alertmanager.resend_interval: 0s is below the minimum of 1s"),
            "{text}"
        );
    }
}
