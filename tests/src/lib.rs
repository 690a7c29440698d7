//! Helpers for end-to-end tests: start the real binaries on free ports with temp dirs, a
//! recording webhook receiver, and waiting on conditions with deadlines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod servers;

/// End-to-end tests share two cores: run them one at a time so timings mean something.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Path of a workspace binary, built by `cargo test --workspace` (the agent and collector
/// packages have integration tests of their own, which makes cargo build the binaries).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --workspace`) first",
        p.display()
    );
    p
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running binary; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub stderr_path: PathBuf,
}

/// Whether an agent's arguments name its state directory, on the command line or in its
/// configuration file.
fn agent_has_state_dir(args: &[String]) -> bool {
    args.iter().any(|a| a == "--state-dir")
        || args
            .windows(2)
            .filter(|w| w[0] == "--config" || w[0] == "-c")
            .any(|w| {
                std::fs::read_to_string(&w[1])
                    .is_ok_and(|t| t.lines().any(|l| l.starts_with("state_dir:")))
            })
}

impl Proc {
    /// Starts `bin` with `args`; its stderr goes to `log`; waits for the "listening on" line.
    pub fn start(bin: &str, args: &[&str], log: &Path) -> Proc {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if bin == "tocsin-agent" && !agent_has_state_dir(&args) {
            // Agents that share a state directory refuse to start: each gets its own.
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = log.with_extension(format!("state-{n}"));
            args.push("--state-dir".into());
            args.push(dir.display().to_string());
        }
        let mut child = Command::new(binary(bin))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("TOCSIN_LOG", "info,tocsin_collector=debug")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{bin} did not start; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        let addr = line
            .rsplit("://")
            .next()
            .expect("listening line")
            .trim()
            .to_string();
        Proc {
            child,
            addr,
            stderr_path: log.to_path_buf(),
        }
    }

    /// Runs `tocsin-collector ARGS --url <this collector> [--token TOKEN]`, which must succeed;
    /// returns what it printed.
    pub fn cli(&self, args: &[&str], token: Option<&str>) -> String {
        let mut cmd = Command::new(binary("tocsin-collector"));
        cmd.args(args).arg("--url").arg(self.url(""));
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let out = cmd.output().expect("run tocsin-collector");
        assert!(
            out.status.success(),
            "tocsin-collector {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// POSTs `series` to this collector's remote-write endpoint as a remote-write 1.0 body,
    /// with `headers` added (e.g. `("Authorization", "Bearer …")`).
    pub fn remote_write(
        &self,
        series: &[tocsin_model::SeriesSamples],
        headers: &[(&str, &str)],
    ) -> reqwest::blocking::Response {
        let mut r = reqwest::blocking::Client::new()
            .post(self.url("/api/v1/write"))
            .header("Content-Type", tocsin_wire::CONTENT_TYPE)
            .header("Content-Encoding", tocsin_wire::CONTENT_ENCODING)
            .body(tocsin_wire::encode(&tocsin_wire::to_request(series)));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().expect("POST /api/v1/write")
    }

    /// The collector's current alerts (`GET /api/v1/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        let v: Value = reqwest::blocking::get(self.url("/api/v1/alerts"))
            .and_then(|r| r.json())
            .expect("GET /api/v1/alerts");
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < end, "process did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the soft file size limit (RLIMIT_FSIZE) of a running process, with prlimit(1): past
/// it every write fails as on a full disk (`"1"`), `"unlimited"` lifts it.
pub fn set_file_size_limit(p: &Proc, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &p.child.id().to_string(),
            &format!("--fsize={limit}:"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={limit}");
}

/// The value of one series in a Prometheus text exposition at `url`, 0 when absent.
pub fn metric(url: &str, series: &str) -> f64 {
    let text = reqwest::blocking::get(url)
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Serves `app` on a free 127.0.0.1 port from a runtime of its own (kept alive by the caller).
pub fn serve(app: axum::Router) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    serve_on(0, app)
}

/// Serves `app` on 127.0.0.1:`port` (0: any free port).
pub fn serve_on(port: u16, app: axum::Router) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move { axum::serve(listener, app).await });
    (addr, rt)
}

/// A webhook receiver on 127.0.0.1 that records every JSON body with its arrival time.
pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<(Instant, Value)>>>,
    ids: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl Webhook {
    pub fn start() -> Webhook {
        Webhook::start_on(0)
    }

    /// A webhook on a given port, e.g. one a collector was told about while it was down.
    pub fn start_on(port: u16) -> Webhook {
        let received: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let (rec, ids2) = (Arc::clone(&received), Arc::clone(&ids));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (rec, ids) = (Arc::clone(&rec), Arc::clone(&ids2));
                    async move {
                        let v: Value = serde_json::from_slice(&body).expect("webhook body is JSON");
                        let id = headers
                            .get("x-tocsin-notification-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        ids.lock().unwrap().push(id);
                        rec.lock().unwrap().push((Instant::now(), v));
                        "ok"
                    }
                },
            ),
        );
        let (addr, rt) = serve_on(port, app);
        Webhook {
            url: format!("http://{addr}/hook"),
            received,
            ids,
            _rt: rt,
        }
    }

