//! One group commit: the messages taken since the last one, applied to one transaction, then
//! answered all at once — with the result when it committed, with the storage error when not.

use std::sync::Arc;

use tocsin_alerting::{Effects, IncidentOp, Sources};
use tocsin_dispatch::{Ack, AckError};
use tocsin_model::{SeriesSamples, TimestampMs};
use tocsin_rules::{Engine, Rule, Transition};
use tocsin_store::{AppendStats, StoreError, Txn};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::msg::Reply;
use super::{AckFailure, Core, Ingested, Msg, OpFailure, Origin, WriteError, Writer};

/// An acknowledgement's answer, waiting for the commit.
type AckReply = (
    oneshot::Sender<Result<Ack, AckFailure>>,
    Result<Ack, AckError>,
);

/// What one group gathers: the answers it owes, the transitions it caused, what it forwards
/// once durable.
#[derive(Default)]
pub(super) struct Group {
    ingested: Vec<(oneshot::Sender<Ingested>, AppendStats, Vec<SeriesSamples>)>,
    pub(super) transitions: Vec<Transition>,
    pub(super) ticked: bool,
    acks: Vec<AckReply>,
    others: Vec<Reply>,
    /// Answers to posted alerts: not a person's request (a renewal changes nothing the API
    /// shows, so it does not refresh the view by itself).
    posts: Vec<Reply>,
    /// What senders wrote, for every forwarding target.
    to_forward: Vec<SeriesSamples>,
    /// Series this collector derives (liveness, services): not for a peer, which derives its own.
    derived_forward: Vec<SeriesSamples>,
    effects: Effects,
    seen: Vec<(String, TimestampMs)>,
    /// Report messages queued.
    queued_reports: usize,
}

impl Group {
    /// A group that starts with transitions made outside any message.
    pub(super) fn with(transitions: Vec<Transition>) -> Group {
        Group {
            transitions,
            ..Group::default()
        }
    }

    /// Tells everyone waiting on the group that it was not stored, and why.
    pub(super) fn refuse(self, err: &WriteError) {
        for (reply, _, batch) in self.ingested {
            let _ = reply.send(Ingested {
                result: Err(err.clone()),
                batch,
            });
        }
        for (reply, _) in self.acks {
            let _ = reply.send(Err(AckFailure::Storage(err.to_string())));
        }
        for r in self.others.into_iter().chain(self.posts) {
            r.send_err(err.to_string());
        }
    }

    /// Whether a person or an agent asked for something (not only samples).
    fn asked(&self) -> bool {
        !self.acks.is_empty() || !self.others.is_empty()
    }
}

impl Core {
    /// The collector's own metrics, when `self_metrics.interval` has passed since last time.
    fn own_metrics_due(&mut self, now: i64) -> Option<Vec<SeriesSamples>> {
        let every = self.self_metrics.interval?;
        if self.self_recorded.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        self.self_recorded = Some(std::time::Instant::now());
        Some(crate::exposition::own_samples(
            &self.tel.registry.gather(),
            now,
        ))
    }

    /// Stores what recording rules made and feeds it back to the rules (one may read a
    /// recorded series), a few rounds deep: what a longer chain records is taken by the next
    /// message. A rule reading its own output records nothing new (the same instant again is
    /// not newer).
    fn store_recorded(
        &mut self,
        g: &mut Group,
        tx: &mut Txn<'_>,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        const ROUNDS: usize = 4;
        for _ in 0..ROUNDS {
            let mut rec = self.engine.take_recorded();
            let made: usize = rec.iter().map(|s| s.samples.len()).sum();
            if made == 0 {
                break;
            }
            let st = tx.append_derived(&mut rec, now)?;
            let count = |result: &str, n: usize| {
                self.tel
                    .recorded
                    .with_label_values(&[result])
                    .inc_by(n as u64)
            };
            count("stored", st.accepted);
            count("refused", made - st.accepted);
            if self.forwarding {
                g.derived_forward.extend(rec.iter().cloned());
            }
            g.transitions.extend(self.engine.ingest(&rec, now));
        }
        Ok(())
    }

