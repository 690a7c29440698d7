//! The writer thread: owns the store and the rule engine, so that each group commit makes
//! samples, alert states and the notifications they cause durable together, before any write
//! request is acknowledged.

mod group;
mod msg;
mod report;
mod sync;

use group::Group;
pub use msg::{AckFailure, Ingested, Msg, OpFailure, Origin, WriteError};
use sync::Syncer;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tocsin_alerting::Pipeline;
use tocsin_dispatch::AlertInfo;
use tocsin_model::{now_ms, TimestampMs};
use tocsin_rules::external::{self, External};
use tocsin_rules::{AlertState, Engine, EngineOptions, Rule, Transition};
use tocsin_store::{Store, StoreError};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::liveness::Liveness;
use crate::services::Services;
use crate::storage_alert::StorageAlert;
use crate::view::View;
use crate::Telemetry;

pub struct Writer {
    store: Store,
    /// What rule evaluation and alerting know, apart from the store (a transaction borrows the
    /// store while these change).
    core: Core,
    view: Arc<RwLock<View>>,
    wake: watch::Sender<u64>,
    tel: Telemetry,
    retention_ms: i64,
    checkpoint_every: Duration,
    last_checkpoint: Instant,
    /// When the error budgets' records were last saved (`BUDGETS_SAVE_EVERY`).
    budgets_saved: Instant,
    /// Transitions produced outside a message (alerts of rules removed while the collector was
    /// down), committed with the next group.
    carry: Vec<Transition>,
    /// Whether the next batch looks for firing alerts that no receiver has heard of and
    /// nothing holds back any more (a silence ended, or the collector restarted).
    recheck_held: bool,
    runner: Option<mpsc::UnboundedSender<tocsin_remedy::Request>>,
    forward: Vec<Arc<crate::forward::Target>>,
    storage_alert: StorageAlert,
    urgent: Arc<tocsin_notify::Urgent>,
    /// Makes each committed group durable while the next one is prepared.
    syncer: Syncer,
    /// When the API's view was last refreshed, what that took, and whether a change since
    /// waits for the next refresh (`VIEW_SHARE`).
    view_refreshed: Instant,
    view_cost: Duration,
    view_stale: bool,
}

/// After an automatic change (alerts fired or resolved), the API's view is refreshed at once
/// unless the last refresh was less than this many times its own cost ago: then with a later
/// change or the next tick (a second at most). The refresh copies every incident and group
/// and a reference to every alert (an alert is copied when changed while the view holds it),
/// so in a mass outage (ten thousand alerts posted in batches, each batch its own commit) it
/// would otherwise cost each commit as much as the whole state, and the writer would spend
/// most of its time on copies nobody reads; this way it spends at most a tenth on them. A
/// small state refreshes in microseconds, and so after every change. A person's change
/// (an acknowledgement, an edit) is always refreshed before it is answered.
const VIEW_SHARE: u32 = 10;

/// The writer's state besides the store.
struct Core {
    engine: Engine,
    /// Alerts raised elsewhere and posted here.
    external: External,
    pipeline: Pipeline,
    liveness: Liveness,
    services: Services,
    slos: crate::slo::Slos,
    tel: Telemetry,
    engine_opts: EngineOptions,
    /// Whether anything is forwarded (remote-write targets configured).
    forwarding: bool,
    self_metrics: tocsin_config::collector::SelfMetricsConfig,
    /// When the collector's own metrics were last stored.
    self_recorded: Option<Instant>,
}

