//! Configuration reload, on SIGHUP or `POST /-/reload` (admin credential), as Prometheus and
//! Alertmanager do it: the file is read and validated as at start, the rule files with it, and
//! nothing is taken unless all of it is valid (a refused reload leaves everything as it ran,
//! with the reasons in the log, the answer and `tocsin_config_last_reload_successful` 0).
//!
//! Taken at once ([`RELOADED`]): receivers (their delivery workers restart, reading their
//! outbox afresh), the route, inhibition, escalation policies, incidents' grouping and
//! deadlines, remediation limits, the dashboard link, and the rule files' contents. The alerting
//! state in flight (notification groups, escalations, incidents, remediation) starts again from
//! what is stored, under the new settings, as a restart with the new file would: a receiver a
//! route gains hears of what fires there, nobody who heard is told again, groups of removed
//! receivers and escalations of removed policies are dropped. Everything else (listening
//! address, storage, credentials, limits, services, reports, …) takes effect at the next
//! restart: a reload that changes it says which, and keeps what runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use tocsin_config::collector::{CollectorConfig, ReceiverConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::writer::Msg;
use crate::{rulefiles, Telemetry};

/// Reads and validates the configuration as at start (the file, then the command line's
/// overrides).
pub type Source = Arc<dyn Fn() -> anyhow::Result<CollectorConfig> + Send + Sync>;

/// The settings a reload takes at once; the rest wait for a restart.
pub const RELOADED: &[&str] = &[
    "receivers",
    "route",
    "inhibit_rules",
    "escalation_policies",
    "incidents.group_by",
    "incidents.reopen_within",
    "deadlines",
    "remediation",
    "dashboard_url",
    "rule files' contents",
];

/// The settings read only at start: a reload keeps them as they run (`keep_running`, which
/// names each).
pub const AT_START: &[&str] = &[
    "listen",
    "data_dir",
    "rules",
    "retention",
    "checkpoint_interval",
    "stale_after",
    "federate",
    "external_url",
    "host_down_after",
    "host_forget_after",
    "storage_alert_after",
    "ingest",
    "query",
    "self_metrics",
    "admin_token",
    "read_token",
    "external_alerts",
    "ack",
    "incidents.changes_before",
    "actions",
    "remote_write",
    "heartbeat",
    "tls",
    "services",
    "change_freezes",
    "timezone",
    "reports",
];

pub struct Reloader {
    source: Source,
    /// The configuration in force; held through a reload, so reloads run one at a time.
    running: tokio::sync::Mutex<CollectorConfig>,
    writer: mpsc::Sender<Msg>,
    receivers: watch::Sender<Arc<Vec<ReceiverConfig>>>,
    ack_secret: Arc<Vec<u8>>,
    outbox: Arc<std::sync::Mutex<tocsin_store::Outbox>>,
    tel: Telemetry,
}

/// What a reload did.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub receivers: usize,
    pub rules: usize,
    /// Settings changed in the file that take effect at the next restart.
    pub restart_needed: Vec<&'static str>,
    /// Notification groups of receivers no longer configured, dropped.
    pub groups_dropped: usize,
    /// Escalations under policies no longer configured, dropped.
    pub escalations_dropped: usize,
    /// Notifications waiting for receivers no longer configured: kept in the outbox, and
    /// delivered if the receiver comes back.
    pub waiting_for_removed_receivers: u64,
}

impl Reloader {
    pub fn new(
        source: Source,
        running: CollectorConfig,
        writer: mpsc::Sender<Msg>,
        receivers: watch::Sender<Arc<Vec<ReceiverConfig>>>,
        ack_secret: Arc<Vec<u8>>,
        outbox: Arc<std::sync::Mutex<tocsin_store::Outbox>>,
        tel: Telemetry,
    ) -> Reloader {
        for r in ["success", "failure"] {
            tel.config_reloads.with_label_values(&[r]);
        }
        Reloader {
            source,
            running: tokio::sync::Mutex::new(running),
            writer,
            receivers,
            ack_secret,
            outbox,
            tel,
        }
    }