    /// Applies one message to the open transaction. On an error the message's answer is kept
    /// in the group, to be sent the error.
    pub(super) fn take(
        &mut self,
        m: Msg,
        g: &mut Group,
        tx: &mut Txn<'_>,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        let forwarding = self.forwarding;
        match m {
            Msg::Ingest {
                mut batch,
                hints,
                origin,
                clock_offset,
                reply,
            } => {
                if origin != Origin::Peer {
                    self.liveness.observe_clock(&batch, now, clock_offset);
                }
                let stats = if origin == Origin::Live {
                    for h in batch.iter().filter_map(|s| s.labels.get("host")) {
                        self.liveness.seen(h, now);
                    }
                    AppendStats::default()
                } else {
                    let stats = match tx.append_resolved(&mut batch, &hints, now) {
                        Ok((_, stats)) => stats,
                        Err(e) => {
                            g.ingested.push((reply, AppendStats::default(), batch));
                            return Err(e);
                        }
                    };
                    if forwarding && origin == Origin::Sender {
                        g.to_forward.extend(batch.iter().cloned());
                    }
                    stats
                };
                self.liveness.observe(&batch);
                let refused = self.services.observe(&batch, now);
                if refused.series > 0 {
                    self.tel.service_probes_refused.inc_by(refused.series);
                    for (service, host) in refused.new {
                        warn!(
                            service,
                            host,
                            "probes not counted toward the service: its hosts do not include this one (told once per host)"
                        );
                    }
                }
                // Fresh on the sender's clock when it said what that reads (a host whose
                // clock runs behind is judged, not taken for a backlog).
                let offset = clock_offset.unwrap_or(0);
                g.transitions.extend(self.engine.ingest_sent(
                    &batch,
                    now,
                    origin == Origin::Live,
                    offset,
                ));
                if let Err(e) = self.store_recorded(g, tx, now) {
                    g.ingested.push((reply, stats, batch));
                    return Err(e);
                }
                g.ingested.push((reply, stats, batch));
            }
            Msg::Tick => {
                g.ticked = true;
                for (h, t) in tx.hosts_seen() {
                    self.liveness.seen(h, t);
                }
                self.liveness.tick(now);
                let mut derived = self.liveness.judge(now);
                derived.extend(self.services.judge(now, self.engine_opts.stale_after_ms));
                self.slos.observe(&derived);
                derived.extend(self.slos.judge(now));
                tx.append_derived(&mut derived, now)?;
                let (changes, unreadable) = change_markers(tx, now)?;
                let count = |result: &str, n: usize| {
                    if n > 0 {
                        self.tel
                            .change_markers
                            .with_label_values(&[result])
                            .inc_by(n as u64);
                    }
                };
                count("unreadable", unreadable);
                if !changes.is_empty() {
                    let mut markers: Vec<_> = changes.iter().map(|(id, c)| c.marker(*id)).collect();
                    let st = tx.append_derived(&mut markers, now)?;
                    count("written", st.accepted);
                    // A change starting before its series' newest marker: the store left it
                    // out of that series (samples in time order); it gets a series of its own.
                    let mut late: Vec<_> = changes
                        .iter()
                        .zip(&markers)
                        .filter(|(_, m)| m.samples.is_empty())
                        .map(|((id, c), _)| c.late_marker(*id))
                        .collect();
                    if !late.is_empty() {
                        let n = late.len();
                        let st = tx.append_derived(&mut late, now)?;
                        count("late", st.accepted);
                        count("out_of_order", n - st.accepted);
                        info!(
                            n = st.accepted,
                            "changes starting before their series' newest marker: marked in series of their own"
                        );
                        if st.accepted < n {
                            warn!(refused = n - st.accepted, "change markers not stored");
                        }
                    }
                    derived.extend(
                        markers
                            .into_iter()
                            .chain(late)
                            .filter(|m| !m.samples.is_empty()),
                    );
                }
                if forwarding {
                    g.derived_forward.extend(derived.iter().cloned());
                }
                if let Some(mut own) = self.own_metrics_due(now) {
                    tx.append_derived(&mut own, now)?;
                    // Rules read them too: the collector alerts on its own health (rules/
                    // collector.yaml: a refused reload, receivers refusing messages).
                    g.transitions.extend(self.engine.ingest(&own, now));
                    if forwarding && self.self_metrics.forward {
                        g.derived_forward.extend(own);
                    }
                }
                g.transitions.extend(self.engine.ingest(&derived, now));
                let started = std::time::Instant::now();
                g.transitions.extend(self.engine.tick(now));
                self.tel
                    .rule_tick_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.store_recorded(g, tx, now)?;
                g.transitions.extend(self.external.tick(now));
            }
            Msg::ReportRun {
                key,
                at,
                messages,
                reply,
            } => {
                g.others.push(Reply::Done(reply, Ok(())));
                tx.put_meta(&key, &at.to_string())?;
                for (receiver, payload) in &messages {
                    tx.enqueue(receiver, payload, now)?;
                }
                g.queued_reports += messages.len();
            }
            Msg::Reload(rules) => {
                self.tel.rules_loaded.set(rules.len() as i64);
                g.transitions.extend(self.engine.replace_rules(rules, now));
                let is_rule = rule_named(&self.engine);
                g.transitions
                    .extend(self.external.resolve_named(&is_rule, now));
            }
            Msg::Ack {
                id,
                link_level,
                by,
                comment,
                reply,
            } => {
                let src = Sources {
                    rules: &self.engine,
                    external: &self.external,
                };
                let r = self.pipeline.ack(&src, &id, link_level, &by, &comment, now);
                g.acks.push((reply, r));
            }
            Msg::ForgetHost { host, reply } => {
                // Each part on its own, so that a request repeated after a failed write (the
                // memory forgot, the database did not) still finishes the job.
                let known = self.liveness.forget(&host);
                let stored = tx.forget_host(&host)?;
                let resolved = self.engine.forget_host(&host, now);
                let r = if known || stored || !resolved.is_empty() {
                    info!(%host, alerts = resolved.len(), "host taken out of service");
                    g.transitions.extend(resolved);
                    Ok(())
                } else {
                    Err(OpFailure::NotFound(format!("no host {host:?}")))
                };
                g.others.push(Reply::Done(reply, r));
            }
            Msg::PostAlerts { alerts, reply } => {
                let is_rule = rule_named(&self.engine);
                let (t, o) = self.external.post(alerts, &is_rule, now);
                self.tel.count_external(&o);
                g.transitions.extend(t);
                let r = if o.refused.is_empty() {
                    Ok(())
                } else if o.full {
                    Err(OpFailure::Full(
                        o.reasons(tocsin_rules::external::REASONS_NAMED),
                    ))
                } else {
                    Err(OpFailure::Refused(
                        o.reasons(tocsin_rules::external::REASONS_NAMED),
                    ))
                };
                g.posts.push(Reply::Done(reply, r));
            }
            Msg::PollActions { host, reply } => {
                let reqs = self.pipeline.poll_actions(&host, now);
                g.others.push(Reply::Poll(reply, reqs));
            }
            Msg::ActionResult {
                id,
                status,
                summary,
                output,
                reply,
            } => {
                let src = Sources {
                    rules: &self.engine,
                    external: &self.external,
                };
                let r = self
                    .pipeline
                    .action_result(&src, &id, status, &summary, &output, now)
                    .map_err(OpFailure::Refused);
                g.others.push(Reply::Done(reply, r));
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
                                    g.others.push(Reply::Done(reply, Ok(())));
                                    return Err(e);
                                }
                            }
                        }
                        IncidentOp::Edit { by, edit } => {
                            match edit_stored(tx, &id, by, edit, now) {
                                Ok(Ok(inc)) => {
                                    if let tocsin_incidents::Edit::Assign { owner } = edit {
                                        self.pipeline.notify_assignment(&inc, owner, by, now);
                                    }
                                    Ok(())
                                }
                                Ok(Err(r)) => Err(r),
                                Err(e) => {
                                    g.others.push(Reply::Done(reply, Ok(())));
                                    return Err(e);
                                }
                            }
                        }
                        _ => Err(tocsin_incidents::Refused::NotFound),
                    },
                    r => r,
                };
                let r = r.map_err(|e| match e {
                    tocsin_incidents::Refused::NotFound => OpFailure::NotFound(e.to_string()),
                    tocsin_incidents::Refused::Resolved | tocsin_incidents::Refused::Invalid(_) => {
                        OpFailure::Refused(e.to_string())
                    }
                });
                g.others.push(Reply::Done(reply, r));
            }
            Msg::AddSilence { .. }
            | Msg::ExpireSilence { .. }
            | Msg::Configure { .. }
            | Msg::Federate { .. } => {
                unreachable!("handled before the group")
            }
        }
        Ok(())
    }

    /// After the messages: alert states, then what the alerting pipeline makes of the
    /// transitions and the time, into the same transaction.
    pub(super) fn stage(
        &mut self,
        g: &mut Group,
        tx: &mut Txn<'_>,
        recheck_held: bool,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        put_states(tx, self.engine.take_changes())?;
        put_states(tx, self.external.take_changes())?;
        let src = Sources {
            rules: &self.engine,
            external: &self.external,
        };
        self.pipeline
            .transitions(&src, &g.transitions, recheck_held, now);
        // Due times (grouping, repeats, escalation steps, verification deadlines) are looked
        // at on the ticks and whenever something changed, not on every ingest group.
        if g.ticked || !g.transitions.is_empty() || recheck_held || g.asked() {
            self.pipeline.scale_outs(&src, now);
            self.pipeline.due(now);
        }
        g.effects = self.pipeline.take_effects();
        apply(&g.effects, tx)?;
        g.seen
            .extend(tx.hosts_seen().map(|(h, t)| (h.to_string(), t)));
        Ok(())
    }
}