    /// The `X-Tocsin-Notification-Id` of every notification so far.
    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    pub fn all(&self) -> Vec<(Instant, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// (event, level) of every notification so far, e.g. `("firing", "warning")`.
    pub fn events(&self) -> Vec<(String, String)> {
        self.all().iter().map(|(_, v)| event_of(v)).collect()
    }

    /// Waits for the `n`-th notification (1-based) and returns its arrival time and body.
    pub fn wait_nth(&self, n: usize, timeout: Duration) -> (Instant, Value) {
        wait_for(&format!("webhook notification #{n}"), timeout, || {
            self.all().get(n - 1).cloned()
        })
    }
}

/// The `tocsin.event` and alert level of one notification body.
fn event_of(v: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        text(&v["tocsin"]["event"]),
        text(&v["alerts"][0]["labels"]["level"]),
    )
}

/// Runs `promtool check metrics` on an exposition; the error holds promtool's complaints.
pub fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// As [`promtool_check`], tolerating only the style lint node_exporter's own memory and
/// netstat names (`node_memory_MemTotal_bytes`, `node_netstat_Tcp_RetransSegs`, kept for
/// compatibility) draw: a syntax error, a duplicate family or any other lint fails.
pub fn promtool_check_node_names(text: &str) -> Result<(), String> {
    promtool_check(text).or_else(|e| {
        let other: Vec<&str> = e
            .lines()
            .filter(|l| {
                !(l.starts_with("node_memory_") || l.starts_with("node_netstat_"))
                    || !l.contains("'snake_case'")
            })
            .collect();
        if other.is_empty() {
            Ok(())
        } else {
            Err(other.join("\n"))
        }
    })
}

/// Writes a textfile atomically (write + rename), as node_exporter's docs recommend.
pub fn write_textfile(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).expect("write textfile");
    std::fs::rename(&tmp, dir.join(name)).expect("rename textfile");
}

/// Whether a tool is on PATH. In CI a missing tool is a failure, elsewhere a loud skip.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required in CI (apt-get install it in .ci/run)"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// A temp directory, a recording webhook, and the collector and agent started against them.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub hook: Webhook,
}

