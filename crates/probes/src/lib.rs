//! Service probes: each checks one target over its real protocol within a time limit and
//! reports success, a failure reason from a small fixed set, and blackbox_exporter-style series.
//! Scheduling and shipping belong to the agent.

mod command;
mod dns;
mod file;
mod http;
mod icmp;
mod mysql;
mod postgres;
mod process;
mod redis;
mod systemd;
mod tcp;
mod tls;

use std::time::{Duration, Instant};

use tocsin_config::probes::{ProbeConfig, ProbeSpec};
use tocsin_sampling::Family;

/// Why a probe failed. A fixed set, so that it can be a label and a routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Timeout,
    Refused,
    Dns,
    Tls,
    Status,
    Body,
    Expect,
    Auth,
    Exit,
    Missing,
    Protocol,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Dns => "dns",
            Reason::Tls => "tls",
            Reason::Status => "status",
            Reason::Body => "body",
            Reason::Expect => "expect",
            Reason::Auth => "auth",
            Reason::Exit => "exit",
            Reason::Missing => "missing",
            Reason::Protocol => "protocol",
            Reason::Error => "error",
        }
    }

    /// Classifies an I/O error from connecting or talking.
    pub(crate) fn of_io(e: &std::io::Error) -> Reason {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused | ConnectionReset | ConnectionAborted | HostUnreachable
            | NetworkUnreachable | AddrNotAvailable => Reason::Refused,
            TimedOut => Reason::Timeout,
            _ => Reason::Error,
        }
    }
}

/// A failed check: why, and a human sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<(), Failure>,
    pub duration: Duration,
    /// Kind-specific series (labels other than the probe's own).
    pub metrics: Vec<Family>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.result.is_ok()
    }
}

/// Runs one probe repeatedly, keeping what it must remember between runs.
pub struct Prober {
    cfg: ProbeConfig,
    state: State,
}

enum State {
    None,
    Http(http::Http),
    Tcp(tcp::Tcp),
    Process(process::Process),
}

impl Prober {
    /// Builds a prober; fails when TLS material cannot be loaded.
    pub fn new(cfg: ProbeConfig) -> Result<Self, String> {
        let state = match &cfg.spec {
            ProbeSpec::Http(h) => State::Http(http::Http::new(h)?),
            ProbeSpec::Tcp(t) => State::Tcp(tcp::Tcp::new(t)?),
            ProbeSpec::Process(p) => State::Process(process::Process::new(p.clone())),
            _ => State::None,
        };
        Ok(Prober { cfg, state })
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    /// Runs once, never longer than the probe's timeout.
    pub async fn run(&mut self) -> Outcome {
        let start = Instant::now();
        let mut metrics = Vec::new();
        let timeout = self.cfg.timeout;
        let fut = async {
            match (&self.cfg.spec, &mut self.state) {
                (ProbeSpec::Http(spec), State::Http(h)) => h.run(spec, &mut metrics).await,
                (ProbeSpec::Tcp(spec), State::Tcp(t)) => t.run(spec, &mut metrics).await,
                (ProbeSpec::Command(spec), _) => command::run(spec, timeout, &mut metrics).await,
                (ProbeSpec::Icmp(spec), _) => icmp::run(spec, timeout, &mut metrics).await,
                (ProbeSpec::Dns(spec), _) => dns::run(spec, &mut metrics).await,
                (ProbeSpec::Process(_), State::Process(p)) => p.run(&mut metrics).await,
                (ProbeSpec::Redis(spec), _) => redis::run(spec, &mut metrics).await,
                (ProbeSpec::Postgres(spec), _) => postgres::run(spec, &mut metrics).await,
                (ProbeSpec::Mysql(spec), _) => mysql::run(spec, &mut metrics).await,
                (ProbeSpec::Systemd(spec), _) => systemd::run(spec, &mut metrics).await,
                (ProbeSpec::File(spec), _) => file::run(spec, &mut metrics).await,
                _ => Err(Failure::new(
                    Reason::Error,
                    "probe state does not match its kind",
                )),
            }
        };
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("no answer within {timeout:?}"),
            )),
        };
        Outcome {
            result,
            duration: start.elapsed(),
            metrics,
        }
    }

    /// Process probes can wait for a watched process to exit, to re-run at once.
    pub async fn changed(&mut self) {
        match &mut self.state {
            State::Process(p) => p.exited().await,
            _ => std::future::pending().await,
        }
    }

    /// Every series of one outcome, labelled `probe`, `target`, `kind` and the probe's labels.
    pub fn families(&self, o: &Outcome) -> Vec<Family> {
        let c = &self.cfg;
        let base = [
            ("probe", c.name.as_str()),
            ("target", c.target.as_str()),
            ("kind", c.kind()),
        ];
        let mut out = vec![
            Family::gauge(
                "probe_success",
                "Whether the probe succeeded (1) or failed (0).",
            )
            .with(base, if o.success() { 1.0 } else { 0.0 }),
            Family::gauge("probe_duration_seconds", "How long the probe took.")
                .with(base, o.duration.as_secs_f64()),
        ];
        if let Err(f) = &o.result {
            let mut l = base.to_vec();
            l.push(("reason", f.reason.as_str()));
            let mut fam = Family::gauge(
                "probe_failure_info",
                "Present while the probe fails; the reason label says why.",
            );
            fam.samples.push((tocsin_model::Labels::from_pairs(l), 1.0));
            out.push(fam);
        }
        out.extend(o.metrics.iter().cloned());
        for f in &mut out {
            for (labels, _) in &mut f.samples {
                for (k, v) in base {
                    labels.set(k, v);
                }
                for l in c.labels.iter() {
                    labels.set(l.name.clone(), l.value.clone());
                }
            }
        }
        out
    }
}

pub(crate) fn gauge(name: &str, help: &str, v: f64) -> Family {
    Family::gauge(name, help).with([], v)
}

#[cfg(test)]
mod tests;
