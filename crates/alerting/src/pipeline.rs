//! The pipeline: one state machine over the dispatcher, incidents and remediation, fed with
//! what rule evaluation decided and the time, answering with [`Effects`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tocsin_config::escalation::Policy;
use tocsin_config::inhibit::InhibitRule;
use tocsin_config::route::Route;
use tocsin_dispatch::{alert_id, Ack, AckError, AlertInfo, Dispatcher, Notification, Why};
use tocsin_incidents::{Incidents, Refused, TimelineEvent};
use tocsin_model::{Labels, Level, TimestampMs};
use tocsin_remedy::{Remedy, Request, ResultStatus};
use tocsin_rules::external::{External, ExternalAlert};
use tocsin_rules::{Engine, Remediation, Transition};
use tracing::{info, warn};

use crate::routing;
use crate::silence::Silence;

/// What the pipeline reads of rule evaluation. [`Engine`] is the real one; tests use a table.
pub trait Alerts {
    /// Labels of the firing alerts `keep` accepts (only those are copied). With `names`, only
    /// alerts of those `alertname`s are to be accepted, so they may be looked up by name.
    fn firing_labels(
        &self,
        names: Option<&BTreeSet<&str>>,
        keep: &dyn Fn(&Labels) -> bool,
    ) -> Vec<Labels>;
    /// Every firing alert whose labels and level `keep` accepts, as a firing transition at
    /// `now`.
    fn firing_now(
        &self,
        now: TimestampMs,
        keep: &dyn Fn(&Labels, Level) -> bool,
    ) -> Vec<Transition>;
    /// The level the alert `id` fires at (None: not firing).
    fn level_of(&self, id: &str) -> Option<Level>;
    /// The remediation of the rule that raised `t`, if it has one (an alert posted from
    /// elsewhere has none).
    fn remediation(&self, t: &Transition) -> Option<Remediation>;
}

impl Alerts for Engine {
    fn firing_labels(
        &self,
        names: Option<&BTreeSet<&str>>,
        keep: &dyn Fn(&Labels) -> bool,
    ) -> Vec<Labels> {
        let named =
            |l: &Labels| names.is_none_or(|n| l.get("alertname").is_some_and(|v| n.contains(v)));
        self.alerts()
            .filter(|a| a.level.is_some() && named(&a.labels) && keep(&a.labels))
            .map(|a| a.labels.clone())
            .collect()
    }

    fn firing_now(
        &self,
        now: TimestampMs,
        keep: &dyn Fn(&Labels, Level) -> bool,
    ) -> Vec<Transition> {
        self.firing(now, keep)
    }

    fn level_of(&self, id: &str) -> Option<Level> {
        self.alerts()
            .find(|a| alert_id(&a.labels) == id)
            .and_then(|a| a.level)
    }

    fn remediation(&self, t: &Transition) -> Option<Remediation> {
        if t.external {
            return None;
        }
        self.rule(&t.rule).and_then(|r| r.remediation.clone())
    }
}

/// The collector's rules and the alerts posted from elsewhere, read as one.
pub struct Sources<'a> {
    pub rules: &'a Engine,
    pub external: &'a External,
}

impl Alerts for Sources<'_> {
    fn firing_labels(
        &self,
        names: Option<&BTreeSet<&str>>,
        keep: &dyn Fn(&Labels) -> bool,
    ) -> Vec<Labels> {
        let mut v = self.rules.firing_labels(names, keep);
        let posted: Box<dyn Iterator<Item = &ExternalAlert>> = match names {
            Some(n) => Box::new(n.iter().flat_map(|n| self.external.named(n))),
            None => Box::new(self.external.alerts()),
        };
        v.extend(posted.filter(|a| keep(&a.labels)).map(|a| a.labels.clone()));
        v
    }

    fn firing_now(
        &self,
        now: TimestampMs,
        keep: &dyn Fn(&Labels, Level) -> bool,
    ) -> Vec<Transition> {
        let mut v = self.rules.firing_now(now, keep);
        v.extend(self.external.firing(now, keep));
        v
    }

    fn level_of(&self, id: &str) -> Option<Level> {
        Alerts::level_of(self.rules, id).or_else(|| self.external.get(id).map(|a| a.level))
    }

    fn remediation(&self, t: &Transition) -> Option<Remediation> {
        self.rules.remediation(t)
    }
}

/// What the pipeline needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which receivers get which notification.
    pub route: Route,
    /// Receivers that carry notices to people (not SMS, not Alertmanager).
    pub text_receivers: std::collections::BTreeSet<String>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub escalation_policies: Vec<Policy>,
    /// Receivers whose firing alerts are sent again at least every so many ms (receivers that
    /// keep state in sync, such as an Alertmanager).
    pub resend: BTreeMap<String, i64>,
    /// Signs acknowledgement links.
    pub ack_secret: Arc<Vec<u8>>,
    pub ack_link_ttl_ms: i64,
    pub dashboard_url: Option<String>,
    /// How notifications name this collector (links to it).
    pub external_url: String,
    pub incidents: tocsin_incidents::Settings,
    pub remedy_limits: tocsin_remedy::Limits,
    /// Every remediation only says what it would do.
    pub dry_run: bool,
}