/// What the writer needs from the configuration.
pub struct Settings {
    pub engine: EngineOptions,
    /// Alerts posted from elsewhere: how long one without `endsAt` lives, how many at most.
    pub external: tocsin_config::collector::ExternalAlertsConfig,
    /// Routing, inhibition, escalation, incidents, remediation limits.
    pub alerting: tocsin_alerting::Settings,
    /// Where collector-side action requests go to be run.
    pub runner: Option<mpsc::UnboundedSender<tocsin_remedy::Request>>,
    /// Remote-write targets fed with every committed group.
    pub forward: Vec<Arc<crate::forward::Target>>,
    pub retention: Duration,
    pub checkpoint_every: Duration,
    pub host_down_after: Option<Duration>,
    pub host_forget_after: Duration,
    /// Page about the collector's own storage after its writes fail this long.
    pub storage_alert_after: Option<Duration>,
    /// Where that page waits for the delivery workers (the outbox being unwritable).
    pub urgent: Arc<tocsin_notify::Urgent>,
    /// How often the collector's own metrics are stored, and whether they are forwarded.
    pub self_metrics: tocsin_config::collector::SelfMetricsConfig,
    /// Services with objectives: their error budgets are kept.
    pub services: Vec<tocsin_config::services::ServiceConfig>,
}

/// How often the checkpoint also saves the error budgets' records (and always at shutdown): a
/// restart reads them and at most this much of the indicator since (an hour for 200 services
/// with two objectives is 1.4 million samples, against 2 billion for their 30-day periods),
/// while a record of some tens of kilobytes is not written at every checkpoint.
const BUDGETS_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long an ended silence is still listed (as `expired`) by Alertmanager's API: as long as
/// Alertmanager keeps it by default (`--data.retention=120h`).
const EXPIRED_SILENCES_LISTED_MS: i64 = 120 * 3_600_000;

/// The most one group commit takes in, so a flood still gets acknowledged in steps.
const GROUP_MAX_REQUESTS: usize = 256;
const GROUP_MAX_SAMPLES: usize = 1_000_000;

impl Writer {
    pub fn new(
        mut store: Store,
        rules: Vec<Rule>,
        settings: Settings,
        view: Arc<RwLock<View>>,
        wake: watch::Sender<u64>,
        tel: Telemetry,
    ) -> Result<Self, StoreError> {
        tel.rules_loaded.set(rules.len() as i64);
        let liveness = Liveness::restore(
            &store,
            settings.host_down_after.map(|d| d.as_millis() as i64),
            settings.host_forget_after.as_millis() as i64,
            now_ms(),
        )?;
        let storage_alert = StorageAlert::new(
            settings.storage_alert_after,
            &settings.alerting.external_url,
        );
        let mut slos = crate::slo::Slos::new(&settings.services);
        let restored = slos.restore(&store, now_ms())?;
        for (key, e) in &restored.refused {
            warn!(key, error = %e, "saved error budget not taken; rebuilt from the stored indicator");
        }
        if restored.read > 0 || restored.loaded > 0 {
            info!(
                saved = restored.loaded,
                samples = restored.read,
                "error budgets restored: saved records, then the stored indicator since"
            );
        }
        // Saved at once, so a crash before the first hourly save does not rebuild them again.
        if let Err(e) = store.save_error_budgets(&slos.save()) {
            tel.storage_errors.inc();
            error!(error = %e, "cannot save the error budgets; a restart rebuilds them");
        }
        let syncer = Syncer::start(store.defer_sync()?)?;
        let mut w = Writer {
            core: Core {
                engine: Engine::new(rules, settings.engine),
                external: External::new(
                    settings.external.resolve_timeout.as_millis() as i64,
                    settings.external.max_alerts,
                ),
                pipeline: Pipeline::new(settings.alerting),
                liveness,
                services: Services::new(
                    settings
                        .services
                        .iter()
                        .filter_map(|s| Some((s.name.clone(), s.rpo?.as_secs_f64())))
                        .collect(),
                    settings
                        .services
                        .iter()
                        .filter_map(|s| Some((s.name.clone(), s.latency?.threshold)))
                        .collect(),
                )
                .with_hosts(&settings.services),
                slos,
                tel: tel.clone(),
                engine_opts: settings.engine,
                forwarding: !settings.forward.is_empty(),
                self_metrics: settings.self_metrics,
                self_recorded: None,
            },
            store,
            view,
            wake,
            tel,
            retention_ms: settings.retention.as_millis() as i64,
            checkpoint_every: settings.checkpoint_every,
            last_checkpoint: Instant::now(),
            budgets_saved: Instant::now(),
            carry: Vec::new(),
            recheck_held: false,
            runner: settings.runner,
            forward: settings.forward,
            storage_alert,
            urgent: settings.urgent,
            syncer,
            view_refreshed: Instant::now(),
            view_cost: Duration::ZERO,
            view_stale: false,
        };
        w.load_silences()?;
        let restored = w.restore_engine()?;
        info!(alerts = restored, "alert states restored");
        w.refresh_view(true);
        Ok(w)
    }

