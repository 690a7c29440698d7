//! Command line: `tocsin-collector [FLAGS]` runs the collector; subcommands do one-off jobs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tocsin_config::collector::{CollectorConfig, RawCollectorConfig, ReceiverKind};
use tocsin_config::redact_url;
use tocsin_rules::EngineOptions;
use tocsin_store::{Store, StoreOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::api::{app, AppState};
use crate::view::View;
use crate::writer::{Msg, Settings, Writer};
use crate::{rulefiles, Telemetry};

#[derive(Parser)]
#[command(
    name = "tocsin-collector",
    version,
    about = "Receives samples, stores history, evaluates rules and sends alerts."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (YAML). Without one, built-in defaults apply; flags override both.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for the HTTP API and remote-write receiver [default: 127.0.0.1:9760].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the SQLite database and the default alert log [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Rule file or directory of rule files; repeat for several [default: ./rules].
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    log: tocsin_runtime::LogArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a CSV of `timestamp,value` (or the stored history of the series the rule reads)
    /// through one rule and write, per row, `timestamp,value,anomaly_score,level`; prints a
    /// summary on stderr.
    Backtest {
        /// Rule file holding the rule.
        #[arg(long, value_name = "FILE")]
        rules: PathBuf,
        /// Name of the rule to replay.
        #[arg(long, value_name = "NAME")]
        rule: String,
        /// Input CSV with a `timestamp,value` header (NAB format).
        #[arg(
            long,
            value_name = "INPUT.csv",
            required_unless_present = "data_dir",
            conflicts_with = "data_dir"
        )]
        csv: Option<PathBuf>,
        /// Replay the collector's stored history instead, from this data directory: every
        /// input of the rule (a rule over several series too), one row per evaluation.
        #[arg(long, value_name = "DIR", requires_all = ["from", "to"])]
        data_dir: Option<PathBuf>,
        /// Start of the stored history to replay, e.g. "2026-11-23 00:00:00" (UTC).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the stored history to replay.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// With --data-dir: the host whose series to replay.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Output CSV [default: standard output].
        #[arg(long, value_name = "OUT.csv")]
        out: Option<PathBuf>,
    },
    /// Write rule files as Prometheus alerting rules where an equivalent exists; what is left
    /// out or changed is listed on standard error.
    ExportRules {
        /// Output format (only `prometheus` for now).
        #[arg(long, default_value = "prometheus")]
        format: String,
        /// Output file [default: standard output].
        #[arg(long, value_name = "FILE.yml")]
        out: Option<PathBuf>,
        /// Rule files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Check rule files and exit: 0 when all are valid, 1 with every problem otherwise.
    CheckRules {
        /// Rule files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Manage silences and maintenance windows on a running collector.
    Silence {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: SilenceCmd,
    },
    /// Per-agent ingest tokens on a running collector: issue, list, revoke.
    Tokens {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: TokenCmd,
    },
    /// Incidents on a running collector: list, show, ack, resolve, note, report, stats.
    Incidents {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: IncidentCmd,
    },
    /// Acknowledge a firing alert on a running collector: stops its escalation and repeats
    /// until it rises a level.
    Ack {
        #[command(flatten)]
        api: ApiArgs,
        /// The alert's id (`id` in /api/v1/alerts, `fingerprint` in notifications).
        id: String,
        /// Who acknowledges.
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Subcommand)]
enum IncidentCmd {
    /// List incidents (newest first).
    List {
        #[arg(long)]
        state: Option<String>,
        /// Least severity: warning, critical, emergency.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        host: Option<String>,
        /// Window start (RFC 3339 or Unix seconds) [default: 7 days ago].
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// One incident with its timeline.
    Show { id: String },
    /// Acknowledge an incident.
    Ack {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Resolve an incident by hand.
    Resolve {
        id: String,
        #[arg(long)]
        by: String,
    },
    /// Add a note to an incident's timeline.
    Note {
        id: String,
        #[arg(long)]
        by: String,
        text: String,
    },
    /// Write the post-incident report (Markdown).
    Report {
        id: String,
        /// Output file [default: standard output].
        #[arg(long, value_name = "FILE.md")]
        out: Option<PathBuf>,
    },
    /// Counts, MTTA, MTTR, time to remediate, availability over a window.
    Stats {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue a token for one host's agent; it is printed once.
    Issue {
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List tokens (hosts, dates; never the tokens).
    List,
    /// Revoke a token: its agent is refused from now on.
    Revoke { id: i64 },
}

/// How to reach a running collector's API.
#[derive(clap::Args)]
struct ApiArgs {
    /// The collector's URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9760",
        value_name = "URL"
    )]
    url: String,
    /// Admin token (also from TOCSIN_ADMIN_TOKEN).
    #[arg(
        long,
        global = true,
        env = "TOCSIN_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Subcommand)]
enum SilenceCmd {
    /// Add a silence: `silence add host=db-1 alertname=~Disk.* --duration 2h --author me --comment …`.
    /// With --window it is a recurring maintenance window:
    /// `silence add host=~db-.* --window 02:00-04:00 --days sun --utc-offset +08:00 …`.
    Add {
        /// Matchers `name=value` or `name=~regex`.
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long, e.g. 2h [default: 1h; with --window: no end].
        #[arg(long)]
        duration: Option<String>,
        #[arg(long)]
        author: String,
        #[arg(long)]
        comment: String,
        /// Recurring daily window HH:MM-HH:MM (an end before the start runs past midnight).
        #[arg(long, value_name = "HH:MM-HH:MM")]
        window: Option<String>,
        /// With --window: the weekdays, e.g. sat,sun [default: every day].
        #[arg(long, value_delimiter = ',', requires = "window")]
        days: Vec<String>,
        /// With --window: the UTC offset its times are in, e.g. +08:00 [default: UTC].
        #[arg(long, requires = "window", allow_hyphen_values = true)]
        utc_offset: Option<String>,
    },
    /// List silences that have not ended.
    List,
    /// End a silence now.
    Expire { id: i64 },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::CheckRules { paths }) => check_rules(&paths),
        Some(Cmd::ExportRules { format, out, paths }) => {
            export_rules(&format, out.as_deref(), &paths)
        }
        Some(Cmd::Silence { api, action }) => call_api(
            "silence",
            &api,
            |c, base| silence_request(c, base, action),
            print_answer,
        ),
        Some(Cmd::Incidents { api, action }) => incidents(&api, action),
        Some(Cmd::Tokens { api, action }) => call_api(
            "tokens",
            &api,
            |c, base| {
                let b = format!("{base}/api/v1/tokens");
                Ok(match action {
                    TokenCmd::Issue { host, comment } => c
                        .post(b)
                        .json(&serde_json::json!({ "host": host, "comment": comment })),
                    TokenCmd::List => c.get(b),
                    TokenCmd::Revoke { id } => c.delete(format!("{b}/{id}")),
                })
            },
            print_answer,
        ),
        Some(Cmd::Ack {
            api,
            id,
            by,
            comment,
        }) => call_api(
            "ack",
            &api,
            |c, base| {
                Ok(c.post(format!("{base}/api/v1/alerts/{id}/ack"))
                    .json(&serde_json::json!({ "by": by, "comment": comment })))
            },
            print_answer,
        ),
        Some(Cmd::Backtest {
            rules,
            rule,
            csv,
            data_dir,
            from,
            to,
            host,
            out,
        }) => {
            let source = match (csv, data_dir) {
                (Some(c), _) => Source::Csv(c),
                (None, Some(d)) => Source::Stored {
                    data_dir: d,
                    from: from.unwrap_or_default(),
                    to: to.unwrap_or_default(),
                    host,
                },
                (None, None) => unreachable!("clap requires one of --csv and --data-dir"),
            };
            backtest(&rules, &rule, &source, out.as_deref())
        }
        None => {
            tocsin_runtime::init_logging(&cli.run.log.filter);
            tocsin_runtime::exit_code("tocsin-collector", run(cli.run))
        }
    }
}

fn print_answer(text: &str) -> Result<(), String> {
    println!("{text}");
    Ok(())
}

/// The request of one silence command.
fn silence_request(
    client: &reqwest::Client,
    base: &str,
    action: SilenceCmd,
) -> Result<reqwest::RequestBuilder, String> {
    Ok(match action {
        SilenceCmd::Add {
            matchers,
            duration,
            author,
            comment,
            window,
            days,
            utc_offset,
        } => {
            let mut specs = Vec::new();
            for m in &matchers {
                let (name, value, regex) = match m.split_once("=~") {
                    Some((n, v)) => (n, v, true),
                    None => match m.split_once('=') {
                        Some((n, v)) => (n, v, false),
                        None => {
                            return Err(format!("matcher {m:?} must be name=value or name=~regex"))
                        }
                    },
                };
                specs.push(serde_json::json!({"name": name, "value": value, "isRegex": regex}));
            }
            let mut body = serde_json::json!({
                "matchers": specs, "createdBy": author, "comment": comment,
            });
            if let Some(w) = window {
                let (start, end) = w
                    .split_once('-')
                    .ok_or_else(|| format!("--window {w:?} must be HH:MM-HH:MM"))?;
                body["schedule"] = serde_json::json!({
                    "days": days, "start": start, "end": end, "utcOffset": utc_offset,
                });
            } else if duration.is_none() {
                body["duration"] = serde_json::json!("1h");
            }
            if let Some(d) = duration {
                body["duration"] = serde_json::json!(d);
            }
            client.post(format!("{base}/api/v1/silences")).json(&body)
        }
        SilenceCmd::List => client.get(format!("{base}/api/v1/silences")),
        SilenceCmd::Expire { id } => client.delete(format!("{base}/api/v1/silences/{id}")),
    })
}

fn incidents(api: &ApiArgs, action: IncidentCmd) -> ExitCode {
    let q = |pairs: &[(&str, &Option<String>)]| {
        let p: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_ref()
                    .map(|v| format!("{k}={}", urlencoding::encode(v)))
            })
            .collect();
        if p.is_empty() {
            String::new()
        } else {
            format!("?{}", p.join("&"))
        }
    };
    let out_file = match &action {
        IncidentCmd::Report { out, .. } => out.clone(),
        _ => None,
    };
    call_api(
        "incidents",
        api,
        |c, base| {
            let b = format!("{base}/api/v1/incidents");
            Ok(match action {
                IncidentCmd::List {
                    state,
                    severity,
                    host,
                    from,
                    to,
                } => c.get(format!(
                    "{b}{}",
                    q(&[
                        ("state", &state),
                        ("severity", &severity),
                        ("host", &host),
                        ("from", &from),
                        ("to", &to)
                    ])
                )),
                IncidentCmd::Show { id } => c.get(format!("{b}/{id}")),
                IncidentCmd::Ack { id, by, comment } => c
                    .post(format!("{b}/{id}/ack"))
                    .json(&serde_json::json!({ "by": by, "comment": comment })),
                IncidentCmd::Resolve { id, by } => c
                    .post(format!("{b}/{id}/resolve"))
                    .json(&serde_json::json!({ "by": by })),
                IncidentCmd::Note { id, by, text } => c
                    .post(format!("{b}/{id}/notes"))
                    .json(&serde_json::json!({ "by": by, "text": text })),
                IncidentCmd::Report { id, .. } => c.get(format!("{b}/{id}/report")),
                IncidentCmd::Stats { from, to } => {
                    c.get(format!("{b}/stats{}", q(&[("from", &from), ("to", &to)])))
                }
            })
        },
        |text| match &out_file {
            Some(path) => std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
            None => {
                println!("{text}");
                Ok(())
            }
        },
    )
}

