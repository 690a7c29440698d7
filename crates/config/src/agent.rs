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
    /// Also show the latest host, textfile and probe samples on `/metrics`, labelled as
    /// shipped, for a Prometheus that scrapes agents where it scraped node_exporter (default
    /// true).
    pub expose_samples: Option<bool>,
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
    /// Log files followed each cycle, and what is counted in them.
    #[serde(default)]
    pub logs: Vec<crate::logs::RawLogSource>,
    /// Remediation actions this agent will run when the collector asks: the allowlist.
    #[serde(default)]
    pub actions: BTreeMap<String, crate::actions::RawAction>,
    /// Where the agent keeps its buffer and the ids of actions it ran, so a replayed request
    /// does not run twice. Default: `$STATE_DIRECTORY` (systemd's StateDirectory=), else
    /// /var/lib/tocsin-agent for root, else `$XDG_STATE_HOME/tocsin-agent`
    /// (~/.local/state/tocsin-agent); never the current directory.
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
    /// Instead of `url` and `fallback_urls`: every collector of a pool that shares the fleet.
    /// Each agent ranks the pool by rendezvous hashing of its host name, ships to the first and
    /// fails over in rank order; adding or removing a collector moves only the hosts it gains
    /// or loses.
    #[serde(default)]
    pub pool: Vec<String>,
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
    pub expose_samples: bool,
    pub labels: Labels,
    pub textfile_dir: Option<PathBuf>,
    pub shipping: ShippingConfig,
    pub statfs_timeout: Duration,
    pub probes: Vec<crate::probes::ProbeConfig>,
    pub logs: Vec<crate::logs::LogSource>,
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
        let interval = p.duration_min(
            "interval",
            self.interval.as_deref(),
            DEFAULT_INTERVAL,
            Duration::from_secs(1),
        );
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
        let urls = if c.pool.is_empty() {
            let url = c.url.unwrap_or_else(|| DEFAULT_COLLECTOR_URL.to_string());
            std::iter::once(url).chain(c.fallback_urls).collect()
        } else {
            if c.url.is_some() || !c.fallback_urls.is_empty() {
                p.push(
                    "collector: `pool` replaces `url` and `fallback_urls`; set one or the other",
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for u in &c.pool {
                if !seen.insert(u) {
                    p.push(format!("collector.pool: {u:?} is listed twice"));
                }
            }
            rendezvous_order(&host, &c.pool)
        };
        let field = if c.pool.is_empty() {
            "collector.url"
        } else {
            "collector.pool"
        };
        for u in &urls {
            if let Some(why) = crate::http_url_problem(u) {
                p.push(format!("{field}: {why}"));
            }
        }
        let urls: Vec<String> = urls.iter().map(|u| write_url(u)).collect();
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
        let (ms, second) = (Duration::from_millis(1), Duration::from_secs(1));
        let timeout = p.duration_min("collector.timeout", c.timeout.as_deref(), "10s", 100 * ms);
        let max_backoff = p.duration_min(
            "collector.max_backoff",
            c.max_backoff.as_deref(),
            "30s",
            second,
        );
        let preferred_retry = p.duration_min(
            "collector.preferred_retry",
            c.preferred_retry.as_deref(),
            "30s",
            second,
        );
        let statfs_timeout = p.duration_min(
            "statfs_timeout",
            self.statfs_timeout.as_deref(),
            "2s",
            10 * ms,
        );
        let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let probes =
            crate::probes::validate(&mut p, self.probes, interval.max(Duration::from_secs(1)));
        let logs = crate::logs::validate(&mut p, self.logs);
        let actions = crate::actions::validate(&mut p, self.actions, "actions");
        let state_dir = self.state_dir.unwrap_or_else(|| {
            default_state_dir(
                |k| std::env::var_os(k).map(PathBuf::from),
                rustix::process::geteuid().is_root(),
            )
        });
        let max_concurrent_actions = self.max_concurrent_actions.unwrap_or(1).max(1);
        let buffer = validate_buffer(&mut p, self.buffer, &state_dir);
        p.finish(|| AgentConfig {
            host,
            interval,
            listen,
            expose_samples: self.expose_samples.unwrap_or(true),
            labels,
            textfile_dir: self.textfile_dir,
            shipping: ShippingConfig {
                urls,
                preferred_retry,
                token,
                timeout,
                max_backoff,
                ca_pem,
                identity_pem,
            },
            statfs_timeout,
            probes,
            logs,
            actions,
            state_dir,
            max_concurrent_actions,
            buffer,
        })
    }
}

