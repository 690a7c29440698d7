//! The writer thread: owns the store and the rule engine, so that each group commit makes
//! samples, alert states and the notifications they cause durable together, before any write
//! request is acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tocsin_alerting::{Effects, IncidentOp, Pipeline};
use tocsin_dispatch::AlertInfo;
use tocsin_model::{now_ms, SeriesSamples, TimestampMs};
use tocsin_rules::{AlertState, Engine, EngineOptions, Rule, Transition};
use tocsin_store::{AppendStats, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info};

use crate::liveness::{HostView, Liveness};
use crate::services::Services;
use crate::storage_alert::StorageAlert;
use crate::Telemetry;

/// Where an ingested batch comes from, which decides whether it is stored and forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An agent or any remote-write sender: stored, then forwarded.
    Sender,
    /// For rule evaluation only: the sender stores these samples later, in order (see
    /// `tocsin_wire::LIVE_HEADER`).
    Live,
    /// Forwarded by the other collector of a pair (`tocsin_wire::FORWARDED_HEADER`): stored,
    /// not forwarded again.
    Peer,
}

/// The writer's answer to an ingest request, with the request's series handed back: they are
/// freed by the thread that decoded them (the allocator's cheap, local path) rather than on
/// the writer's single thread, where dropping them was a seventh of its work.
pub struct Ingested {
    pub result: Result<AppendStats, WriteError>,
    pub batch: Vec<SeriesSamples>,
}

pub enum Msg {
    Ingest {
        batch: Vec<SeriesSamples>,
        origin: Origin,
        reply: oneshot::Sender<Ingested>,
    },
    Tick,
    Reload(Vec<Rule>),
    AddSilence {
        silence: tocsin_store::Silence,
        reply: oneshot::Sender<Result<i64, String>>,
    },
    ExpireSilence {
        id: i64,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Acknowledge the firing alert `id`; `link_level` when it comes from a signed link.
    Ack {
        id: String,
        link_level: Option<tocsin_model::Level>,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<tocsin_dispatch::Ack, AckFailure>>,
    },
    /// An agent asks for the action requests of its host (each handed out once).
    PollActions {
        host: String,
        reply: oneshot::Sender<Result<Vec<tocsin_remedy::Request>, String>>,
    },
    /// The result of an action request, from the agent or the collector's own runner.
    ActionResult {
        id: String,
        status: tocsin_remedy::ResultStatus,
        summary: String,
        output: String,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    Incident {
        id: String,
        op: IncidentOp,
        reply: oneshot::Sender<Result<(), OpFailure>>,
    },
    /// The newest sample of every series fresh within `stale_after`, in the text exposition
    /// format, leaving out metric names in `skip` (the collector's own).
    Federate {
        skip: std::collections::HashSet<String>,
        reply: oneshot::Sender<String>,
    },
}

/// Why a request about an incident or an action's result did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpFailure {
    /// Nothing by that id.
    NotFound(String),
    /// The request contradicts the current state (a resolved incident, a finished action).
    Refused(String),
    /// Not written: the sender should try again.
    Storage(String),
}

impl std::fmt::Display for OpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpFailure::NotFound(e) | OpFailure::Refused(e) | OpFailure::Storage(e) => {
                f.write_str(e)
            }
        }
    }
}

/// Why an acknowledgement did not take.
#[derive(Debug)]
pub enum AckFailure {
    Refused(tocsin_dispatch::AckError),
    Storage(String),
}

#[derive(Debug, Clone)]
pub enum WriteError {
    /// Retry later: the store is temporarily unable to write (disk full, locked).
    Unavailable(String),
    Failed(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Unavailable(e) => write!(f, "storage temporarily unavailable: {e}"),
            WriteError::Failed(e) => write!(f, "storage failed: {e}"),
        }
    }
}

/// What the HTTP API reads: refreshed by the writer after each change.
#[derive(Default)]
pub struct View {
    pub alerts: Vec<AlertState>,
    pub hosts: Vec<HostView>,
    /// Silences not yet ended, as stored.
    pub silences: Vec<tocsin_store::Silence>,
    /// Dynamic rules' bands: rule, series labels, [expected, lower, upper, value, score].
    pub bands: Vec<(String, tocsin_model::Labels, [f64; 5])>,
    /// Acknowledgements of firing alerts, by alert id.
    pub acks: BTreeMap<String, tocsin_dispatch::Ack>,
    /// Open and recently resolved incidents.
    pub incidents: Vec<tocsin_incidents::Incident>,
    /// Action requests of the last day.
    pub actions: Vec<tocsin_remedy::Request>,
}