/// Sends one request to a running collector's API; prints the answer's JSON.
fn call_api(
    what: &str,
    api: &ApiArgs,
    request: impl FnOnce(&reqwest::Client, &str) -> Result<reqwest::RequestBuilder, String>,
    output: impl FnOnce(&str) -> Result<(), String>,
) -> ExitCode {
    let base = api.url.trim_end_matches('/');
    let run = async {
        let client = reqwest::Client::new();
        let mut req = request(&client, base)?;
        if let Some(t) = &api.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("{base}: {e}"))?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if ok {
            Ok(text)
        } else {
            Err(text)
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tocsin-collector {what}: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run).and_then(|text| output(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tocsin-collector {what}: {e}");
            ExitCode::from(1)
        }
    }
}

fn export_rules(format: &str, out: Option<&std::path::Path>, paths: &[PathBuf]) -> ExitCode {
    if format != "prometheus" {
        eprintln!("tocsin-collector export-rules: unknown format {format:?} (prometheus)");
        return ExitCode::from(2);
    }
    let rules = match rulefiles::load(paths) {
        Ok((rules, _)) => rules,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return ExitCode::from(1);
        }
    };
    let (yaml, notes) = crate::export::prometheus(&rules);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let written = match out {
        Some(p) => {
            std::fs::write(p, &yaml).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            print!("{yaml}");
            Ok(())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tocsin-collector export-rules: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_rules(paths: &[PathBuf]) -> ExitCode {
    match rulefiles::load(paths) {
        Ok((rules, files)) => {
            println!("{} rules in {files} files: valid", rules.len());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} problems found", problems.len());
            ExitCode::from(1)
        }
    }
}

enum Source {
    Csv(PathBuf),
    Stored {
        data_dir: PathBuf,
        from: String,
        to: String,
        host: Option<String>,
    },
}

fn backtest(
    rules: &std::path::Path,
    rule: &str,
    source: &Source,
    out: Option<&std::path::Path>,
) -> ExitCode {
    let go = |w: &mut dyn std::io::Write| match source {
        Source::Csv(c) => crate::backtest::run(rules, rule, c, w),
        Source::Stored {
            data_dir,
            from,
            to,
            host,
        } => crate::backtest::run_stored(rules, rule, data_dir, (from, to), host.as_deref(), w),
    };
    let result = match out {
        Some(p) => std::fs::File::create(p)
            .map_err(|e| format!("{}: {e}", p.display()))
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                let r = go(&mut w);
                std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
                r
            }),
        None => go(&mut std::io::stdout().lock()),
    };
    match result {
        Ok(s) => {
            eprintln!(
                "{} rows; alerts fired: warning {}, critical {}, emergency {}; first {}, last {}",
                s.rows,
                s.alerts[0],
                s.alerts[1],
                s.alerts[2],
                s.first.as_deref().unwrap_or("-"),
                s.last.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tocsin-collector backtest: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_config(args: &RunArgs) -> anyhow::Result<CollectorConfig> {
    let mut raw: RawCollectorConfig = tocsin_config::read_yaml_or_default(args.config.as_deref())?;
    if let Some(l) = &args.listen {
        raw.listen = Some(l.clone());
    }
    if let Some(d) = &args.data_dir {
        raw.data_dir = Some(d.clone());
    }
    if !args.rules.is_empty() {
        raw.rules = args.rules.clone();
    }
    raw.validate().map_err(|mut e| {
        e.path = args.config.clone();
        anyhow::anyhow!("invalid configuration:\n{e}")
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args)?;
    tocsin_runtime::private_umask();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    tocsin_runtime::private_dir(&cfg.data_dir).with_context(|| {
        format!(
            "cannot make data directory {} private",
            cfg.data_dir.display()
        )
    })?;
    let (rules, files) = rulefiles::load(&cfg.rules)
        .map_err(|p| anyhow::anyhow!("invalid rules:\n{}", p.join("\n")))?;
    let db = cfg.data_dir.join("tocsin.db");
    let store = Store::open(
        &db,
        StoreOptions {
            max_series_per_host: cfg.ingest.max_series_per_host,
            max_hosts: cfg.ingest.max_hosts,
            ..StoreOptions::default()
        },
    )?;

    info!(
        listen = %cfg.listen,
        data_dir = %cfg.data_dir.display(),
        rules = rules.len(),
        rule_files = files,
        retention = %tocsin_config::format_duration(cfg.retention),
        stale_after = %tocsin_config::format_duration(cfg.stale_after),
        auth = if cfg.ingest.token.is_some() { "bearer token" } else { "none" },
        "starting tocsin-collector {}",
        env!("CARGO_PKG_VERSION")
    );
    for r in &cfg.receivers {
        match &r.kind {
            ReceiverKind::Webhook { url, .. } => {
                info!(receiver = %r.name, url = %redact_url(url), "webhook receiver")
            }
            ReceiverKind::Alertmanager { url, .. } => {
                info!(receiver = %r.name, url = %redact_url(url), "Alertmanager receiver")
            }
            ReceiverKind::TencentSms(t) => {
                info!(receiver = %r.name, template = %t.template_id, to = ?t.phone_numbers, "Tencent SMS receiver")
            }
            ReceiverKind::AliyunSms(a) => {
                info!(receiver = %r.name, template = %a.template_code, to = ?a.phone_numbers, "Aliyun SMS receiver")
            }
            ReceiverKind::Email(e) => {
                info!(receiver = %r.name, host = %e.host, port = e.port, to = ?e.to, "e-mail receiver")
            }
            ReceiverKind::Log { path } => {
                info!(receiver = %r.name, path = %path.display(), "log receiver")
            }
            ReceiverKind::Chat { vendor, locale, .. } => {
                info!(receiver = %r.name, vendor = vendor.name(), locale = ?locale, "chat robot receiver")
            }
            ReceiverKind::SmsGateway(g) => {
                info!(receiver = %r.name, url = %redact_url(&g.url), to = ?g.phone_numbers, "SMS gateway receiver")
            }
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tocsin-collector")
        .build()?;
    rt.block_on(serve(cfg, store, rules, db))
}

async fn serve(
    cfg: CollectorConfig,
    mut store: Store,
    rules: Vec<tocsin_rules::Rule>,
    db: PathBuf,
) -> anyhow::Result<()> {
    tocsin_runtime::survive_file_size_limit();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let tel = Telemetry::new();
    let view = Arc::new(RwLock::new(View::default()));
    let (wake_tx, wake_rx) = watch::channel(0u64);
    let (tx, rx) = mpsc::channel::<Msg>(1024);

    // Links must keep working across restarts: without a configured key, one random key is
    // made once and kept in the database.
    let ack_secret = Arc::new(match &cfg.ack.secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => store
            .meta_or_init("ack_secret", tocsin_alerting::ack::new_secret)
            .context("cannot read the acknowledgement key")?
            .into_bytes(),
    });
    // Actions the collector runs itself (`on: collector`), from its own allowlist.
    let (run_tx, mut run_rx) = mpsc::unbounded_channel::<tocsin_remedy::Request>();
    {
        let tx = tx.clone();
        let allowlist = Arc::new(cfg.actions.clone());
        let cancel = cancel.clone();
        tracker.spawn(async move {
            loop {
                let req = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = run_rx.recv() => match r { Some(r) => r, None => return },
                };
                let tx = tx.clone();
                let allowlist = Arc::clone(&allowlist);
                tokio::spawn(async move {
                    info!(request = %req.id, action = %req.action, "running action on the collector");
                    let r = tocsin_exec::run_action(&allowlist, &req.action, &req.params).await;
                    let status = serde_json::from_value(serde_json::json!(r.status))
                        .unwrap_or(tocsin_remedy::ResultStatus::Failed);
                    let (reply, _) = tokio::sync::oneshot::channel();
                    let _ = tx
                        .send(Msg::ActionResult {
                            id: req.id,
                            status,
                            summary: r.summary,
                            output: r.output,
                            reply,
                        })
                        .await;
                });
            }
        });
    }
    let urgent = Arc::new(tocsin_notify::Urgent::default());
    let settings = Settings {
        engine: EngineOptions {
            stale_after_ms: cfg.stale_after.as_millis() as i64,
        },
        alerting: tocsin_alerting::Settings::from_config(&cfg, Arc::clone(&ack_secret)),
        retention: cfg.retention,
        checkpoint_every: cfg.checkpoint_interval,
        host_down_after: cfg.host_down_after,
        host_forget_after: cfg.host_forget_after,
        storage_alert_after: cfg.storage_alert_after,
        urgent: Arc::clone(&urgent),
        runner: Some(run_tx),
        forward: crate::forward::start(&cfg.remote_write, &tel.registry, cancel.clone(), &tracker)?,
    };
    let writer = Writer::new(
        store,
        rules,
        settings,
        Arc::clone(&view),
        wake_tx,
        tel.clone(),
    )?;
    let writer_thread = std::thread::Builder::new()
        .name("tocsin-writer".into())
        .spawn(move || writer.run(rx))?;

    tel.registry
        .register(Box::new(crate::exposition::Baselines::new(Arc::clone(
            &view,
        ))))?;
    tel.registry
        .register(Box::new(crate::exposition::Alerts::new(Arc::clone(&view))))?;
    let metrics = tocsin_notify::DeliveryMetrics::new(&tel.registry)?;
    tocsin_notify::spawn_workers(
        &cfg.receivers,
        &db,
        &urgent,
        wake_rx,
        metrics,
        cancel.clone(),
        &tracker,
    )
    .map_err(|e| anyhow::anyhow!(e))?;

    // A tick drives `for`, staleness, views and checkpoints.
    {
        let tx = tx.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = iv.tick() => { if tx.send(Msg::Tick).await.is_err() { return } }
                }
            }
        });
    }

    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let _watcher = rulefiles::watch(cfg.rules.clone(), reload_tx, cancel.clone())
        .context("cannot watch rule files")?;
    {
        let tx = tx.clone();
        let tel = tel.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            loop {
                let r = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = reload_rx.recv() => match r { Some(r) => r, None => return },
                };
                match r {
                    Ok(rules) => {
                        tel.rule_reloads.with_label_values(&["success"]).inc();
                        if tx.send(Msg::Reload(rules)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => tel.rule_reloads.with_label_values(&["failure"]).inc(),
                }
            }
        });
    }

    let outbox = Arc::new(std::sync::Mutex::new(
        tocsin_store::Outbox::open(&db, false).context("cannot open the outbox")?,
    ));
    let agent_tokens =
        crate::api::load_agent_tokens(&outbox.lock().unwrap_or_else(|p| p.into_inner()))
            .context("cannot read agent tokens")?;
    let state = AppState {
        writer: tx,
        view,
        tel: tel.clone(),
        token: cfg.ingest.token.clone(),
        access: crate::access::Access::new(
            cfg.admin_token.clone(),
            cfg.read_token.clone(),
            cfg.listen,
        ),
        limits: tocsin_wire::Limits {
            max_decompressed_bytes: cfg.ingest.max_decompressed_bytes,
            max_samples: cfg.ingest.max_samples_per_request,
            max_labels_per_series: cfg.ingest.max_labels_per_series,
            ..tocsin_wire::Limits::default()
        },
        max_body_bytes: cfg.ingest.max_body_bytes,
        ack_ttl_ms: cfg.ack.link_ttl.as_millis() as i64,
        decode_permits: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        max_future_ms: StoreOptions::default().max_future_ms,
        ack_secret,
        outbox: Arc::clone(&outbox),
        agent_tokens: Arc::new(RwLock::new(agent_tokens)),
        request_timeout: cfg.ingest.request_timeout,
        federate: cfg.federate,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // Machine-readable start line on stdout (tests and scripts read the port from it).
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    println!("tocsin-collector listening on {scheme}://{addr}");
    info!(%addr, "listening");
    if let Some(w) = state.access.startup_warning() {
        warn!("{w}");
    }

    let shutdown = cancel.clone();
    tokio::spawn(async move {
        tocsin_runtime::shutdown_signal().await;
        shutdown.cancel();
    });
    let acceptor = match &cfg.tls {
        Some(t) => Some(crate::server::acceptor(t).context("tls")?),
        None => None,
    };
    let limits = crate::server::ConnLimits {
        max_connections: cfg.ingest.max_connections,
        idle_timeout: cfg.ingest.idle_timeout,
    };
    crate::server::serve(
        listener,
        app(state),
        acceptor,
        limits,
        tel.clone(),
        cancel.clone(),
    )
    .await;

    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        error!("tasks did not stop within 10s");
    }
    // Every sender is gone now: the writer drains, checkpoints and returns.
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    info!("stopped");
    Ok(())
}