/// Orders a pool of collectors for one host by rendezvous (highest random weight) hashing: each
/// member's weight is a hash of host and member, highest first. Every agent computes the same
/// order whatever the order of the list, and removing a member moves only the hosts that ranked
/// it first, each to its own second choice.
pub fn rendezvous_order(host: &str, pool: &[String]) -> Vec<String> {
    let weight = |member: &str| {
        // FNV-1a 64 over host, a 0 byte and the member, then the SplitMix64 finaliser (FNV alone
        // mixes the last bytes poorly, and pool members often differ only there).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in host.bytes().chain([0]).chain(member.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    };
    let mut ranked: Vec<(u64, &String)> = pool.iter().map(|m| (weight(m), m)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.into_iter().map(|(_, m)| m.clone()).collect()
}

/// A collector given by its base URL (`http://host:9760`, what people type) means its
/// remote-write endpoint; a URL with a path is taken as it is.
fn write_url(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_string();
    };
    match rest.find('/') {
        None => format!("{scheme}://{rest}/api/v1/write"),
        Some(i) if rest[i..] == *"/" => format!("{scheme}://{}api/v1/write", &rest[..=i]),
        Some(_) => u.to_string(),
    }
}

/// The agent's state directory when none is configured (see `RawAgentConfig::state_dir`).
fn default_state_dir(env: impl Fn(&str) -> Option<PathBuf>, root: bool) -> PathBuf {
    let absolute = |p: PathBuf| Some(p).filter(|p| p.is_absolute());
    if let Some(d) = env("STATE_DIRECTORY").and_then(|d| {
        // systemd may list several, separated by ':'.
        absolute(PathBuf::from(
            d.to_string_lossy().split(':').next().unwrap_or(""),
        ))
    }) {
        return d;
    }
    if root {
        return PathBuf::from("/var/lib/tocsin-agent");
    }
    env("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            env("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("tocsin-agent")
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

/// This machine's host name (`localhost` when the kernel does not say).
pub fn system_hostname() -> String {
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

    /// A status no server sends, and a unit name systemctl would read as something else, are
    /// refused with what is wrong.
    #[test]
    fn probe_targets_and_statuses_are_checked() {
        let e = parse_yaml::<RawAgentConfig>(
            r#"host: a
probes:
  - { name: h, kind: http, target: "http://x/", http: { expect_status: [200, 999] } }
  - { name: s1, kind: systemd, target: "--root=/tmp" }
  - { name: s2, kind: systemd, target: "nginx; reboot" }
  - { name: s3, kind: systemd, target: "nginx.service" }
"#,
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(
            e.problems,
            [
                r#"probes[0] ("h"): http.expect_status 999 is not an HTTP status (100 to 599)"#,
                r#"probes[1] ("s1"): target "--root=/tmp" is not a unit name (no spaces, not starting with -; e.g. nginx.service)"#,
                r#"probes[2] ("s2"): target "nginx; reboot" is not a unit name (no spaces, not starting with -; e.g. nginx.service)"#,
            ]
        );
    }

    #[test]
    fn a_base_url_means_the_write_endpoint() {
        for (given, want) in [
            ("http://c:9760", "http://c:9760/api/v1/write"),
            ("https://c:9760/", "https://c:9760/api/v1/write"),
            ("http://c:9760/api/v1/write", "http://c:9760/api/v1/write"),
            (
                "http://vm:8428/api/v1/import/prometheus",
                "http://vm:8428/api/v1/import/prometheus",
            ),
        ] {
            assert_eq!(write_url(given), want);
        }
        let c = parse_yaml::<RawAgentConfig>("collector: {url: \"http://c:9760\"}\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            c.shipping.urls,
            vec!["http://c:9760/api/v1/write".to_string()]
        );
    }

    #[test]
    fn the_state_directory_is_never_the_current_one_by_default() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        type Vars = &'static [(&'static str, &'static str)];
        let cases: &[(Vars, bool, &str)] = &[
            (
                &[("STATE_DIRECTORY", "/var/lib/x:/var/lib/y")],
                false,
                "/var/lib/x",
            ),
            (&[("HOME", "/home/u")], true, "/var/lib/tocsin-agent"),
            (
                &[("HOME", "/home/u")],
                false,
                "/home/u/.local/state/tocsin-agent",
            ),
            (
                &[("HOME", "/home/u"), ("XDG_STATE_HOME", "/st")],
                false,
                "/st/tocsin-agent",
            ),
            (&[("HOME", "relative")], false, ""),
        ];
        for &(vars, root, want) in cases {
            let got = default_state_dir(env(vars), root);
            assert!(got.is_absolute(), "{got:?}");
            if !want.is_empty() {
                assert_eq!(got, PathBuf::from(want));
            }
        }
    }

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
        // A zero interval would leave the sampler without a period.
        let e = parse_yaml::<RawAgentConfig>("host: a\ninterval: 0s\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.problems, ["interval: 0s is below the minimum of 1s"]);
    }

    #[test]
    fn unknown_field_has_a_line() {
        let e = parse_yaml::<RawAgentConfig>("host: a\nintervall: 5s\n").unwrap_err();
        assert!(e.starts_with("2:1: unknown field `intervall`"), "{e}");
    }

    #[test]
    fn pool_order_is_stable_balanced_and_moves_little() {
        let pool: Vec<String> = (1..=4)
            .map(|i| format!("http://c{i}:9760/api/v1/write"))
            .collect();
        let hosts: Vec<String> = (0..4000).map(|i| format!("web-{i:04}")).collect();
        let first = |pool: &[String], h: &str| rendezvous_order(h, pool)[0].clone();
        // The same order whatever the order of the list.
        let mut reversed = pool.clone();
        reversed.reverse();
        for h in &hosts[..100] {
            assert_eq!(rendezvous_order(h, &pool), rendezvous_order(h, &reversed));
        }
        // Balanced: each member first for about a quarter of the hosts.
        for m in &pool {
            let n = hosts.iter().filter(|h| &first(&pool, h) == m).count();
            assert!((850..=1150).contains(&n), "{m}: {n} of 4000");
        }
        // Removing a member moves only its hosts, each to its second choice.
        let smaller: Vec<String> = pool[..3].to_vec();
        for h in &hosts {
            let before = rendezvous_order(h, &pool);
            let after = first(&smaller, h);
            if before[0] == pool[3] {
                assert_eq!(after, before[1]);
            } else {
                assert_eq!(after, before[0], "{h} moved");
            }
        }
    }

    #[test]
    fn pool_excludes_url_and_is_ranked_into_urls() {
        let raw: RawAgentConfig = parse_yaml(
            "host: db-7\ncollector: {pool: [\"http://b:1/w\", \"http://a:1/w\", \"http://b:1/w\", \"ftp://c\"], url: \"http://x/w\"}\n",
        )
        .unwrap();
        let e = raw.validate().unwrap_err().to_string();
        assert!(e.contains("`pool` replaces `url`"), "{e}");
        // A URL that cannot be used is told without its credentials.
        let raw: RawAgentConfig =
            parse_yaml("host: a\ncollector: {url: \"http://u:SECRET@c:99999/api/v1/write\"}\n")
                .unwrap();
        let e2 = raw.validate().unwrap_err().to_string();
        assert_eq!(
            e2,
            "collector.url: \"http://c:99999/…\" is not a valid URL (invalid port number)"
        );
        assert!(e.contains("\"http://b:1/w\" is listed twice"), "{e}");
        assert!(
            e.contains("collector.pool: \"ftp://c\" must be http(s)"),
            "{e}"
        );
        let raw: RawAgentConfig =
            parse_yaml("host: db-7\ncollector: {pool: [\"http://b:1/w\", \"http://a:1/w\"]}\n")
                .unwrap();
        let c = raw.validate().unwrap();
        let pool = ["http://b:1/w".to_string(), "http://a:1/w".to_string()];
        assert_eq!(c.shipping.urls, rendezvous_order("db-7", &pool));
    }
}