pub struct Writer {
    store: Store,
    engine: Engine,
    pipeline: Pipeline,
    /// Collector-side action requests handed out in this group, run after the commit.
    to_run: Vec<tocsin_remedy::Request>,
    view: Arc<RwLock<View>>,
    wake: watch::Sender<u64>,
    tel: Telemetry,
    retention_ms: i64,
    checkpoint_every: Duration,
    last_checkpoint: Instant,
    engine_opts: EngineOptions,
    /// Transitions produced outside a message (alerts of rules removed while the collector was
    /// down), committed with the next group.
    carry: Vec<Transition>,
    /// Whether the next batch looks for firing alerts that no receiver has heard of and
    /// nothing holds back any more (a silence ended, or the collector restarted).
    recheck_held: bool,
    liveness: Liveness,
    services: Services,
    runner: Option<mpsc::UnboundedSender<tocsin_remedy::Request>>,
    forward: Vec<Arc<crate::forward::Target>>,
    storage_alert: StorageAlert,
    urgent: Arc<tocsin_notify::Urgent>,
}

/// What the writer needs from the configuration.
pub struct Settings {
    pub engine: EngineOptions,
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
}

/// The most one group commit takes in, so a flood still gets acknowledged in steps.
const GROUP_MAX_REQUESTS: usize = 256;
const GROUP_MAX_SAMPLES: usize = 1_000_000;

impl Writer {
    pub fn new(
        store: Store,
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
        let mut w = Writer {
            engine: Engine::new(rules, settings.engine),
            store,
            pipeline: Pipeline::new(settings.alerting),
            to_run: Vec::new(),
            view,
            wake,
            tel,
            retention_ms: settings.retention.as_millis() as i64,
            checkpoint_every: settings.checkpoint_every,
            last_checkpoint: Instant::now(),
            engine_opts: settings.engine,
            carry: Vec::new(),
            recheck_held: false,
            liveness,
            services: Services::default(),
            runner: settings.runner,
            forward: settings.forward,
            storage_alert,
            urgent: settings.urgent,
        };
        w.load_silences()?;
        let restored = w.restore_engine()?;
        info!(alerts = restored, "alert states restored");
        w.refresh_view(true);
        Ok(w)
    }

    /// Reloads the silences not yet ended, for delivery and for the API.
    fn load_silences(&mut self) -> Result<(), StoreError> {
        let stored = self.store.silences(now_ms())?;
        let silences = stored
            .iter()
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
        self.pipeline.set_silences(silences);
        self.view
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .silences = stored;
        Ok(())
    }

