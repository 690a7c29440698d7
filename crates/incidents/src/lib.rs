//! Incidents: firing alerts open or join an incident (grouped by labels, `host` by default),
//! which keeps who and what was affected and a timeline of every event with second-precise
//! times — fired, level changed, notified, escalated, acknowledged, remediation steps, notes,
//! resolved. An incident resolves by itself when all its alerts have, and reopens when one
//! fires again within `reopen_within`.
//!
//! Pure, over injected time: the caller persists [`Incidents::take_changes`] (incident rows and
//! new timeline rows, append-only) in the transaction that caused them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tocsin_dispatch::{AlertInfo, Event};
use tocsin_model::{Level, TimestampMs};

mod report;
mod review;
mod stats;

pub use report::report;
pub use review::{rule_review, Change, Feedback, RuleReview, Verdict, CHANGE_KINDS, CHANGE_METRIC};
pub use stats::{stats, DeadlineStats, Stats};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Labels whose values key an incident; the first present wins, else `alertname`.
    pub group_by: Vec<String>,
    pub reopen_within_ms: i64,
    /// How soon an incident of each severity must be acknowledged and resolved (ms); a
    /// severity not listed has no deadline.
    pub deadlines: Vec<Deadline>,
    /// Recovery time objective per service (ms): an incident of it open longer is a breach.
    pub rto_ms: BTreeMap<String, i64>,
    /// The team that owns each service: an incident of it is theirs until reassigned.
    pub owners: BTreeMap<String, String>,
}

/// The response deadlines of one severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub level: Level,
    pub ack_ms: i64,
    pub resolve_ms: i64,
    /// Counted only inside these hours (business hours: a warning raised on Friday evening is
    /// due on Monday), or around the clock.
    pub hours: Option<tocsin_clock::BusinessHours>,
}

impl Deadline {
    /// How much of the time from `opened` to `now` counts towards the deadline.
    pub fn counted_ms(&self, opened: TimestampMs, now: TimestampMs) -> i64 {
        self.hours
            .as_ref()
            .map_or(now - opened, |w| w.overlap_ms(opened, now))
    }