    /// Reads, validates and takes the configuration; `why` says who asked, for the log.
    pub async fn reload(&self, why: &str) -> Result<Outcome, String> {
        let mut running = self.running.lock().await;
        let result = self.take(&mut running).await;
        let result_name = if result.is_ok() { "success" } else { "failure" };
        self.tel
            .config_reloads
            .with_label_values(&[result_name])
            .inc();
        self.tel.config_reload_ok.set(i64::from(result.is_ok()));
        match &result {
            Ok(o) => {
                self.tel
                    .config_reload_time
                    .set(tocsin_model::now_ms() / 1000);
                info!(
                    by = why,
                    receivers = o.receivers,
                    rules = o.rules,
                    groups_dropped = o.groups_dropped,
                    escalations_dropped = o.escalations_dropped,
                    "configuration reloaded"
                );
                for s in &o.restart_needed {
                    warn!(
                        setting = s,
                        "changed in the configuration file; takes effect at the next restart"
                    );
                }
                if o.waiting_for_removed_receivers > 0 {
                    warn!(
                        notifications = o.waiting_for_removed_receivers,
                        "notifications wait in the outbox for receivers no longer configured; delivered if they come back"
                    );
                }
            }
            Err(e) => {
                error!(
                    by = why,
                    "configuration reload refused; the previous configuration stays in force:\n{e}"
                );
            }
        }
        result
    }