    /// Sends an alert about the collector itself to the receivers the route gives it, from
    /// memory: used when the outbox, in the failing database, cannot take it.
    fn page(&mut self, a: AlertInfo, now: TimestampMs) {
        let sent = self.pipeline.page(&a, now);
        let fx = self.pipeline.take_effects();
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
        let rules: Vec<Rule> = self.engine.rules().iter().map(|r| (**r).clone()).collect();
        self.engine = Engine::new(rules, self.engine_opts);
        let mut states = Vec::new();
        for (key, json) in self.store.alert_states()? {
            match serde_json::from_str::<AlertState>(&json) {
                Ok(s) => states.push(s),
                Err(e) => error!(key, error = %e, "unreadable alert state dropped"),
            }
        }
        let n = states.len();
        let now = now_ms();
        self.carry = self.engine.restore(states, now);
        let unreadable = self.pipeline.restore(
            self.store.dispatch_rows()?,
            self.store
                .live_incidents(self.pipeline.incidents_since(now))?,
            self.store.remedy_rows()?,
            now,
        );
        for (key, e) in unreadable {
            error!(key, error = %e, "unreadable notification, incident or remediation state dropped");
        }
        self.to_run.clear();
        self.recheck_held = true;
        let (b, unreadable) = self.engine.restore_baselines(self.store.baselines()?);
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
        while let Some(first) = rx.blocking_recv() {
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
        if let Err(e) = self.store.save_baselines(&self.engine.baselines()) {
            error!(error = %e, "cannot save learned baselines");
        }
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
                    let since = now_ms() - self.engine_opts.stale_after_ms;
                    let _ = reply.send(crate::exposition::federation(
                        self.store.latest(since),
                        &skip,
                    ));
                    None
                }
                Msg::AddSilence { silence, reply } => {
                    let r = self.store.add_silence(&silence).map_err(|e| e.to_string());
                    let _ = self.load_silences();
                    let _ = reply.send(r);
                    None
                }
                Msg::ExpireSilence { id, reply } => {
                    let r = self
                        .store
                        .expire_silence(id, now_ms())
                        .map_err(|e| e.to_string());
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
        let mut replies = Vec::new();
        let mut transitions = std::mem::take(&mut self.carry);
        let recheck_held = std::mem::take(&mut self.recheck_held);
        let mut ticked = false;
        let mut ack_replies = Vec::new();
        let mut other_replies: Vec<Reply> = Vec::new();
        let forwarding = !self.forward.is_empty();
        let mut to_forward: Vec<SeriesSamples> = Vec::new();
        // Series this collector derives (liveness, services): not for a peer, which derives its own.
        let mut derived_forward: Vec<SeriesSamples> = Vec::new();
        let mut queued = 0usize;
        let mut effects = Effects::default();
        let mut seen: Vec<(String, TimestampMs)> = Vec::new();
        // Each request's reply is kept before anything that can fail, and what a failure leaves
        // unprocessed is answered too: every sender hears why (a dropped reply says nothing).
        let mut pending = msgs.into_iter();
        let result = (|| -> Result<(), StoreError> {
            let mut tx = self.store.begin()?;
            for m in pending.by_ref() {
                match m {
                    Msg::Ingest {
                        mut batch,
                        origin,
                        reply,
                    } => {
                        if origin != Origin::Peer {
                            self.liveness.observe_clock(&batch, now);
                        }
                        let stats = if origin == Origin::Live {
                            for h in batch.iter().filter_map(|s| s.labels.get("host")) {
                                self.liveness.seen(h, now);
                            }
                            AppendStats::default()
                        } else {
                            let stats = match tx.append(&mut batch, now) {
                                Ok((_, stats)) => stats,
                                Err(e) => {
                                    replies.push((reply, AppendStats::default(), batch));
                                    return Err(e);
                                }
                            };
                            if forwarding && origin == Origin::Sender {
                                to_forward.extend(batch.iter().cloned());
                            }
                            stats
                        };
                        self.liveness.observe(&batch);
                        self.services.observe(&batch, now);
                        transitions.extend(if origin == Origin::Live {
                            self.engine.ingest_live(&batch, now)
                        } else {
                            self.engine.ingest(&batch, now)
                        });
                        replies.push((reply, stats, batch));
                    }
                    Msg::Tick => {
                        ticked = true;
                        for (h, t) in tx.hosts_seen() {
                            self.liveness.seen(h, t);
                        }
                        self.liveness.tick(now);
                        let mut derived = self.liveness.judge(now);
                        derived.extend(self.services.judge(now, self.engine_opts.stale_after_ms));
                        tx.append_derived(&mut derived, now)?;
                        if forwarding {
                            derived_forward.extend(derived.iter().cloned());
                        }
                        transitions.extend(self.engine.ingest(&derived, now));
                        transitions.extend(self.engine.tick(now));
                    }
                    Msg::Reload(rules) => {
                        self.tel.rules_loaded.set(rules.len() as i64);
                        transitions.extend(self.engine.replace_rules(rules, now));
                    }
                    Msg::Ack {
                        id,
                        link_level,
                        by,
                        comment,
                        reply,
                    } => {
                        let r =
                            self.pipeline
                                .ack(&self.engine, &id, link_level, &by, &comment, now);
                        ack_replies.push((reply, r));
                    }
                    Msg::PollActions { host, reply } => {
                        let reqs = self.pipeline.poll_actions(&host, now);
                        other_replies.push(Reply::Poll(reply, reqs));
                    }
                    Msg::ActionResult {
                        id,
                        status,
                        summary,
                        output,
                        reply,
                    } => {
                        let r = self
                            .pipeline
                            .action_result(&self.engine, &id, status, &summary, &output, now)
                            .map_err(OpFailure::Refused);
                        other_replies.push(Reply::Done(reply, r));
                    }
                    Msg::Incident { id, op, reply } => {
                        let r = match self.pipeline.incident(&id, &op, now) {
                            // Long resolved: notes still go on its stored timeline.
                            Err(tocsin_incidents::Refused::NotFound) => match &op {
                                IncidentOp::Note { by, text } => {
                                    let stored = tx.incident_exists(&id).and_then(|found| {
                                        if found {
                                            let note = format!("{by}: {text}");
                                            tx.add_incident_event(&id, now, "note", &note)?;
                                        }
                                        Ok(found)
                                    });
                                    match stored {
                                        Ok(true) => Ok(()),
                                        Ok(false) => Err(tocsin_incidents::Refused::NotFound),
                                        Err(e) => {
                                            other_replies.push(Reply::Done(reply, Ok(())));
                                            return Err(e);
                                        }
                                    }
                                }
                                _ => Err(tocsin_incidents::Refused::NotFound),
                            },
                            r => r,
                        };
                        let r = r.map_err(|e| match e {
                            tocsin_incidents::Refused::NotFound => {
                                OpFailure::NotFound(e.to_string())
                            }
                            tocsin_incidents::Refused::Resolved => {
                                OpFailure::Refused(e.to_string())
                            }
                        });
                        other_replies.push(Reply::Done(reply, r));
                    }
                    Msg::AddSilence { .. } | Msg::ExpireSilence { .. } | Msg::Federate { .. } => {
                        unreachable!("handled before the group")
                    }
                }
            }
            // Due times (grouping, repeats, escalation steps, verification deadlines) are looked
            // at on the ticks and whenever something changed, not on every ingest group.
            let timers = ticked
                || !transitions.is_empty()
                || recheck_held
                || !ack_replies.is_empty()
                || !other_replies.is_empty();
            for c in self.engine.take_changes() {
                let json = c
                    .state
                    .as_ref()
                    .map(|s| serde_json::to_string(s).expect("state serializes"));
                tx.put_alert_state(&c.key, json.as_deref())?;
            }
            self.pipeline
                .transitions(&self.engine, &transitions, recheck_held, now);
            if timers {
                self.pipeline.due(now);
            }
            effects = self.pipeline.take_effects();
            apply(&effects, &mut tx)?;
            queued = effects.outgoing.len();
            seen.extend(tx.hosts_seen().map(|(h, t)| (h.to_string(), t)));
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.tel
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                for (h, t) in &seen {
                    self.liveness.seen(h, *t);
                }
                for (reply, stats, batch) in replies {
                    self.count(&stats);
                    let _ = reply.send(Ingested {
                        result: Ok(stats),
                        batch,
                    });
                }
                let acked = !ack_replies.is_empty() || !other_replies.is_empty();
                for (reply, r) in ack_replies {
                    let _ = reply.send(r.map_err(AckFailure::Refused));
                }
                for r in other_replies {
                    r.send_ok();
                }
                if forwarding && !(to_forward.is_empty() && derived_forward.is_empty()) {
                    // Peers get what agents sent; other targets that plus the derived series.
                    // Copied only when both kinds of target want different things.
                    let split = !derived_forward.is_empty() && self.forward.iter().any(|t| t.peer);
                    let sent = split.then(|| Arc::new(to_forward.clone()));
                    to_forward.append(&mut derived_forward);
                    let all = Arc::new(std::mem::take(&mut to_forward));
                    for t in &self.forward {
                        match (&sent, t.peer) {
                            (Some(sent), true) => t.push(Arc::clone(sent)),
                            _ => t.push(Arc::clone(&all)),
                        }
                    }
                }
                if let Some(runner) = &self.runner {
                    for req in std::mem::take(&mut effects.to_run) {
                        let _ = runner.send(req);
                    }
                }
                self.count_effects(&effects);
                self.after_commit(&transitions, acked, queued);
                if let Some(a) = self.storage_alert.committed(now) {
                    info!("storage writes work again");
                    self.page(a, now);
                }
            }
            Err(e) => {
                // What the failure left unprocessed: requests are refused with the rest (each
                // answer below is the storage error; the placeholders are not sent), rule
                // reloads are applied after the rewind.
                let mut reloads = Vec::new();
                for m in pending {
                    match m {
                        Msg::Ingest { batch, reply, .. } => {
                            replies.push((reply, AppendStats::default(), batch))
                        }
                        Msg::Ack { reply, .. } => {
                            ack_replies.push((reply, Err(tocsin_dispatch::AckError::NotFiring)))
                        }
                        Msg::PollActions { reply, .. } => {
                            other_replies.push(Reply::Poll(reply, Vec::new()))
                        }
                        Msg::ActionResult { reply, .. } | Msg::Incident { reply, .. } => {
                            other_replies.push(Reply::Done(reply, Ok(())))
                        }
                        Msg::Reload(rules) => reloads.push(rules),
                        Msg::Tick => {}
                        Msg::AddSilence { .. }
                        | Msg::ExpireSilence { .. }
                        | Msg::Federate { .. } => unreachable!("handled before the group"),
                    }
                }
                self.tel.storage_errors.inc();
                error!(error = %e, "storage transaction failed; write requests refused");
                if let Some(a) = self.storage_alert.failed(now, &e.to_string()) {
                    error!("storage has refused every write for too long: paging");
                    self.page(a, now);
                }
                // Agents told to retry later back off: as after a restart, they get a grace.
                self.liveness.away(now);
                let err = if e.is_transient() {
                    WriteError::Unavailable(e.to_string())
                } else {
                    WriteError::Failed(e.to_string())
                };
                for (reply, _, batch) in replies {
                    let _ = reply.send(Ingested {
                        result: Err(err.clone()),
                        batch,
                    });
                }
                for (reply, _) in ack_replies {
                    let _ = reply.send(Err(AckFailure::Storage(err.to_string())));
                }
                for r in other_replies {
                    r.send_err(err.to_string());
                }
                // The engine ran ahead of what was stored: rewind it to the durable state.
                if let Err(e) = self.restore_engine() {
                    error!(error = %e, "cannot reload alert states");
                }
                for rules in reloads {
                    self.tel.rules_loaded.set(rules.len() as i64);
                    let t = self.engine.replace_rules(rules, now);
                    self.carry.extend(t);
                }
            }
        }
        if ticked {
            let now = now_ms();
            if self.pipeline.silences().iter().any(|s| s.ends_ms < now) {
                let _ = self.load_silences();
            }
            // A silence expired, ran out or closed its maintenance window since the last tick:
            // what it held back and still fires is told.
            if self.pipeline.silence_ended(now) {
                self.recheck_held = true;
            }
            self.refresh_view(true);
            if self.last_checkpoint.elapsed() >= self.checkpoint_every {
                self.checkpoint();
            }
        }
    }

    /// Counts what a committed group decided.
    fn count_effects(&self, fx: &Effects) {
        self.tel.silenced.inc_by(fx.silenced);
        self.tel.inhibited.inc_by(fx.inhibited);
        for kind in &fx.remediation {
            self.tel.remediation.with_label_values(&[kind]).inc();
        }
        for r in &fx.resolved {
            self.tel
                .incidents_resolved
                .with_label_values(&[&r.category, r.by])
                .inc();
            for (to, ms) in [
                ("ack", r.to_ack_ms),
                ("resolve", r.to_resolve_ms),
                ("remediate", r.to_remediate_ms),
            ] {
                if let Some(ms) = ms {
                    self.tel
                        .incident_seconds
                        .with_label_values(&[to])
                        .observe(ms as f64 / 1000.0);
                }
            }
        }
    }

    /// Logs and counts what changed; wakes the delivery workers when something was queued.
    fn after_commit(&mut self, transitions: &[Transition], acked: bool, queued: usize) {
        if queued > 0 {
            self.wake.send_modify(|n| *n += 1);
        }
        if transitions.is_empty() && !acked {
            return;
        }
        for t in transitions {
            let kind = t.kind.as_str();
            self.tel.transitions.with_label_values(&[kind]).inc();
            info!(
                alert = %t.rule,
                labels = %t.labels,
                event = kind,
                level = %t.level,
                value = t.value,
                reason = t.reason.unwrap_or(""),
                "alert transition"
            );
        }
        self.refresh_view(false);
    }

    fn count(&self, s: &AppendStats) {
        let c = |r: &str, n: usize| {
            if n > 0 {
                self.tel.samples.with_label_values(&[r]).inc_by(n as u64);
            }
        };
        c("accepted", s.accepted);
        c("out_of_order", s.out_of_order);
        c("too_far_in_future", s.too_far_in_future);
        c("over_series_limit", s.over_limit);
        if s.out_of_order > 0 || s.too_far_in_future > 0 {
            // Retries after a lost acknowledgement land here too: worth a debug line, not a warning.
            tracing::debug!(
                out_of_order = s.out_of_order,
                future = s.too_far_in_future,
                "samples not stored"
            );
        }
    }

    fn refresh_view(&mut self, with_hosts: bool) {
        let alerts: Vec<AlertState> = self.engine.alerts().cloned().collect();
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for a in &alerts {
            let state = if a.level.is_some() {
                "firing"
            } else {
                "pending"
            };
            let level = a.level.map(|l| l.as_str()).unwrap_or("");
            *counts.entry((state, level)).or_default() += 1;
        }
        self.tel.alerts.reset();
        for ((s, l), n) in counts {
            self.tel.alerts.with_label_values(&[s, l]).set(n);
        }
        self.tel.series.set(self.store.series_count() as i64);
        self.tel.head_samples.set(self.store.head_samples() as i64);
        let delta = self
            .engine
            .evaluations()
            .saturating_sub(self.tel.evaluations.get());
        self.tel.evaluations.inc_by(delta);
        let late = self
            .engine
            .learned_late()
            .saturating_sub(self.tel.learned_late.get());
        self.tel.learned_late.inc_by(late);
        let hosts = with_hosts.then(|| self.liveness.view());
        let bands = with_hosts.then(|| {
            self.engine
                .bands()
                .map(|(r, l, b)| (r.to_string(), l.clone(), b))
                .collect::<Vec<_>>()
        });
        let acks = self.pipeline.acks().clone();
        let incidents: Vec<tocsin_incidents::Incident> =
            self.pipeline.incidents(now_ms()).cloned().collect();
        let actions: Vec<tocsin_remedy::Request> = self.pipeline.actions().cloned().collect();
        let open = incidents
            .iter()
            .filter(|i| i.state != tocsin_incidents::State::Resolved)
            .count();
        self.tel.incidents_open.set(open as i64);
        let mut v = self.view.write().unwrap_or_else(|p| p.into_inner());
        v.acks = acks;
        v.incidents = incidents;
        v.actions = actions;
        v.alerts = alerts;
        if let Some(h) = hosts {
            v.hosts = h;
        }
        if let Some(b) = bands {
            v.bands = b;
        }
    }

    fn checkpoint(&mut self) {
        let t = Instant::now();
        if let Err(e) = self.store.save_baselines(&self.engine.baselines()) {
            self.tel.storage_errors.inc();
            error!(error = %e, "cannot save learned baselines");
        }
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

/// Replies sent after the group commits (or fails).
enum Reply {
    Poll(
        oneshot::Sender<Result<Vec<tocsin_remedy::Request>, String>>,
        Vec<tocsin_remedy::Request>,
    ),
    Done(
        oneshot::Sender<Result<(), OpFailure>>,
        Result<(), OpFailure>,
    ),
}

impl Reply {
    fn send_ok(self) {
        match self {
            Reply::Poll(tx, reqs) => {
                let _ = tx.send(Ok(reqs));
            }
            Reply::Done(tx, r) => {
                let _ = tx.send(r);
            }
        }
    }

    fn send_err(self, e: String) {
        match self {
            Reply::Poll(tx, _) => {
                let _ = tx.send(Err(e));
            }
            Reply::Done(tx, _) => {
                let _ = tx.send(Err(OpFailure::Storage(e)));
            }
        }
    }
}

/// Writes what the pipeline decided into the open transaction.
fn apply(fx: &Effects, tx: &mut tocsin_store::Txn<'_>) -> Result<(), StoreError> {
    for a in &fx.audit {
        tx.audit(a.at, &a.actor, &a.action, &a.detail)?;
    }
    for o in &fx.outgoing {
        tx.enqueue(&o.notification.receiver, &o.body, o.at)?;
    }
    for (key, json) in &fx.dispatch_rows {
        tx.put_dispatch(key, json.as_deref())?;
    }
    for (id, json) in &fx.incident_rows {
        tx.put_incident(id, json)?;
    }
    for e in &fx.timeline {
        tx.add_incident_event(&e.incident, e.at, &e.kind, &e.text)?;
    }
    for (key, json) in &fx.remedy_rows {
        tx.put_remedy(key, json.as_deref())?;
    }
    Ok(())
}
