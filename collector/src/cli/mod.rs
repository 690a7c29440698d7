//! Command line: `tocsin-collector [FLAGS]` runs the collector; subcommands do one-off jobs.

mod client;
mod offline;
pub(crate) mod serve;

use client::*;
use offline::*;
use serve::*;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tocsin_config::collector::defaults;

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

/// A flag's help with the configuration's default, from the one place defaults are named.
fn with_default(what: &str, default: &str) -> String {
    format!("{what} [default: {default}]")
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (YAML). Without one, built-in defaults apply; flags override both.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for the HTTP API and remote-write receiver.
    #[arg(long, value_name = "ADDR", help = with_default("Address for the HTTP API and remote-write receiver", defaults::LISTEN))]
    listen: Option<String>,
    #[arg(long, value_name = "DIR", help = with_default("Directory for the SQLite database and the default alert log", defaults::DATA_DIR))]
    data_dir: Option<PathBuf>,
    #[arg(long = "rules", value_name = "PATH", help = with_default("Rule file or directory of rule files; repeat for several", defaults::RULES))]
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
        /// Rule file holding the rule, or a directory of rule files (as `--rules` of the
        /// collector).
        #[arg(long, value_name = "PATH")]
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
    /// Check the configuration as the collector would start with it (the same flags), its
    /// rule files, receivers and TLS settings, and exit: 0 when valid, 1 with every problem
    /// (file:line) otherwise. Opens no database and no port.
    CheckConfig {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Send one test message (alert `TocsinTest`, warning) through a configured receiver, as
    /// an alert would go (its channel, signature and template), and say whether it took it:
    /// try a robot's secret, an SMS template or a mail relay before an incident needs it.
    TestReceiver {
        /// The receiver's name.
        name: String,
        #[command(flatten)]
        run: RunArgs,
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
    /// Reload a running collector's configuration file and rules (as SIGHUP does); prints what
    /// it took, or every reason it refused the file (exit status 1: the running configuration
    /// stays).
    Reload {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hosts a running collector knows: list them, or take one out of service.
    Hosts {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: HostCmd,
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
    /// A report from a running collector, on demand: the daily inspection, or the weekly or
    /// monthly service report (Markdown by default).
    Report {
        #[command(flatten)]
        api: ApiArgs,
        /// daily, weekly or monthly.
        #[arg(value_parser = ["daily", "weekly", "monthly"])]
        kind: String,
        /// Services reported on (repeat the flag) [default: every configured one].
        #[arg(long = "service")]
        services: Vec<String>,
        /// Period start [default: a day, 7 or 30 days before --to].
        #[arg(long)]
        from: Option<String>,
        /// Period end [default: now].
        #[arg(long)]
        to: Option<String>,
        /// zh-CN or en [default: reports.locale].
        #[arg(long)]
        locale: Option<String>,
        /// markdown, html or json.
        #[arg(long, default_value = "markdown")]
        format: String,
        /// Output file [default: standard output].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Changes (deploys, configuration, infrastructure) on a running collector: record one
    /// (from people or CI/CD; a change freeze may refuse it), list them.
    Change {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: ChangeCmd,
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
        /// Only incidents in this state: open, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        /// Least severity: warning, critical, emergency.
        #[arg(long)]
        severity: Option<String>,
        /// Only incidents that affect this host.
        #[arg(long)]
        host: Option<String>,
        /// Window start (RFC 3339 or Unix seconds) [default: 7 days ago].
        #[arg(long)]
        from: Option<String>,
        /// Window end [default: now].
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
    /// Hand an incident to a person or team (they are told through the routing tree: an
    /// `IncidentAssigned` alert with their `owner` label).
    Assign {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        owner: String,
    },
    /// Record the root cause: change, configuration, capacity, hardware, network,
    /// dependency, software, human, external or unknown, and what happened.
    Cause {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        category: String,
        text: String,
    },
    /// Record who and what was affected (users, regions, services).
    Impact {
        id: String,
        #[arg(long)]
        by: String,
        text: String,
    },
    /// Add a follow-up action.
    FollowUp {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        owner: Option<String>,
        text: String,
    },
    /// Mark follow-up N open, done or dropped.
    FollowUpState {
        id: String,
        n: u32,
        #[arg(long)]
        by: String,
        #[arg(long)]
        state: String,
    },
    /// Say what an alert of the incident was worth: useful, noise, wrong_level, duplicate.
    Feedback {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        verdict: String,
        /// The alert's rule (needed when the incident has alerts of several rules).
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
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
        /// Window start (RFC 3339 or Unix seconds) [default: 7 days ago].
        #[arg(long)]
        from: Option<String>,
        /// Window end [default: now].
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
enum ChangeCmd {
    /// Record a change. Inside a refusing change freeze it is refused (exit status 1) unless
    /// --override gives a reason; inside a warning one it is recorded with a warning.
    Add {
        #[arg(long)]
        service: String,
        #[arg(long)]
        summary: String,
        /// Who made it (a person, or the pipeline).
        #[arg(long)]
        by: String,
        /// deploy, config, infra or other.
        #[arg(long, default_value = "deploy")]
        kind: String,
        /// Hosts it touched (repeat the flag).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// A link to the pipeline run, pull request or ticket.
        #[arg(long)]
        link: Option<String>,
        /// When it started (RFC 3339, `2026-12-05 10:00:00` UTC, Unix seconds) [default: now].
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        /// Go ahead inside a refusing freeze, for this reason (recorded with the change).
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// List changes [default: the last 7 days].
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Hosts, whether up, when last seen, their interval and clock.
    List,
    /// Take a host out of service (decommissioned, renamed): it is forgotten, so no HostDown
    /// pages for it, and its alerts resolve (reason `host removed`). Stop its agent first: its
    /// next request brings it back.
    Forget { host: String },
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
    /// `silence add host=~db-.* --window 02:00-04:00 --days sun --timezone Asia/Shanghai …`.
    Add {
        /// Matchers `name=value`, `name!=value`, `name=~regex` or `name!~regex`.
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
        #[arg(
            long,
            requires = "window",
            allow_hyphen_values = true,
            conflicts_with = "timezone"
        )]
        utc_offset: Option<String>,
        /// With --window: the time zone its times are in, daylight saving included, e.g.
        /// Europe/Berlin [default: UTC].
        #[arg(long, requires = "window")]
        timezone: Option<String>,
    },
    /// List silences that have not ended.
    List,
    /// End a silence now.
    Expire { id: i64 },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::CheckConfig { run }) => check_config(&run),
        Some(Cmd::TestReceiver { name, run }) => test_receiver(&run, &name),
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
        Some(Cmd::Change { api, action }) => changes(&api, action),
        Some(Cmd::Report {
            api,
            kind,
            services,
            from,
            to,
            locale,
            format,
            out,
        }) => call_api(
            "report",
            &api,
            |c, base| {
                let mut q: Vec<(&str, String)> = vec![("format", format)];
                if !services.is_empty() {
                    q.push(("service", services.join(",")));
                }
                for (k, v) in [("from", from), ("to", to), ("locale", locale)] {
                    if let Some(v) = v {
                        q.push((k, v));
                    }
                }
                Ok(c.get(format!("{base}/api/v1/reports/{kind}")).query(&q))
            },
            |text| match &out {
                Some(path) => std::fs::write(path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => print_answer(text),
            },
        ),
        Some(Cmd::Reload { api }) => call_api(
            "reload",
            &api,
            |c, base| Ok(c.post(format!("{base}/-/reload"))),
            print_answer,
        ),
        Some(Cmd::Hosts { api, action }) => call_api(
            "hosts",
            &api,
            |c, base| {
                let b = format!("{base}/api/v1/hosts");
                Ok(match action {
                    HostCmd::List => c.get(b),
                    HostCmd::Forget { host } => {
                        c.delete(format!("{b}/{}", urlencoding::encode(&host)))
                    }
                })
            },
            print_answer,
        ),
        Some(Cmd::Tokens { api, action }) => call_api(
            "tokens",
            &api,
            |c, base| {
                let b = format!("{base}/api/v1/tokens");
                Ok(match action {
                    TokenCmd::Issue { host, comment } => {
                        c.post(b).json(&crate::api::NewToken { host, comment })
                    }
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
                    .json(&crate::api::AckBody { by, comment }))
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