    async fn take(&self, running: &mut CollectorConfig) -> Result<Outcome, String> {
        // The files are read off the runtime's threads; the rules from the paths that run
        // (the rule paths are read at start).
        let (source, paths) = (Arc::clone(&self.source), running.rules.clone());
        let (new, rules) = tokio::task::spawn_blocking(move || (source(), rulefiles::load(&paths)))
            .await
            .map_err(|e| format!("reading the configuration failed: {e}"))?;
        let new = new.map_err(|e| format!("{e:#}"))?;
        let (cfg, restart_needed) = keep_running(running, new);
        let mut problems = Vec::new();
        for r in &cfg.receivers {
            if let Err(e) = tocsin_notify::check_receiver(r) {
                problems.push(format!("receiver {:?}: {e}", r.name));
            }
        }
        let names: BTreeSet<String> = cfg.receivers.iter().map(|r| r.name.clone()).collect();
        // Reports are read at start: they must still have their receivers.
        for s in &cfg.reports.schedules {
            for r in s.receivers.iter().filter(|r| !names.contains(*r)) {
                problems.push(format!(
                    "reports.{}.receivers: receiver {r:?} is removed, but reports (read at start) send to it: restart to change reports",
                    s.kind
                ));
            }
        }
        let rules = match rules {
            Ok((rules, _)) => Some(rules),
            Err(p) => {
                problems.push(format!("invalid rules:\n{}", p.join("\n")));
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let rules = rules.unwrap_or_default();
        let alerting = tocsin_alerting::Settings::from_config(&cfg, Arc::clone(&self.ack_secret));
        let (reply, answer) = oneshot::channel();
        let gone = || "the collector is stopping".to_string();
        self.writer
            .send(Msg::Configure {
                alerting: Box::new(alerting),
                receivers: names.clone(),
                reply,
            })
            .await
            .map_err(|_| gone())?;
        // (Rows that did not read are logged by the writer.)
        let done = answer.await.map_err(|_| gone())??;
        let n_rules = rules.len();
        self.writer
            .send(Msg::Reload(rules))
            .await
            .map_err(|_| gone())?;
        self.tel.rule_reloads.with_label_values(&["success"]).inc();
        for r in &cfg.receivers {
            tocsin_notify::log_receiver(r);
        }
        self.receivers.send_replace(Arc::new(cfg.receivers.clone()));
        let outbox = Arc::clone(&self.outbox);
        let waiting = tokio::task::spawn_blocking(move || {
            outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .count_by_receiver(tocsin_store::OutboxStatus::Pending)
        })
        .await
        .map_err(|e| e.to_string())?
        .map(|rows| {
            rows.iter()
                .filter(|(r, _)| !names.contains(r))
                .map(|(_, n)| n)
                .sum()
        })
        .unwrap_or_else(|e| {
            warn!(error = %e, "cannot count the notifications waiting for removed receivers");
            0
        });
        let outcome = Outcome {
            receivers: cfg.receivers.len(),
            rules: n_rules,
            restart_needed,
            groups_dropped: done.groups_dropped,
            escalations_dropped: done.escalations_dropped,
            waiting_for_removed_receivers: waiting,
        };
        *running = cfg;
        Ok(outcome)
    }
}

/// The new configuration with every setting a reload does not take put back to what runs, and
/// the names of those that differed.
fn keep_running(
    running: &CollectorConfig,
    mut new: CollectorConfig,
) -> (CollectorConfig, Vec<&'static str>) {
    let mut changed = Vec::new();
    // Compared by their debug form (secrets print redacted there, so they are compared by
    // value too), then kept as they run.
    macro_rules! keep {
        ($($name:literal => $($f:ident).+),+ $(,)?) => {$(
            if format!("{:?}", new.$($f).+) != format!("{:?}", running.$($f).+) {
                changed.push($name);
            }
            new.$($f).+ = running.$($f).+.clone();
        )+};
    }
    let secrets = [
        ("admin_token", new.admin_token != running.admin_token),
        ("read_token", new.read_token != running.read_token),
        ("ingest", new.ingest.token != running.ingest.token),
        (
            "external_alerts",
            new.external_alerts.token != running.external_alerts.token,
        ),
        ("ack", new.ack.secret != running.ack.secret),
    ];
    keep!(
        "listen" => listen,
        "data_dir" => data_dir,
        "rules (the paths; their contents are reloaded)" => rules,
        "retention" => retention,
        "checkpoint_interval" => checkpoint_interval,
        "stale_after" => stale_after,
        "federate" => federate,
        "external_url" => external_url,
        "host_down_after" => host_down_after,
        "host_forget_after" => host_forget_after,
        "storage_alert_after" => storage_alert_after,
        "ingest" => ingest,
        "query" => query,
        "self_metrics" => self_metrics,
        "admin_token" => admin_token,
        "read_token" => read_token,
        "external_alerts" => external_alerts,
        "ack" => ack,
        "incidents.changes_before" => incidents.changes_before,
        "actions" => actions,
        "remote_write" => remote_write,
        "heartbeat" => heartbeat,
        "tls" => tls,
        "services" => services,
        "change_freezes" => change_freezes,
        "timezone" => timezone,
        "reports" => reports,
    );
    for (name, differs) in secrets {
        if differs && !changed.contains(&name) {
            changed.push(name);
        }
    }
    (new, changed)
}

/// SIGHUPs, caught from when this is called (none: they cannot be caught, and a reload goes
/// through `POST /-/reload`).
pub type Hangups = Option<tokio::signal::unix::Signal>;

/// Starts catching SIGHUP on `rt`: from here on it no longer ends the process.
pub fn hangups(rt: &tokio::runtime::Runtime) -> Hangups {
    let _in = rt.enter();
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| error!(error = %e, "cannot catch SIGHUP; reload with POST /-/reload"))
        .ok()
}

/// Reloads on every SIGHUP until `cancel` (one caught before this started, while the collector
/// was starting, reloads once at once).
pub async fn on_hangup(
    hangups: Hangups,
    reloader: Arc<Reloader>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let Some(mut hup) = hangups else {
        return;
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            s = hup.recv() => {
                if s.is_none() {
                    return;
                }
                let _ = reloader.reload("SIGHUP").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting of the collector's configuration is either taken by a reload or kept
    /// until a restart: a setting added later must say which.
    #[test]
    fn every_setting_is_reloaded_or_read_at_start() {
        let cfg = tocsin_config::collector::RawCollectorConfig::default()
            .validate()
            .unwrap();
        let debug = format!("{cfg:#?}");
        let fields: Vec<&str> = debug
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split_once(':').map(|(f, _)| f))
            .collect();
        assert!(fields.len() > 30, "{fields:?}");
        let top = |list: &[&'static str]| -> Vec<&'static str> {
            list.iter().map(|s| s.split('.').next().unwrap()).collect()
        };
        let (reloaded, at_start) = (top(RELOADED), top(AT_START));
        for f in &fields {
            assert!(
                reloaded.contains(f) || at_start.contains(f),
                "{f}: neither reloaded nor read at start"
            );
        }
        // And `keep_running` keeps each setting read at start.
        let mut other = cfg.clone();
        other.retention = std::time::Duration::from_secs(1);
        other.timezone = tocsin_clock::Zone::utc();
        let (kept, changed) = keep_running(&cfg, other);
        assert_eq!(kept.retention, cfg.retention);
        assert!(changed.contains(&"retention"), "{changed:?}");
        for c in changed {
            assert!(AT_START.iter().any(|a| c.starts_with(a)), "{c}");
        }
    }

    /// A SIGHUP sent once catching has started, before anything reads it (the store still
    /// opening), leaves the process running and waits for the reloader.
    #[test]
    fn a_hangup_during_the_start_waits_for_the_reloader() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut hup = hangups(&rt).expect("SIGHUP can be caught");
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)
            .unwrap();
        let got = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), hup.recv()).await
        });
        assert_eq!(got, Ok(Some(())));
    }
}