    /// Reloads the silences: those not yet ended for delivery, and those too that ended within
    /// `EXPIRED_SILENCES_LISTED_MS` for the API (Alertmanager lists them as `expired`).
    fn load_silences(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        let stored = self.store.silences(now - EXPIRED_SILENCES_LISTED_MS)?;
        let silences = stored
            .iter()
            .filter(|s| s.ends_ms >= now)
            .filter_map(|s| {
                tocsin_alerting::silence::Silence::new(
                    s.id,
                    &s.matchers,
                    s.schedule.as_deref(),
                    s.starts_ms,
                    s.ends_ms,
                )
                .map_err(|e| error!(id = s.id, error = %e, "unreadable silence ignored"))
                .ok()
            })
            .collect();
        self.core.pipeline.set_silences(silences);
        self.view
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .silences = stored;
        Ok(())
    }

    /// Takes a reloaded configuration's alerting part between two groups: the pipeline starts
    /// again from the stored state under it (as a restart with the new file would), and the
    /// next group looks at every firing alert again. Nothing changes if the state cannot be
    /// read.
    fn configure(
        &mut self,
        alerting: tocsin_alerting::Settings,
        receivers: std::collections::BTreeSet<String>,
    ) -> Result<tocsin_alerting::Reconfigured, String> {
        self.finish_sync();
        let now = now_ms();
        let since = now - alerting.incidents.reopen_within_ms;
        let read = (|| -> Result<_, StoreError> {
            Ok((
                self.store.dispatch_rows()?,
                self.store.live_incidents(since)?,
                self.store.remedy_rows()?,
            ))
        })();
        let (dispatch, incidents, remedy) = read.map_err(|e| {
            self.tel.storage_errors.inc();
            format!("cannot read the notifications and incidents in flight: {e}")
        })?;
        let route = Arc::new(alerting.route.clone());
        let out = self
            .core
            .pipeline
            .reconfigure(alerting, &receivers, dispatch, incidents, remedy, now);
        for (key, e) in &out.unreadable {
            error!(key, error = %e, "unreadable notification, incident or remediation state dropped");
        }
        self.recheck_held = true;
        {
            let mut v = self.view.write().unwrap_or_else(|p| p.into_inner());
            v.receiver_names = receivers.into_iter().collect();
            v.route = Some(route);
        }
        self.refresh_view(true);
        Ok(out)
    }

    /// Sends an alert about the collector itself to the receivers the route gives it, from
    /// memory: used when the outbox, in the failing database, cannot take it.
    fn page(&mut self, a: AlertInfo, now: TimestampMs) {
        let sent = self.core.pipeline.page(&a, now);
        let fx = self.core.pipeline.take_effects();
        self.tel.silenced.inc_by(fx.silenced);
        for (receiver, body) in &sent {
            self.urgent.push(receiver, body.clone(), now);
        }
        if !sent.is_empty() {
            info!(alert = %a.rule, firing = a.firing, receivers = sent.len(), "self-alert sent from memory");
            self.wake.send_modify(|n| *n += 1);
        }
    }