impl Settings {
    /// The pipeline's part of a validated collector configuration.
    pub fn from_config(
        cfg: &tocsin_config::collector::CollectorConfig,
        ack_secret: Arc<Vec<u8>>,
    ) -> Settings {
        use tocsin_config::collector::ReceiverKind;
        Settings {
            route: cfg.route.clone(),
            text_receivers: cfg
                .receivers
                .iter()
                .filter(|r| r.kind.carries_text())
                .map(|r| r.name.clone())
                .collect(),
            inhibit_rules: cfg.inhibit_rules.clone(),
            escalation_policies: cfg.escalation_policies.clone(),
            resend: cfg
                .receivers
                .iter()
                .filter_map(|r| match &r.kind {
                    ReceiverKind::Alertmanager {
                        resend_interval, ..
                    } => Some((r.name.clone(), resend_interval.as_millis() as i64)),
                    _ => None,
                })
                .collect(),
            ack_secret,
            ack_link_ttl_ms: cfg.ack.link_ttl.as_millis() as i64,
            dashboard_url: cfg.dashboard_url.clone(),
            external_url: cfg.external_url.clone(),
            incidents: tocsin_incidents::Settings {
                group_by: cfg.incidents.group_by.clone(),
                reopen_within_ms: cfg.incidents.reopen_within.as_millis() as i64,
                deadlines: cfg
                    .deadlines
                    .0
                    .iter()
                    .map(|(level, d)| tocsin_incidents::Deadline {
                        level: *level,
                        ack_ms: d.ack.as_millis() as i64,
                        resolve_ms: d.resolve.as_millis() as i64,
                        hours: d.hours.clone(),
                    })
                    .collect(),
                rto_ms: cfg
                    .services
                    .iter()
                    .filter_map(|s| Some((s.name.clone(), s.rto?.as_millis() as i64)))
                    .collect(),
                owners: cfg
                    .services
                    .iter()
                    .filter_map(|s| Some((s.name.clone(), s.owner.clone()?)))
                    .collect(),
            },
            remedy_limits: tocsin_remedy::Limits {
                max_concurrent: cfg.remediation.max_concurrent,
                per_host: cfg.remediation.per_host,
                answer_within_ms: cfg.remediation.answer_within.as_millis() as i64,
            },
            dry_run: cfg.remediation.dry_run,
        }
    }
}

/// A notification to queue for a receiver: the decision and the body as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub notification: Notification,
    /// The Alertmanager-compatible webhook JSON every channel renders from.
    pub body: String,
    pub at: TimestampMs,
}

/// An audit log row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: TimestampMs,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// An incident that resolved, for the resolution statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub category: String,
    pub severity: Level,
    /// `auto`, `remediation` or `person`.
    pub by: &'static str,
    pub to_ack_ms: Option<i64>,
    pub to_resolve_ms: Option<i64>,
    pub to_remediate_ms: Option<i64>,
}

/// Everything a step decided, for the caller to make durable in one transaction (and to count
/// once it is).
#[derive(Debug, Default)]
pub struct Effects {
    /// Dispatcher state rows: `(key, None)` deletes.
    pub dispatch_rows: Vec<(String, Option<String>)>,
    /// Incident rows.
    pub incident_rows: Vec<tocsin_incidents::Row>,
    pub timeline: Vec<TimelineEvent>,
    /// Remediation state rows: `(key, None)` deletes.
    pub remedy_rows: Vec<(String, Option<String>)>,
    pub audit: Vec<AuditEntry>,
    /// Notifications to queue, in order.
    pub outgoing: Vec<Outgoing>,
    /// Action requests the collector runs itself, once committed.
    pub to_run: Vec<Request>,
    /// Firing notifications a silence held back.
    pub silenced: u64,
    /// Firing notifications a firing alert held back.
    pub inhibited: u64,
    /// Remediation events by kind (`requested`, `failed`, …).
    pub remediation: Vec<&'static str>,
    pub resolved: Vec<Resolved>,
    /// Deadlines passed (`ack`, `resolve`, `rto`) and the incident's severity, for counting.
    pub breaches: Vec<(&'static str, Level)>,
    /// Messages to people that are not alerts (an incident assigned to them): receiver, the
    /// outbox body, when.
    pub notices: Vec<(String, String, TimestampMs)>,
}

/// A change to an incident asked for by a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentOp {
    Ack {
        by: String,
        comment: String,
    },
    Resolve {
        by: String,
    },
    Note {
        by: String,
        text: String,
    },
    /// Owner, root cause, impact, follow-ups: also on a resolved incident.
    Edit {
        by: String,
        edit: tocsin_incidents::Edit,
    },
}