    fn within(&self, ms: i64) -> String {
        match self.hours {
            Some(_) => format!("{} of business hours", format_span(ms)),
            None => format_span(ms),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            group_by: vec!["service".into(), "host".into()],
            reopen_within_ms: 30 * 60_000,
            deadlines: Vec::new(),
            rto_ms: BTreeMap::new(),
            owners: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }
}

/// One alert's part in an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSpan {
    pub rule: String,
    pub host: Option<String>,
    pub service: Option<String>,
    pub category: String,
    pub level: Level,
    pub firing: bool,
    /// (from, to) of each firing; the last `to` is `None` while it fires.
    pub spans: Vec<(TimestampMs, Option<TimestampMs>)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub key: String,
    pub severity: Level,
    /// host, network, service, dependency or performance.
    pub category: String,
    /// complete, partial, intermittent or degraded.
    pub outage: String,
    pub state: State,
    pub hosts: BTreeSet<String>,
    pub services: BTreeSet<String>,
    pub probes: BTreeSet<String>,
    pub alerts: BTreeMap<String, AlertSpan>,
    pub opened_at: TimestampMs,
    pub acked_at: Option<TimestampMs>,
    pub acked_by: Option<String>,
    pub resolved_at: Option<TimestampMs>,
    /// `auto` (its alerts resolved), `remediation` (after a verified action, nobody involved)
    /// or the person who resolved it.
    pub resolved_by: Option<String>,
    pub first_remediation_at: Option<TimestampMs>,
    /// When a remediation was verified to have worked.
    pub remediated_at: Option<TimestampMs>,
    pub flapping: bool,
    pub reopened: u32,
    /// Whether a rule declared the outage kind (an `outage` label or annotation): a declared
    /// kind is never overridden by an inferred one, whichever alert comes later.
    #[serde(default)]
    pub outage_declared: bool,
    /// Who answers for it: the owning team of its first service, or whoever it was assigned to.
    #[serde(default)]
    pub owner: Option<String>,
    /// The deadlines it missed: `ack`, `resolve`, `rto:SERVICE` (each recorded once).
    #[serde(default)]
    pub breaches: BTreeSet<String>,
    /// What caused it, once someone has said.
    #[serde(default)]
    pub root_cause: Option<RootCause>,
    /// Who and what was affected (users, regions, services), in people's words.
    #[serde(default)]
    pub impact: Option<String>,
    /// What is to be done so that it does not happen again.
    #[serde(default)]
    pub follow_ups: Vec<FollowUp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootCause {
    /// One of [`CAUSE_CATEGORIES`].
    pub category: String,
    pub text: String,
}

/// Root-cause categories, for the statistics and the reports.
pub const CAUSE_CATEGORIES: [&str; 10] = [
    "change",
    "configuration",
    "capacity",
    "hardware",
    "network",
    "dependency",
    "software",
    "human",
    "external",
    "unknown",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub id: u32,
    pub text: String,
    #[serde(default)]
    pub owner: Option<String>,
    /// open, done or dropped.
    pub state: String,
    pub created_at: TimestampMs,
    pub updated_at: TimestampMs,
}

pub const FOLLOW_UP_STATES: [&str; 3] = ["open", "done", "dropped"];

/// Follow-ups one incident may hold (its record stays a bounded row).
pub const MAX_FOLLOW_UPS: usize = 100;

/// A change people make to an incident's record, resolved or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    /// Hand it to a person or team.
    Assign {
        owner: String,
    },
    Cause {
        category: String,
        text: String,
    },
    Impact {
        text: String,
    },
    FollowUp {
        text: String,
        owner: Option<String>,
    },
    FollowUpState {
        id: u32,
        state: String,
    },
}

impl Edit {
    /// Applies the edit; returns the timeline entry (kind, text) it makes, or why not.
    pub fn apply(
        &self,
        inc: &mut Incident,
        by: &str,
        now: TimestampMs,
    ) -> Result<(&'static str, String), String> {
        Ok(match self {
            Edit::Assign { owner } => {
                let before = inc.owner.replace(owner.clone());
                let text = match before {
                    Some(b) if &b != owner => format!("reassigned from {b} to {owner} by {by}"),
                    _ => format!("assigned to {owner} by {by}"),
                };
                ("assigned", text)
            }
            Edit::Cause { category, text } => {
                if !CAUSE_CATEGORIES.contains(&category.as_str()) {
                    return Err(format!(
                        "category {category:?} is not one of {}",
                        CAUSE_CATEGORIES.join(", ")
                    ));
                }
                inc.root_cause = Some(RootCause {
                    category: category.clone(),
                    text: text.clone(),
                });
                ("root_cause", format!("{by}: root cause {category}: {text}"))
            }
            Edit::Impact { text } => {
                inc.impact = Some(text.clone());
                ("impact", format!("{by}: impact: {text}"))
            }
            Edit::FollowUp { text, owner } => {
                if inc.follow_ups.len() >= MAX_FOLLOW_UPS {
                    return Err(format!("at most {MAX_FOLLOW_UPS} follow-ups per incident"));
                }
                let id = inc.follow_ups.iter().map(|f| f.id).max().unwrap_or(0) + 1;
                inc.follow_ups.push(FollowUp {
                    id,
                    text: text.clone(),
                    owner: owner.clone(),
                    state: "open".into(),
                    created_at: now,
                    updated_at: now,
                });
                let who = owner
                    .as_deref()
                    .map(|o| format!(" (owner {o})"))
                    .unwrap_or_default();
                ("follow_up", format!("{by}: follow-up #{id}{who}: {text}"))
            }
            Edit::FollowUpState { id, state } => {
                if !FOLLOW_UP_STATES.contains(&state.as_str()) {
                    return Err(format!("state {state:?} is not open, done or dropped"));
                }
                let f = inc
                    .follow_ups
                    .iter_mut()
                    .find(|f| f.id == *id)
                    .ok_or_else(|| format!("no follow-up #{id}"))?;
                f.state = state.clone();
                f.updated_at = now;
                ("follow_up", format!("{by}: follow-up #{id} {state}"))
            }
        })
    }
}