impl Stack {
    /// Writes `collector.yaml` sending every notification to the webhook, plus `extra` YAML.
    pub fn new(extra: &str) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let hook = Webhook::start();
        std::fs::write(
            dir.path().join("collector.yaml"),
            format!(
                "receivers:\n  - name: hook\n    webhook: {{ url: \"{}\", timeout: 2s }}\n{extra}",
                hook.url
            ),
        )
        .expect("write collector.yaml");
        Stack { dir, hook }
    }

    /// As `new`, plus an empty `rules/` directory and a textfile directory `tf/` holding
    /// `x.prom` with `textfile` in it.
    pub fn with_textfile(extra: &str, textfile: &str) -> Stack {
        let s = Stack::new(extra);
        for d in ["rules", "tf"] {
            std::fs::create_dir(s.dir.path().join(d)).expect("mkdir");
        }
        write_textfile(&s.dir.path().join("tf"), "x.prom", textfile);
        s
    }

    /// As `new`, plus an empty `rules/` directory and the collector on 127.0.0.1 with it.
    pub fn with_collector(extra: &str) -> (Stack, Proc) {
        let s = Stack::new(extra);
        std::fs::create_dir(s.dir.path().join("rules")).expect("mkdir rules");
        let c = s.collector("127.0.0.1:0", &s.p("rules"));
        (s, c)
    }

    pub fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// The collector on `listen`, data under `data/`, rules from `rules`.
    pub fn collector(&self, listen: &str, rules: &str) -> Proc {
        Proc::start(
            "tocsin-collector",
            &[
                "--config",
                &self.p("collector.yaml"),
                "--listen",
                listen,
                "--data-dir",
                &self.p("data"),
                "--rules",
                rules,
            ],
            Path::new(&self.p("collector.log")),
        )
    }

    /// Writes `agent.yaml` for the dashboard tests: host `dash-host` at 1 s, textfiles from
    /// `tf/`, an HTTPS probe of `https_url` and an ICMP probe of 127.0.0.1 for service `shop`,
    /// then `extra` (YAML); returns its path.
    pub fn dashboard_agent_config(&self, https_url: &str, extra: &str) -> String {
        let path = self.p("agent.yaml");
        std::fs::write(
            &path,
            format!(
                "host: dash-host
interval: 1s
textfile_dir: {}
state_dir: {}
probes:
  - {{ name: shop-web, kind: http, target: \"{https_url}\", interval: 1s, timeout: 1s, labels: {{ service: shop }}, http: {{ tls: {{ insecure_skip_verify: true }} }} }}
  - {{ name: gateway, kind: icmp, target: 127.0.0.1, interval: 1s, timeout: 1s, labels: {{ service: shop }}, icmp: {{ count: 2, spacing: 50ms }} }}
{extra}",
                self.p("tf"),
                self.p("agent-state"),
            ),
        )
        .expect("write agent.yaml");
        path
    }

    /// An agent writing to `collector`, with its own /metrics on a free port, plus `args`.
    pub fn agent(&self, collector: &Proc, args: &[&str]) -> Proc {
        let url = collector.url("/api/v1/write");
        let mut all = vec!["--collector", &url, "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Proc::start("tocsin-agent", &all, Path::new(&self.p("agent.log")))
    }

    /// Stored samples of every series matching `pred`, from the stack's database (the
    /// collector must be stopped).
    pub fn stored(
        &self,
        pred: impl Fn(&tocsin_model::Labels) -> bool,
    ) -> Vec<Vec<tocsin_model::Sample>> {
        let store = tocsin_store::Store::open(
            &self.dir.path().join("data/tocsin.db"),
            tocsin_store::StoreOptions::default(),
        )
        .expect("open the stack's store");
        store
            .select(pred)
            .iter()
            .map(|(id, _)| store.query(*id, i64::MIN, i64::MAX).expect("query"))
            .collect()
    }

    /// Notifications of one alert: arrival, event and level.
    pub fn events(&self, alertname: &str) -> Vec<(Instant, String, String)> {
        self.hook
            .all()
            .into_iter()
            .filter(|(_, v)| v["alerts"][0]["labels"]["alertname"] == alertname)
            .map(|(t, v)| {
                let (event, level) = event_of(&v);
                (t, event, level)
            })
            .collect()
    }

    pub fn wait_event(
        &self,
        alertname: &str,
        n: usize,
        timeout: Duration,
    ) -> (Instant, String, String) {
        wait_for(&format!("{alertname} notification #{n}"), timeout, || {
            self.events(alertname).get(n - 1).cloned()
        })
    }
}

/// Every query of the shipped dashboards, Grafana's variables filled in for `host` and the
/// dynamic rule `rule`: each panel target's expression, and for each query variable
/// `label_values(SELECTOR, LABEL)` the query `group by (LABEL) (SELECTOR)`. Checks on the way
/// that every panel has a description and uses the `${datasource}` variable.
pub fn dashboard_queries(host: &str, rule: &str) -> Vec<(String, String)> {
    let subst = |q: &str| {
        q.replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$host", host)
            .replace("$probe", ".+")
            .replace("$rule", rule)
            .replace("$service", ".+")
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut queries: Vec<(String, String)> = Vec::new();
    for name in [
        "host-overview.json",
        "probes.json",
        "alerts-incidents.json",
        "baselines.json",
        "service-levels.json",
    ] {
        let board: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).expect("dashboard"))
                .expect("dashboard JSON");
        for v in board["templating"]["list"].as_array().expect("templating") {
            if v["type"] == "query" {
                let def = v["definition"].as_str().expect("definition");
                let inner = def
                    .trim_start_matches("label_values(")
                    .trim_end_matches(')');
                let (sel, label) = inner
                    .rsplit_once(',')
                    .expect("label_values(SELECTOR, LABEL)");
                queries.push((
                    format!("{name} variable {}", v["name"]),
                    format!("group by ({}) ({})", label.trim(), subst(sel.trim())),
                ));
            }
        }
        for p in board["panels"].as_array().expect("panels") {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}: panel {} has no description",
                p["title"]
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}");
            for t in p["targets"].as_array().expect("targets") {
                queries.push((
                    format!("{name} panel {:?}", p["title"].as_str().unwrap_or("")),
                    subst(t["expr"].as_str().expect("expr")),
                ));
            }
        }
    }
    queries
}

