//! The collector itself: configuration, storage, the writer thread, delivery workers, the
//! HTTP server, and a graceful stop.

//! Command line: `tocsin-collector [FLAGS]` runs the collector; subcommands do one-off jobs.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tocsin_config::collector::{CollectorConfig, RawCollectorConfig};
use tocsin_rules::EngineOptions;
use tocsin_store::{Store, StoreOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::*;
use crate::api::{app, AppState};
use crate::view::View;
use crate::writer::{Msg, Settings, Writer};
use crate::{rulefiles, Telemetry};

/// Where the configuration comes from: the file, then the command line's overrides. Read at
/// start and at every reload.
#[derive(Clone)]
pub(super) struct ConfigSource {
    config: Option<PathBuf>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    rules: Vec<PathBuf>,
}

impl ConfigSource {
    pub(super) fn of(args: &RunArgs) -> ConfigSource {
        ConfigSource {
            config: args.config.clone(),
            listen: args.listen.clone(),
            data_dir: args.data_dir.clone(),
            rules: args.rules.clone(),
        }
    }

    pub(super) fn load(&self) -> anyhow::Result<CollectorConfig> {
        let mut raw: RawCollectorConfig =
            tocsin_config::read_yaml_or_default(self.config.as_deref())?;
        if let Some(l) = &self.listen {
            raw.listen = Some(l.clone());
        }
        if let Some(d) = &self.data_dir {
            raw.data_dir = Some(d.clone());
        }
        if !self.rules.is_empty() {
            raw.rules = self.rules.clone();
        }
        raw.validate().map_err(|mut e| {
            if let Some(path) = &self.config {
                e.of_file(path);
            }
            anyhow::anyhow!("invalid configuration:\n{e}")
        })
    }
}

pub(super) fn load_config(args: &RunArgs) -> anyhow::Result<CollectorConfig> {
    ConfigSource::of(args).load()
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tocsin-collector")
        .build()?;
    // SIGHUP asks for a reload; caught from here on, so that one sent while the store opens
    // (which can take a while) is done once the collector runs, rather than ending it.
    let hangup = crate::reload::hangups(&rt);
    let source = ConfigSource::of(&args);
    let cfg = source.load()?;
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
    let store = Store::open(&db, store_options(&cfg))?;

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
        tocsin_notify::log_receiver(r);
    }

    rt.block_on(serve(
        cfg,
        store,
        rules,
        db,
        Arc::new(move || source.load()),
        hangup,
    ))
}

