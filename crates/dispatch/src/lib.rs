//! Notification policy, between rule evaluation and delivery: which notifications are due, and
//! when. Alerts are grouped per receiver and route node (`group_by`, `group_wait`,
//! `group_interval`), unchanged groups are repeated with a limit and optional backoff, alerts
//! routed to an escalation policy walk its steps until acknowledged, and acknowledgements stop
//! repeats and escalation for the acknowledged level.
//!
//! Everything here is a pure state machine over injected time: the caller feeds alert events,
//! acknowledgements and ticks, persists what [`Dispatcher::take_changes`] returns in the same
//! transaction as the notifications [`Dispatcher::tick`] produced, and restores both after a
//! restart. Nothing here sends, stores or reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tocsin_config::escalation::Policy;
use tocsin_config::route::{GroupOpts, Target, TimeGate};
use tocsin_model::{Labels, Level, TimestampMs};
use tocsin_rules::{Transition, TransitionKind};

/// What changed last about an alert, as notifications and timelines say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Firing,
    LevelChanged,
    Resolved,
    Flapping,
    FlappingEnded,
    /// Its remediation failed: it goes to the next tier.
    RemediationFailed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Firing => "firing",
            Event::LevelChanged => "level_changed",
            Event::Resolved => "resolved",
            Event::Flapping => "flapping",
            Event::FlappingEnded => "flapping_ended",
            Event::RemediationFailed => "remediation_failed",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<TransitionKind> for Event {
    fn from(k: TransitionKind) -> Event {
        match k {
            TransitionKind::Firing => Event::Firing,
            TransitionKind::LevelChanged { .. } => Event::LevelChanged,
            TransitionKind::Resolved => Event::Resolved,
            TransitionKind::Flapping => Event::Flapping,
            TransitionKind::FlappingEnded { .. } => Event::FlappingEnded,
        }
    }
}

/// A number, or `null` (how JSON writes a value that is not a number) as NaN.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// An alert as a notification shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// The fingerprint of its labels, 16 hex digits: what acknowledgements name.
    pub id: String,
    pub rule: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub firing: bool,
    /// What changed last.
    pub event: Event,
    pub level: Level,
    pub previous_level: Option<Level>,
    /// Not a number for an alert posted from elsewhere (stored as `null`, read back so).
    #[serde(deserialize_with = "nan_from_null")]
    pub value: f64,
    pub threshold: String,
    pub starts_at: TimestampMs,
    pub ends_at: Option<TimestampMs>,
    pub at: TimestampMs,
    pub reason: Option<String>,
    #[serde(default)]
    pub ack: Option<Ack>,
    /// Where the sender of an alert posted from elsewhere says it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

impl AlertInfo {
    /// An alert of `rule` with these labels that fired (or resolved) at `level`, with nothing
    /// else told of it (no annotations, value 0, times 0): what tests and benchmarks start from.
    pub fn bare(rule: &str, labels: Labels, level: Level, firing: bool) -> AlertInfo {
        AlertInfo {
            id: alert_id(&labels),
            rule: rule.into(),
            labels,
            annotations: BTreeMap::new(),
            firing,
            event: if firing {
                Event::Firing
            } else {
                Event::Resolved
            },
            level,
            previous_level: None,
            value: 0.0,
            threshold: String::new(),
            starts_at: 0,
            ends_at: None,
            at: 0,
            reason: None,
            ack: None,
            generator_url: None,
        }
    }

    pub fn from_transition(t: &Transition) -> AlertInfo {
        AlertInfo {
            id: alert_id(&t.labels),
            rule: t.rule.clone(),
            labels: t.labels.clone(),
            annotations: t.annotations.clone(),
            firing: t.kind.firing(),
            event: Event::from(t.kind),
            level: t.level,
            previous_level: match t.kind {
                TransitionKind::LevelChanged { from } => Some(from),
                _ => None,
            },
            value: t.value,
            threshold: t.threshold.clone(),
            starts_at: t.starts_at,
            ends_at: t.ends_at,
            at: t.at,
            reason: t.reason.map(str::to_string),
            ack: None,
            generator_url: t.generator_url.clone(),
        }
    }
}