/// Who gets a notification, and who does not; what incidents and remediation make of alerts.
#[derive(Debug)]
pub struct Pipeline {
    s: Settings,
    silences: Vec<Silence>,
    /// Silences muting at the last look: one that stops muting releases what it held.
    muting: Vec<i64>,
    dispatcher: Dispatcher,
    incidents: Incidents,
    remedy: Remedy,
    fx: Effects,
    /// A configuration reload changed the settings: the next batch hands every firing alert
    /// to the targets of the new route that have not heard of it.
    reroute: bool,
}

/// What a configuration reload did to the state in flight.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Notification groups of receivers no longer configured, dropped.
    pub groups_dropped: usize,
    /// Escalations under policies no longer configured, dropped.
    pub escalations_dropped: usize,
    /// Stored rows that could not be read, as `(key, error)`.
    pub unreadable: Vec<(String, String)>,
}

/// An empty dispatcher for these settings: their escalation policies, the receivers it resends
/// to, and the route nodes that send only at some times.
fn dispatcher(s: &Settings) -> Dispatcher {
    let mut d = Dispatcher::new(s.escalation_policies.clone(), s.resend.clone());
    d.set_gates(routing::gates(&s.route));
    d
}

impl Pipeline {
    pub fn new(settings: Settings) -> Pipeline {
        Pipeline {
            dispatcher: dispatcher(&settings),
            incidents: Incidents::new(settings.incidents.clone()),
            remedy: Remedy::new(settings.remedy_limits),
            silences: Vec::new(),
            muting: Vec::new(),
            fx: Effects::default(),
            reroute: false,
            s: settings,
        }
    }

    /// Takes a reloaded configuration: the dispatcher, incidents and remediation start again
    /// from their stored state under the new settings, as at a restart with the new file
    /// (silences are kept). Groups of receivers not in `receivers` and escalations of
    /// policies no longer configured are dropped (nobody could deliver them); with the next
    /// batch every firing alert goes to the targets of the new route that have not heard of it
    /// (a receiver added to a route is told what fires there; nobody who heard is told again).
    /// The caller passes the rows as stored: what was decided since the last commit is void.
    pub fn reconfigure(
        &mut self,
        settings: Settings,
        receivers: &BTreeSet<String>,
        dispatch_rows: Vec<(String, String)>,
        incident_rows: Vec<(String, String)>,
        remedy_rows: Vec<(String, String)>,
        now: TimestampMs,
    ) -> Reconfigured {
        self.s = settings;
        let unreadable = self.restore(dispatch_rows, incident_rows, remedy_rows, now);
        let (groups_dropped, escalations_dropped) = self.dispatcher.retain_receivers(receivers);
        self.dispatcher
            .set_node_opts(&routing::node_opts(&self.s.route));
        self.reroute = true;
        Reconfigured {
            groups_dropped,
            escalations_dropped,
            unreadable,
        }
    }

    /// Starts again from stored state (after a restart, or when a transaction failed and what
    /// was decided since the last commit is void). Returns the rows that could not be read, as
    /// `(key, error)`. Silences are kept.
    pub fn restore(
        &mut self,
        dispatch_rows: Vec<(String, String)>,
        incident_rows: Vec<(String, String)>,
        remedy_rows: Vec<(String, String)>,
        now: TimestampMs,
    ) -> Vec<(String, String)> {
        self.dispatcher = dispatcher(&self.s);
        self.incidents = Incidents::new(self.s.incidents.clone());
        self.remedy = Remedy::new(self.s.remedy_limits);
        self.fx = Effects::default();
        let mut bad = self.dispatcher.restore(dispatch_rows);
        bad.extend(self.incidents.restore(incident_rows, now));
        bad.extend(self.remedy.restore(remedy_rows));
        bad
    }

    /// Since when stored incidents matter to [`Pipeline::restore`] (they can reopen).
    pub fn incidents_since(&self, now: TimestampMs) -> TimestampMs {
        now - self.s.incidents.reopen_within_ms
    }

    /// The silences in force from now on.
    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// The notification groups and escalations in flight (receiver or policy, group labels,
    /// firing alert ids).
    pub fn group_views(&self) -> Vec<(String, Labels, Vec<String>)> {
        self.dispatcher.group_views()
    }

