//! Probe definitions of the agent's configuration: what to check, how often, with which limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tocsin_model::{is_valid_label_name, Labels};

use crate::{parse_duration, Problems, RawSecret, Secret};

/// Probe kinds, the value of `kind`.
pub const KINDS: &[&str] = &[
    "http", "tcp", "icmp", "dns", "command", "process", "redis", "postgres", "mysql", "systemd",
    "file",
];

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Unique name: the `probe` label.
    pub name: String,
    /// One of http, tcp, icmp, dns, command, process, redis, postgres, mysql, systemd, file.
    pub kind: String,
    /// What is checked: a URL for http, HOST:PORT for tcp, redis and postgres; a name for
    /// process and command probes (defaults to the probe name).
    pub target: Option<String>,
    /// Time between runs (default: the agent's interval).
    pub interval: Option<String>,
    /// Time limit of one run, always enforced (default 5s, at most the interval).
    pub timeout: Option<String>,
    /// Extra labels on every series of this probe.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub http: Option<RawHttp>,
    pub tcp: Option<RawTcp>,
    pub icmp: Option<RawIcmp>,
    pub dns: Option<RawDns>,
    pub command: Option<RawCommand>,
    pub process: Option<RawProcess>,
    pub redis: Option<RawRedis>,
    pub postgres: Option<RawPostgres>,
    pub mysql: Option<RawMysql>,
    pub file: Option<RawFile>,
}

/// A file probe: `target` is a path whose last component may hold wildcards (`*`, `?`), e.g.
/// `/backup/db/*.dump`; the newest matching file is judged.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// The newest matching file must be younger than this (e.g. "26h").
    pub max_age: Option<String>,
    /// ... and at least this big (e.g. "1GB").
    pub min_size: Option<String>,
    /// At least this many files must match (default 1).
    pub min_count: Option<u32>,
}

/// A systemd unit probe has no section: `target` is the unit name (e.g. `nginx.service`).
pub const SYSTEMCTL: &str = "systemctl";

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Default GET.
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Accepted status codes (default: any 2xx).
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Regex the body must match.
    pub body_matches: Option<String>,
    /// Regex the body must not match.
    pub body_not_matches: Option<String>,
    /// The body must be JSON holding these values, by dotted path (`status: UP`,
    /// `checks.db.status: ok`); compared as text.
    #[serde(default)]
    pub expect_json: BTreeMap<String, String>,
    /// Follow up to 10 redirects (default false: a 3xx is judged as is).
    #[serde(default)]
    pub follow_redirects: bool,
    /// `any` (default), `ipv4` or `ipv6`.
    pub ip: Option<String>,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Additional CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (expiry is still reported). Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Name to verify instead of the target's host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    /// Bytes to send after connecting (escapes \r \n allowed).
    pub send: Option<String>,
    /// Regex the received data must match.
    pub expect: Option<String>,
    /// Speak TLS after connecting; reports certificate expiry.
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub tls_config: RawTls,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIcmp {
    /// Echo requests per run (default 3).
    pub count: Option<u32>,
    /// Time between two requests of a run (default 100ms).
    pub spacing: Option<String>,
    /// `any` (default), `ipv4` or `ipv6`.
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Resolver to ask, HOST:PORT (default: the first nameserver of /etc/resolv.conf, port 53).
    pub server: Option<String>,
    /// A, AAAA, CNAME, MX, NS, TXT, PTR or SOA (default A).
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    /// Answers that must all be present (addresses, names, or text).
    #[serde(default)]
    pub expect: Vec<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    /// Program and arguments, run without a shell.
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    /// Exact process name (`/proc/PID/comm`).
    pub name: Option<String>,
    /// Regex over the full command line.
    pub cmdline: Option<String>,
    /// Fewest matching processes for success (default 1).
    pub min_count: Option<u32>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub username: Option<String>,
    pub password: Option<RawSecret>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// Default postgres.
    pub user: Option<String>,
    pub password: Option<RawSecret>,
    /// Default: the user name.
    pub dbname: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMysql {
    /// Default root.
    pub user: Option<String>,
    pub password: Option<RawSecret>,
}

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub name: String,
    pub target: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub labels: Labels,
    pub spec: ProbeSpec,
}