/// Alert states changed (rules' and posted ones), into the transaction: written, or deleted.
fn put_states<S: serde::Serialize>(
    tx: &mut Txn<'_>,
    changes: Vec<tocsin_rules::StateChange<S>>,
) -> Result<(), StoreError> {
    for c in changes {
        let json = c
            .state
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("state serializes"));
        tx.put_alert_state(&c.key, json.as_deref())?;
    }
    Ok(())
}

impl Writer {
    /// The group is durable: answers, forwarding, collector-side actions, counts.
    pub(super) fn committed(&mut self, mut g: Group, now: TimestampMs) {
        self.tel.last_commit.set(now / 1000);
        let asked = g.asked();
        for (h, t) in &g.seen {
            self.core.liveness.seen(h, *t);
        }
        self.view_after_commit(!g.transitions.is_empty(), asked);
        for (reply, stats, batch) in g.ingested {
            self.count(&stats);
            let _ = reply.send(Ingested {
                result: Ok(stats),
                batch,
            });
        }
        for (reply, r) in g.acks {
            let _ = reply.send(r.map_err(AckFailure::Refused));
        }
        for r in g.others.into_iter().chain(g.posts) {
            r.send_ok();
        }
        if !(g.to_forward.is_empty() && g.derived_forward.is_empty()) {
            // Peers get what agents sent; other targets that plus the derived series.
            // Copied only when both kinds of target want different things.
            let split = !g.derived_forward.is_empty() && self.forward.iter().any(|t| t.peer);
            let sent = split.then(|| Arc::new(g.to_forward.clone()));
            g.to_forward.append(&mut g.derived_forward);
            let all = Arc::new(g.to_forward);
            for t in &self.forward {
                match (&sent, t.peer) {
                    (Some(sent), true) => t.push(Arc::clone(sent)),
                    _ => t.push(Arc::clone(&all)),
                }
            }
        }
        if let Some(runner) = &self.runner {
            for req in std::mem::take(&mut g.effects.to_run) {
                let _ = runner.send(req);
            }
        }
        self.count_effects(&g.effects);
        self.after_commit(
            &g.transitions,
            g.effects.outgoing.len() + g.effects.notices.len() + g.queued_reports,
        );
        if let Some(a) = self.storage_alert.committed(now) {
            info!("storage writes work again");
            self.page(a, now);
        }
    }