/// The identifier of the alert with these labels.
pub fn alert_id(labels: &Labels) -> String {
    format!("{:016x}", labels.fingerprint())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub comment: String,
    pub at: TimestampMs,
    /// The level acknowledged: a rise above it re-opens the alert.
    pub level: Level,
}

/// Why a notification goes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Why {
    /// The group changed: alerts fired, changed level or resolved.
    Changed,
    /// The group is unchanged and still firing; `n`-th repeat.
    Repeat { n: u32 },
    /// An escalation step (1-based) of `policy`; `repeat` counts repeats of the last step.
    Escalation {
        policy: String,
        step: usize,
        repeat: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub why: Why,
    /// Firing alerts first, then resolved ones; each as of now.
    pub alerts: Vec<AlertInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opts {
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_ms: Option<i64>,
    max_repeats: u32,
    backoff: f64,
    /// Repeats include acknowledged alerts (a receiver that keeps state in sync).
    #[serde(default)]
    keep_acked: bool,
}

impl Opts {
    fn new(o: &GroupOpts, resend_ms: Option<i64>) -> Self {
        let mut opts = Opts {
            group_wait_ms: o.group_wait.as_millis() as i64,
            group_interval_ms: o.group_interval.as_millis() as i64,
            repeat_ms: o.repeat_interval.map(|d| d.as_millis() as i64),
            max_repeats: o.max_repeats,
            backoff: o.repeat_backoff,
            keep_acked: false,
        };
        if let Some(every) = resend_ms {
            opts.resend(every);
        }
        opts
    }

    /// A receiver that forgets alerts not sent again (Alertmanager) hears of every firing
    /// alert at least every `every` ms, without limit or backoff.
    fn resend(&mut self, every: i64) {
        self.repeat_ms = Some(self.repeat_ms.map_or(every, |r| r.min(every)));
        self.max_repeats = 0;
        self.backoff = 1.0;
        self.keep_acked = true;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    receiver: String,
    /// The route node it belongs to (whose times it sends in).
    #[serde(default)]
    node: String,
    labels: Labels,
    opts: Opts,
    /// Alerts as they are now. Each alert of a group is kept in a row of its own (`m:`, with
    /// what was sent of it), so that a change to one alert of a large group rewrites that row
    /// and the group's small one, not every alert of the group; read here too from the rows
    /// of earlier versions, which held them.
    #[serde(default, skip_serializing)]
    alerts: BTreeMap<String, AlertInfo>,
    /// What this receiver last heard of each firing alert: its level.
    #[serde(default, skip_serializing)]
    sent: BTreeMap<String, Level>,
    created: TimestampMs,
    last_flush: Option<TimestampMs>,
    next: Option<TimestampMs>,
    changed: bool,
    repeats: u32,
    /// Alerts whose row changed since the state was last taken.
    #[serde(skip)]
    touched: BTreeSet<String>,
}

/// One alert of a group, as its row holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Member {
    alert: Option<AlertInfo>,
    sent: Option<Level>,
}

/// The row of alert `id` in the group `group`...
fn member_key(id: &str, group: &str) -> String {
    format!("m:{id}|{group}")
}

/// ...and back: (id, group) from the key less its `m:` (an alert id is hex: no `|`).
fn member_of(key: &str) -> (&str, &str) {
    key.split_once('|').unwrap_or((key, ""))
}

impl Group {
    fn event(&mut self, a: AlertInfo, now: TimestampMs) {
        let known = self.sent.contains_key(&a.id);
        self.touched.insert(a.id.clone());
        if !a.firing && !known && self.alerts.remove(&a.id).is_some() {
            // Fired and resolved before anyone heard of it: nothing to say.
            self.changed = self.alerts.keys().any(|id| !self.sent.contains_key(id));
            self.next = self.next.min(Some(now)).or(Some(now));
            return;
        }
        // A resolve of an alert this group never told is still sent: whoever may have heard of
        // it (through another node, before a route change) hears of its end. Resolves of
        // firings nobody was told of (silenced or inhibited from the start) are held back
        // before they get here, by the alerting pipeline.
        self.alerts.insert(a.id.clone(), a);
        self.changed = true;
        let due = match self.last_flush {
            None => self.created + self.opts.group_wait_ms,
            Some(l) => (l + self.opts.group_interval_ms).max(now),
        };
        self.next = Some(self.next.map_or(due, |n| n.min(due)));
    }

    /// The notification due now, if any, and the group's next time.
    fn flush(
        &mut self,
        key: &str,
        now: TimestampMs,
        acks: &BTreeMap<String, Ack>,
    ) -> Option<Notification> {
        let with_ack = |a: &AlertInfo| {
            let mut a = a.clone();
            a.ack = acks.get(&a.id).cloned();
            a
        };
        let (why, alerts) = if self.changed {
            // Firing first, then resolved; each part in label order.
            let mut alerts: Vec<AlertInfo> = self.alerts.values().map(with_ack).collect();
            alerts.sort_by(|a, b| (!a.firing, &a.labels).cmp(&(!b.firing, &b.labels)));
            for a in &alerts {
                let before = if a.firing {
                    self.sent.insert(a.id.clone(), a.level)
                } else {
                    self.sent.remove(&a.id)
                };
                if !a.firing || before != Some(a.level) {
                    self.touched.insert(a.id.clone());
                }
            }
            self.alerts.retain(|_, a| a.firing);
            self.changed = false;
            self.repeats = 0;
            self.last_flush = Some(now);
            (Why::Changed, alerts)
        } else {
            let mut alerts: Vec<AlertInfo> = self
                .alerts
                .values()
                .filter(|a| a.firing && (self.opts.keep_acked || !acks.contains_key(&a.id)))
                .map(with_ack)
                .collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            if alerts.is_empty() {
                (Why::Changed, alerts)
            } else {
                self.repeats += 1;
                self.last_flush = Some(now);
                (Why::Repeat { n: self.repeats }, alerts)
            }
        };
        self.next = match self.opts.repeat_ms {
            Some(every)
                if !self.alerts.is_empty()
                    && (self.opts.max_repeats == 0 || self.repeats < self.opts.max_repeats) =>
            {
                let factor = self.opts.backoff.powi(self.repeats as i32);
                Some(now + (every as f64 * factor) as i64)
            }
            _ => None,
        };
        (!alerts.is_empty()).then(|| Notification {
            receiver: self.receiver.clone(),
            group_key: key.to_string(),
            group_labels: self.labels.clone(),
            why,
            alerts,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Escalation {
    policy: String,
    /// The route node that started it (whose times its steps go out in).
    #[serde(default)]
    node: String,
    alert: AlertInfo,
    /// When the current run of steps started: firing, or the last rise in level.
    started: TimestampMs,
    level: Level,
    next_step: usize,
    repeats: u32,
    next: Option<TimestampMs>,
    /// Receivers that heard of the firing, so they hear of its end.
    notified: BTreeSet<String>,
}

/// The dispatcher's state and the policies it applies.
#[derive(Debug, Default)]
pub struct Dispatcher {
    policies: BTreeMap<String, Policy>,
    groups: BTreeMap<String, Group>,
    escalations: BTreeMap<String, Escalation>,
    acks: BTreeMap<String, Ack>,
    /// Notifications ready before the next tick (resolves of escalated alerts).
    ready: Vec<Notification>,
    dirty: BTreeSet<String>,
    resend: BTreeMap<String, i64>,
    /// Route nodes that send only at some times.
    gates: BTreeMap<String, TimeGate>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// The alert is not firing (resolved, or never existed).
    NotFiring,
    /// The link was for a lower level than the alert has now.
    LevelRose { now: Level },
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::NotFiring => write!(f, "the alert is not firing"),
            AckError::LevelRose { now } => write!(
                f,
                "the alert has risen to {now} since; acknowledge the new level"
            ),
        }
    }
}

/// Marks a group's row changed, and the rows of its alerts that changed.
fn mark(dirty: &mut BTreeSet<String>, key: &str, g: &mut Group) {
    dirty.insert(format!("g:{key}"));
    for id in std::mem::take(&mut g.touched) {
        dirty.insert(member_key(&id, key));
    }
}

fn group_key(receiver: &str, node: &str, labels: &Labels) -> String {
    format!("{receiver}|{node}|{labels}")
}

/// The escalation of alert `id` under `policy`.
fn escalation_key(policy: &str, id: &str) -> String {
    format!("{policy}|{id}")
}

/// The labels of the group an alert joins at a target (its `group_by`, else all its labels).
fn group_labels(t: &Target, a: &AlertInfo) -> Labels {
    match &t.opts.group_by {
        None => a.labels.clone(),
        Some(names) => Labels::from_pairs(
            names
                .iter()
                .filter_map(|n| a.labels.get(n).map(|v| (n.as_str(), v))),
        ),
    }
}

impl Dispatcher {
    /// `resend`: receivers whose firing alerts must be sent again at least every so many ms,
    /// whatever the route says (Alertmanager).
    pub fn new(policies: Vec<Policy>, resend: BTreeMap<String, i64>) -> Dispatcher {
        Dispatcher {
            policies: policies.into_iter().map(|p| (p.name.clone(), p)).collect(),
            resend,
            ..Default::default()
        }
    }

    /// The route nodes that send only at some times (`tocsin_alerting::routing::gates`, from
    /// the same route the targets come from), for the groups and escalations of their nodes.
    pub fn set_gates(&mut self, gates: BTreeMap<String, TimeGate>) {
        self.gates = gates;
    }

    /// Takes in one alert event routed to `targets`.
    pub fn event(&mut self, a: &AlertInfo, targets: &[Target], now: TimestampMs) {
        if a.firing {
            if let Some(ack) = self.acks.get(&a.id) {
                if a.level > ack.level {
                    self.acks.remove(&a.id);
                    self.dirty.insert(format!("a:{}", a.id));
                }
            }
        } else if self.acks.remove(&a.id).is_some() {
            self.dirty.insert(format!("a:{}", a.id));
        }
        for t in targets {
            let labels = group_labels(t, a);
            for r in &t.receivers {
                let key = group_key(r, &t.node, &labels);
                let g = self.groups.entry(key.clone()).or_insert_with(|| Group {
                    receiver: r.clone(),
                    node: t.node.clone(),
                    labels: labels.clone(),
                    opts: Opts::new(&t.opts, self.resend.get(r).copied()),
                    alerts: BTreeMap::new(),
                    sent: BTreeMap::new(),
                    created: now,
                    last_flush: None,
                    next: None,
                    changed: false,
                    repeats: 0,
                    touched: BTreeSet::new(),
                });
                g.opts = Opts::new(&t.opts, self.resend.get(r).copied());
                g.node.clone_from(&t.node);
                g.event(a.clone(), now);
                mark(&mut self.dirty, &key, g);
            }
            if let Some(p) = &t.escalation {
                self.escalate(p, &t.node, a, now);
            }
        }
    }

    fn escalate(&mut self, policy: &str, node: &str, a: &AlertInfo, now: TimestampMs) {
        let Some(p) = self.policies.get(policy) else {
            return;
        };
        let key = escalation_key(policy, &a.id);
        self.dirty.insert(format!("e:{key}"));
        if !a.firing {
            if let Some(e) = self.escalations.remove(&key) {
                for r in e.notified {
                    self.ready.push(Notification {
                        receiver: r,
                        group_key: key.clone(),
                        group_labels: a.labels.clone(),
                        why: Why::Escalation {
                            policy: policy.to_string(),
                            step: e.next_step,
                            repeat: e.repeats,
                        },
                        alerts: vec![a.clone()],
                    });
                }
            }
            return;
        }
        let first = p.steps.first().map_or(0, |s| s.after.as_millis() as i64);
        match self.escalations.get_mut(&key) {
            Some(e) if a.level <= e.level => {
                e.alert = a.clone();
                node.clone_into(&mut e.node);
            }
            Some(e) => {
                // A rise in level starts the steps over.
                e.alert = a.clone();
                e.level = a.level;
                e.started = now;
                e.next_step = 0;
                e.repeats = 0;
                e.next = Some(now + first);
            }
            None => {
                self.escalations.insert(
                    key,
                    Escalation {
                        policy: policy.to_string(),
                        node: node.to_string(),
                        alert: a.clone(),
                        started: now,
                        level: a.level,
                        next_step: 0,
                        repeats: 0,
                        next: Some(now + first),
                        notified: BTreeSet::new(),
                    },
                );
            }
        }
    }

    /// Acknowledges the firing alert `id` at `level` (its level now, or the level a link was
    /// made for). Stops repeats and escalation until the alert rises above that level.
    pub fn ack(
        &mut self,
        id: &str,
        current: Option<Level>,
        link_level: Option<Level>,
        by: &str,
        comment: &str,
        now: TimestampMs,
    ) -> Result<Ack, AckError> {
        let Some(level) = current else {
            return Err(AckError::NotFiring);
        };
        if let Some(l) = link_level {
            if l < level {
                return Err(AckError::LevelRose { now: level });
            }
        }
        let ack = Ack {
            by: by.to_string(),
            comment: comment.to_string(),
            at: now,
            level,
        };
        self.acks.insert(id.to_string(), ack.clone());
        self.dirty.insert(format!("a:{id}"));
        for (key, e) in self.escalations.iter_mut() {
            if e.alert.id == id {
                e.next = None;
                e.alert.ack = Some(ack.clone());
                self.dirty.insert(format!("e:{key}"));
            }
        }
        Ok(ack)
    }

    /// Sends alert `id` to its next tier now (a remediation failed): its escalation's next step
    /// is due at once, and its groups notify again with `event` as the alert's last event.
    /// Acknowledged alerts are left alone: somebody is on it.
    pub fn bump(&mut self, id: &str, event: Event, now: TimestampMs) {
        if self.acks.contains_key(id) {
            return;
        }
        for (key, e) in self.escalations.iter_mut() {
            if e.alert.id == id {
                let p = self.policies.get(&e.policy);
                let more =
                    p.is_some_and(|p| e.next_step < p.steps.len() || p.repeat_last.is_some());
                if more {
                    e.next = Some(now);
                }
                e.alert.event = event;
                self.dirty.insert(format!("e:{key}"));
            }
        }
        for (key, g) in self.groups.iter_mut() {
            if let Some(a) = g.alerts.get_mut(id).filter(|a| a.firing) {
                a.event = event;
                g.changed = true;
                g.next = Some(now);
                g.touched.insert(id.to_string());
                mark(&mut self.dirty, key, g);
            }
        }
    }

    pub fn acks(&self) -> &BTreeMap<String, Ack> {
        &self.acks
    }

    /// Notifications due at `now`, in a stable order.
    pub fn tick(&mut self, now: TimestampMs) -> Vec<Notification> {
        let mut out = std::mem::take(&mut self.ready);
        // A node outside its times sends nothing: what is due waits for the next minute (the
        // times' resolution), its changes kept, and goes out as it opens.
        let gates = &self.gates;
        let closed = |node: &str| gates.get(node).is_some_and(|g| !g.open(now));
        let next_minute = (now.div_euclid(60_000) + 1) * 60_000;
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next.is_some_and(|n| n <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let g = self.groups.get_mut(&key).expect("due group exists");
            if closed(&g.node) {
                g.next = Some(next_minute);
                self.dirty.insert(format!("g:{key}"));
                continue;
            }
            if let Some(n) = g.flush(&key, now, &self.acks) {
                out.push(n);
            }
            if g.alerts.is_empty() && !g.changed {
                // Gone with every row of its alerts.
                let told: Vec<String> = g.sent.keys().cloned().collect();
                g.touched.extend(told);
                mark(&mut self.dirty, &key, g);
                self.groups.remove(&key);
            } else {
                mark(&mut self.dirty, &key, g);
            }
        }
        let due: Vec<String> = self
            .escalations
            .iter()
            .filter(|(_, e)| e.next.is_some_and(|n| n <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let e = self
                .escalations
                .get_mut(&key)
                .expect("due escalation exists");
            if closed(&e.node) {
                // The steps wait as a whole: the one due goes out as the node opens, the later
                // ones keep their spacing after it (not all at once).
                let held = next_minute - e.next.unwrap_or(now);
                e.started += held;
                e.next = Some(next_minute);
                self.dirty.insert(format!("e:{key}"));
                continue;
            }
            let Some(p) = self.policies.get(&e.policy) else {
                self.escalations.remove(&key);
                self.dirty.insert(format!("e:{key}"));
                continue;
            };
            // Catch up in order when late (e.g. after a restart): each step once.
            while e.next.is_some_and(|n| n <= now) {
                let (receivers, step, repeat) = if e.next_step < p.steps.len() {
                    e.next_step += 1;
                    (&p.steps[e.next_step - 1].receivers, e.next_step, 0)
                } else {
                    e.repeats += 1;
                    (
                        &p.steps[p.steps.len() - 1].receivers,
                        p.steps.len(),
                        e.repeats,
                    )
                };
                for r in receivers {
                    e.notified.insert(r.clone());
                    let mut a = e.alert.clone();
                    a.ack = self.acks.get(&a.id).cloned();
                    out.push(Notification {
                        receiver: r.clone(),
                        group_key: key.clone(),
                        group_labels: e.alert.labels.clone(),
                        why: Why::Escalation {
                            policy: e.policy.clone(),
                            step,
                            repeat,
                        },
                        alerts: vec![a],
                    });
                }
                e.next = if e.next_step < p.steps.len() {
                    Some(e.started + p.steps[e.next_step].after.as_millis() as i64)
                } else {
                    match p.repeat_last {
                        Some((every, times)) if times == 0 || e.repeats < times => {
                            Some(now.max(e.next.unwrap_or(now)) + every.as_millis() as i64)
                        }
                        _ => None,
                    }
                };
            }
            self.dirty.insert(format!("e:{key}"));
        }
        out
    }

    /// State rows changed since the last call: (key, JSON or `None` when gone).
    pub fn take_changes(&mut self) -> Vec<(String, Option<String>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let json = match k.split_at(2) {
                    ("g:", key) => self.groups.get(key).map(serde_json::to_string),
                    ("m:", member) => {
                        let (id, group) = member_of(member);
                        self.groups.get(group).and_then(|g| {
                            let m = Member {
                                alert: g.alerts.get(id).cloned(),
                                sent: g.sent.get(id).copied(),
                            };
                            (m.alert.is_some() || m.sent.is_some())
                                .then(|| serde_json::to_string(&m))
                        })
                    }
                    ("e:", key) => self.escalations.get(key).map(serde_json::to_string),
                    (_, id) => self.acks.get(id).map(serde_json::to_string),
                };
                (k, json.map(|j| j.expect("dispatch state serializes")))
            })
            .collect()
    }

    /// Restores state rows written by [`Dispatcher::take_changes`]; returns the unreadable
    /// ones as (key, error).
    pub fn restore(&mut self, rows: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut members = Vec::new();
        for (k, json) in rows {
            let r = match k.get(..2) {
                Some("m:") => {
                    members.push((k, json));
                    continue;
                }
                Some("g:") => serde_json::from_str::<Group>(&json).map(|mut g| {
                    // Written by an earlier version, with its alerts in it: they move to rows
                    // of their own with the next change taken.
                    if !(g.alerts.is_empty() && g.sent.is_empty()) {
                        g.touched = g.alerts.keys().chain(g.sent.keys()).cloned().collect();
                        mark(&mut self.dirty, &k[2..], &mut g);
                    }
                    self.groups.insert(k[2..].to_string(), g);
                }),
                Some("e:") => serde_json::from_str::<Escalation>(&json).map(|e| {
                    self.escalations.insert(k[2..].to_string(), e);
                }),
                Some("a:") => serde_json::from_str(&json).map(|a| {
                    self.acks.insert(k[2..].to_string(), a);
                }),
                _ => {
                    bad.push((k, "unknown kind of row".to_string()));
                    continue;
                }
            };
            if let Err(e) = r {
                bad.push((k, e.to_string()));
            }
        }
        for (k, json) in members {
            let (id, group) = member_of(&k[2..]);
            let Some(g) = self.groups.get_mut(group) else {
                bad.push((k, "an alert of no group".to_string()));
                continue;
            };
            match serde_json::from_str::<Member>(&json) {
                Ok(m) => {
                    if let Some(a) = m.alert {
                        g.alerts.insert(id.to_string(), a);
                    }
                    if let Some(l) = m.sent {
                        g.sent.insert(id.to_string(), l);
                    }
                }
                Err(e) => bad.push((k, e.to_string())),
            }
        }
        for g in self.groups.values_mut() {
            if let Some(&every) = self.resend.get(&g.receiver) {
                // Settings of this version, and a resend at the first tick: the receiver may
                // have forgotten while this collector was away.
                g.opts.resend(every);
                if g.alerts.values().any(|a| a.firing) {
                    g.next = Some(0);
                }
            }
        }
        bad
    }

    /// The groups as people see them: each receiver's group (its labels and the ids of the
    /// firing alerts in it), and each escalation as a group of its one alert, named by its
    /// policy.
    pub fn group_views(&self) -> Vec<(String, Labels, Vec<String>)> {
        let groups = self.groups.values().map(|g| {
            let firing = g.alerts.values().filter(|a| a.firing);
            (
                g.receiver.clone(),
                g.labels.clone(),
                firing.map(|a| a.id.clone()).collect(),
            )
        });
        let escalations = self
            .escalations
            .values()
            .filter(|e| e.alert.firing)
            .map(|e| {
                (
                    e.policy.clone(),
                    e.alert.labels.clone(),
                    vec![e.alert.id.clone()],
                )
            });
        groups
            .chain(escalations)
            .filter(|(_, _, ids)| !ids.is_empty())
            .collect()
    }

    /// The alerts some group or escalation holds (to tell, or told and still firing), by id,
    /// and the level each was last given at (the highest, where several hold it): a change
    /// held back since (by a silence) differs from it.
    pub fn known_levels(&self) -> std::collections::HashMap<&str, Level> {
        // The alert as a group holds it (maybe still waiting to go out), else what its
        // receiver last heard of it; an escalation's alert.
        let held = self.groups.values().flat_map(|g| {
            let told = g.sent.iter().filter(|(id, _)| !g.alerts.contains_key(*id));
            g.alerts
                .values()
                .map(|a| (a.id.as_str(), a.level))
                .chain(told.map(|(id, l)| (id.as_str(), *l)))
        });
        let escalated = self
            .escalations
            .values()
            .map(|e| (e.alert.id.as_str(), e.alert.level));
        let mut out = std::collections::HashMap::new();
        for (id, level) in held.chain(escalated) {
            let l = out.entry(id).or_insert(level);
            *l = (*l).max(level);
        }
        out
    }

    /// Whether the group `key` holds alert `id`, to tell or told.
    fn group_holds(&self, key: &str, id: &str) -> bool {
        self.groups
            .get(key)
            .is_some_and(|g| g.alerts.contains_key(id) || g.sent.contains_key(id))
    }

    /// Whether a group or escalation the alert routes to (`targets`) holds it, to tell or told:
    /// the question `known_levels` answers for every alert, asked of one without going
    /// through them all (a mass recovery asks it of each of thousands). `false` does not
    /// say that nothing holds it: a group it joined before a reload changed the route may.
    pub fn holds(&self, a: &AlertInfo, targets: &[Target]) -> bool {
        targets.iter().any(|t| {
            let labels = group_labels(t, a);
            let grouped = t
                .receivers
                .iter()
                .any(|r| self.group_holds(&group_key(r, &t.node, &labels), &a.id));
            grouped
                || t.escalation
                    .as_ref()
                    .is_some_and(|p| self.escalations.contains_key(&escalation_key(p, &a.id)))
        })
    }

    /// The part of `targets` that does not hold the firing alert `a`: per target, the
    /// receivers whose group lacks it and the escalation if none runs for it (targets left
    /// with nothing are left out). Handing an alert to these with [`Dispatcher::event`] tells
    /// only those that have not heard of it: after a configuration reload, a receiver a route
    /// now sends to hears of what fires, and those that heard already are not told again.
    pub fn missing(&self, a: &AlertInfo, targets: &[Target]) -> Vec<Target> {
        targets
            .iter()
            .filter_map(|t| {
                let labels = group_labels(t, a);
                let receivers: Vec<String> = t
                    .receivers
                    .iter()
                    .filter(|r| !self.group_holds(&group_key(r, &t.node, &labels), &a.id))
                    .cloned()
                    .collect();
                let escalation = t.escalation.clone().filter(|p| {
                    self.policies.contains_key(p)
                        && !self.escalations.contains_key(&escalation_key(p, &a.id))
                });
                (!receivers.is_empty() || escalation.is_some()).then(|| Target {
                    receivers,
                    escalation,
                    ..t.clone()
                })
            })
            .collect()
    }

    /// Drops the groups of receivers not in `receivers`, and the escalations of policies this
    /// dispatcher no longer has (a configuration reload removed them): nobody can deliver
    /// them. Escalations forget the receivers that are gone. Returns how many groups and
    /// escalations were dropped; their rows are deleted with the next changes taken.
    pub fn retain_receivers(&mut self, receivers: &BTreeSet<String>) -> (usize, usize) {
        let (groups, escalations) = (self.groups.len(), self.escalations.len());
        let dirty = &mut self.dirty;
        self.groups.retain(|key, g| {
            let keep = receivers.contains(&g.receiver);
            if !keep {
                g.touched = g.alerts.keys().chain(g.sent.keys()).cloned().collect();
                mark(dirty, key, g);
            }
            keep
        });
        let policies = &self.policies;
        self.escalations.retain(|key, e| {
            let keep = policies.contains_key(&e.policy);
            let before = e.notified.len();
            e.notified.retain(|r| receivers.contains(r));
            if !keep || e.notified.len() != before {
                dirty.insert(format!("e:{key}"));
            }
            keep
        });
        (
            groups - self.groups.len(),
            escalations - self.escalations.len(),
        )
    }

    /// Gives the groups of each route node in `opts` that node's grouping options (a reload
    /// changed them): from their next message on, they repeat and group as the node now says.
    /// Groups of nodes no longer in the tree keep theirs until their alerts end.
    pub fn set_node_opts(&mut self, opts: &BTreeMap<String, GroupOpts>) {
        for (key, g) in &mut self.groups {
            if let Some(o) = opts.get(&g.node) {
                let new = Opts::new(o, self.resend.get(&g.receiver).copied());
                if new != g.opts {
                    g.opts = new;
                    self.dirty.insert(format!("g:{key}"));
                }
            }
        }
    }

    /// Groups and escalations in flight, for metrics.
    pub fn sizes(&self) -> (usize, usize) {
        (self.groups.len(), self.escalations.len())
    }
}

#[cfg(test)]
mod tests;