impl ProbeConfig {
    pub fn kind(&self) -> &'static str {
        match self.spec {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Icmp(_) => "icmp",
            ProbeSpec::Dns(_) => "dns",
            ProbeSpec::Command(_) => "command",
            ProbeSpec::Process(_) => "process",
            ProbeSpec::Redis(_) => "redis",
            ProbeSpec::Postgres(_) => "postgres",
            ProbeSpec::Mysql(_) => "mysql",
            ProbeSpec::Systemd(_) => "systemd",
            ProbeSpec::File(_) => "file",
        }
    }
}

#[derive(Debug, Clone)]
pub enum ProbeSpec {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Icmp(IcmpProbe),
    Dns(DnsProbe),
    Command(CommandProbe),
    Process(ProcessProbe),
    Redis(RedisProbe),
    Postgres(PostgresProbe),
    Mysql(MysqlProbe),
    Systemd(SystemdProbe),
    File(FileProbe),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpChoice {
    Any,
    V4,
    V6,
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub expect_status: Vec<u16>,
    pub body_matches: Option<regex::Regex>,
    pub body_not_matches: Option<regex::Regex>,
    pub expect_json: Vec<(String, String)>,
    pub follow_redirects: bool,
    pub ip: IpChoice,
    pub tls: TlsOptions,
}

#[derive(Debug, Clone)]
pub struct TcpProbe {
    pub address: String,
    pub send: Option<Vec<u8>>,
    pub expect: Option<regex::bytes::Regex>,
    pub tls: Option<TlsOptions>,
}

#[derive(Debug, Clone)]
pub struct IcmpProbe {
    pub host: String,
    pub count: u32,
    pub spacing: Duration,
    pub ip: IpChoice,
}

/// Query types the DNS probe asks.
pub const DNS_TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

#[derive(Debug, Clone)]
pub struct DnsProbe {
    pub name: String,
    pub server: String,
    pub qtype: u16,
    pub expect: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CommandProbe {
    pub argv: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ProcessMatch {
    Name(String),
    Cmdline(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct ProcessProbe {
    pub matcher: ProcessMatch,
    pub min_count: u32,
}

#[derive(Debug, Clone)]
pub struct RedisProbe {
    pub address: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct PostgresProbe {
    pub address: String,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
}

#[derive(Debug, Clone)]
pub struct SystemdProbe {
    pub unit: String,
}

/// Files matching a pattern: the directory is literal, the file name may hold `*` and `?`.
#[derive(Debug, Clone)]
pub struct FileProbe {
    pub dir: PathBuf,
    pub pattern: regex::Regex,
    pub max_age: Option<Duration>,
    pub min_size: Option<u64>,
    pub min_count: u32,
}

/// Splits an absolute path into its directory and a pattern for the file name (`*`, `?`);
/// wildcards are allowed in the last component only.
pub fn parse_glob(target: &str) -> Result<(PathBuf, regex::Regex), String> {
    let path = std::path::Path::new(target);
    if !path.is_absolute() {
        return Err(format!("target {target:?} must be an absolute path"));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("target {target:?} names no file"));
    };
    if dir.to_str().is_some_and(|d| d.contains(['*', '?', '['])) {
        return Err(format!(
            "target {target:?}: wildcards are allowed in the file name only"
        ));
    }
    let mut re = String::from("^");
    for c in name.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    let pattern = regex::Regex::new(&re).map_err(|e| format!("target {target:?}: {e}"))?;
    Ok((dir.to_path_buf(), pattern))
}

#[derive(Debug, Clone)]
pub struct MysqlProbe {
    pub address: String,
    pub user: String,
    pub password: Option<Secret>,
}

fn ip_choice(p: &mut Problems, at: &str, field: &str, v: Option<&str>) -> IpChoice {
    match v {
        None | Some("any") => IpChoice::Any,
        Some("ipv4") => IpChoice::V4,
        Some("ipv6") => IpChoice::V6,
        Some(o) => {
            p.push(format!("{at}: {field} {o:?} must be any, ipv4 or ipv6"));
            IpChoice::Any
        }
    }
}

/// The first `nameserver` of /etc/resolv.conf, port 53 (127.0.0.1:53 when none).
fn system_resolver() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .find_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        })
        .map(|ip| std::net::SocketAddr::new(ip, 53).to_string())
        .unwrap_or_else(|| "127.0.0.1:53".into())
}

fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\r", "\r")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
        .into_bytes()
}

fn tls(p: &mut Problems, at: &str, t: RawTls) -> TlsOptions {
    if t.cert_file.is_some() != t.key_file.is_some() {
        p.push(format!("{at}: tls: cert_file and key_file go together"));
    }
    for f in [&t.ca_file, &t.cert_file, &t.key_file]
        .into_iter()
        .flatten()
    {
        if !f.exists() {
            p.push(format!("{at}: tls: {} does not exist", f.display()));
        }
    }
    TlsOptions {
        ca_file: t.ca_file,
        cert_file: t.cert_file,
        key_file: t.key_file,
        insecure_skip_verify: t.insecure_skip_verify,
        server_name: t.server_name,
    }
}

fn host_port(p: &mut Problems, at: &str, target: &Option<String>) -> String {
    match target {
        Some(t)
            if t.rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok()) =>
        {
            t.clone()
        }
        Some(t) => {
            p.push(format!("{at}: target {t:?} must be HOST:PORT"));
            String::new()
        }
        None => {
            p.push(format!("{at}: target (HOST:PORT) is required"));
            String::new()
        }
    }
}

