//! The writer thread: owns the store and the rule engine, so that each group commit makes
//! samples, alert states and the notifications they cause durable together, before any write
//! request is acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tocsin_dispatch::{alert_id, AlertInfo, Dispatcher, Why};
use tocsin_incidents::Incidents;
use tocsin_model::{now_ms, Labels, SeriesSamples, TimestampMs};
use tocsin_remedy::Remedy;
use tocsin_rules::{AlertState, Engine, EngineOptions, Rule, Transition};
use tocsin_store::{AppendStats, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

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

/// A change to an incident asked for over the API.
pub enum IncidentOp {
    Ack { by: String, comment: String },
    Resolve { by: String },
    Note { by: String, text: String },
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
    delivery: Delivery,
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
    /// Silences muting at the last tick.
    muting: Vec<i64>,
    liveness: Liveness,
    services: Services,
    runner: Option<mpsc::UnboundedSender<tocsin_remedy::Request>>,
    forward: Vec<Arc<crate::forward::Target>>,
    storage_alert: StorageAlert,
    urgent: Arc<tocsin_notify::Urgent>,
}

/// Who gets a notification, and who does not.
struct Delivery {
    route: tocsin_config::route::Route,
    inhibit_rules: Vec<tocsin_config::inhibit::InhibitRule>,
    silences: Vec<tocsin_notify::silence::Silence>,
    external_url: String,
    policies: Vec<tocsin_config::escalation::Policy>,
    resend: BTreeMap<String, i64>,
    dispatcher: Dispatcher,
    /// Signs acknowledgement links.
    ack_secret: Arc<Vec<u8>>,
    ack_ttl_ms: i64,
    dashboard_url: Option<String>,
    incidents: Incidents,
    incident_settings: tocsin_incidents::Settings,
    remedy: Remedy,
    remedy_limits: tocsin_remedy::Limits,
    dry_run: bool,
    /// Collector-side action requests handed out in this group, run after the commit.
    to_run: Vec<tocsin_remedy::Request>,
}

/// What the writer needs from the configuration.
pub struct Settings {
    pub engine: EngineOptions,
    /// Which receivers get which notification.
    pub route: tocsin_config::route::Route,
    pub inhibit_rules: Vec<tocsin_config::inhibit::InhibitRule>,
    pub escalation_policies: Vec<tocsin_config::escalation::Policy>,
    /// Receivers whose firing alerts are sent again at least every so many ms.
    pub resend: BTreeMap<String, i64>,
    /// Signs acknowledgement links.
    pub ack_secret: Arc<Vec<u8>>,
    pub ack_link_ttl: Duration,
    pub dashboard_url: Option<String>,
    pub incidents: tocsin_config::collector::IncidentsConfig,
    pub remediation: tocsin_config::collector::RemediationLimits,
    /// Where collector-side action requests go to be run.
    pub runner: Option<mpsc::UnboundedSender<tocsin_remedy::Request>>,
    /// Remote-write targets fed with every committed group.
    pub forward: Vec<Arc<crate::forward::Target>>,
    pub external_url: String,
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
        let storage_alert = StorageAlert::new(settings.storage_alert_after, &settings.external_url);
        let mut w = Writer {
            engine: Engine::new(rules, settings.engine),
            store,
            delivery: Delivery {
                route: settings.route,
                inhibit_rules: settings.inhibit_rules,
                silences: Vec::new(),
                external_url: settings.external_url,
                dispatcher: Dispatcher::new(
                    settings.escalation_policies.clone(),
                    settings.resend.clone(),
                ),
                policies: settings.escalation_policies,
                resend: settings.resend,
                ack_secret: settings.ack_secret,
                ack_ttl_ms: settings.ack_link_ttl.as_millis() as i64,
                dashboard_url: settings.dashboard_url,
                incidents: Incidents::default(),
                incident_settings: tocsin_incidents::Settings {
                    group_by: settings.incidents.group_by.clone(),
                    reopen_within_ms: settings.incidents.reopen_within.as_millis() as i64,
                },
                remedy: Remedy::default(),
                remedy_limits: tocsin_remedy::Limits {
                    max_concurrent: settings.remediation.max_concurrent,
                    per_host: settings.remediation.per_host,
                    answer_within_ms: settings.remediation.answer_within.as_millis() as i64,
                },
                dry_run: settings.remediation.dry_run,
                to_run: Vec::new(),
            },
            view,
            wake,
            tel,
            retention_ms: settings.retention.as_millis() as i64,
            checkpoint_every: settings.checkpoint_every,
            last_checkpoint: Instant::now(),
            engine_opts: settings.engine,
            carry: Vec::new(),
            recheck_held: false,
            muting: Vec::new(),
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
        self.delivery.silences = stored
            .iter()
            .filter_map(|s| {
                tocsin_notify::silence::Silence::new(
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
        self.view
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .silences = stored;
        Ok(())
    }

    /// Sends an alert about the collector itself to the receivers the route gives it, from
    /// memory: used when the outbox, in the failing database, cannot take it.
    fn page(&mut self, a: AlertInfo, now: TimestampMs) {
        let d = &self.delivery;
        // As for any alert, a silence mutes the firing, never the resolve.
        let silence = a
            .firing
            .then(|| d.silences.iter().find(|s| s.matches(&a.labels, now)));
        if let Some(s) = silence.flatten() {
            self.tel.silenced.inc();
            info!(alert = %a.rule, silence = s.id, "notification silenced");
            return;
        }
        let group_labels = Labels::from_pairs([("alertname", a.rule.as_str())]);
        let mut sent = std::collections::BTreeSet::new();
        for t in d.route.targets(&a.labels, a.level) {
            for r in t.receivers {
                if !sent.insert(r.clone()) {
                    continue;
                }
                let n = tocsin_dispatch::Notification {
                    receiver: r.clone(),
                    group_key: format!("{}:{{alertname=\"{}\"}}", t.node, a.rule),
                    group_labels: group_labels.clone(),
                    why: Why::Changed,
                    alerts: vec![a.clone()],
                };
                let body = tocsin_notify::webhook_payload(
                    &n,
                    &d.external_url,
                    &|_| None,
                    d.dashboard_url.as_deref(),
                );
                self.urgent.push(&r, body.to_string(), now);
            }
        }
        info!(alert = %a.rule, firing = a.firing, receivers = sent.len(), "self-alert sent from memory");
        self.wake.send_modify(|n| *n += 1);
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
        self.carry = self.engine.restore(states, now_ms());
        self.delivery.dispatcher =
            Dispatcher::new(self.delivery.policies.clone(), self.delivery.resend.clone());
        for (key, e) in self
            .delivery
            .dispatcher
            .restore(self.store.dispatch_rows()?)
        {
            error!(key, error = %e, "unreadable notification state dropped");
        }
        let d = &mut self.delivery;
        d.incidents = Incidents::new(d.incident_settings.clone());
        let since = now_ms() - d.incident_settings.reopen_within_ms;
        for (key, e) in d
            .incidents
            .restore(self.store.live_incidents(since)?, now_ms())
        {
            error!(key, error = %e, "unreadable incident dropped");
        }
        d.remedy = Remedy::new(d.remedy_limits);
        for (key, e) in d.remedy.restore(self.store.remedy_rows()?) {
            error!(key, error = %e, "unreadable remediation state dropped");
        }
        d.to_run.clear();
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
                        let level = self
                            .engine
                            .alerts()
                            .find(|a| alert_id(&a.labels) == id)
                            .and_then(|a| a.level);
                        let r = self
                            .delivery
                            .dispatcher
                            .ack(&id, level, link_level, &by, &comment, now);
                        let staged = if r.is_ok() {
                            info!(alert = %id, by = %by, comment = %comment, "alert acknowledged");
                            let d = &mut self.delivery;
                            d.incidents.alert_acked(&id, &by, &comment, now);
                            let evs = d.remedy.approve(&id, &by, now);
                            Self::remedy_events(d, &self.tel, &mut tx, evs, now)
                        } else {
                            Ok(())
                        };
                        ack_replies.push((reply, r));
                        staged?;
                    }
                    Msg::PollActions { host, reply } => {
                        let d = &mut self.delivery;
                        let (reqs, evs) = d.remedy.take(Some(&host), now);
                        let staged = Self::remedy_events(d, &self.tel, &mut tx, evs, now);
                        other_replies.push(Reply::Poll(reply, reqs));
                        staged?;
                    }
                    Msg::ActionResult {
                        id,
                        status,
                        summary,
                        output,
                        reply,
                    } => {
                        let alert = self
                            .delivery
                            .remedy
                            .requests()
                            .find(|r| r.id == id)
                            .map(|r| r.alert_id.clone());
                        let firing = alert.is_some_and(|a| {
                            self.engine
                                .alerts()
                                .any(|s| s.level.is_some() && alert_id(&s.labels) == a)
                        });
                        let d = &mut self.delivery;
                        let r = d.remedy.result(&id, status, &summary, &output, firing, now);
                        match r {
                            Ok(evs) => {
                                let staged = Self::remedy_events(d, &self.tel, &mut tx, evs, now);
                                other_replies.push(Reply::Done(reply, Ok(())));
                                staged?;
                            }
                            Err(e) => {
                                warn!(request = %id, error = %e, "action result refused");
                                other_replies.push(Reply::Done(reply, Err(OpFailure::Refused(e))));
                            }
                        }
                    }
                    Msg::Incident { id, op, reply } => {
                        let inc = &mut self.delivery.incidents;
                        let r = match op {
                            IncidentOp::Ack { by, comment } => inc.ack(&id, &by, &comment, now),
                            IncidentOp::Resolve { by } => inc.resolve(&id, &by, now),
                            IncidentOp::Note { by, text } => {
                                match inc.note(&id, &by, &text, now) {
                                    // Long resolved: notes still go on its stored timeline.
                                    Err(tocsin_incidents::Refused::NotFound) => {
                                        let stored = tx.incident_exists(&id).and_then(|found| {
                                            if !found {
                                                return Ok(false);
                                            }
                                            let note = format!("{by}: {text}");
                                            tx.add_incident_event(&id, now, "note", &note)
                                                .map(|_| true)
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
                                    r => r,
                                }
                            }
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
            queued = Self::stage(
                &mut self.engine,
                &mut self.delivery,
                &self.tel,
                &mut tx,
                &transitions,
                recheck_held,
                timers,
                now,
            )?;
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
                    for req in self.delivery.to_run.drain(..) {
                        let _ = runner.send(req);
                    }
                }
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
            if self.delivery.silences.iter().any(|s| s.ends_ms < now) {
                let _ = self.load_silences();
            }
            // A silence expired, ran out or closed its maintenance window since the last tick:
            // what it held back and still fires is told.
            let muting: Vec<i64> = (self.delivery.silences.iter())
                .filter(|s| s.active(now))
                .map(|s| s.id)
                .collect();
            if self.muting.iter().any(|id| !muting.contains(id)) {
                self.recheck_held = true;
            }
            self.muting = muting;
            self.refresh_view(true);
            if self.last_checkpoint.elapsed() >= self.checkpoint_every {
                self.checkpoint();
            }
        }
    }

    /// Persists engine state changes and queues notifications in the open transaction.
    fn stage(
        engine: &mut Engine,
        d: &mut Delivery,
        tel: &Telemetry,
        tx: &mut tocsin_store::Txn<'_>,
        transitions: &[Transition],
        recheck_held: bool,
        timers: bool,
        now: TimestampMs,
    ) -> Result<usize, StoreError> {
        for c in engine.take_changes() {
            let json = c
                .state
                .as_ref()
                .map(|s| serde_json::to_string(s).expect("state serializes"));
            tx.put_alert_state(&c.key, json.as_deref())?;
        }
        // Firing alerts that can inhibit, found once per group: (rule index, labels).
        let sources: Vec<(usize, tocsin_model::Labels)> = if transitions.is_empty() && !recheck_held
        {
            Vec::new()
        } else {
            engine
                .alerts()
                .filter(|a| a.level.is_some())
                .flat_map(|a| {
                    d.inhibit_rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.is_source(&a.labels))
                        .map(|(i, _)| (i, a.labels.clone()))
                })
                .collect()
        };
        for t in transitions {
            let a = AlertInfo::from_transition(t);
            // A firing opens the incident before remediation speaks of it; a resolve lets
            // remediation verify its action before the incident closes.
            if a.firing {
                d.incidents.on_alert(&a, now);
            }
            let rem = engine
                .rules()
                .iter()
                .find(|r| r.name == t.rule)
                .and_then(|r| r.remediation.clone());
            if let Some(mut rem) = rem {
                rem.dry_run |= d.dry_run;
                let evs = d.remedy.on_alert(&a, &rem, now);
                Self::remedy_events(d, tel, tx, evs, now)?;
            }
            if !a.firing {
                d.incidents.on_alert(&a, now);
            }
            Self::notify(d, tel, &sources, t, now);
        }
        // Alerts held back and firing still, now that nothing holds them (a silence ended, an
        // inhibiting alert resolved, a restart), are told like a new firing, as Alertmanager
        // does at its next flush.
        let released = transitions
            .iter()
            .any(|t| !t.kind.firing() && d.inhibit_rules.iter().any(|r| r.is_source(&t.labels)));
        if recheck_held || released {
            let known = d.dispatcher.known();
            let freed = engine.firing(now, |l| {
                !known.contains(alert_id(l).as_str())
                    && !d.silences.iter().any(|s| s.matches(l, now))
                    && !sources
                        .iter()
                        .any(|(r, src)| d.inhibit_rules[*r].inhibits(src, l))
            });
            for t in &freed {
                info!(alert = %t.rule, labels = %t.labels, "no longer held back: notifying");
                Self::notify(d, tel, &sources, t, now);
            }
        }
        let queued = if timers {
            Self::due(d, tel, tx, now)?
        } else {
            0
        };
        for (key, json) in d.dispatcher.take_changes() {
            tx.put_dispatch(&key, json.as_deref())?;
        }
        Self::persist_incidents(d, tel, tx)?;
        Ok(queued)
    }

    /// Hands a transition to the dispatcher unless a silence or a firing alert holds it back.
    fn notify(
        d: &mut Delivery,
        tel: &Telemetry,
        sources: &[(usize, tocsin_model::Labels)],
        t: &Transition,
        now: TimestampMs,
    ) {
        if let Some(s) = d.silences.iter().find(|s| s.matches(&t.labels, now)) {
            // Recorded (the alert state is stored), not delivered.
            tel.silenced.inc();
            info!(alert = %t.rule, labels = %t.labels, silence = s.id, "notification silenced");
            return;
        }
        // Inhibited by another alert firing now (a resolve is never held back: whoever heard
        // of the firing hears of its end).
        if t.kind.firing()
            && sources
                .iter()
                .any(|(r, src)| d.inhibit_rules[*r].inhibits(src, &t.labels))
        {
            tel.inhibited.inc();
            info!(alert = %t.rule, labels = %t.labels, "notification inhibited");
            return;
        }
        let targets = d.route.targets(&t.labels, t.level);
        d.dispatcher
            .event(&AlertInfo::from_transition(t), &targets, now);
    }

    /// Remediation deadlines and collector-side requests, then the notifications due now.
    fn due(
        d: &mut Delivery,
        tel: &Telemetry,
        tx: &mut tocsin_store::Txn<'_>,
        now: TimestampMs,
    ) -> Result<usize, StoreError> {
        let mut queued = 0;
        let evs = d.remedy.tick(now);
        Self::remedy_events(d, tel, tx, evs, now)?;
        let (reqs, evs) = d.remedy.take(None, now);
        Self::remedy_events(d, tel, tx, evs, now)?;
        d.to_run.extend(reqs);
        let secret = &d.ack_secret;
        let expires = now + d.ack_ttl_ms;
        let external = d.external_url.trim_end_matches('/');
        let link = |a: &AlertInfo| {
            let token = tocsin_notify::ack::token(secret, &a.id, a.level, a.starts_at, expires);
            Some(format!("{external}/ack?t={token}"))
        };
        for mut n in d.dispatcher.tick(now) {
            // A window may have begun since the alert fired: repeats, escalation steps and
            // grouped firings due inside it stay quiet (resolves still go out).
            let before = n.alerts.len();
            n.alerts
                .retain(|a| !a.firing || !d.silences.iter().any(|s| s.matches(&a.labels, now)));
            if n.alerts.len() < before {
                tel.silenced.inc_by((before - n.alerts.len()) as u64);
            }
            if n.alerts.is_empty() {
                continue;
            }
            let body = tocsin_notify::webhook_payload(
                &n,
                &d.external_url,
                &link,
                d.dashboard_url.as_deref(),
            );
            tx.enqueue(&n.receiver, &body.to_string(), now)?;
            queued += 1;
            if matches!(n.why, Why::Repeat { .. }) && d.resend.contains_key(&n.receiver) {
                // Keeping Alertmanager in sync, not telling anyone: not on the timeline.
                continue;
            }
            let (kind, why) = match &n.why {
                Why::Changed => ("notified", String::new()),
                Why::Repeat { n } => ("repeated", format!(", repeat {n}")),
                Why::Escalation { step, policy, .. } if *step > 1 => {
                    ("escalated", format!(", {policy} step {step}"))
                }
                Why::Escalation { policy, .. } => ("notified", format!(", {policy} step 1")),
            };
            for a in &n.alerts {
                let what = if a.firing { &a.event } else { "resolved" };
                d.incidents.record(
                    &a.id,
                    kind,
                    format!("{} {what} sent to {}{why}", a.rule, n.receiver),
                    now,
                );
            }
        }
        Ok(queued)
    }

    fn persist_incidents(
        d: &mut Delivery,
        tel: &Telemetry,
        tx: &mut tocsin_store::Txn<'_>,
    ) -> Result<(), StoreError> {
        let (rows, events) = d.incidents.take_changes();
        for e in events.iter().filter(|e| e.kind == "resolved") {
            if let Some(i) = d.incidents.live().find(|i| i.id == e.incident) {
                let by = i
                    .resolved_by
                    .as_deref()
                    .filter(|b| matches!(*b, "auto" | "remediation"))
                    .unwrap_or("person");
                tel.incidents_resolved
                    .with_label_values(&[&i.category, by])
                    .inc();
                for (to, ms) in [
                    ("ack", i.time_to_ack_ms()),
                    ("resolve", i.time_to_resolve_ms()),
                    ("remediate", i.time_to_remediate_ms()),
                ] {
                    if let Some(ms) = ms {
                        tel.incident_seconds
                            .with_label_values(&[to])
                            .observe(ms as f64 / 1000.0);
                    }
                }
            }
        }
        for (id, json) in rows {
            tx.put_incident(&id, &json)?;
        }
        for e in events {
            tx.add_incident_event(&e.incident, e.at, &e.kind, &e.text)?;
        }
        for (key, json) in d.remedy.take_changes() {
            tx.put_remedy(&key, json.as_deref())?;
        }
        Ok(())
    }

    /// Records remediation events: the incident timeline, the audit log, metrics, and a bump
    /// to the next notification tier when one failed.
    fn remedy_events(
        d: &mut Delivery,
        tel: &Telemetry,
        tx: &mut tocsin_store::Txn<'_>,
        events: Vec<tocsin_remedy::Event>,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        for e in events {
            tel.remediation.with_label_values(&[e.kind]).inc();
            info!(alert = %e.alert_id, request = e.request.as_deref().unwrap_or(""), event = e.kind, "{}", e.text);
            d.incidents.record(&e.alert_id, e.kind, e.text.clone(), now);
            let detail = serde_json::json!({
                "alert": e.alert_id,
                "request": e.request,
                "incident": d.incidents.incident_of(&e.alert_id),
                "text": e.text,
            });
            tx.audit(now, "collector", e.kind, &detail.to_string())?;
            if e.escalate {
                d.dispatcher.bump(&e.alert_id, "remediation_failed", now);
            }
        }
        Ok(())
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
        let acks = self.delivery.dispatcher.acks().clone();
        let now = now_ms();
        self.delivery.incidents.expire(now);
        let incidents: Vec<tocsin_incidents::Incident> =
            self.delivery.incidents.live().cloned().collect();
        let actions: Vec<tocsin_remedy::Request> =
            self.delivery.remedy.requests().cloned().collect();
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
