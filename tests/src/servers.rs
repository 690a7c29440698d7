//! Real servers for integration tests, each on a free 127.0.0.1 port, stopped when dropped:
//! Redis and PostgreSQL from Debian packages, and small HTTP(S)/TCP servers of our own.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{require_tool, wait_for};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

pub struct Server {
    pub port: u16,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-server` on a free port; `password` sets `requirepass`. `None` when not installed
/// outside CI.
pub fn redis(password: Option<&str>) -> Option<Server> {
    if !require_tool("redis-server") {
        return None;
    }
    let port = free_port();
    let mut args = vec![
        "--port".to_string(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
    ];
    if let Some(p) = password {
        args.extend(["--requirepass".into(), p.to_string()]);
    }
    let child = Command::new("redis-server")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    wait_for("redis-server to listen", Duration::from_secs(10), || {
        port_open(port).then_some(())
    });
    Some(Server {
        port,
        child,
        _dir: None,
    })
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .find(|p| p.exists());
    found.or_else(|| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Runs as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_pg(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A fresh PostgreSQL cluster (trust authentication) on a free port.
pub fn postgres() -> Option<Server> {
    let (Some(initdb), Some(pg)) = (pg_bin("initdb"), pg_bin("postgres")) else {
        require_tool("initdb");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    if is_root() {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        // The temp dir's parent must be traversable by the postgres user.
        Command::new("chmod")
            .args(["755"])
            .arg(dir.path())
            .status()
            .unwrap();
    }
    let out = as_pg(&initdb)
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let child = as_pg(&pg)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres");
    // A listening port is not enough: until recovery ends the server answers
    // "the database system is starting up". pg_isready exits 0 only once it
    // accepts sessions.
    let isready = pg_bin("pg_isready");
    wait_for(
        "postgres to accept sessions",
        Duration::from_secs(30),
        || {
            let open = port_open(port);
            match (&isready, open) {
                (_, false) => None,
                (None, true) => Some(()),
                (Some(bin), true) => Command::new(bin)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .ok()
                    .filter(|s| s.success())
                    .map(|_| ()),
            }
        },
    );
    Some(Server {
        port,
        child,
        _dir: Some(dir),
    })
}

/// A self-signed certificate for `localhost`/127.0.0.1 valid until `not_after` (Unix seconds).
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: i64,
}

pub fn self_signed(not_after: i64) -> SelfSigned {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = time_from_unix(not_after);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    }
}

fn time_from_unix(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).expect("valid time")
}

/// How the test HTTP server answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// 200 with body "all good".
    Ok,
    /// 500 with body "error".
    Fail,
    /// Accept and never answer.
    Hang,
    /// 200, after 1.5 s.
    Slow,
    /// 500 for every third request, 200 otherwise.
    FailEveryThird,
}

/// A tiny HTTP/1.1 server (optionally TLS) whose behaviour can be switched while it runs;
/// `GET /old` always redirects to `/health`.
pub struct HttpServer {
    pub port: u16,
    mode: Arc<AtomicU16>,
    rt: Option<tokio::runtime::Runtime>,
}

impl HttpServer {
    pub fn start(tls: Option<&SelfSigned>) -> HttpServer {
        Self::start_on(0, tls)
    }

    pub fn start_on(port: u16, tls: Option<&SelfSigned>) -> HttpServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind");
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU16::new(0));
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let acceptor = tls.map(|t| {
            let certs = rustls_pemfile_certs(&t.cert_pem);
            use rustls::pki_types::pem::PemObject;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(t.key_pem.as_bytes())
                .expect("key");
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server cert");
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        let m = Arc::clone(&mode);
        let n = Arc::clone(&served);
        rt.spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let m = Arc::clone(&m);
                let n = Arc::clone(&n);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(s).await {
                                serve(s, &m, &n).await;
                            }
                        }
                        None => serve(s, &m, &n).await,
                    }
                });
            }
        });
        HttpServer {
            port,
            mode,
            rt: Some(rt),
        }
    }

    pub fn set(&self, m: Mode) {
        self.mode.store(m as u16, Ordering::SeqCst);
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/health", self.port)
    }

    /// Stops listening and closes the port.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certs")
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    mode: &AtomicU16,
    served: &std::sync::atomic::AtomicU64,
) {
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    if got.starts_with(b"GET /old ") {
        let resp = "HTTP/1.1 302 Found\r\nLocation: /health\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
        return;
    }
    let m = mode.load(Ordering::SeqCst);
    let nth = served.fetch_add(1, Ordering::SeqCst) + 1;
    let (status, body) = match m {
        0 => ("200 OK", "all good"),
        1 => ("500 Internal Server Error", "error"),
        3 => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ("200 OK", "all good, slowly")
        }
        4 if nth.is_multiple_of(3) => ("500 Internal Server Error", "error"),
        4 => ("200 OK", "all good"),
        _ => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// `dnsmasq` answering `svc.tocsin.test` with 10.9.8.7 (and NXDOMAIN for other names in
/// `tocsin.test`) on a free port.
pub fn dnsmasq() -> Option<Server> {
    if !require_tool("dnsmasq") {
        return None;
    }
    let port = free_port();
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file=",
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--address=/svc.tocsin.test/10.9.8.7",
            "--local=/tocsin.test/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    wait_for("dnsmasq to listen", Duration::from_secs(10), || {
        port_open(port).then_some(())
    });
    Some(Server {
        port,
        child,
        _dir: None,
    })
}

/// A fresh MariaDB server on a free port, with `root` (no password) and `probe` / `pw`.
pub fn mariadb() -> Option<Server> {
    mariadb_with(&["--skip-log-bin"])
}

/// As `mariadb`, with these server options instead of `--skip-log-bin` (e.g. a primary's
/// `--log-bin --server-id=1`).
pub fn mariadb_with(options: &[&str]) -> Option<Server> {
    if !require_tool("mariadbd") || !require_tool("mariadb-install-db") {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Its own directory for temporary tables: with the shared /tmp, two servers bootstrapped at
    // once have failed ("Could not remove temporary table '/tmp/#sql-temptable-…'").
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmpdir");
    let user = if is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap_or_default()
    };
    let out = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg(format!("--user={user}"))
        .output()
        .expect("run mariadb-install-db");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let sock = dir.path().join("sock");
    let child = Command::new("mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg(format!("--user={user}"))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", sock.display()))
        .args(["--bind-address=127.0.0.1", "--innodb-buffer-pool-size=16M"])
        .args(options)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mariadbd");
    wait_for("mariadbd to listen", Duration::from_secs(30), || {
        port_open(port).then_some(())
    });
    mariadb_sql(port, "CREATE USER 'probe'@'%' IDENTIFIED BY 'pw'");
    Some(Server {
        port,
        child,
        _dir: Some(dir),
    })
}

/// Runs SQL as root on the MariaDB server at `port`; its output.
pub fn mariadb_sql(port: u16, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "-e",
        ])
        .arg(sql)
        .output()
        .expect("run mariadb client");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Prometheus Alertmanager (Debian's prometheus-alertmanager) on a free port, clustering off,
/// with a receiver that notifies nobody.
pub fn alertmanager() -> Option<Server> {
    alertmanager_with("route:\n  receiver: sink\nreceivers:\n  - name: sink\n")
}

/// As `alertmanager`, with the given configuration (YAML).
pub fn alertmanager_with(config: &str) -> Option<Server> {
    let bin = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    let Some(bin) = bin else {
        require_tool("prometheus-alertmanager");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("am.yml");
    std::fs::write(&cfg, config).expect("write config");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    wait_for("alertmanager to listen", Duration::from_secs(20), || {
        port_open(port).then_some(())
    });
    Some(Server {
        port,
        child,
        _dir: Some(dir),
    })
}

/// A Prometheus (Debian's package) on a free port with its remote-write receiver on and
/// `scrape_configs` (YAML list items, may be empty) in its configuration.
pub fn prometheus(scrape_configs: &str) -> Option<Server> {
    prometheus_with(
        "  scrape_interval: 1s\n  evaluation_interval: 1s\n",
        scrape_configs,
    )
}

/// As [`prometheus`], with `global` (YAML map items) as its global settings.
pub fn prometheus_with(global: &str, scrape_configs: &str) -> Option<Server> {
    let found = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        require_tool("prometheus");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n{global}scrape_configs:\n{scrape_configs}"),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    wait_for("prometheus to be ready", Duration::from_secs(30), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/-/ready"))
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    });
    Some(Server {
        port,
        child,
        _dir: Some(dir),
    })
}

/// Starts `tool` with `args` (its output discarded), listening on `port`, and waits until
/// `GET ready` answers with success; `dir` lives as long as the server.
fn start_ready(
    tool: &str,
    args: &[String],
    port: u16,
    ready: &str,
    dir: Option<tempfile::TempDir>,
) -> Server {
    let child = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {tool}: {e}"));
    wait_for(
        &format!("{tool} to be ready"),
        Duration::from_secs(30),
        || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}{ready}"))
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        },
    );
    Server {
        port,
        child,
        _dir: dir,
    }
}

/// Debian's `prometheus-node-exporter` with its default collectors on a free port, ready once
/// its `/metrics` answers.
pub fn node_exporter() -> Option<Server> {
    let tool = "prometheus-node-exporter";
    if !crate::require_tool(tool) {
        return None;
    }
    let port = free_port();
    let args = [format!("--web.listen-address=127.0.0.1:{port}")];
    Some(start_ready(tool, &args, port, "/metrics", None))
}

/// Debian's `prometheus-blackbox-exporter` on a free port with `modules` (the YAML under
/// `modules:`); probe with `GET /probe?module=M&target=T`.
pub fn blackbox_exporter(modules: &str) -> Option<Server> {
    let tool = "prometheus-blackbox-exporter";
    if !crate::require_tool(tool) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("blackbox.yml");
    std::fs::write(&cfg, format!("modules:\n{modules}")).expect("write blackbox.yml");
    let port = free_port();
    let args = [
        format!("--config.file={}", cfg.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    Some(start_ready(tool, &args, port, "/-/healthy", Some(dir)))
}

/// A VictoriaMetrics single-node server (Debian's `victoria-metrics`) on a free port, its
/// remote-write receiver at `/api/v1/write`; what it has taken is queryable once flushed from
/// its buffers (about a second; no latency offset).
pub fn victoriametrics() -> Option<Server> {
    let tool = "victoria-metrics";
    if !crate::require_tool(tool) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let args = [
        format!("-storageDataPath={}", dir.path().join("data").display()),
        format!("-httpListenAddr=127.0.0.1:{port}"),
        "-search.latencyOffset=0s".to_string(),
    ];
    Some(start_ready(tool, &args, port, "/health", Some(dir)))
}

/// A real SMTP server (Python's aiosmtpd) on a free port, delivering into a maildir; returns
/// the server and the maildir's `new/` folder.
pub fn smtp() -> Option<(Server, PathBuf)> {
    let has = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "aiosmtpd is required in CI (pip install it in .ci/run)"
        );
        eprintln!("SKIPPED: python3 module aiosmtpd is not installed");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("mail");
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    wait_for("aiosmtpd to listen", Duration::from_secs(20), || {
        port_open(port).then_some(())
    });
    Some((
        Server {
            port,
            child,
            _dir: Some(dir),
        },
        maildir.join("new"),
    ))
}
