//! The agent's configuration file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tocsin_model::{is_valid_label_name, Labels};

use crate::{ConfigError, Problems, RawSecret, Secret};

pub const DEFAULT_INTERVAL: &str = "10s";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9761";
pub const DEFAULT_COLLECTOR_URL: &str = "http://127.0.0.1:9760/api/v1/write";

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentConfig {
    /// Name of this host: the `host` label of every series (default: the system hostname).
    pub host: Option<String>,
    /// Time between two samples of the host (default 10s, at least 1s).
    pub interval: Option<String>,
    /// Address of the agent's own `/metrics` and `/healthz` (default 127.0.0.1:9761).
    pub listen: Option<String>,
    /// Static labels added to every series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Directory of `*.prom` files read each cycle, as node_exporter's textfile collector.
    pub textfile_dir: Option<PathBuf>,
    /// Where and how samples are shipped.
    #[serde(default)]
    pub collector: RawShipping,
    /// Longest time one `statfs` may take before that mount is skipped (default 2s).
    pub statfs_timeout: Option<String>,
    /// Service probes, each on its own schedule.
    #[serde(default)]
    pub probes: Vec<crate::probes::RawProbe>,
    /// Remediation actions this agent will run when the collector asks: the allowlist.
    #[serde(default)]
    pub actions: BTreeMap<String, crate::actions::RawAction>,
    /// Where the agent keeps the ids of actions it ran, so a replayed request does not run
    /// twice (default ./tocsin-agent-state; e.g. /var/lib/tocsin-agent under systemd).
    pub state_dir: Option<PathBuf>,
    /// Most actions running at once (default 1).
    pub max_concurrent_actions: Option<usize>,
    /// The durable buffer between sampling and shipping.
    #[serde(default)]
    pub buffer: RawBuffer,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    /// Directory of the buffer's segment files (default STATE_DIR/buffer).
    pub dir: Option<PathBuf>,
    /// Most bytes on disk; beyond it the oldest samples are dropped and counted (default 256MiB).
    pub max_size: Option<String>,
    /// Samples older than this are dropped and counted instead of shipped (default 24h).
    pub max_age: Option<String>,
    /// Size at which a segment file is closed and a new one started (default 8MiB).
    pub segment_size: Option<String>,
    /// How often written samples are fsynced; 0s: after every batch (default 1s).
    pub fsync_interval: Option<String>,
    /// Samples per second shipped from a backlog after an outage (default 10000).
    pub replay_rate: Option<u64>,
    /// While a backlog is replayed, send each new batch ahead of it for alerting only (the
    /// collector evaluates rules on it, and stores it when the backlog reaches it). Needs a
    /// tocsin collector; turn off when shipping to another remote-write receiver (default true).
    pub fresh_first: Option<bool>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShipping {
    /// Remote-write URL (default http://127.0.0.1:9760/api/v1/write).
    pub url: Option<String>,
    /// Further collectors to fail over to, in order, while the first is unreachable.
    #[serde(default)]
    pub fallback_urls: Vec<String>,
    /// While on a fallback, how often to try the preferred collector again (default 30s).
    pub preferred_retry: Option<String>,
    /// Bearer token sent with every write: a literal, `{env: NAME}` or `{file: PATH}`.
    pub token: Option<RawSecret>,
    /// Time limit of one write request (default 10s).
    pub timeout: Option<String>,
    /// Longest wait between two retries (default 30s).
    pub max_backoff: Option<String>,
    /// CA certificate(s) (PEM) that sign the collector's certificate, for https:// collectors
    /// with a private CA; the system's roots are trusted too.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for collectors that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub host: String,
    pub interval: Duration,
    pub listen: SocketAddr,
    pub labels: Labels,
    pub textfile_dir: Option<PathBuf>,
    pub shipping: ShippingConfig,
    pub statfs_timeout: Duration,
    pub probes: Vec<crate::probes::ProbeConfig>,
    pub actions: Vec<crate::actions::ActionSpec>,
    pub state_dir: PathBuf,
    pub max_concurrent_actions: usize,
    pub buffer: BufferConfig,
}

#[derive(Debug, Clone)]
pub struct BufferConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub segment_bytes: u64,
    /// Zero: fsync after every batch.
    pub fsync_interval: Duration,
    pub replay_rate: u64,
    pub fresh_first: bool,
}

#[derive(Debug, Clone)]
pub struct ShippingConfig {
    /// The preferred collector first, then the fallbacks.
    pub urls: Vec<String>,
    pub preferred_retry: Duration,
    pub token: Option<Secret>,
    pub timeout: Duration,
    pub max_backoff: Duration,
    /// PEM read from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain followed by its key, PEM, for mutual TLS.
    pub identity_pem: Option<Vec<u8>>,
}