    /// The group did not commit: everyone is told why, what was left unprocessed too (rule
    /// reloads are applied after the rewind), and the engine and pipeline go back to what is
    /// durable.
    pub(super) fn failed(
        &mut self,
        mut g: Group,
        unprocessed: impl Iterator<Item = Msg>,
        e: StoreError,
        now: TimestampMs,
    ) {
        let mut reloads: Vec<Vec<Rule>> = Vec::new();
        for m in unprocessed {
            match m {
                Msg::Ingest { batch, reply, .. } => {
                    g.ingested.push((reply, AppendStats::default(), batch))
                }
                Msg::Ack { reply, .. } => g.acks.push((reply, Err(AckError::NotFiring))),
                Msg::PollActions { reply, .. } => g.others.push(Reply::Poll(reply, Vec::new())),
                Msg::ActionResult { reply, .. }
                | Msg::ForgetHost { reply, .. }
                | Msg::Incident { reply, .. }
                | Msg::ReportRun { reply, .. } => g.others.push(Reply::Done(reply, Ok(()))),
                Msg::PostAlerts { reply, .. } => g.posts.push(Reply::Done(reply, Ok(()))),
                Msg::Reload(rules) => reloads.push(rules),
                Msg::Tick => {}
                Msg::AddSilence { .. }
                | Msg::ExpireSilence { .. }
                | Msg::Configure { .. }
                | Msg::Federate { .. } => {
                    unreachable!("handled before the group")
                }
            }
        }
        self.tel.storage_errors.inc();
        self.tel.last_failed_commit.set(now / 1000);
        error!(error = %e, "storage transaction failed; write requests refused");
        if let Some(a) = self.storage_alert.failed(now, &e.to_string()) {
            error!("storage has refused every write for too long: paging");
            self.page(a, now);
        }
        // Agents told to retry later back off: as after a restart, they get a grace.
        self.core.liveness.away(now);
        let err = if e.is_transient() {
            WriteError::Unavailable(e.to_string())
        } else {
            WriteError::Failed(e.to_string())
        };
        g.refuse(&err);
        // The engine ran ahead of what was stored: rewind it to the durable state.
        if let Err(e) = self.restore_engine() {
            error!(error = %e, "cannot reload alert states");
        }
        self.core.slos.undo();
        for rules in reloads {
            self.tel.rules_loaded.set(rules.len() as i64);
            let t = self.core.engine.replace_rules(rules, now);
            self.carry.extend(t);
        }
    }
}