    fn restore_engine(&mut self) -> Result<usize, StoreError> {
        let rules: Vec<Rule> = self
            .core
            .engine
            .rules()
            .iter()
            .map(|r| (**r).clone())
            .collect();
        self.core.engine = Engine::new(rules, self.core.engine_opts);
        let mut states = Vec::new();
        let mut external = Vec::new();
        for (key, json) in self.store.alert_states()? {
            let read = if key.starts_with(external::STORAGE_PREFIX) {
                serde_json::from_str(&json).map(|a| external.push(a))
            } else {
                serde_json::from_str::<AlertState>(&json).map(|s| states.push(s))
            };
            if let Err(e) = read {
                error!(key, error = %e, "unreadable alert state dropped");
            }
        }
        let n = states.len() + external.len();
        let now = now_ms();
        self.carry = self.core.engine.restore(states, now);
        self.carry.extend(self.core.external.restore(external, now));
        let unreadable = self.core.pipeline.restore(
            self.store.dispatch_rows()?,
            self.store
                .live_incidents(self.core.pipeline.incidents_since(now))?,
            self.store.remedy_rows()?,
            now,
        );
        for (key, e) in unreadable {
            error!(key, error = %e, "unreadable notification, incident or remediation state dropped");
        }
        self.recheck_held = true;
        let (b, unreadable) = self.core.engine.restore_baselines(self.store.baselines()?);
        for (key, e) in unreadable {
            error!(key, error = %e, "unreadable learned baseline dropped; it learns afresh");
        }
        if b > 0 {
            info!(baselines = b, "learned baselines restored");
        }
        Ok(n)
    }