    /// What holds each of `firing` back at `now`: the ids of the silences that mute it, and
    /// the ids of the firing alerts that inhibit it (as [`Pipeline::transitions`] decides). Sources
    /// are indexed by the values of each rule's `equal` labels, so a mass outage costs
    /// O(alerts × rules), not O(alerts²).
    pub fn held_back(&self, firing: &[&Labels], now: TimestampMs) -> Vec<(Vec<i64>, Vec<String>)> {
        let rules = &self.s.inhibit_rules;
        let key = |r: &InhibitRule, l: &Labels| -> Option<Vec<String>> {
            r.equal
                .iter()
                .map(|k| l.get(k).map(str::to_string))
                .collect()
        };
        let index: Vec<HashMap<Vec<String>, Vec<&Labels>>> = rules
            .iter()
            .map(|r| {
                let mut m: HashMap<Vec<String>, Vec<&Labels>> = HashMap::new();
                for l in firing.iter().filter(|l| routing::is_source(r, l)) {
                    if let Some(k) = key(r, l) {
                        m.entry(k).or_default().push(l);
                    }
                }
                m
            })
            .collect();
        let active: Vec<&Silence> = self.silences.iter().filter(|s| s.active(now)).collect();
        firing
            .iter()
            .map(|l| {
                let silenced = active
                    .iter()
                    .filter(|s| s.matches(l, now))
                    .map(|s| s.id)
                    .collect();
                let mut by: Vec<String> = rules
                    .iter()
                    .zip(&index)
                    .filter_map(|(r, m)| Some((r, m.get(&key(r, l)?)?)))
                    .flat_map(|(r, srcs)| {
                        srcs.iter()
                            .filter(move |src| routing::inhibits(r, src, l))
                            .map(|src| alert_id(src))
                    })
                    .collect();
                by.sort_unstable();
                by.dedup();
                (silenced, by)
            })
            .collect()
    }

    /// Whether a silence stopped muting since the last call (it expired, ran out or a
    /// maintenance window closed): what it held back and still fires should now be told.
    pub fn silence_ended(&mut self, now: TimestampMs) -> bool {
        let muting: Vec<i64> = self
            .silences
            .iter()
            .filter(|s| s.active(now))
            .map(|s| s.id)
            .collect();
        let ended = self.muting.iter().any(|id| !muting.contains(id));
        self.muting = muting;
        ended
    }

