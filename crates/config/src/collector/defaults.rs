//! Every default of the collector's configuration, named once: validation uses these, the
//! field documentation points here, the command line's help prints them, and a test checks
//! that `examples/collector.yaml` shows the same values.

use std::time::Duration;

use super::RateLimit;

/// `listen`.
pub const LISTEN: &str = "127.0.0.1:9760";
/// `data_dir`.
pub const DATA_DIR: &str = "data";
/// `rules`.
pub const RULES: &str = "rules";
/// `retention`.
pub const RETENTION: &str = "30d";
/// `checkpoint_interval`.
pub const CHECKPOINT_INTERVAL: &str = "5m";
/// `stale_after`.
pub const STALE_AFTER: &str = "5m";
/// `host_forget_after`.
pub const HOST_FORGET_AFTER: &str = "7d";
/// `storage_alert_after`.
pub const STORAGE_ALERT_AFTER: &str = "1m";

/// `external_alerts.resolve_timeout`: Alertmanager's default.
pub const EXTERNAL_RESOLVE_TIMEOUT: &str = "5m";
/// `external_alerts.max_alerts`.
pub const EXTERNAL_MAX_ALERTS: usize = 10_000;

/// `ingest.max_body`.
pub const MAX_BODY: &str = "16MiB";
/// `ingest.request_timeout`.
pub const REQUEST_TIMEOUT: &str = "30s";
/// `ingest.max_decompressed`.
pub const MAX_DECOMPRESSED: &str = "64MiB";
/// `ingest.max_samples_per_request`.
pub const MAX_SAMPLES_PER_REQUEST: usize = 1_000_000;
/// `ingest.max_labels_per_series`.
pub const MAX_LABELS_PER_SERIES: usize = 64;
/// `ingest.max_series_per_host`.
pub const MAX_SERIES_PER_HOST: usize = 20_000;
/// `ingest.max_hosts`.
pub const MAX_HOSTS: usize = 10_000;
/// `ingest.max_connections`.
pub const MAX_CONNECTIONS: usize = 1024;
/// `ingest.idle_timeout`.
pub const IDLE_TIMEOUT: &str = "30s";

/// `self_metrics.interval`.
pub const SELF_METRICS_INTERVAL: &str = "15s";

/// `query.max_concurrent`.
pub const QUERY_MAX_CONCURRENT: usize = 4;
/// `query.timeout`.
pub const QUERY_TIMEOUT: &str = "2m";
/// `query.max_samples` (Prometheus' `--query.max-samples`).
pub const QUERY_MAX_SAMPLES: usize = 50_000_000;
/// `query.max_series`.
pub const QUERY_MAX_SERIES: usize = 500_000;
/// `query.lookback_delta` (Prometheus' `--query.lookback-delta`).
pub const QUERY_LOOKBACK: &str = "5m";

/// A receiver's `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 20;
/// The `timeout` of HTTP receivers (webhook, Alertmanager, chat robots, SMS).
pub const RECEIVER_TIMEOUT: &str = "10s";
/// `email.timeout`.
pub const EMAIL_TIMEOUT: &str = "30s";
/// `alertmanager.resend_interval`.
pub const RESEND_INTERVAL: &str = "1m";
/// `rate_limit.per`.
pub const RATE_LIMIT_PER: &str = "1m";
/// The alert log every receiver-less configuration gets, under `data_dir`.
pub const ALERT_LOG: &str = "alerts.log";

/// `ack.link_ttl`.
pub const ACK_LINK_TTL: &str = "24h";
/// `incidents.group_by`.
pub const INCIDENT_GROUP_BY: [&str; 2] = ["service", "host"];
/// `incidents.changes_before`.
pub const INCIDENT_CHANGES_BEFORE: &str = "6h";
/// `incidents.reopen_within`.
pub const INCIDENT_REOPEN_WITHIN: &str = "30m";
/// `remediation.max_concurrent`.
pub const REMEDIATION_MAX_CONCURRENT: usize = 10;
/// `remediation.per_host`.
pub const REMEDIATION_PER_HOST: usize = 1;
/// `remediation.answer_within`.
pub const REMEDIATION_ANSWER_WITHIN: &str = "10m";

/// `heartbeat.every`.
pub const HEARTBEAT_EVERY: &str = "1m";
/// `heartbeat.timeout`.
pub const HEARTBEAT_TIMEOUT: &str = "10s";
/// `remote_write[].timeout`.
pub const REMOTE_WRITE_TIMEOUT: &str = "30s";
/// `remote_write[].queue_max_samples`.
pub const QUEUE_MAX_SAMPLES: usize = 10_000_000;
/// `remote_write[].max_samples_per_send`.
pub const MAX_SAMPLES_PER_SEND: usize = 10_000;

/// SMS receivers' `rate_limit` when none is given: four texts an hour (the last a digest of
/// the rest) and ten a day, the least a provider allows one number by default (Tencent Cloud:
/// 10 a day), so a storm neither spends the day's texts in an hour nor runs into the
/// provider's refusals.
pub const SMS_RATE_LIMITS: [RateLimit; 2] = [
    RateLimit {
        count: 4,
        per: Duration::from_secs(3600),
    },
    RateLimit {
        count: 10,
        per: Duration::from_secs(24 * 3600),
    },
];

/// E-mail receivers' `rate_limit` when none is given: what a relay allows one sender
/// (Exchange Online: 30 messages a minute), the rest in a digest.
pub const EMAIL_RATE_LIMITS: [RateLimit; 1] = [RateLimit {
    count: 30,
    per: Duration::from_secs(60),
}];

/// The longest `rate_limit.per`: its sends are remembered that long.
pub const RATE_LIMIT_MAX_PER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most messages one rate-limit window may allow.
pub const RATE_LIMIT_MAX_COUNT: u32 = 10_000;
