//! The collector's configuration file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{parse_duration, ConfigError, Problems, RawSecret, Secret};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9760";

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollectorConfig {
    /// Address of the HTTP API, remote-write receiver and `/metrics` (default 127.0.0.1:9760).
    pub listen: Option<String>,
    /// Directory of the SQLite database and the default alert log (default ./data).
    pub data_dir: Option<PathBuf>,
    /// Rule files or directories of `*.yaml` rule files (default: ./rules).
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// How long samples are kept (default 30d).
    pub retention: Option<String>,
    /// How often the in-memory head is written out as compressed chunks (default 5m).
    pub checkpoint_interval: Option<String>,
    /// An alert whose series sends nothing for this long is resolved (default 5m).
    pub stale_after: Option<String>,
    /// Also expose the newest sample of every series (seen within `stale_after`) on /metrics,
    /// with its timestamp, so that one Prometheus scrape feeds dashboards (default false).
    pub federate: Option<bool>,
    /// URL under which people reach this collector, used in links (default http://LISTEN).
    pub external_url: Option<String>,
    /// A host that sends nothing for this long is down (`tocsin_host_up` 0). Default: three of
    /// the agent's intervals (30s when the interval is unknown).
    pub host_down_after: Option<String>,
    /// A host silent for this long is forgotten: no longer judged, no longer listed (default 7d).
    pub host_forget_after: Option<String>,
    /// The collector pages about itself when its database has refused every write for this
    /// long (default 1m; 0s: never). The page goes to the receivers the route gives a critical
    /// `TocsinStorageFailing` alert, straight from memory, since the outbox cannot be written.
    pub storage_alert_after: Option<String>,
    /// Remote-write receiver settings.
    #[serde(default)]
    pub ingest: RawIngest,
    /// Where notifications go. Default: one `log` receiver writing `DATA_DIR/alerts.log`.
    #[serde(default)]
    pub receivers: Vec<RawReceiver>,
    /// Which receivers get which alerts. Without it, every receiver gets every alert.
    pub route: Option<crate::route::RawRoute>,
    /// Bearer token of the admin API (silences, acknowledgements, incidents, tokens, retries).
    /// Without it the admin API answers only while the collector listens on loopback; on any
    /// other address it is off (403). It also grants everything `read_token` does.
    pub admin_token: Option<RawSecret>,
    /// Bearer token of the read API (alerts, hosts, silences, notifications, actions, audit,
    /// incidents, federation). Without it or `admin_token`, reads answer only while the
    /// collector listens on loopback.
    pub read_token: Option<RawSecret>,
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
    /// Time limit of one request (default 30s).
    pub timeout: Option<String>,
    /// Samples held while the target is slow or down; beyond it the oldest are dropped and
    /// counted (default 10000000).
    pub queue_max_samples: Option<usize>,
    /// Most samples in one request (default 10000).
    pub max_samples_per_send: Option<usize>,
    /// The target is the other collector of a high-availability pair (default false): only
    /// what agents sent is forwarded (not the series this collector derives, which the peer
    /// derives itself), marked so that the peer does not forward it again.
    pub peer: Option<bool>,
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
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidents {
    /// Labels keying an incident, first present wins (default [host, service]).
    pub group_by: Option<Vec<String>>,
    /// A resolved incident whose key fires again within this reopens (default 30m).
    pub reopen_within: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemediationLimits {
    /// Actions pending or running at once over all hosts (default 10).
    pub max_concurrent: Option<usize>,
    /// … on one host (default 1).
    pub per_host: Option<usize>,
    /// A dispatched action without a result after this is lost (default 10m).
    pub answer_within: Option<String>,
    /// Record every action as a dry run: nothing runs (default false).
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct IncidentsConfig {
    pub group_by: Vec<String>,
    pub reopen_within: Duration,
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
    /// How long a link stays valid (default 24h).
    pub link_ttl: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AckConfig {
    pub secret: Option<Secret>,
    pub link_ttl: Duration,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// Bearer token agents must present: a literal, `{env: NAME}` or `{file: PATH}`.
    pub token: Option<RawSecret>,
    /// Largest accepted (compressed) request body (default 16MiB).
    pub max_body: Option<String>,
    /// The longest one request may take, body included; slower clients get 408 (default 30s).
    pub request_timeout: Option<String>,
    /// Largest decompressed request (default 64MiB).
    pub max_decompressed: Option<String>,
    /// Most samples in one request (default 1000000).
    pub max_samples_per_request: Option<usize>,
    /// Most labels on one series (default 64).
    pub max_labels_per_series: Option<usize>,
    /// Most series one host may have (cardinality); new series beyond it are refused with 400
    /// (default 20000; 0: no limit).
    pub max_series_per_host: Option<usize>,
    /// Most distinct hosts; series of a new host beyond it are refused with 400 (default
    /// 10000; 0: no limit). Series without a `host` label count as one host.
    pub max_hosts: Option<usize>,
    /// Most open connections, HTTP and HTTPS alike; more wait in the listen backlog
    /// (default 1024).
    pub max_connections: Option<usize>,
    /// A connection that sends no request headers for this long is closed: a silent or
    /// trickling client (slowloris) and an idle keep-alive alike (default 30s).
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
    /// default to 20 a minute, Feishu to 5 a second). Over the cap, waiting notifications
    /// are merged into one digest message.
    pub rate_limit: Option<RawRateLimit>,
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
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub count: u32,
    pub per: String,
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

/// A syntax check of a message template.
pub fn check_template(src: &str) -> Result<(), String> {
    minijinja::Environment::new()
        .template_from_str(src)
        .map(drop)
        .map_err(|e| format!("template: {e}"))
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
    pub receivers: Vec<ReceiverConfig>,
    pub route: crate::route::Route,
    pub admin_token: Option<Secret>,
    pub read_token: Option<Secret>,
    pub inhibit_rules: Vec<crate::inhibit::InhibitRule>,
    pub escalation_policies: Vec<crate::escalation::Policy>,
    pub ack: AckConfig,
    pub dashboard_url: Option<String>,
    pub incidents: IncidentsConfig,
    pub remediation: RemediationLimits,
    pub actions: Vec<crate::actions::ActionSpec>,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub tls: Option<ServerTls>,
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
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone)]
pub enum ReceiverKind {
    Webhook {
        url: String,
        timeout: Duration,
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
    pub fn rate_limit(self) -> Option<RateLimit> {
        let (count, secs) = match self {
            Vendor::DingTalk | Vendor::WeCom => (20, 60),
            Vendor::Feishu => (5, 1),
            Vendor::Slack => (60, 60),
        };
        Some(RateLimit {
            count,
            per: Duration::from_secs(secs),
        })
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

/// Language of messages people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    ZhCn,
    En,
}

impl Locale {
    pub fn parse(s: Option<&str>, default: &str) -> Result<Locale, String> {
        match s.unwrap_or(default) {
            "zh-CN" | "zh" => Ok(Locale::ZhCn),
            "en" | "en-US" => Ok(Locale::En),
            o => Err(format!("locale {o:?} must be zh-CN or en")),
        }
    }
}

impl RawCollectorConfig {
    pub fn validate(self) -> Result<CollectorConfig, ConfigError> {
        let mut p = Problems::default();
        let listen = p
            .take(
                "listen",
                self.listen
                    .as_deref()
                    .unwrap_or(DEFAULT_LISTEN)
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("{e}, expected HOST:PORT such as 127.0.0.1:9760")),
            )
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        let rules = if self.rules.is_empty() {
            vec![PathBuf::from("rules")]
        } else {
            self.rules
        };
        let retention = p.duration("retention", self.retention.as_deref(), "30d");
        let checkpoint_interval = p.duration(
            "checkpoint_interval",
            self.checkpoint_interval.as_deref(),
            "5m",
        );
        let stale_after = p.duration("stale_after", self.stale_after.as_deref(), "5m");
        if retention < Duration::from_secs(3600) {
            p.push("retention: must be at least 1h");
        }
        let host_down_after = self
            .host_down_after
            .as_ref()
            .and_then(|s| p.take("host_down_after", parse_duration(s)));
        let host_forget_after =
            p.duration("host_forget_after", self.host_forget_after.as_deref(), "7d");
        let storage_alert_after = Some(p.duration(
            "storage_alert_after",
            self.storage_alert_after.as_deref(),
            "1m",
        ))
        .filter(|d| !d.is_zero());
        let external_url = self
            .external_url
            .unwrap_or_else(|| format!("http://{listen}"));

        let i = self.ingest;
        let ingest = IngestConfig {
            token: i.token.and_then(|t| p.take("ingest.token", t.resolve())),
            max_body_bytes: p.size("ingest.max_body", i.max_body.as_deref(), "16MiB") as usize,
            request_timeout: p.duration(
                "ingest.request_timeout",
                i.request_timeout.as_deref(),
                "30s",
            ),
            max_decompressed_bytes: p.size(
                "ingest.max_decompressed",
                i.max_decompressed.as_deref(),
                "64MiB",
            ) as usize,
            max_samples_per_request: i.max_samples_per_request.unwrap_or(1_000_000),
            max_labels_per_series: i.max_labels_per_series.unwrap_or(64),
            max_series_per_host: i.max_series_per_host.unwrap_or(20_000),
            max_hosts: i.max_hosts.unwrap_or(10_000),
            max_connections: match i.max_connections.unwrap_or(1024) {
                0 => {
                    p.push("ingest.max_connections: must be at least 1".to_string());
                    1
                }
                n => n,
            },
            idle_timeout: p.duration("ingest.idle_timeout", i.idle_timeout.as_deref(), "30s"),
        };

        let mut receivers = Vec::new();
        let mut names = BTreeSet::new();
        for (idx, r) in self.receivers.into_iter().enumerate() {
            let at = format!("receivers[{idx}] ({:?})", r.name);
            if r.name.is_empty() {
                p.push(format!("receivers[{idx}]: name must not be empty"));
            }
            if !names.insert(r.name.clone()) {
                p.push(format!("{at}: duplicate receiver name"));
            }
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
            let kind = match (r.webhook, r.log, chat) {
                _ if set != 1 => {
                    p.push(format!(
                        "{at}: set exactly one of `webhook`, `log`, `email`, `aliyun_sms`, `tencent_sms`, `sms_gateway`, `alertmanager`, `dingtalk`, `wecom`, `feishu` or `slack`"
                    ));
                    None
                }
                _ if r.sms_gateway.is_some() => {
                    let g = r.sms_gateway.expect("checked");
                    if !(g.url.starts_with("http://") || g.url.starts_with("https://")) {
                        p.push(format!("{at}: sms_gateway.url {:?} must be http(s)", g.url));
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
                    p.take(&format!("{at}: sms_gateway.body"), check_template(&body));
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
                            let s =
                                p.take(&format!("{at}: sms_gateway.headers.{k}"), v.resolve())?;
                            Some((k, s))
                        })
                        .collect();
                    let timeout = p.duration(
                        &format!("{at}: sms_gateway.timeout"),
                        g.timeout.as_deref(),
                        "10s",
                    );
                    let locale = p
                        .take(
                            &format!("{at}: sms_gateway"),
                            Locale::parse(g.locale.as_deref(), "zh-CN"),
                        )
                        .unwrap_or(Locale::ZhCn);
                    Some((
                        ReceiverKind::SmsGateway(SmsGatewayConfig {
                            url: g.url,
                            method,
                            headers,
                            content_type: g
                                .content_type
                                .unwrap_or_else(|| "application/json".into()),
                            body,
                            phone_numbers: g.phone_numbers,
                            success_match,
                            timeout,
                            locale,
                        }),
                        20,
                    ))
                }
                _ if r.tencent_sms.is_some() => {
                    let t = r.tencent_sms.expect("checked");
                    let endpoint = t
                        .endpoint
                        .unwrap_or_else(|| "https://sms.tencentcloudapi.com/".into());
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        p.push(format!(
                            "{at}: tencent_sms.endpoint {endpoint:?} must be http(s)"
                        ));
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
                    let timeout = p.duration(
                        &format!("{at}: tencent_sms.timeout"),
                        t.timeout.as_deref(),
                        "10s",
                    );
                    key.map(|secret_key| {
                        (
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
                            }),
                            20,
                        )
                    })
                }
                _ if r.aliyun_sms.is_some() => {
                    let a = r.aliyun_sms.expect("checked");
                    let endpoint = a
                        .endpoint
                        .unwrap_or_else(|| "https://dysmsapi.aliyuncs.com/".into());
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        p.push(format!(
                            "{at}: aliyun_sms.endpoint {endpoint:?} must be http(s)"
                        ));
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
                    let timeout = p.duration(
                        &format!("{at}: aliyun_sms.timeout"),
                        a.timeout.as_deref(),
                        "10s",
                    );
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
                        (
                            ReceiverKind::AliyunSms(AliyunSmsConfig {
                                endpoint,
                                access_key_id: a.access_key_id,
                                access_key_secret,
                                sign_name: a.sign_name,
                                template_code: a.template_code,
                                phone_numbers: a.phone_numbers,
                                template_params,
                                timeout,
                            }),
                            20,
                        )
                    })
                }
                _ if r.email.is_some() => {
                    let e = r.email.expect("checked");
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
                    let timeout =
                        p.duration(&format!("{at}: email.timeout"), e.timeout.as_deref(), "30s");
                    let (host, port) = hp.unwrap_or_default();
                    Some((
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
                        }),
                        20,
                    ))
                }
                _ if r.alertmanager.is_some() => {
                    let am = r.alertmanager.expect("checked");
                    if !(am.url.starts_with("http://") || am.url.starts_with("https://")) {
                        p.push(format!(
                            "{at}: alertmanager.url {:?} must be http(s)",
                            am.url
                        ));
                    }
                    let timeout = p.duration(
                        &format!("{at}: alertmanager.timeout"),
                        am.timeout.as_deref(),
                        "10s",
                    );
                    let resend_interval = p.duration(
                        &format!("{at}: alertmanager.resend_interval"),
                        am.resend_interval.as_deref(),
                        "1m",
                    );
                    if resend_interval < Duration::from_secs(1) {
                        p.push(format!(
                            "{at}: alertmanager.resend_interval must be at least 1s"
                        ));
                    }
                    Some((
                        ReceiverKind::Alertmanager {
                            url: am.url.trim_end_matches('/').to_string(),
                            timeout,
                            resend_interval,
                        },
                        20,
                    ))
                }
                (None, None, Some((vendor, d))) => {
                    let v = vendor.name();
                    if !(d.url.starts_with("http://") || d.url.starts_with("https://")) {
                        p.push(format!("{at}: {v}.url {:?} must be http(s)", d.url));
                    }
                    let timeout =
                        p.duration(&format!("{at}: {v}.timeout"), d.timeout.as_deref(), "10s");
                    let secret = d
                        .secret
                        .and_then(|s| p.take(&format!("{at}: {v}.secret"), s.resolve()));
                    let default_locale = if vendor == Vendor::Slack {
                        "en"
                    } else {
                        "zh-CN"
                    };
                    let locale = p.take(
                        &format!("{at}: {v}"),
                        Locale::parse(d.locale.as_deref(), default_locale),
                    );
                    Some((
                        ReceiverKind::Chat {
                            vendor,
                            url: d.url,
                            secret,
                            at_mobiles: d.at_mobiles,
                            locale: locale.unwrap_or(Locale::ZhCn),
                            timeout,
                        },
                        20,
                    ))
                }
                (Some(w), None, None) => {
                    if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                        p.push(format!("{at}: webhook.url {:?} must be http(s)", w.url));
                    }
                    let timeout = p.duration(
                        &format!("{at}: webhook.timeout"),
                        w.timeout.as_deref(),
                        "10s",
                    );
                    Some((
                        ReceiverKind::Webhook {
                            url: w.url,
                            timeout,
                        },
                        w.max_attempts.unwrap_or(20),
                    ))
                }
                (None, Some(l), None) => Some((
                    ReceiverKind::Log {
                        path: if l.path.is_absolute() {
                            l.path
                        } else {
                            data_dir.join(l.path)
                        },
                    },
                    20,
                )),
                _ => None,
            };
            let mut template = MessageTemplate::default();
            if let Some(t) = r.template {
                for (field, src) in [("title", &t.title), ("body", &t.body)] {
                    if let Some(src) = src {
                        p.take(&format!("{at}: template.{field}"), check_template(src));
                    }
                }
                template = MessageTemplate {
                    title: t.title,
                    body: t.body,
                };
            }
            let rate_limit = match r.rate_limit {
                Some(rl) => {
                    let per = p.duration(&format!("{at}: rate_limit.per"), Some(&rl.per), "1m");
                    if rl.count < 2 {
                        p.push(format!(
                            "{at}: rate_limit.count must be at least 2 (one is kept for a digest)"
                        ));
                    }
                    Some(RateLimit {
                        count: rl.count,
                        per,
                    })
                }
                None => match &kind {
                    Some((ReceiverKind::Chat { vendor, .. }, _)) => vendor.rate_limit(),
                    _ => None,
                },
            };
            if let Some((kind, max_attempts)) = kind {
                if max_attempts == 0 {
                    p.push(format!("{at}: max_attempts must be at least 1"));
                }
                receivers.push(ReceiverConfig {
                    name: r.name,
                    kind,
                    max_attempts,
                    template,
                    rate_limit,
                });
            }
        }
        if receivers.is_empty() && names.is_empty() {
            receivers.push(ReceiverConfig {
                name: "log".into(),
                kind: ReceiverKind::Log {
                    path: data_dir.join("alerts.log"),
                },
                max_attempts: 20,
                template: MessageTemplate::default(),
                rate_limit: None,
            });
        }
        let admin_token = self
            .admin_token
            .and_then(|t| p.take("admin_token", t.resolve()));
        let read_token = self
            .read_token
            .and_then(|t| p.take("read_token", t.resolve()));
        let inhibit_rules = crate::inhibit::validate(&mut p, self.inhibit_rules);
        let known: Vec<String> = receivers.iter().map(|r| r.name.clone()).collect();
        let escalation_policies =
            crate::escalation::validate(&mut p, self.escalation_policies, &known);
        let policies: Vec<String> = escalation_policies.iter().map(|e| e.name.clone()).collect();
        let route = match self.route {
            Some(raw) => crate::route::validate(
                &mut p,
                raw,
                "route",
                &crate::route::Known {
                    receivers: &known,
                    policies: &policies,
                },
                &crate::route::GroupOpts::default(),
            ),
            // Every receiver gets every alert.
            None => crate::route::Route::to_all(known.clone()),
        };
        let ack = AckConfig {
            secret: self
                .ack
                .secret
                .and_then(|t| p.take("ack.secret", t.resolve())),
            link_ttl: p.duration("ack.link_ttl", self.ack.link_ttl.as_deref(), "24h"),
        };
        if let Some(t) = &self.dashboard_url {
            p.take("dashboard_url", check_template(t));
        }
        let dashboard_url = self.dashboard_url;
        let incidents = IncidentsConfig {
            group_by: self
                .incidents
                .group_by
                .unwrap_or_else(|| vec!["host".into(), "service".into()]),
            reopen_within: p.duration(
                "incidents.reopen_within",
                self.incidents.reopen_within.as_deref(),
                "30m",
            ),
        };
        let rl = self.remediation;
        let remediation = RemediationLimits {
            max_concurrent: rl.max_concurrent.unwrap_or(10).max(1),
            per_host: rl.per_host.unwrap_or(1).max(1),
            answer_within: p.duration(
                "remediation.answer_within",
                rl.answer_within.as_deref(),
                "10m",
            ),
            dry_run: rl.dry_run,
        };
        let actions = crate::actions::validate(&mut p, self.actions, "actions");
        let mut remote_write: Vec<RemoteWriteConfig> = Vec::new();
        for (i, r) in self.remote_write.into_iter().enumerate() {
            let at = format!("remote_write[{i}]");
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                p.push(format!("{at}.url {:?} must be http(s)", r.url));
            }
            let name = r.name.unwrap_or_else(|| {
                r.url
                    .split("://")
                    .nth(1)
                    .and_then(|h| h.split('/').next())
                    .unwrap_or("remote")
                    .to_string()
            });
            if remote_write.iter().any(|o| o.name == name) {
                p.push(format!("{at}: duplicate name {name:?}"));
            }
            remote_write.push(RemoteWriteConfig {
                name,
                url: r.url,
                bearer_token: r
                    .bearer_token
                    .and_then(|t| p.take(&format!("{at}.bearer_token"), t.resolve())),
                timeout: p.duration(&format!("{at}.timeout"), r.timeout.as_deref(), "30s"),
                queue_max_samples: r.queue_max_samples.unwrap_or(10_000_000).max(1),
                max_samples_per_send: r.max_samples_per_send.unwrap_or(10_000).max(1),
                peer: r.peer.unwrap_or(false),
            });
        }
        let tls = self.tls.and_then(|t| {
            let read = |p: &mut Problems, field: &str, f: &PathBuf| {
                p.take(
                    field,
                    std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display())),
                )
            };
            let cert_pem = read(&mut p, "tls.cert_file", &t.cert_file);
            let key_pem = read(&mut p, "tls.key_file", &t.key_file);
            let client_ca_pem = t
                .client_ca_file
                .as_ref()
                .and_then(|f| read(&mut p, "tls.client_ca_file", f));
            Some(ServerTls {
                cert_pem: cert_pem?,
                key_pem: key_pem?,
                client_ca_pem,
            })
        });
        p.finish(|| CollectorConfig {
            listen,
            data_dir,
            rules,
            retention,
            checkpoint_interval,
            stale_after,
            federate: self.federate.unwrap_or(false),
            external_url,
            host_down_after,
            host_forget_after,
            storage_alert_after,
            ingest,
            receivers,
            route,
            admin_token,
            read_token,
            inhibit_rules,
            escalation_policies,
            ack,
            dashboard_url,
            incidents,
            remediation,
            actions,
            remote_write,
            tls,
        })
    }
}

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

    #[test]
    fn alertmanager_resend_interval_has_a_floor() {
        let raw: RawCollectorConfig = parse_yaml(
            "receivers:\n- name: am\n  alertmanager: {url: \"http://am:9093\", resend_interval: 0s}\n",
        )
        .unwrap();
        let text = raw.validate().unwrap_err().to_string();
        assert!(
            text.contains("alertmanager.resend_interval must be at least 1s"),
            "{text}"
        );
    }
}