/// A child process started some other way than `Proc` (under `unshare`, `faketime`, in a
/// network namespace), killed and reaped when the test ends, however it ends.
/// A child killed when dropped. Spawned as the leader of a process group of its own
/// (`CommandExt::process_group(0)`), the whole group goes with it: a wrapper that forks the
/// program (`faketime`) leaves no orphan behind.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies shipped rule files (`rules/NAME`) into `dir`, every `for:` of theirs set to 0s, so a
/// test sees a rule's expression, levels and labels fire without waiting its minutes (the
/// timing itself is checked by the backtests in collector/tests/cli.rs).
pub fn shipped_rules_without_for(dir: &Path, files: &[&str]) {
    std::fs::create_dir_all(dir).expect("rules dir");
    for f in files {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../rules")
                .join(f),
        )
        .unwrap_or_else(|e| panic!("rules/{f}: {e}"));
        let out: String = text.lines().map(zero_for).collect::<Vec<_>>().join("\n");
        std::fs::write(dir.join(f), out).expect("write rules");
    }
}

/// Rewrites `for: <duration>` (a rule's or a level's) to `for: 0s`, leaving `for_runs` alone.
fn zero_for(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("for: ") {
        let (head, tail) = rest.split_at(i + "for: ".len());
        out.push_str(head);
        let end = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        out.push_str("0s");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A network namespace of the test's own, deleted on drop; `None` (outside CI) when this
/// machine cannot make one (needs root and iproute2); in CI that fails the test.
pub struct Netns(pub String);

impl Netns {
    pub fn create(prefix: &str) -> Option<Netns> {
        let name = format!("{prefix}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must be able to create a network namespace"
            );
            eprintln!("SKIPPED: cannot create a network namespace (needs root and iproute2)");
            return None;
        }
        let ns = Netns(name);
        assert!(ns.sh("ip link set lo up"), "loopback up in {}", ns.0);
        Some(ns)
    }

    /// Runs a shell command in the namespace; whether it succeeded.
    pub fn sh(&self, cmd: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// One sample line of the text exposition format: name, labels, value.
pub type ExpositionLine = (String, std::collections::BTreeMap<String, String>, f64);

pub fn exposition_lines(text: &str) -> Vec<ExpositionLine> {
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let line = regex::Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)").unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let c = line.captures(l)?;
            let labels = c.get(2).map_or_else(Default::default, |m| {
                label
                    .captures_iter(m.as_str())
                    .map(|l| (l[1].to_string(), l[2].to_string()))
                    .collect()
            });
            Some((c[1].to_string(), labels, c[3].parse().ok()?))
        })
        .collect()
}