/// The changes that have started and have no marker yet (`tocsin_change`), with their ids,
/// each row marked in the same transaction: a failed commit leaves them to the next tick, and a
/// change planned for later gets its marker when it starts. Also how many rows did not read
/// (marked too, so that one cannot hold up the others).
fn change_markers(
    tx: &mut Txn<'_>,
    now: TimestampMs,
) -> Result<(Vec<(i64, tocsin_incidents::Change)>, usize), StoreError> {
    let mut out = Vec::new();
    let mut unreadable = 0;
    for (id, start, data) in tx.changes_to_mark(now, 1000)? {
        match serde_json::from_str::<tocsin_incidents::Change>(&data) {
            // At the row's start, which decided that it is due.
            Ok(c) => out.push((
                id,
                tocsin_incidents::Change {
                    start_ms: start,
                    ..c
                },
            )),
            Err(e) => {
                unreadable += 1;
                error!(id, start, error = %e, "a stored change does not read: no marker");
            }
        }
        tx.mark_change(id)?;
    }
    Ok((out, unreadable))
}

/// Whether a name is one of the rules' (posted alerts may not take it).
fn rule_named(engine: &Engine) -> impl Fn(&str) -> bool + '_ {
    move |name| engine.has_rule(name)
}

/// Writes what the pipeline decided into the open transaction.
fn apply(fx: &Effects, tx: &mut Txn<'_>) -> Result<(), StoreError> {
    for a in &fx.audit {
        tx.audit(a.at, &a.actor, &a.action, &a.detail)?;
    }
    for o in &fx.outgoing {
        tx.enqueue(&o.notification.receiver, &o.body, o.at)?;
    }
    for (key, json) in &fx.dispatch_rows {
        tx.put_dispatch(key, json.as_deref())?;
    }
    for r in &fx.incident_rows {
        tx.put_incident(&r.id, r.opened_at, r.state, &r.json, &r.alerts, &r.members)?;
    }
    for e in &fx.timeline {
        tx.add_incident_event(&e.incident, e.at, &e.kind, &e.text)?;
    }
    for (key, json) in &fx.remedy_rows {
        tx.put_remedy(key, json.as_deref())?;
    }
    for (receiver, body, at) in &fx.notices {
        tx.enqueue(receiver, body, *at)?;
    }
    Ok(())
}

/// An edit of an incident no longer in memory: its stored record changes, and its stored
/// timeline gets the entry. The incident as edited.
fn edit_stored(
    tx: &mut Txn<'_>,
    id: &str,
    by: &str,
    edit: &tocsin_incidents::Edit,
    now: TimestampMs,
) -> Result<Result<tocsin_incidents::Incident, tocsin_incidents::Refused>, StoreError> {
    let Some(json) = tx.incident(id)? else {
        return Ok(Err(tocsin_incidents::Refused::NotFound));
    };
    let mut inc: tocsin_incidents::Incident = match serde_json::from_str(&json) {
        Ok(i) => i,
        Err(e) => {
            error!(id, error = %e, "stored incident unreadable; not edited");
            return Ok(Err(tocsin_incidents::Refused::NotFound));
        }
    };
    match edit.apply(&mut inc, by, now) {
        Ok((kind, text)) => {
            // An edit changes none of its alerts' parts nor its members.
            let r = tocsin_incidents::Row::of(&mut inc, [], Vec::new());
            tx.put_incident(id, r.opened_at, r.state, &r.json, &[], &[])?;
            tx.add_incident_event(id, now, kind, &text)?;
            Ok(Ok(inc))
        }
        Err(m) => Ok(Err(tocsin_incidents::Refused::Invalid(m))),
    }
}