    /// Takes what rule evaluation decided: opens and joins incidents, asks for remediation,
    /// hands each transition to the dispatcher unless a silence or a firing alert holds it
    /// back. With `recheck_held` (after a restart or a silence ended), firing alerts that no
    /// receiver has heard of and nothing holds back any more are told like new firings, as
    /// Alertmanager does at its next flush.
    pub fn transitions(
        &mut self,
        alerts: &dyn Alerts,
        transitions: &[Transition],
        recheck_held: bool,
        now: TimestampMs,
    ) {
        // A source that resolves frees what it inhibited: every firing alert is checked again.
        let released = transitions.iter().any(|t| {
            !t.kind.firing()
                && self
                    .s
                    .inhibit_rules
                    .iter()
                    .any(|r| routing::is_source(r, &t.labels))
        });
        // Firing alerts that can inhibit, found once: (rule index, labels). Only a firing is
        // judged against them (a resolve goes wherever its firing went), so a batch of
        // resolves — a mass recovery — does not walk every firing alert.
        let rules = &self.s.inhibit_rules;
        let reroute = std::mem::take(&mut self.reroute);
        let judged =
            recheck_held || released || reroute || transitions.iter().any(|t| t.kind.firing());
        let sources: Vec<(usize, Labels)> = if !judged || rules.is_empty() {
            Vec::new()
        } else {
            // Looked up by name when every rule names its source's (the shipped one does).
            let names: Option<BTreeSet<&str>> = rules.iter().map(|r| r.source_name()).collect();
            alerts
                .firing_labels(names.as_ref(), &|l| {
                    rules.iter().any(|r| routing::is_source(r, l))
                })
                .into_iter()
                .flat_map(|l| {
                    self.s
                        .inhibit_rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| routing::is_source(r, &l))
                        .map(|(i, _)| (i, l.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut known = None;
        for t in transitions {
            let a = AlertInfo::from_transition(t);
            // A firing opens the incident before remediation speaks of it; a resolve lets
            // remediation verify its action before the incident closes.
            if a.firing {
                self.incidents.on_alert(&a, now);
            }
            match alerts.remediation(t) {
                Some(rem) => self.remediate(&a, rem, now),
                // A hold outlives no alert, whatever became of its rule's remediation.
                None if !a.firing => self.remedy.release(&a.id),
                None => {}
            }
            if !a.firing {
                self.incidents.on_alert(&a, now);
            }
            self.notify(&sources, t, now, &mut known);
        }
        if recheck_held || released {
            let known = self.dispatcher.known_levels();
            let (silences, rules, remedy) = (&self.silences, &self.s.inhibit_rules, &self.remedy);
            // Whether receivers are to hear of a firing alert now: they have not heard of it
            // at its level (never, or before a change a silence held back), and nothing
            // inhibits it.
            let tell = |l: &Labels, id: &str, level: Level| {
                known.get(id) != Some(&level)
                    && !sources
                        .iter()
                        .any(|(r, src)| routing::inhibits(&rules[*r], src, l))
            };
            // Those, and the alerts whose remediation a silence held, once no silence mutes
            // them; only these are rendered.
            let freed: Vec<(Transition, bool)> = alerts
                .firing_now(now, &|l, level| {
                    let id = alert_id(l);
                    !silences.iter().any(|s| s.matches(l, now))
                        && (tell(l, &id, level) || remedy.is_held(&id))
                })
                .into_iter()
                .map(|t| {
                    let told = tell(&t.labels, &alert_id(&t.labels), t.level);
                    (t, told)
                })
                .collect();
            for (t, tell) in &freed {
                if *tell {
                    info!(alert = %t.rule, labels = %t.labels, "no longer held back: notifying");
                    self.notify(&sources, t, now, &mut None);
                }
                let a = AlertInfo::from_transition(t);
                if self.remedy.is_held(&a.id) {
                    if let Some(rem) = alerts.remediation(t) {
                        self.remediate(&a, rem, now);
                    }
                }
            }
        }
        if reroute {
            self.reroute_firing(alerts, &sources, now);
        }
    }

    /// After a reload: every firing alert that no silence or inhibition holds back goes to the
    /// targets of the route that have not heard of it.
    fn reroute_firing(
        &mut self,
        alerts: &dyn Alerts,
        sources: &[(usize, Labels)],
        now: TimestampMs,
    ) {
        let (silences, rules) = (&self.silences, &self.s.inhibit_rules);
        let firing = alerts.firing_now(now, &|l, _| {
            !silences.iter().any(|s| s.matches(l, now))
                && !sources
                    .iter()
                    .any(|(r, src)| routing::inhibits(&rules[*r], src, l))
        });
        let mut told = 0usize;
        for t in &firing {
            let a = AlertInfo::from_transition(t);
            let targets = routing::targets(&self.s.route, &t.labels, t.level);
            let missing = self.dispatcher.missing(&a, &targets);
            if !missing.is_empty() {
                self.dispatcher.event(&a, &missing, now);
                told += 1;
            }
        }
        if told > 0 {
            info!(
                alerts = told,
                "configuration reloaded: firing alerts handed to routes and receivers that had not heard of them"
            );
        }
    }

    /// Takes an alert event to remediation — unless a silence mutes the alert: a maintenance
    /// window is people at work on the system, and an automatic restart or failover would
    /// act against them. What a silence held back is asked for when it ends, if the alert
    /// still fires then (the cooldown and attempt limits apply as ever).
    fn remediate(&mut self, a: &AlertInfo, mut rem: tocsin_rules::Remediation, now: TimestampMs) {
        rem.dry_run |= self.s.dry_run;
        let silence = (a.firing && a.level >= rem.level)
            .then(|| self.silences.iter().find(|s| s.matches(&a.labels, now)))
            .flatten();
        if let Some(s) = silence {
            if self.remedy.hold(&a.id) {
                let e = tocsin_remedy::Event {
                    at: now,
                    alert_id: a.id.clone(),
                    request: None,
                    kind: "skipped",
                    text: format!(
                        "{}: held back by silence {} (maintenance); asked for when it ends if the alert still fires",
                        rem.action, s.id
                    ),
                    escalate: false,
                };
                self.remedy_events(vec![e], now);
            }
            return;
        }
        self.remedy.release(&a.id);
        let evs = self.remedy.on_alert(a, &rem, now);
        self.remedy_events(evs, now);
    }

    /// Hands a transition to the dispatcher unless a silence or a firing alert holds it back.
    /// A resolve is never held back, and goes only where the firing went: whoever heard of
    /// the firing hears of its end (even under a silence made since), and nobody hears of the
    /// end of a firing that was held back.
    ///
    /// `known`: the alerts the dispatcher holds, gathered at the first resolve of a batch and
    /// kept up to date through it (a batch ending an outage resolves many alerts at once).
    fn notify(
        &mut self,
        sources: &[(usize, Labels)],
        t: &Transition,
        now: TimestampMs,
        known: &mut Option<HashSet<String>>,
    ) {
        let id = alert_id(&t.labels);
        if !t.kind.firing() {
            // Where the route sends it first (one lookup per group); only if none holds it,
            // every alert held (once per batch: a route changed by a reload).
            let targets = routing::targets(&self.s.route, &t.labels, t.level);
            let a = AlertInfo::from_transition(t);
            let held = self.dispatcher.holds(&a, &targets)
                || known
                    .get_or_insert_with(|| {
                        self.dispatcher
                            .known_levels()
                            .into_keys()
                            .map(str::to_string)
                            .collect()
                    })
                    .contains(&id);
            if held {
                self.dispatcher.event(&a, &targets, now);
            } else {
                info!(alert = %t.rule, labels = %t.labels, "resolve of a firing nobody was told of: not sent");
            }
            return;
        }
        if let Some(s) = self.silences.iter().find(|s| s.matches(&t.labels, now)) {
            // Recorded (the alert state is stored), not delivered.
            self.fx.silenced += 1;
            info!(alert = %t.rule, labels = %t.labels, silence = s.id, "notification silenced");
            return;
        }
        // Inhibited by another alert firing now.
        if sources
            .iter()
            .any(|(r, src)| routing::inhibits(&self.s.inhibit_rules[*r], src, &t.labels))
        {
            self.fx.inhibited += 1;
            info!(alert = %t.rule, labels = %t.labels, "notification inhibited");
            return;
        }
        let targets = routing::targets(&self.s.route, &t.labels, t.level);
        self.dispatcher
            .event(&AlertInfo::from_transition(t), &targets, now);
        if let Some(held) = known {
            held.insert(id);
        }
    }

    /// Acknowledges the firing alert `id` (`link_level`: the level a signed link was made
    /// for): the escalation stops, the incident records it, remediation waiting for approval
    /// goes ahead.
    pub fn ack(
        &mut self,
        alerts: &dyn Alerts,
        id: &str,
        link_level: Option<Level>,
        by: &str,
        comment: &str,
        now: TimestampMs,
    ) -> Result<Ack, AckError> {
        let level = alerts.level_of(id);
        let ack = self
            .dispatcher
            .ack(id, level, link_level, by, comment, now)?;
        info!(alert = %id, by = %by, comment = %comment, "alert acknowledged");
        self.incidents.alert_acked(id, by, comment, now);
        let evs = self.remedy.approve(id, by, now);
        self.remedy_events(evs, now);
        Ok(ack)
    }

    /// The action requests for an agent's host, each handed out once.
    pub fn poll_actions(&mut self, host: &str, now: TimestampMs) -> Vec<Request> {
        let (reqs, evs) = self.remedy.take(Some(host), now);
        self.remedy_events(evs, now);
        reqs
    }

    /// The result of an action request, from the agent or the collector's own runner.
    pub fn action_result(
        &mut self,
        alerts: &dyn Alerts,
        id: &str,
        status: ResultStatus,
        summary: &str,
        output: &str,
        now: TimestampMs,
    ) -> Result<(), String> {
        let firing = self
            .remedy
            .requests()
            .find(|r| r.id == id)
            .is_some_and(|r| alerts.level_of(&r.alert_id).is_some());
        match self.remedy.result(id, status, summary, output, firing, now) {
            Ok(evs) => {
                self.remedy_events(evs, now);
                Ok(())
            }
            Err(e) => {
                warn!(request = %id, error = %e, "action result refused");
                Err(e)
            }
        }
    }

    /// A person's change to an incident still in memory. `Refused::NotFound` for a note means
    /// the incident is not live: the caller may still add the note to a stored one.
    pub fn incident(&mut self, id: &str, op: &IncidentOp, now: TimestampMs) -> Result<(), Refused> {
        let inc = &mut self.incidents;
        match op {
            IncidentOp::Ack { by, comment } => inc.ack(id, by, comment, now),
            IncidentOp::Resolve { by } => inc.resolve(id, by, now),
            IncidentOp::Note { by, text } => inc.note(id, by, text, now),
            IncidentOp::Edit { by, edit } => {
                inc.edit(id, by, edit, now).map_err(|e| match e {
                    tocsin_incidents::EditRefused::NotFound => Refused::NotFound,
                    tocsin_incidents::EditRefused::Invalid(m) => Refused::Invalid(m),
                })?;
                if let tocsin_incidents::Edit::Assign { owner } = edit {
                    let live = self.incidents.live().find(|i| i.id == id).cloned();
                    if let Some(i) = live {
                        self.notify_assignment(&i, owner, by, now);
                    }
                }
                Ok(())
            }
        }
    }

    /// Tells the new owner of an incident (live, or long resolved and edited in the store for
    /// its review): a notice to the receivers the routing tree gives an alert
    /// `IncidentAssigned` with the incident's `owner`, `service`, `host` and `severity` (route
    /// on `owner` to reach a team), those that carry text only.
    pub fn notify_assignment(
        &mut self,
        i: &tocsin_incidents::Incident,
        owner: &str,
        by: &str,
        now: TimestampMs,
    ) {
        let mut pairs = vec![
            ("alertname", "IncidentAssigned".to_string()),
            ("owner", owner.to_string()),
            ("severity", i.severity.as_str().to_string()),
            ("incident", i.id.clone()),
        ];
        if let Some(s) = i.services.iter().next() {
            pairs.push(("service", s.clone()));
        }
        if let Some(h) = i.hosts.iter().next() {
            pairs.push(("host", h.clone()));
        }
        let labels = Labels::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        let title = format!("{} → {owner}: {}", i.id, i.title);
        let lines = vec![
            format!("{} assigned by {by}", i.id),
            format!("{}: {}", i.severity, i.title),
            format!(
                "{}/incidents/{}",
                self.s.external_url.trim_end_matches('/'),
                i.id
            ),
        ];
        let body = tocsin_reports::Report::notice(title, lines).to_outbox();
        for r in routing::receivers_for(&self.s.route, &labels, i.severity) {
            if self.s.text_receivers.contains(&r) {
                self.fx.notices.push((r, body.clone(), now));
            }
        }
    }

    /// Scale-outs whose alert still fires past their cooldown: the next step, asked with the
    /// alert as it fires now (bounded by the rule's maximum, which refuses).
    pub fn scale_outs(&mut self, alerts: &dyn Alerts, now: TimestampMs) {
        let due = self.remedy.scale_outs_due(now);
        if due.is_empty() {
            return;
        }
        for t in alerts.firing_now(now, &|l, _| due.contains(&alert_id(l))) {
            if let Some(mut rem) = alerts.remediation(&t) {
                rem.dry_run |= self.s.dry_run;
                let a = AlertInfo::from_transition(&t);
                let evs = self.remedy.on_alert(&a, &rem, now);
                self.remedy_events(evs, now);
            }
        }
    }

    /// Remediation deadlines and collector-side requests, then the notifications due now
    /// (grouping, repeats, escalation steps), with the incident timeline of what was sent.
    pub fn due(&mut self, now: TimestampMs) {
        self.incidents.check_deadlines(now);
        let evs = self.remedy.tick(now);
        self.remedy_events(evs, now);
        let (reqs, evs) = self.remedy.take(None, now);
        self.remedy_events(evs, now);
        self.fx.to_run.extend(reqs);
        let secret = Arc::clone(&self.s.ack_secret);
        let expires = now + self.s.ack_link_ttl_ms;
        let external = self.s.external_url.trim_end_matches('/').to_string();
        let link = |a: &AlertInfo| {
            let token = crate::ack::token(&secret, &a.id, a.level, a.starts_at, expires);
            Some(format!("{external}/ack?t={token}"))
        };
        for mut n in self.dispatcher.tick(now) {
            // A window may have begun since the alert fired: repeats, escalation steps and
            // grouped firings due inside it stay quiet (resolves still go out).
            let before = n.alerts.len();
            let silences = &self.silences;
            n.alerts
                .retain(|a| !a.firing || !silences.iter().any(|s| s.matches(&a.labels, now)));
            self.fx.silenced += (before - n.alerts.len()) as u64;
            if n.alerts.is_empty() {
                continue;
            }
            let body = crate::webhook_payload(
                &n,
                &self.s.external_url,
                &link,
                self.s.dashboard_url.as_deref(),
            )
            .to_json();
            let quiet =
                matches!(n.why, Why::Repeat { .. }) && self.s.resend.contains_key(&n.receiver);
            if !quiet {
                timeline_of_sent(&mut self.incidents, &n, now);
            }
            // Keeping an Alertmanager in sync is not telling anyone: not on the timeline.
            self.fx.outgoing.push(Outgoing {
                notification: n,
                body,
                at: now,
            });
        }
    }

    /// An alert about the collector itself, for the receivers the route gives it, bypassing
    /// grouping and the outbox (used when the outbox, in a failing database, cannot take it).
    /// Empty when a silence mutes it (a silence mutes the firing, never the resolve).
    pub fn page(&mut self, a: &AlertInfo, now: TimestampMs) -> Vec<(String, String)> {
        if a.firing {
            if let Some(s) = self.silences.iter().find(|s| s.matches(&a.labels, now)) {
                self.fx.silenced += 1;
                info!(alert = %a.rule, silence = s.id, "notification silenced");
                return Vec::new();
            }
        }
        let group_labels = Labels::from_pairs([("alertname", a.rule.as_str())]);
        let mut sent = BTreeSet::new();
        let mut out = Vec::new();
        for t in routing::targets(&self.s.route, &a.labels, a.level) {
            for r in t.receivers {
                if !sent.insert(r.clone()) {
                    continue;
                }
                let n = Notification {
                    receiver: r.clone(),
                    group_key: format!("{}:{{alertname=\"{}\"}}", t.node, a.rule),
                    group_labels: group_labels.clone(),
                    why: Why::Changed,
                    alerts: vec![a.clone()],
                };
                let body = crate::webhook_payload(
                    &n,
                    &self.s.external_url,
                    &|_| None,
                    self.s.dashboard_url.as_deref(),
                );
                out.push((r, body.to_json()));
            }
        }
        out
    }

    /// Records remediation events: the incident timeline, the audit log, and a bump to the
    /// next notification tier when one failed.
    fn remedy_events(&mut self, events: Vec<tocsin_remedy::Event>, now: TimestampMs) {
        for e in events {
            info!(alert = %e.alert_id, request = e.request.as_deref().unwrap_or(""), event = e.kind, "{}", e.text);
            self.incidents
                .record(&e.alert_id, e.kind, e.text.clone(), now);
            let detail = serde_json::json!({
                "alert": e.alert_id,
                "request": e.request,
                "incident": self.incidents.incident_of(&e.alert_id),
                "text": e.text,
            });
            self.fx.audit.push(AuditEntry {
                at: now,
                actor: "collector".into(),
                action: e.kind.into(),
                detail: detail.to_string(),
            });
            self.fx.remediation.push(e.kind);
            if e.escalate {
                self.dispatcher
                    .bump(&e.alert_id, tocsin_dispatch::Event::RemediationFailed, now);
            }
        }
    }

    /// Everything decided since the last call, state rows included.
    pub fn take_effects(&mut self) -> Effects {
        let mut fx = std::mem::take(&mut self.fx);
        fx.dispatch_rows = self.dispatcher.take_changes();
        let (rows, events) = self.incidents.take_changes();
        for e in events.iter().filter(|e| e.kind == "resolved") {
            if let Some(i) = self.incidents.live().find(|i| i.id == e.incident) {
                let by = match i.resolved_by.as_deref() {
                    Some("auto") => "auto",
                    Some("remediation") => "remediation",
                    _ => "person",
                };
                fx.resolved.push(Resolved {
                    category: i.category.clone(),
                    severity: i.severity,
                    by,
                    to_ack_ms: i.time_to_ack_ms(),
                    to_resolve_ms: i.time_to_resolve_ms(),
                    to_remediate_ms: i.time_to_remediate_ms(),
                });
            }
        }
        for e in &events {
            if let Some(kind) = match e.kind.as_str() {
                "ack_deadline_missed" => Some("ack"),
                "resolve_deadline_missed" => Some("resolve"),
                "rto_breached" => Some("rto"),
                _ => None,
            } {
                if let Some(i) = self.incidents.live().find(|i| i.id == e.incident) {
                    fx.breaches.push((kind, i.severity));
                }
            }
        }
        fx.incident_rows = rows;
        fx.timeline = events;
        fx.remedy_rows = self.remedy.take_changes();
        fx
    }

    /// Acknowledgements of firing alerts, by alert id.
    pub fn acks(&self) -> &BTreeMap<String, Ack> {
        self.dispatcher.acks()
    }

    /// Open and recently resolved incidents (older resolved ones are let go first).
    pub fn incidents(
        &mut self,
        now: TimestampMs,
    ) -> impl Iterator<Item = &tocsin_incidents::Incident> {
        self.incidents.expire(now);
        self.incidents.live()
    }

    /// Action requests of the last day.
    pub fn actions(&self) -> impl Iterator<Item = &Request> {
        self.remedy.requests()
    }
}

/// "HostDown firing sent to ops, escalation step 2" on each alert's incident.
fn timeline_of_sent(incidents: &mut Incidents, n: &Notification, now: TimestampMs) {
    let resolved_only = n.alerts.iter().all(|a| !a.firing);
    let (kind, why) = match &n.why {
        // The end of an alert is news to whoever heard of it, not a step of anything.
        _ if resolved_only => ("notified", String::new()),
        Why::Changed => ("notified", String::new()),
        Why::Repeat { n } => ("repeated", format!(", repeat {n}")),
        Why::Escalation { step, policy, .. } if *step > 1 => {
            ("escalated", format!(", {policy} step {step}"))
        }
        Why::Escalation { policy, .. } => ("notified", format!(", {policy} step 1")),
    };
    for a in &n.alerts {
        let what = if a.firing {
            a.event.as_str()
        } else {
            "resolved"
        };
        incidents.record(
            &a.id,
            kind,
            format!("{} {what} sent to {}{why}", a.rule, n.receiver),
            now,
        );
    }
}

#[cfg(test)]
mod remediation_tests {
    use super::*;
    use tocsin_rules::external::Posted;

    /// An alert posted from elsewhere never asks for a rule's remediation, even one named as a
    /// rule that has one (a rule added after the alert was posted): what runs on a host is not
    /// steered by what a sender posts.
    #[test]
    fn a_posted_alert_asks_for_no_remediation() {
        let rules = tocsin_rules::parse_file(
            "r.yaml",
            "rules:\n  - name: WebDown\n    expr: up\n    levels: { critical: \"== 0\" }\n    remediation: { action: restart_web }\n",
        )
        .unwrap();
        let engine = Engine::new(rules, Default::default());
        let mut external = External::new(300_000, 10);
        let (t, _) = external.post(
            vec![Posted {
                labels: Labels::from_pairs([("alertname", "WebDown"), ("severity", "critical")]),
                annotations: Default::default(),
                starts_at: None,
                ends_at: None,
                generator_url: None,
            }],
            &|_| false,
            1_000,
        );
        let src = Sources {
            rules: &engine,
            external: &external,
        };
        assert_eq!(src.remediation(&t[0]), None);
        let own = Transition {
            external: false,
            ..t[0].clone()
        };
        assert!(
            src.remediation(&own).is_some(),
            "the rule's own alert has it"
        );
        assert_eq!(src.level_of(&alert_id(&t[0].labels)), Some(Level::Critical));
        assert_eq!(src.firing_now(2_000, &|_, _| true).len(), 1);
    }
}