impl Incident {
    pub fn time_to_ack_ms(&self) -> Option<i64> {
        self.acked_at.map(|a| a - self.opened_at)
    }

    pub fn time_to_resolve_ms(&self) -> Option<i64> {
        self.resolved_at.map(|r| r - self.opened_at)
    }

    pub fn time_to_remediate_ms(&self) -> Option<i64> {
        self.remediated_at.map(|r| r - self.opened_at)
    }
}

/// One timeline row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub incident: String,
    pub at: TimestampMs,
    pub kind: String,
    pub text: String,
}

/// Why an edit was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditRefused {
    /// Not in memory: the caller edits the stored record.
    NotFound,
    Invalid(String),
}

/// Why a request about an incident was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    Resolved,
    /// The change does not apply (an unknown follow-up, a category not in the list).
    Invalid(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::NotFound => "no such incident in memory (open or recently resolved)",
            Refused::Resolved => "the incident is resolved already",
            Refused::Invalid(m) => m,
        })
    }
}

/// UTC time with seconds, e.g. `2026-11-23T10:15:42Z`.
pub fn format_time(ms: TimestampMs) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A span of time in its two largest units: `45 s`, `6 min 12 s`, `2 h 5 min`, `3 d 4 h`.
pub fn format_span(ms: i64) -> String {
    tocsin_clock::duration(ms, tocsin_model::Locale::En)
}

const CATEGORIES: [&str; 5] = ["host", "network", "service", "dependency", "performance"];

fn category_of(a: &AlertInfo) -> String {
    match a.labels.get("category") {
        Some(c) if CATEGORIES.contains(&c) => c.to_string(),
        _ if a.labels.get("service").is_some() => "service".into(),
        _ => "host".into(),
    }
}

/// An incident as stored: its record without its alerts (`"alerts": {}`) and without the
/// hosts, services and probes it touches (empty lists), the fields it is found by, the parts
/// of those of its alerts that changed, `(alert id, JSON)`, and the members it gained,
/// `(set, member)` — each a row of its own, so a change to one alert of an incident of
/// thousands (a mass outage) writes that alert and what it added, not all of them. Reading puts
/// the parts back. The id `#seq` holds the day's id sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub opened_at: TimestampMs,
    pub state: &'static str,
    pub json: String,
    pub alerts: Vec<(String, String)>,
    pub members: Vec<(&'static str, String)>,
}

/// The sets an incident's row keeps apart, by their field names: what a mass outage grows.
pub const MEMBER_SETS: [&str; 3] = ["hosts", "services", "probes"];

impl Incident {
    fn set_mut(&mut self, name: &str) -> &mut BTreeSet<String> {
        match name {
            "hosts" => &mut self.hosts,
            "services" => &mut self.services,
            _ => &mut self.probes,
        }
    }
}

impl Row {
    /// The incident's row with the parts of the alerts named (those it has).
    pub fn of<'a>(
        i: &mut Incident,
        alerts: impl IntoIterator<Item = &'a String>,
        members: Vec<(&'static str, String)>,
    ) -> Row {
        let all = std::mem::take(&mut i.alerts);
        let sets = MEMBER_SETS.map(|name| std::mem::take(i.set_mut(name)));
        let json = serde_json::to_string(i).expect("incident serializes");
        i.alerts = all;
        for (name, set) in MEMBER_SETS.into_iter().zip(sets) {
            *i.set_mut(name) = set;
        }
        let alerts = alerts
            .into_iter()
            .filter_map(|k| {
                let span = i.alerts.get(k)?;
                Some((
                    k.clone(),
                    serde_json::to_string(span).expect("span serializes"),
                ))
            })
            .collect();
        Row {
            id: i.id.clone(),
            opened_at: i.opened_at,
            state: i.state.as_str(),
            json,
            alerts,
            members,
        }
    }