impl RawAgentConfig {
    /// Validates everything and reports every problem at once.
    pub fn validate(self) -> Result<AgentConfig, ConfigError> {
        let mut p = Problems::default();
        let host = match self.host {
            Some(h) if h.trim().is_empty() => {
                p.push("host: must not be empty");
                String::new()
            }
            Some(h) => h,
            None => system_hostname(),
        };
        let interval = p.duration("interval", self.interval.as_deref(), DEFAULT_INTERVAL);
        if !interval.is_zero() && interval < Duration::from_secs(1) {
            p.push(format!(
                "interval: {} is below the minimum of 1s",
                crate::format_duration(interval)
            ));
        }
        let listen = p.take(
            "listen",
            self.listen
                .as_deref()
                .unwrap_or(DEFAULT_LISTEN)
                .parse::<SocketAddr>()
                .map_err(|e| format!("{e}, expected HOST:PORT such as 127.0.0.1:9761")),
        );
        let mut labels = Labels::new();
        for (k, v) in self.labels {
            if !is_valid_label_name(&k) || k.starts_with("__") {
                p.push(format!("labels: invalid label name {k:?}"));
            } else if k == "host" {
                p.push("labels: \"host\" is set by the `host` setting, not in labels");
            } else if v.is_empty() {
                p.push(format!("labels: label {k:?} has an empty value"));
            } else {
                labels.set(k, v);
            }
        }
        labels.set("host", host.clone());
        let c = self.collector;
        let url = c.url.unwrap_or_else(|| DEFAULT_COLLECTOR_URL.to_string());
        for f in &c.fallback_urls {
            if !(f.starts_with("http://") || f.starts_with("https://")) {
                p.push(format!(
                    "collector.fallback_urls: {f:?} must start with http:// or https://"
                ));
            }
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            p.push(format!(
                "collector.url: {url:?} must start with http:// or https://"
            ));
        }
        let token = c.token.and_then(|t| p.take("collector.token", t.resolve()));
        let read = |p: &mut Problems, field: &str, f: &Option<PathBuf>| {
            f.as_ref().and_then(|f| {
                p.take(
                    field,
                    std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display())),
                )
            })
        };
        let ca_pem = read(&mut p, "collector.ca_file", &c.ca_file);
        let identity_pem = match (&c.cert_file, &c.key_file) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                let cert = read(&mut p, "collector.cert_file", &c.cert_file);
                let key = read(&mut p, "collector.key_file", &c.key_file);
                cert.zip(key).map(|(mut c, k)| {
                    c.push(b'\n');
                    c.extend_from_slice(&k);
                    c
                })
            }
            _ => {
                p.push("collector: cert_file and key_file go together");
                None
            }
        };
        let timeout = p.duration("collector.timeout", c.timeout.as_deref(), "10s");
        let max_backoff = p.duration("collector.max_backoff", c.max_backoff.as_deref(), "30s");
        let preferred_retry = p.duration(
            "collector.preferred_retry",
            c.preferred_retry.as_deref(),
            "30s",
        );
        let statfs_timeout = p.duration("statfs_timeout", self.statfs_timeout.as_deref(), "2s");
        let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let probes =
            crate::probes::validate(&mut p, self.probes, interval.max(Duration::from_secs(1)));
        let actions = crate::actions::validate(&mut p, self.actions, "actions");
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from("tocsin-agent-state"));
        let max_concurrent_actions = self.max_concurrent_actions.unwrap_or(1).max(1);
        let buffer = validate_buffer(&mut p, self.buffer, &state_dir);
        p.finish(|| AgentConfig {
            host,
            interval,
            listen,
            labels,
            textfile_dir: self.textfile_dir,
            shipping: ShippingConfig {
                urls: std::iter::once(url).chain(c.fallback_urls).collect(),
                preferred_retry,
                token,
                timeout,
                max_backoff,
                ca_pem,
                identity_pem,
            },
            statfs_timeout,
            probes,
            actions,
            state_dir,
            max_concurrent_actions,
            buffer,
        })
    }
}

fn validate_buffer(p: &mut Problems, b: RawBuffer, state_dir: &std::path::Path) -> BufferConfig {
    let max_bytes = p.size("buffer.max_size", b.max_size.as_deref(), "256MiB");
    let segment_bytes = p.size("buffer.segment_size", b.segment_size.as_deref(), "8MiB");
    let max_age = p.duration("buffer.max_age", b.max_age.as_deref(), "24h");
    let fsync_interval = p.duration("buffer.fsync_interval", b.fsync_interval.as_deref(), "1s");
    if max_bytes < 1 << 20 {
        p.push("buffer.max_size: must be at least 1MiB");
    }
    if segment_bytes < 4096 || segment_bytes.saturating_mul(4) > max_bytes.max(4096 * 4) {
        p.push("buffer.segment_size: must be at least 4KiB and at most a quarter of max_size");
    }
    if max_age < Duration::from_secs(60) {
        p.push("buffer.max_age: must be at least 1m");
    }
    let replay_rate = b.replay_rate.unwrap_or(10_000);
    if replay_rate == 0 {
        p.push("buffer.replay_rate: must be at least 1 sample per second");
    }
    BufferConfig {
        dir: b.dir.unwrap_or_else(|| state_dir.join("buffer")),
        max_bytes,
        max_age,
        segment_bytes,
        fsync_interval,
        replay_rate,
        fresh_first: b.fresh_first.unwrap_or(true),
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_yaml;

    #[test]
    fn defaults_are_valid() {
        let c = RawAgentConfig::default().validate().unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.labels.get("host"), Some(c.host.as_str()));
    }

    #[test]
    fn every_problem_at_once() {
        let raw: RawAgentConfig = parse_yaml(
            "interval: 100ms\nlisten: nowhere\nlabels: {host: x, \"bad-name\": y}\ncollector: {url: ftp://x}\n",
        )
        .unwrap();
        let e = raw.validate().unwrap_err();
        assert_eq!(e.problems.len(), 5, "{e}");
        assert!(e.problems[0].starts_with("interval: 100ms is below the minimum of 1s"));
    }

    #[test]
    fn unknown_field_has_a_line() {
        let e = parse_yaml::<RawAgentConfig>("host: a\nintervall: 5s\n").unwrap_err();
        assert!(e.starts_with("2:1: unknown field `intervall`"), "{e}");
    }
}