    /// Runs until every sender is gone, then checkpoints.
    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            // While a group's fsync runs, the next group is taken in if there is one;
            // otherwise the group is finished first (answers, notifications) before waiting.
            let first = match rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.finish_sync();
                    match rx.blocking_recv() {
                        Some(m) => m,
                        None => break,
                    }
                }
            };
            let mut msgs = vec![first];
            let mut samples = 0usize;
            while msgs.len() < GROUP_MAX_REQUESTS && samples < GROUP_MAX_SAMPLES {
                match rx.try_recv() {
                    Ok(m) => {
                        if let Msg::Ingest { batch, .. } = &m {
                            samples += batch.iter().map(|s| s.samples.len()).sum::<usize>();
                        }
                        msgs.push(m);
                    }
                    Err(_) => break,
                }
            }
            self.handle(msgs);
        }
        self.finish_sync();
        self.save_states(true);
        match self.store.checkpoint(now_ms() - self.retention_ms) {
            Ok(s) => info!(samples = s.samples_written, "final checkpoint written"),
            Err(e) => {
                error!(error = %e, "final checkpoint failed; the ingest log still holds the data")
            }
        }
    }

    fn handle(&mut self, msgs: Vec<Msg>) {
        // Silence changes are small writes of their own, done before the group.
        let msgs: Vec<Msg> = msgs
            .into_iter()
            .filter_map(|m| match m {
                Msg::Federate { skip, reply } => {
                    let since = now_ms() - self.core.engine_opts.stale_after_ms;
                    let _ = reply.send(crate::exposition::federation(
                        self.store.latest(since).into_iter(),
                        &skip,
                    ));
                    None
                }
                Msg::AddSilence { silence, reply } => {
                    let r = self.store.add_silence(&silence).map_err(|e| e.to_string());
                    self.sync_now();
                    let _ = self.load_silences();
                    let _ = reply.send(r);
                    None
                }
                Msg::Configure {
                    alerting,
                    receivers,
                    reply,
                } => {
                    let _ = reply.send(self.configure(*alerting, receivers));
                    None
                }
                Msg::ExpireSilence { id, reply } => {
                    let r = self
                        .store
                        .expire_silence(id, now_ms())
                        .map_err(|e| e.to_string());
                    self.sync_now();
                    let _ = self.load_silences();
                    let _ = reply.send(r);
                    None
                }
                other => Some(other),
            })
            .collect();
        if msgs.is_empty() {
            return;
        }
        let started = Instant::now();
        let now = now_ms();
        let mut g = Group::with(std::mem::take(&mut self.carry));
        // What the service levels observe in this group is undone if it is not stored.
        self.core.slos.mark();
        let recheck_held = std::mem::take(&mut self.recheck_held);
        // Each request's answer is kept before anything that can fail, and what a failure
        // leaves unprocessed is answered too: every sender hears why (a dropped reply says
        // nothing).
        let mut pending = msgs.into_iter();
        let result = (|| -> Result<(), StoreError> {
            let mut tx = self.store.begin()?;
            for m in pending.by_ref() {
                self.core.take(m, &mut g, &mut tx, now)?;
            }
            self.core.stage(&mut g, &mut tx, recheck_held, now)?;
            tx.commit()
        })();
        let ticked = g.ticked;
        // The group before this one is finished first, whatever became of this one.
        self.finish_sync();
        match result {
            Ok(()) => {
                self.tel
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                match self.syncer.begin() {
                    Ok(()) => self.syncer.pending = Some((g, now)),
                    Err(e) => self.sync_failed(g, e),
                }
            }
            Err(e) => self.failed(g, pending, e, now),
        }
        if ticked {
            let now = now_ms();
            if self
                .core
                .pipeline
                .silences()
                .iter()
                .any(|s| s.ends_ms < now)
            {
                let _ = self.load_silences();
            }
            // A silence expired, ran out or closed its maintenance window since the last tick:
            // what it held back and still fires is told.
            if self.core.pipeline.silence_ended(now) {
                self.recheck_held = true;
            }
            self.refresh_view(true);
            if self.last_checkpoint.elapsed() >= self.checkpoint_every {
                self.checkpoint();
            }
        }
    }

    /// Waits for the fsync under way, then finishes its group: answers, notifications,
    /// forwarding.
    fn finish_sync(&mut self) {
        let Some((g, now)) = self.syncer.pending.take() else {
            return;
        };
        match self.syncer.wait() {
            Ok(()) => self.committed(g, now),
            Err(e) => self.sync_failed(g, e),
        }
    }

    /// Makes a write outside any group (a silence) durable before it is answered.
    fn sync_now(&mut self) {
        self.finish_sync();
        if let Err(e) = self.syncer.sync_now() {
            self.sync_failed(Group::default(), e);
        }
    }

    /// The write-ahead log could not be made durable: what SQLite holds in memory and what is
    /// on disk may differ, and nothing here can tell which samples survived. The group's
    /// senders are told to send again, and the collector stops (exit status 74) so that its
    /// restart reads what is on disk; everything acknowledged before was durable.
    fn sync_failed(&mut self, g: Group, e: std::io::Error) -> ! {
        self.tel.storage_errors.inc();
        error!(error = %e, "fsync of the write-ahead log failed; stopping: a restart reads what is on disk");
        g.refuse(&WriteError::Unavailable(format!(
            "the write could not be made durable ({e}); send again"
        )));
        std::process::exit(74)
    }

    /// Saves what restarts would otherwise learn or rebuild again: the learned baselines, and
    /// the error budgets' records when `budgets` or once `BUDGETS_SAVE_EVERY` has passed.
    fn save_states(&mut self, budgets: bool) {
        if let Err(e) = self.store.save_baselines(&self.core.engine.baselines()) {
            self.tel.storage_errors.inc();
            error!(error = %e, "cannot save learned baselines");
        }
        if budgets || self.budgets_saved.elapsed() >= BUDGETS_SAVE_EVERY {
            match self.store.save_error_budgets(&self.core.slos.save()) {
                Ok(()) => self.budgets_saved = Instant::now(),
                Err(e) => {
                    self.tel.storage_errors.inc();
                    error!(error = %e, "cannot save the error budgets; a restart rebuilds them");
                }
            }
        }
    }

    fn checkpoint(&mut self) {
        let t = Instant::now();
        self.save_states(false);
        match self.store.checkpoint(now_ms() - self.retention_ms) {
            Ok(s) => {
                self.tel.checkpoints.inc();
                info!(
                    chunks = s.chunks_written,
                    samples = s.samples_written,
                    expired = s.chunks_expired,
                    ms = t.elapsed().as_millis() as u64,
                    "checkpoint"
                );
            }
            Err(e) => {
                self.tel.storage_errors.inc();
                error!(error = %e, "checkpoint failed; will retry");
            }
        }
        self.last_checkpoint = Instant::now();
    }
}