    /// The record as read back: the row with its alerts' parts under `alerts` and its members
    /// in their sets (as the store assembles it).
    pub fn assemble<'a>(
        json: &str,
        alerts: impl IntoIterator<Item = (&'a str, &'a str)>,
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> serde_json::Result<String> {
        let mut v: serde_json::Value = serde_json::from_str(json)?;
        let mut parts = serde_json::Map::new();
        for (k, a) in alerts {
            parts.insert(k.to_string(), serde_json::from_str(a)?);
        }
        v["alerts"] = serde_json::Value::Object(parts);
        let mut sets: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (set, m) in members {
            sets.entry(set).or_default().insert(m);
        }
        for name in MEMBER_SETS {
            let set = sets.remove(name).unwrap_or_default();
            v[name] = set.into_iter().collect();
        }
        serde_json::to_string(&v)
    }
}

#[derive(Debug, Default)]
pub struct Incidents {
    settings: Settings,
    /// Open, acknowledged and recently resolved (for reopening), by id.
    live: BTreeMap<String, Incident>,
    /// `live` by alert and by key.
    index: Index,
    /// Day (days since the epoch) and the last sequence number used that day.
    day_seq: (i64, u32),
    dirty: BTreeSet<String>,
    /// Alerts whose part in an incident changed: (incident id, alert id).
    dirty_alerts: BTreeSet<(String, String)>,
    /// Hosts, services and probes an incident gained: (incident id, set, member).
    dirty_members: Vec<(String, &'static str, String)>,
    events: Vec<TimelineEvent>,
}

/// The live incidents that hold each alert and those of each key, their ids sorted (the order
/// `live` is walked in): an alert event looks at its own incidents, not at every live one, so
/// a mass outage of n hosts with an incident each costs n, not n².
#[derive(Debug, Default)]
struct Index {
    by_alert: HashMap<String, Vec<String>>,
    by_key: HashMap<String, Vec<String>>,
}

impl Index {
    fn add(map: &mut HashMap<String, Vec<String>>, k: &str, id: &str) {
        let ids = map.entry(k.to_string()).or_default();
        if let Err(at) = ids.binary_search_by(|x| x.as_str().cmp(id)) {
            ids.insert(at, id.to_string());
        }
    }

    fn of(live: &BTreeMap<String, Incident>) -> Index {
        let mut ix = Index::default();
        for (id, i) in live {
            Index::add(&mut ix.by_key, &i.key, id);
            for a in i.alerts.keys() {
                Index::add(&mut ix.by_alert, a, id);
            }
        }
        ix
    }
}

impl Incidents {
    /// The live incidents `map` lists under `k`, in id order.
    fn indexed<'a>(
        &'a self,
        map: &'a HashMap<String, Vec<String>>,
        k: &str,
    ) -> impl Iterator<Item = &'a Incident> + 'a {
        let ids = map.get(k).map(Vec::as_slice).unwrap_or_default();
        ids.iter().filter_map(|id| self.live.get(id))
    }

