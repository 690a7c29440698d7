//! Command line and the agent's main loop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use tocsin_config::agent::{AgentConfig, RawAgentConfig};
use tocsin_model::now_ms;
use tocsin_probes::Prober;
use tocsin_sampling::{textfile, Family, HostSampler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::probes::{probe_loop, Pending};
use crate::schedule::Grid;
use crate::ship::{self, Batch, Buffer};
use crate::Telemetry;

#[derive(Parser)]
#[command(
    name = "tocsin-agent",
    version,
    about = "Samples this host and ships the samples to a tocsin collector."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Configuration file (YAML). Without one, built-in defaults apply; flags override both.
    #[arg(global = true, long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Remote-write URL of the collector [default: http://127.0.0.1:9760/api/v1/write].
    #[arg(global = true, long, value_name = "URL")]
    collector: Option<String>,
    /// Address of the agent's own /metrics and /healthz [default: 127.0.0.1:9761].
    #[arg(global = true, long, value_name = "ADDR")]
    listen: Option<String>,
    /// Time between samples, e.g. 10s [default: 10s, minimum 1s].
    #[arg(global = true, long, value_name = "DURATION")]
    interval: Option<String>,
    /// Directory of *.prom files to ship each cycle (node_exporter textfile format).
    #[arg(global = true, long, value_name = "DIR")]
    textfile_dir: Option<PathBuf>,
    /// Host name for the `host` label [default: the system host name].
    #[arg(global = true, long, value_name = "NAME")]
    host: Option<String>,
    /// Directory of the agent's state: its sample buffer and the ids of actions it ran
    /// [default: ./tocsin-agent-state].
    #[arg(global = true, long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    log: tocsin_runtime::LogArgs,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Check the configuration as the agent would start with it (the same flags): the file,
    /// its probes and the shipping client's certificates; exit 0 when valid, 1 with every
    /// problem (file:line) otherwise. Opens no port and touches no state.
    CheckConfig,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::CheckConfig) = cli.cmd {
        return check_config(&cli);
    }
    tocsin_runtime::init_logging(&cli.log.filter);
    tocsin_runtime::exit_code("tocsin-agent", run(cli))
}

/// `check-config`: every problem the agent would stop on at start, without starting.
fn check_config(cli: &Cli) -> ExitCode {
    let cfg = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(1);
        }
    };
    let mut problems = Vec::new();
    if let Err(e) = crate::ship::client(&cfg.shipping, cfg.shipping.timeout) {
        problems.push(format!("collector: {e}"));
    }
    for p in &cfg.probes {
        if let Err(e) = Prober::new(p.clone()) {
            problems.push(format!("probe {:?}: {e}", p.name));
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("{} problems found", problems.len());
        return ExitCode::from(1);
    }
    let source = cli
        .config
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    println!(
        "{source}: valid — host {}, every {}, shipping to {}, {} probes",
        cfg.host,
        tocsin_config::format_duration(cfg.interval),
        cfg.shipping.urls.join(", "),
        cfg.probes.len()
    );
    ExitCode::SUCCESS
}