pub(super) async fn serve(
    cfg: CollectorConfig,
    mut store: Store,
    rules: Vec<tocsin_rules::Rule>,
    db: PathBuf,
    source: crate::reload::Source,
    hangup: crate::reload::Hangups,
) -> anyhow::Result<()> {
    tocsin_runtime::survive_file_size_limit();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // A background task or the writer thread that panics stops the collector with an error,
    // to be restarted (`Restart=always`), rather than serve on without it.
    let sup = tocsin_runtime::Supervisor::new(cancel.clone());
    let tel = Telemetry::new();
    let view = Arc::new(RwLock::new(View {
        receiver_names: cfg.receivers.iter().map(|r| r.name.clone()).collect(),
        route: Some(Arc::new(cfg.route.clone())),
        ..View::default()
    }));
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
        sup.spawn(&tracker, "collector actions", async move {
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
                    let status = r.status;
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
    let mut settings = writer_settings(&cfg, Arc::clone(&ack_secret), Arc::clone(&urgent));
    settings.runner = Some(run_tx);
    settings.forward = crate::forward::start(
        &cfg.remote_write,
        &tel.registry,
        cancel.clone(),
        &tracker,
        &sup,
    )?;
    let resolver = store.resolver();
    let writer = Writer::new(
        store,
        rules,
        settings,
        Arc::clone(&view),
        wake_tx,
        tel.clone(),
    )?;
    let guard = sup.guard("writer");
    let writer_thread = std::thread::Builder::new()
        .name("tocsin-writer".into())
        .spawn(move || {
            let _guard = guard;
            writer.run(rx)
        })?;

    tel.registry
        .register(Box::new(crate::exposition::Baselines::new(Arc::clone(
            &view,
        ))))?;
    tel.registry
        .register(Box::new(crate::exposition::Alerts::new(Arc::clone(&view))))?;
    let metrics = tocsin_notify::DeliveryMetrics::new(&tel.registry)?;
    // The receivers' workers: a receiver that cannot be built stops the start; then they run
    // (and restart with the receivers of each reload).
    for r in &cfg.receivers {
        tocsin_notify::check_receiver(r)
            .map_err(|e| anyhow::anyhow!("receiver {}: {e}", r.name))?;
    }
    let (receivers_tx, receivers_rx) = watch::channel(Arc::new(cfg.receivers.clone()));
    sup.spawn(
        &tracker,
        "delivery",
        tocsin_notify::run_workers(
            receivers_rx,
            db.clone(),
            Arc::clone(&urgent),
            wake_rx,
            metrics,
            cancel.clone(),
        ),
    );

    if let Some(hb) = cfg.heartbeat.clone() {
        sup.spawn(
            &tracker,
            "heartbeat",
            crate::heartbeat::run(hb, tel.clone(), cancel.clone()),
        );
    }

    // A tick drives `for`, staleness, views and checkpoints.
    {
        let tx = tx.clone();
        let cancel = cancel.clone();
        sup.spawn(&tracker, "tick", async move {
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
    let (_watcher, reload) = rulefiles::watch(cfg.rules.clone(), reload_tx, cancel.clone())
        .context("cannot watch rule files")?;
    sup.spawn(&tracker, "rule file watch", reload);
    {
        let tx = tx.clone();
        let tel = tel.clone();
        let cancel = cancel.clone();
        sup.spawn(&tracker, "rule reloads", async move {
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

    let mut state = app_state(
        &cfg,
        &db,
        tx.clone(),
        resolver,
        view,
        tel.clone(),
        Arc::clone(&ack_secret),
    )?;
    let reloader = Arc::new(crate::reload::Reloader::new(
        source,
        cfg.clone(),
        tx,
        receivers_tx,
        ack_secret,
        Arc::clone(&state.outbox),
        tel.clone(),
    ));
    state.reloader = Some(Arc::clone(&reloader));
    sup.spawn(
        &tracker,
        "configuration reload",
        crate::reload::on_hangup(hangup, reloader, cancel.clone()),
    );
    sup.spawn(
        &tracker,
        "reports",
        crate::reports::run(state.clone(), cancel.clone()),
    );
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
    let agents_need_tokens = state
        .agent_tokens
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .required;
    if state.token.is_none() && !agents_need_tokens {
        if let Some(w) = state.access.agents_off() {
            warn!("{w}: agents' writes and remediation polls are refused until one is");
        }
    }
    for node in cfg.route.resent_on_every_change() {
        warn!(node, "{}", tocsin_config::route::RESENT_ON_EVERY_CHANGE);
    }
    // Agents from the network: a service that takes any host's probes can be paged for by
    // any of them (its error budget burnt by probes labelled with its name).
    if !cfg.listen.ip().is_loopback() {
        for s in cfg.services.iter().filter(|s| s.hosts.is_empty()) {
            warn!(
                service = %s.name,
                "service without hosts: any agent's probes labelled with it count toward it; set services[].hosts to the hosts that probe it"
            );
        }
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
    if sup.failed() {
        anyhow::bail!("a task panicked (logged above); stopped so that the collector is restarted");
    }
    info!("stopped");
    Ok(())
}

/// What the writer thread needs from the configuration (no collector-side runner, nothing
/// forwarded: the caller adds those).
pub(crate) fn writer_settings(
    cfg: &CollectorConfig,
    ack_secret: Arc<Vec<u8>>,
    urgent: Arc<tocsin_notify::Urgent>,
) -> Settings {
    Settings {
        engine: EngineOptions {
            stale_after_ms: cfg.stale_after.as_millis() as i64,
        },
        alerting: tocsin_alerting::Settings::from_config(cfg, ack_secret),
        external: cfg.external_alerts.clone(),
        retention: cfg.retention,
        checkpoint_every: cfg.checkpoint_interval,
        host_down_after: cfg.host_down_after,
        host_forget_after: cfg.host_forget_after,
        storage_alert_after: cfg.storage_alert_after,
        urgent,
        runner: None,
        forward: Vec::new(),
        self_metrics: cfg.self_metrics.clone(),
        services: cfg.services.clone(),
    }
}

/// What the HTTP API works with: its own connections to the database `db` (the outbox; tokens,
/// incidents and audit), the writer's queue and view.
pub(crate) fn app_state(
    cfg: &CollectorConfig,
    db: &std::path::Path,
    writer: mpsc::Sender<Msg>,
    resolver: tocsin_store::Resolver,
    view: Arc<RwLock<View>>,
    tel: Telemetry,
    ack_secret: Arc<Vec<u8>>,
) -> anyhow::Result<AppState> {
    let outbox = tocsin_store::Outbox::open(db, false).context("cannot open the outbox")?;
    let records = tocsin_store::Records::open(db).context("cannot open the records")?;
    let agent_tokens =
        crate::api::load_agent_tokens(&records).context("cannot read agent tokens")?;
    Ok(AppState {
        writer,
        resolver,
        view,
        tel,
        token: cfg.ingest.token.clone(),
        access: crate::access::Access::new(
            cfg.admin_token.clone(),
            cfg.read_token.clone(),
            cfg.listen,
        )
        .with_senders(cfg.external_alerts.token.clone()),
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
        outbox: Arc::new(std::sync::Mutex::new(outbox)),
        records: Arc::new(std::sync::Mutex::new(records)),
        agent_tokens: Arc::new(RwLock::new(agent_tokens)),
        request_timeout: cfg.ingest.request_timeout,
        federate: cfg.federate,
        query: Arc::new(crate::query::QueryService::new(
            db.to_path_buf(),
            &cfg.query,
        )),
        sessions: crate::session::Sessions::default(),
        secure_cookies: cfg.tls.is_some(),
        changes: Arc::new(crate::api::changes::ChangePolicy {
            freezes: cfg.change_freezes.clone(),
            show_before_ms: cfg.incidents.changes_before.as_millis() as i64,
        }),
        reporting: Arc::new(crate::reports::Reporting {
            zone: cfg.timezone.clone(),
            locale: cfg.reports.locale,
            schedules: cfg.reports.schedules.clone(),
            services: cfg.services.clone(),
        }),
        reloader: None,
    })
}

/// How the store is opened for this configuration.
pub(crate) fn store_options(cfg: &CollectorConfig) -> StoreOptions {
    StoreOptions {
        max_series_per_host: cfg.ingest.max_series_per_host,
        max_hosts: cfg.ingest.max_hosts,
        ..StoreOptions::default()
    }
}