    /// The live incidents that hold `alert_id`, in id order.
    fn with_alert<'a>(&'a self, alert_id: &str) -> impl Iterator<Item = &'a Incident> + 'a {
        self.indexed(&self.index.by_alert, alert_id)
    }

    /// The live incidents of `key`, in id order.
    fn with_key<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Incident> + 'a {
        self.indexed(&self.index.by_key, key)
    }

    pub fn new(settings: Settings) -> Incidents {
        Incidents {
            settings,
            ..Default::default()
        }
    }

    fn key_of(&self, a: &AlertInfo) -> String {
        self.settings
            .group_by
            .iter()
            .find_map(|l| a.labels.get(l).map(|v| format!("{l}={v}")))
            .unwrap_or_else(|| format!("alertname={}", a.rule))
    }

    fn push(&mut self, id: &str, at: TimestampMs, kind: &str, text: String) {
        self.events.push(TimelineEvent {
            incident: id.to_string(),
            at,
            kind: kind.to_string(),
            text,
        });
        self.dirty.insert(id.to_string());
    }

    fn new_id(&mut self, now: TimestampMs) -> String {
        let day = now.div_euclid(86_400_000);
        if self.day_seq.0 != day {
            self.day_seq = (day, 0);
        }
        self.day_seq.1 += 1;
        self.dirty.insert("#seq".into());
        let date = format_time(now);
        format!(
            "INC-{}{}{}-{:04}",
            &date[0..4],
            &date[5..7],
            &date[8..10],
            self.day_seq.1
        )
    }

    /// The incident an alert is part of (live ones only).
    pub fn incident_of(&self, alert_id: &str) -> Option<&str> {
        self.with_alert(alert_id)
            .max_by_key(|i| i.opened_at)
            .map(|i| i.id.as_str())
    }

    /// Takes in an alert event; returns the incident it belongs to.
    pub fn on_alert(&mut self, a: &AlertInfo, now: TimestampMs) -> Option<String> {
        let host = a.labels.get("host").map(str::to_string);
        let service = a.labels.get("service").map(str::to_string);
        let who = match (&host, &service) {
            (Some(h), Some(s)) => format!(" on {h} ({s})"),
            (Some(h), None) => format!(" on {h}"),
            (None, Some(s)) => format!(" ({s})"),
            _ => String::new(),
        };
        let summary = a
            .annotations
            .get("summary")
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        if !a.firing {
            let id = self
                .with_alert(&a.id)
                .find(|i| {
                    i.state != State::Resolved && i.alerts.get(&a.id).is_some_and(|s| s.firing)
                })
                .map(|i| i.id.clone())?;
            let inc = self.live.get_mut(&id).expect("found");
            let span = inc.alerts.get_mut(&a.id).expect("found");
            self.dirty_alerts.insert((id.clone(), a.id.clone()));
            span.firing = false;
            if let Some(last) = span.spans.last_mut() {
                last.1 = Some(now);
            }
            let all_done = inc.alerts.values().all(|s| !s.firing);
            let reason = a
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            self.push(
                &id,
                now,
                "alert_resolved",
                format!("{} resolved{who}{reason}", a.rule),
            );
            if all_done {
                self.close(&id, "auto", now);
            }
            return Some(id);
        }
        let existing = self
            .with_alert(&a.id)
            .find(|i| i.state != State::Resolved)
            .map(|i| i.id.clone());
        let key = self.key_of(a);
        let id = match existing {
            Some(id) => id,
            None => {
                let open = self
                    .with_key(&key)
                    .find(|i| i.state != State::Resolved)
                    .map(|i| i.id.clone());
                let recent = self
                    .with_key(&key)
                    .filter(|i| {
                        i.state == State::Resolved
                            && i.resolved_at
                                .is_some_and(|r| now - r <= self.settings.reopen_within_ms)
                    })
                    .max_by_key(|i| i.resolved_at)
                    .map(|i| i.id.clone());
                match (open, recent) {
                    (Some(id), _) => id,
                    (None, Some(id)) => {
                        let inc = self.live.get_mut(&id).expect("found");
                        inc.state = if inc.acked_at.is_some() {
                            State::Acknowledged
                        } else {
                            State::Open
                        };
                        inc.resolved_at = None;
                        inc.resolved_by = None;
                        inc.reopened += 1;
                        inc.outage = "intermittent".into();
                        self.push(
                            &id,
                            now,
                            "reopened",
                            format!("reopened: {} fired again", a.rule),
                        );
                        id
                    }
                    (None, None) => {
                        let id = self.new_id(now);
                        let title = format!("{}{who}", a.rule);
                        Index::add(&mut self.index.by_key, &key, &id);
                        self.live.insert(
                            id.clone(),
                            Incident {
                                id: id.clone(),
                                title,
                                key,
                                severity: a.level,
                                category: category_of(a),
                                outage: String::new(),
                                state: State::Open,
                                hosts: BTreeSet::new(),
                                services: BTreeSet::new(),
                                probes: BTreeSet::new(),
                                alerts: BTreeMap::new(),
                                opened_at: now,
                                acked_at: None,
                                acked_by: None,
                                resolved_at: None,
                                resolved_by: None,
                                first_remediation_at: None,
                                remediated_at: None,
                                flapping: false,
                                reopened: 0,
                                outage_declared: false,
                                owner: None,
                                breaches: BTreeSet::new(),
                                root_cause: None,
                                impact: None,
                                follow_ups: Vec::new(),
                            },
                        );
                        self.push(&id, now, "opened", format!("incident opened by {}", a.rule));
                        id
                    }
                }
            }
        };
        let inc = self.live.get_mut(&id).expect("exists");
        inc.severity = inc.severity.max(a.level);
        let mut gained = |set: &'static str, m: &str| {
            if inc.set_mut(set).insert(m.to_string()) {
                self.dirty_members.push((id.clone(), set, m.to_string()));
            }
        };
        if let Some(h) = &host {
            gained("hosts", h);
        }
        for l in ["probe", "instance", "target"] {
            if let Some(p) = a.labels.get(l) {
                gained("probes", p);
            }
        }
        if let Some(s) = &service {
            gained("services", s);
            if inc.owner.is_none() {
                inc.owner = self.settings.owners.get(s).cloned();
            }
        }
        if a.event == Event::Flapping {
            inc.flapping = true;
        }
        if !inc.alerts.contains_key(&a.id) {
            Index::add(&mut self.index.by_alert, &a.id, &id);
        }
        let span = inc.alerts.entry(a.id.clone()).or_insert_with(|| AlertSpan {
            rule: a.rule.clone(),
            host: host.clone(),
            service: service.clone(),
            category: category_of(a),
            level: a.level,
            firing: false,
            spans: Vec::new(),
        });
        self.dirty_alerts.insert((id.clone(), a.id.clone()));
        span.level = span.level.max(a.level);
        if !span.firing {
            span.firing = true;
            span.spans.push((now, None));
        }
        // The rule names the kind: an `outage` label, or an `outage` annotation where the kind
        // depends on the level (a label is part of the alert's identity, an annotation not);
        // without either it is inferred.
        let declared = a
            .labels
            .get("outage")
            .or_else(|| a.annotations.get("outage").map(String::as_str));
        // A declaration wins over inference, whichever comes first: a probe's ServiceDown
        // (inferred complete) inside a service's partial outage (declared by ServiceOutage)
        // leaves the incident partial.
        match declared {
            Some(o @ ("complete" | "partial" | "intermittent" | "degraded")) => {
                inc.outage = o.to_string();
                inc.outage_declared = true;
            }
            _ if inc.outage_declared => {}
            _ if inc.flapping || inc.reopened > 0 => inc.outage = "intermittent".into(),
            _ if inc.severity == Level::Warning => inc.outage = "degraded".into(),
            _ => inc.outage = "complete".into(),
        }
        let (kind, text) = match (a.event, a.previous_level) {
            (Event::LevelChanged, Some(p)) => (
                "level_changed",
                format!("{} {p} → {}{who}{summary}", a.rule, a.level),
            ),
            (Event::Flapping, _) => ("flapping", format!("{} is flapping{who}", a.rule)),
            (Event::FlappingEnded, _) => (
                "flapping_ended",
                format!("{} stopped flapping{who}", a.rule),
            ),
            _ => (
                "alert_fired",
                format!("{} fired at {}{who}{summary}", a.rule, a.level),
            ),
        };
        self.push(&id, now, kind, text);
        Some(id)
    }

    fn close(&mut self, id: &str, by: &str, now: TimestampMs) {
        let inc = self.live.get_mut(id).expect("exists");
        inc.state = State::Resolved;
        inc.resolved_at = Some(now);
        let by = if by == "auto" && inc.remediated_at.is_some() && inc.acked_at.is_none() {
            "remediation"
        } else {
            by
        };
        inc.resolved_by = Some(by.to_string());
        let took = (now - inc.opened_at) / 1000;
        self.push(
            id,
            now,
            "resolved",
            format!("incident resolved ({by}) after {took} s"),
        );
    }

    /// Records an event about an alert in its incident (notified, escalated, remediation …).
    pub fn record(&mut self, alert_id: &str, kind: &str, text: String, now: TimestampMs) {
        let Some(id) = self.incident_of(alert_id).map(str::to_string) else {
            return;
        };
        let inc = self.live.get_mut(&id).expect("exists");
        match kind {
            "requested" | "dispatched" | "dry_run" | "awaiting_approval" => {
                inc.first_remediation_at.get_or_insert(now);
            }
            "verified" => {
                inc.remediated_at.get_or_insert(now);
            }
            _ => {}
        }
        self.push(&id, now, kind, text);
    }

    /// An alert was acknowledged: so is its incident (the first acknowledgement counts).
    pub fn alert_acked(&mut self, alert_id: &str, by: &str, comment: &str, now: TimestampMs) {
        if let Some(id) = self.incident_of(alert_id).map(str::to_string) {
            let _ = self.ack(&id, by, comment, now);
        }
    }

    pub fn ack(
        &mut self,
        id: &str,
        by: &str,
        comment: &str,
        now: TimestampMs,
    ) -> Result<(), Refused> {
        let inc = self.live.get_mut(id).ok_or(Refused::NotFound)?;
        if inc.state == State::Resolved {
            return Err(Refused::Resolved);
        }
        if inc.acked_at.is_none() {
            inc.acked_at = Some(now);
            inc.acked_by = Some(by.to_string());
        }
        inc.state = State::Acknowledged;
        let c = if comment.is_empty() {
            String::new()
        } else {
            format!(": {comment}")
        };
        self.push(id, now, "acknowledged", format!("acknowledged by {by}{c}"));
        Ok(())
    }

    /// Resolved by hand.
    pub fn resolve(&mut self, id: &str, by: &str, now: TimestampMs) -> Result<(), Refused> {
        let inc = self.live.get(id).ok_or(Refused::NotFound)?;
        if inc.state == State::Resolved {
            return Err(Refused::Resolved);
        }
        self.close(id, by, now);
        Ok(())
    }

    pub fn note(
        &mut self,
        id: &str,
        by: &str,
        text: &str,
        now: TimestampMs,
    ) -> Result<(), Refused> {
        if !self.live.contains_key(id) {
            return Err(Refused::NotFound);
        }
        self.push(id, now, "note", format!("{by}: {text}"));
        Ok(())
    }

    /// Records, once each, the deadlines open incidents have passed: not acknowledged or not
    /// resolved within their severity's deadline, open past a service's RTO.
    pub fn check_deadlines(&mut self, now: TimestampMs) {
        let mut missed: Vec<(String, String, &'static str, String)> = Vec::new();
        for inc in self.live.values() {
            if inc.state == State::Resolved {
                continue;
            }
            let open_ms = now - inc.opened_at;
            let open = format_span(open_ms);
            if let Some(d) = self
                .settings
                .deadlines
                .iter()
                .find(|d| d.level == inc.severity)
            {
                let counted = d.counted_ms(inc.opened_at, now);
                if inc.acked_at.is_none() && counted >= d.ack_ms {
                    missed.push((
                        inc.id.clone(),
                        "ack".into(),
                        "ack_deadline_missed",
                        format!(
                            "not acknowledged within {} ({} deadline); open {open}",
                            d.within(d.ack_ms),
                            inc.severity
                        ),
                    ));
                }
                if counted >= d.resolve_ms {
                    missed.push((
                        inc.id.clone(),
                        "resolve".into(),
                        "resolve_deadline_missed",
                        format!(
                            "not resolved within {} ({} deadline); open {open}",
                            d.within(d.resolve_ms),
                            inc.severity
                        ),
                    ));
                }
            }
            for s in &inc.services {
                if let Some(&rto) = self.settings.rto_ms.get(s) {
                    if open_ms >= rto {
                        missed.push((
                            inc.id.clone(),
                            format!("rto:{s}"),
                            "rto_breached",
                            format!(
                                "{s} down {open}, past its recovery time objective of {}",
                                format_span(rto)
                            ),
                        ));
                    }
                }
            }
        }
        for (id, key, kind, text) in missed {
            let inc = self.live.get_mut(&id).expect("listed above");
            if inc.breaches.insert(key) {
                self.push(&id, now, kind, text);
            }
        }
    }

    /// An edit of a live incident (open, or resolved within the reopen window).
    pub fn edit(
        &mut self,
        id: &str,
        by: &str,
        edit: &Edit,
        now: TimestampMs,
    ) -> Result<(), EditRefused> {
        let inc = self.live.get_mut(id).ok_or(EditRefused::NotFound)?;
        let (kind, text) = edit.apply(inc, by, now).map_err(EditRefused::Invalid)?;
        self.push(id, now, kind, text);
        Ok(())
    }

    pub fn live(&self) -> impl Iterator<Item = &Incident> {
        self.live.values()
    }

    /// Forgets resolved incidents past the reopen window (they stay in the store).
    pub fn expire(&mut self, now: TimestampMs) {
        let w = self.settings.reopen_within_ms;
        let before = self.live.len();
        self.live.retain(|_, i| {
            i.state != State::Resolved || i.resolved_at.is_some_and(|r| now - r <= w)
        });
        if self.live.len() != before {
            self.index = Index::of(&self.live);
        }
    }

    /// Changed incidents and the new timeline rows, since the last call.
    pub fn take_changes(&mut self) -> (Vec<Row>, Vec<TimelineEvent>) {
        let mut alerts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, a) in std::mem::take(&mut self.dirty_alerts) {
            alerts.entry(i).or_default().push(a);
        }
        let mut members: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
        for (i, set, m) in std::mem::take(&mut self.dirty_members) {
            members.entry(i).or_default().push((set, m));
        }
        let mut ids = std::mem::take(&mut self.dirty);
        ids.extend(alerts.keys().cloned());
        ids.extend(members.keys().cloned());
        let rows = ids
            .into_iter()
            .filter_map(|k| {
                if k == "#seq" {
                    return Some(Row {
                        json: serde_json::to_string(&self.day_seq).expect("serializes"),
                        id: k,
                        opened_at: 0,
                        state: "",
                        alerts: Vec::new(),
                        members: Vec::new(),
                    });
                }
                let changed = alerts.get(&k).into_iter().flatten();
                let gained = members.remove(&k).unwrap_or_default();
                self.live.get_mut(&k).map(|i| Row::of(i, changed, gained))
            })
            .collect();
        (rows, std::mem::take(&mut self.events))
    }

    /// Restores live incidents and the id sequence; returns the unreadable rows.
    pub fn restore(
        &mut self,
        rows: Vec<(String, String)>,
        now: TimestampMs,
    ) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (k, json) in rows {
            if k == "#seq" {
                match serde_json::from_str(&json) {
                    Ok(s) => self.day_seq = s,
                    Err(e) => bad.push((k, e.to_string())),
                }
                continue;
            }
            match serde_json::from_str::<Incident>(&json) {
                Ok(i) => {
                    self.live.insert(k, i);
                }
                Err(e) => bad.push((k, e.to_string())),
            }
        }
        self.index = Index::of(&self.live);
        self.expire(now);
        bad
    }
}

#[cfg(test)]
mod tests;