fn load_config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    let mut raw: RawAgentConfig = tocsin_config::read_yaml_or_default(cli.config.as_deref())?;
    if let Some(v) = &cli.collector {
        raw.collector.url = Some(v.clone());
    }
    if let Some(v) = &cli.listen {
        raw.listen = Some(v.clone());
    }
    if let Some(v) = &cli.interval {
        raw.interval = Some(v.clone());
    }
    if let Some(v) = &cli.textfile_dir {
        raw.textfile_dir = Some(v.clone());
    }
    if let Some(v) = &cli.host {
        raw.host = Some(v.clone());
    }
    if let Some(v) = &cli.state_dir {
        raw.state_dir = Some(v.clone());
    }
    raw.validate().map_err(|mut e| {
        if let Some(path) = &cli.config {
            e.of_file(path);
        }
        anyhow::anyhow!("invalid configuration:\n{e}")
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_config(&cli)?;
    info!(
        host = %cfg.host,
        interval = %tocsin_config::format_duration(cfg.interval),
        collectors = %cfg.shipping.urls.join(", "),
        listen = %cfg.listen,
        textfile_dir = %cfg.textfile_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
        labels = %cfg.labels,
        probes = cfg.probes.len(),
        "starting tocsin-agent {}",
        env!("CARGO_PKG_VERSION")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .enable_all()
        .thread_name("tocsin-agent")
        .build()?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: AgentConfig) -> anyhow::Result<()> {
    tocsin_runtime::survive_file_size_limit();
    // The buffer holds every sample not yet shipped: the agent's user's alone.
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create state directory {}", cfg.state_dir.display()))?;
    tocsin_runtime::private_dir(&cfg.state_dir)
        .with_context(|| format!("cannot make {} private", cfg.state_dir.display()))?;
    let cancel = CancellationToken::new();
    let tel = Telemetry::new();
    let queue = Buffer::open(&cfg.buffer, tel.clone())?;
    // A CA or client certificate that cannot be used is a configuration error, found now.
    crate::ship::client(&cfg.shipping, cfg.shipping.timeout).map_err(|e| anyhow::anyhow!(e))?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    println!("tocsin-agent listening on http://{addr}");

    // A task that panics (a bug) stops the agent with an error instead of leaving it serving
    // `/healthz` while it no longer samples or ships: its supervisor (systemd's
    // `Restart=always`) starts it afresh, and the buffer keeps what was not shipped.
    let sup = tocsin_runtime::Supervisor::new(cancel.clone());
    let syncer = sup.task(
        "buffer sync",
        ship::sync_loop(
            Arc::clone(&queue),
            cfg.buffer.fsync_interval,
            cancel.clone(),
        ),
    );
    let shipper = sup.task(
        "shipper",
        ship::run(
            cfg.shipping.clone(),
            cfg.buffer.replay_rate,
            cfg.buffer.fresh_first,
            Arc::clone(&queue),
            tel.clone(),
            cancel.clone(),
        ),
    );
    let pending = Pending::default();
    let latest = crate::latest::Latest::default();
    let mut probers = Vec::new();
    for p in &cfg.probes {
        probers
            .push(Prober::new(p.clone()).map_err(|e| anyhow::anyhow!("probe {:?}: {e}", p.name))?);
    }
    let probes: Vec<_> = probers
        .into_iter()
        .map(|p| {
            sup.task(
                "probe",
                probe_loop(
                    p,
                    cfg.labels.clone(),
                    Arc::clone(&queue),
                    pending.clone(),
                    latest.clone(),
                    tel.clone(),
                    cancel.clone(),
                ),
            )
        })
        .collect();
    let remediation = sup.task(
        "remediation",
        crate::actions::action_loop(cfg.clone(), tel.clone(), cancel.clone()),
    );
    let sampler = sup.task(
        "sampler",
        sample_loop(
            cfg.clone(),
            Arc::clone(&queue),
            pending,
            latest.clone(),
            tel.clone(),
            cancel.clone(),
        ),
    );

    let registry = tel.registry.clone();
    let exposed = cfg.expose_samples.then(|| (latest, cfg.labels.clone()));
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                let exposed = exposed.clone();
                async move { metrics(&registry, exposed.as_ref()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));

    let shutdown = cancel.clone();
    tokio::spawn(async move {
        tocsin_runtime::shutdown_signal().await;
        shutdown.cancel();
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await?;
    let _ = sampler.await;
    let _ = remediation.await;
    for p in probes {
        let _ = p.await;
    }
    let _ = shipper.await;
    let _ = syncer.await;
    let lost = queue.persist_memory();
    if lost > 0 {
        error!(
            samples = lost,
            "the buffer still cannot be written: samples held in memory are lost at shutdown"
        );
    }
    let pending = queue.pending();
    if pending > 0 {
        info!(
            batches = pending,
            "unsent batches kept in the buffer for the next start"
        );
    }
    if sup.failed() {
        anyhow::bail!("a task panicked (logged above); stopped so that the agent is restarted");
    }
    Ok(())
}

/// `/metrics`: the agent's own health, then (`expose_samples`) the latest samples it shipped.
fn metrics(
    registry: &prometheus::Registry,
    exposed: Option<&(crate::latest::Latest, tocsin_model::Labels)>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some((latest, base)) = exposed else {
        return tocsin_runtime::metrics_response(registry);
    };
    let families = registry.gather();
    let mut text = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
            .into_response();
    }
    let own = families.iter().map(|f| f.name().to_string()).collect();
    latest.render(base, &own, &mut text);
    (
        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        text,
    )
        .into_response()
}

/// Samples at start, then every interval on a fixed grid (no drift) shifted by a small random
/// phase, so that many agents do not hit the collector in the same instant.
async fn sample_loop(
    cfg: AgentConfig,
    queue: Arc<Buffer>,
    probe_pending: Pending,
    latest: crate::latest::Latest,
    tel: Telemetry,
    cancel: CancellationToken,
) {
    let host = Arc::new(Mutex::new(HostSampler::new(cfg.statfs_timeout)));
    let told = Arc::new(Mutex::new(Told::default()));
    let logs = Arc::new(Mutex::new(tocsin_logs::Tailer::new(
        cfg.logs.clone(),
        tocsin_logs::checkpoint_path(&cfg.state_dir),
    )));
    let mut grid = Grid::new(cfg.interval);
    let interval_secs = cfg.interval.as_secs_f64();
    loop {
        let ts = now_ms();
        let t0 = Instant::now();
        let host = Arc::clone(&host);
        let logs = Arc::clone(&logs);
        let told = Arc::clone(&told);
        let textfile_dir = cfg.textfile_dir.clone();
        let tel2 = tel.clone();
        let fams = tokio::task::spawn_blocking(move || {
            collect(&host, &logs, &told, textfile_dir.as_deref(), &tel2)
        })
        .await;
        match fams {
            Ok(mut fams) => {
                fams.push(
                    Family::gauge(
                        "tocsin_agent_interval_seconds",
                        "The agent's sampling interval; the collector judges liveness by it.",
                    )
                    .with([], interval_secs),
                );
                let mut series = probe_pending.take();
                series.extend(tocsin_sampling::to_series(&fams, &cfg.labels, ts));
                latest.set_host(&fams);
                queue.push(Batch::new(&series));
            }
            Err(e) => error!(error = %e, "sampling task failed"),
        }
        tel.cycles.inc();
        tel.cycle_seconds.observe(t0.elapsed().as_secs_f64());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = grid.wait() => {}
        }
    }
}

/// The sampling errors of the last cycle: each is logged when it appears and when it clears,
/// not every cycle while it lasts (a broken textfile at a 10 s interval would write 8,640
/// lines a day); every occurrence is still counted in `tocsin_agent_sampler_errors_total`.
#[derive(Debug, Default)]
struct Told {
    last: std::collections::BTreeSet<SamplingError>,
}

/// A sampler's name and what went wrong.
type SamplingError = (&'static str, String);

impl Told {
    /// This cycle's errors (sampler, text): those not told last cycle are returned to be
    /// logged, and those gone since are returned as cleared.
    fn cycle(
        &mut self,
        now: std::collections::BTreeSet<SamplingError>,
    ) -> (Vec<SamplingError>, Vec<SamplingError>) {
        let new = now.difference(&self.last).cloned().collect();
        let cleared = self.last.difference(&now).cloned().collect();
        self.last = now;
        (new, cleared)
    }
}

fn collect(
    host: &Mutex<HostSampler>,
    logs: &Mutex<tocsin_logs::Tailer>,
    told: &Mutex<Told>,
    textfile_dir: Option<&std::path::Path>,
    tel: &Telemetry,
) -> Vec<Family> {
    let mut out = Vec::new();
    let mut errors = std::collections::BTreeSet::new();
    let runs = host.lock().unwrap_or_else(|p| p.into_inner()).sample();
    for r in runs {
        tel.sampler_seconds
            .with_label_values(&[r.name])
            .set(r.duration.as_secs_f64());
        match r.result {
            Ok(f) => out.extend(f),
            Err(e) => {
                tel.sampler_errors.with_label_values(&[r.name]).inc();
                errors.insert((r.name, e.to_string()));
            }
        }
    }
    if let Some(dir) = textfile_dir {
        let t = Instant::now();
        let tf = textfile::read_dir(dir);
        tel.sampler_seconds
            .with_label_values(&["textfile"])
            .set(t.elapsed().as_secs_f64());
        for e in tf.errors {
            tel.sampler_errors.with_label_values(&["textfile"]).inc();
            errors.insert(("textfile", e));
        }
        out.extend(tf.families);
    }
    let (new, cleared) = told.lock().unwrap_or_else(|p| p.into_inner()).cycle(errors);
    for (sampler, error) in new {
        warn!(
            sampler,
            error, "sampling failed (told again once it clears)"
        );
    }
    for (sampler, error) in cleared {
        info!(sampler, error, "sampling error cleared");
    }
    let t = Instant::now();
    let mut logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    logs.poll();
    out.extend(logs.families());
    tel.sampler_seconds
        .with_label_values(&["logs"])
        .set(t.elapsed().as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    use super::Told;

    #[test]
    fn a_lasting_error_is_told_once_and_again_when_it_clears() {
        let set = |v: &[(&'static str, &str)]| {
            v.iter()
                .map(|(s, e)| (*s, e.to_string()))
                .collect::<std::collections::BTreeSet<_>>()
        };
        let mut t = Told::default();
        let bad = ("textfile", "t.prom:3: invalid value \"line\"");
        let (new, cleared) = t.cycle(set(&[bad]));
        assert_eq!((new.len(), cleared.len()), (1, 0));
        for _ in 0..3 {
            assert_eq!(
                t.cycle(set(&[bad])),
                (vec![], vec![]),
                "not told every cycle"
            );
        }
        let other = ("textfile", "u.prom:1: missing value");
        let (new, cleared) = t.cycle(set(&[bad, other]));
        assert_eq!(new, vec![(other.0, other.1.to_string())]);
        assert!(cleared.is_empty());
        let (new, cleared) = t.cycle(set(&[]));
        assert!(new.is_empty());
        assert_eq!(cleared.len(), 2);
    }
}