/// Validates the probe list; `default_interval` is the agent's sampling interval.
pub(crate) fn validate(
    p: &mut Problems,
    raw: Vec<RawProbe>,
    default_interval: Duration,
) -> Vec<ProbeConfig> {
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("probes[{i}] ({:?})", r.name);
        if r.name.is_empty() {
            p.push(format!("{at}: name must not be empty"));
        }
        if !names.insert(r.name.clone()) {
            p.push(format!("{at}: duplicate probe name"));
        }
        if !KINDS.contains(&r.kind.as_str()) {
            p.push(format!(
                "{at}: unknown kind {:?}, expected one of {}",
                r.kind,
                KINDS.join(", ")
            ));
            continue;
        }
        let sections = [
            ("http", r.http.is_some()),
            ("tcp", r.tcp.is_some()),
            ("icmp", r.icmp.is_some()),
            ("dns", r.dns.is_some()),
            ("command", r.command.is_some()),
            ("process", r.process.is_some()),
            ("redis", r.redis.is_some()),
            ("postgres", r.postgres.is_some()),
            ("mysql", r.mysql.is_some()),
            ("file", r.file.is_some()),
        ];
        for (s, present) in sections {
            if present && s != r.kind {
                p.push(format!(
                    "{at}: section `{s}` does not apply to kind {:?}",
                    r.kind
                ));
            }
        }
        let interval = match &r.interval {
            Some(s) => p
                .take(&format!("{at}: interval"), parse_duration(s))
                .unwrap_or(default_interval),
            None => default_interval,
        };
        if interval < Duration::from_millis(100) {
            p.push(format!("{at}: interval must be at least 100ms"));
        }
        let timeout = match &r.timeout {
            Some(s) => p
                .take(&format!("{at}: timeout"), parse_duration(s))
                .unwrap_or_default(),
            None => Duration::from_secs(5).min(interval),
        };
        if timeout.is_zero() {
            p.push(format!("{at}: timeout must be above zero"));
        }
        let mut labels = Labels::new();
        for (k, v) in &r.labels {
            if !is_valid_label_name(k) || k.starts_with("__") {
                p.push(format!("{at}: labels: invalid label name {k:?}"));
            } else if matches!(k.as_str(), "probe" | "target" | "kind" | "host") {
                p.push(format!("{at}: labels: {k:?} is set by the agent"));
            } else {
                labels.set(k.clone(), v.clone());
            }
        }
        let re = |p: &mut Problems, field: &str, s: &Option<String>| {
            s.as_ref()
                .and_then(|s| p.take(&format!("{at}: {field}"), regex::Regex::new(s)))
        };
        let spec = match r.kind.as_str() {
            "http" => {
                let h = r.http.unwrap_or_default();
                let url = r.target.clone().unwrap_or_default();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    p.push(format!(
                        "{at}: target {url:?} must be an http:// or https:// URL"
                    ));
                }
                let ip = ip_choice(p, &at, "http.ip", h.ip.as_deref());
                let method = h
                    .method
                    .unwrap_or_else(|| "GET".into())
                    .to_ascii_uppercase();
                ProbeSpec::Http(HttpProbe {
                    url,
                    method,
                    headers: h.headers.into_iter().collect(),
                    body: h.body,
                    expect_status: {
                        if let Some(c) = h.expect_status.iter().find(|c| !(100..=599).contains(*c))
                        {
                            p.push(format!(
                                "{at}: http.expect_status {c} is not an HTTP status (100 to 599)"
                            ));
                        }
                        h.expect_status
                    },
                    body_matches: re(p, "http.body_matches", &h.body_matches),
                    body_not_matches: re(p, "http.body_not_matches", &h.body_not_matches),
                    expect_json: h.expect_json.into_iter().collect(),
                    follow_redirects: h.follow_redirects,
                    ip,
                    tls: tls(p, &at, h.tls),
                })
            }
            "tcp" => {
                let t = r.tcp.unwrap_or_default();
                let expect = t.expect.as_ref().and_then(|s| {
                    p.take(&format!("{at}: tcp.expect"), regex::bytes::Regex::new(s))
                });
                ProbeSpec::Tcp(TcpProbe {
                    address: host_port(p, &at, &r.target),
                    send: t.send.as_deref().map(unescape),
                    expect,
                    tls: t.tls.then(|| tls(p, &at, t.tls_config)),
                })
            }
            "icmp" => {
                let c = r.icmp.unwrap_or_default();
                let host = match &r.target {
                    Some(t) if !t.is_empty() => t.clone(),
                    _ => {
                        p.push(format!("{at}: target (a host name or address) is required"));
                        String::new()
                    }
                };
                let count = c.count.unwrap_or(3);
                if !(1..=100).contains(&count) {
                    p.push(format!("{at}: icmp.count must be 1 to 100"));
                }
                let spacing = match &c.spacing {
                    Some(s) => p
                        .take(&format!("{at}: icmp.spacing"), parse_duration(s))
                        .unwrap_or_default(),
                    None => Duration::from_millis(100),
                };
                ProbeSpec::Icmp(IcmpProbe {
                    host,
                    count,
                    spacing,
                    ip: ip_choice(p, &at, "icmp.ip", c.ip.as_deref()),
                })
            }
            "dns" => {
                let d = r.dns.unwrap_or_default();
                let name = r.target.clone().unwrap_or_default();
                if name.is_empty() {
                    p.push(format!("{at}: target (the name to look up) is required"));
                }
                let t = d.qtype.as_deref().unwrap_or("A").to_ascii_uppercase();
                let qtype = match DNS_TYPES.iter().find(|(n, _)| *n == t) {
                    Some((_, v)) => *v,
                    None => {
                        p.push(format!("{at}: dns.type {t:?} is not one of A, AAAA, CNAME, MX, NS, TXT, PTR, SOA"));
                        1
                    }
                };
                let server = match d.server {
                    Some(s) if s.parse::<std::net::SocketAddr>().is_ok() => s,
                    Some(s) => match s.parse::<std::net::IpAddr>() {
                        Ok(ip) => std::net::SocketAddr::new(ip, 53).to_string(),
                        Err(_) => {
                            p.push(format!("{at}: dns.server {s:?} must be an IP address, optionally with :PORT"));
                            String::new()
                        }
                    },
                    None => system_resolver(),
                };
                ProbeSpec::Dns(DnsProbe {
                    name,
                    server,
                    qtype,
                    expect: d.expect,
                })
            }
            "command" => match r.command {
                Some(c) if !c.argv.is_empty() => ProbeSpec::Command(CommandProbe { argv: c.argv }),
                _ => {
                    p.push(format!(
                        "{at}: command.argv (program and arguments) is required"
                    ));
                    continue;
                }
            },
            "process" => {
                let pr = r.process.unwrap_or_default();
                let matcher = match (pr.name, &pr.cmdline) {
                    (Some(n), None) => ProcessMatch::Name(n),
                    (None, Some(_)) => match re(p, "process.cmdline", &pr.cmdline) {
                        Some(r) => ProcessMatch::Cmdline(r),
                        None => continue,
                    },
                    _ => {
                        p.push(format!(
                            "{at}: set exactly one of process.name or process.cmdline"
                        ));
                        continue;
                    }
                };
                ProbeSpec::Process(ProcessProbe {
                    matcher,
                    min_count: pr.min_count.unwrap_or(1),
                })
            }
            "redis" => {
                let rd = r.redis.unwrap_or_default();
                ProbeSpec::Redis(RedisProbe {
                    address: host_port(p, &at, &r.target),
                    username: rd.username,
                    password: rd
                        .password
                        .and_then(|s| p.take(&format!("{at}: redis.password"), s.resolve())),
                })
            }
            "postgres" => {
                let pg = r.postgres.unwrap_or_default();
                let user = pg.user.unwrap_or_else(|| "postgres".into());
                ProbeSpec::Postgres(PostgresProbe {
                    address: host_port(p, &at, &r.target),
                    dbname: pg.dbname.unwrap_or_else(|| user.clone()),
                    user,
                    password: pg
                        .password
                        .and_then(|s| p.take(&format!("{at}: postgres.password"), s.resolve())),
                })
            }
            "mysql" => {
                let m = r.mysql.unwrap_or_default();
                ProbeSpec::Mysql(MysqlProbe {
                    address: host_port(p, &at, &r.target),
                    user: m.user.unwrap_or_else(|| "root".into()),
                    password: m
                        .password
                        .and_then(|s| p.take(&format!("{at}: mysql.password"), s.resolve())),
                })
            }
            "systemd" => match &r.target {
                Some(u)
                    if !u.is_empty()
                        && !u.starts_with('-')
                        && !u.contains(|c: char| c.is_whitespace() || c.is_control()) =>
                {
                    ProbeSpec::Systemd(SystemdProbe { unit: u.clone() })
                }
                Some(u) if !u.is_empty() => {
                    p.push(format!(
                        "{at}: target {u:?} is not a unit name (no spaces, not starting with -; e.g. nginx.service)"
                    ));
                    continue;
                }
                _ => {
                    p.push(format!(
                        "{at}: target (a unit name such as nginx.service) is required"
                    ));
                    continue;
                }
            },
            "file" => {
                let f = r.file.clone().unwrap_or_default();
                let (dir, pattern) = match r
                    .target
                    .as_deref()
                    .ok_or_else(|| "target (a path such as /backup/db/*.dump) is required".into())
                    .and_then(parse_glob)
                {
                    Ok(t) => t,
                    Err(e) => {
                        p.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                ProbeSpec::File(FileProbe {
                    dir,
                    pattern,
                    max_age: f
                        .max_age
                        .and_then(|s| p.take(&format!("{at}: file.max_age"), parse_duration(&s))),
                    min_size: f.min_size.and_then(|s| {
                        p.take(&format!("{at}: file.min_size"), crate::parse_size(&s))
                    }),
                    min_count: f.min_count.unwrap_or(1),
                })
            }
            _ => unreachable!("kind checked above"),
        };
        out.push(ProbeConfig {
            target: r.target.unwrap_or_else(|| r.name.clone()),
            name: r.name,
            interval,
            timeout,
            labels,
            spec,
        });
    }
    out
}
