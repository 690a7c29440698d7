//! Alerts raised elsewhere and posted here as to an Alertmanager (`POST /api/v2/alerts`):
//! Prometheus' alerting rules, or anything else that speaks that API. They go through the same
//! routes, silences, inhibition, escalation and incidents as the collector's own alerts; they
//! never ask for remediation (what runs on a host is never steered by what a sender posts).
//!
//! As in Alertmanager, an alert is known by its labels and lives as long as its sender keeps it
//! alive: each post carries an `endsAt` (Prometheus sends one a few evaluation intervals on,
//! and posts again while the alert fires); without one, the alert ends `resolve_timeout` after
//! its last post. An `endsAt` in the past resolves it. A sender that stops posting lets its
//! alerts run out, and they resolve then (reason `expired`).
//!
//! Its level is read from the `severity` label: `critical`, `emergency` (also `page`,
//! `disaster`, `fatal` and `error` for the tiers other tools name), anything else `warning`.
//! An alert named as one of the collector's rules is refused: the two would share an identity.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tocsin_model::{Labels, Level, TimestampMs};

use crate::engine::{AlertState, StateChange, Transition, TransitionKind};

/// Persisted alerts of this kind are stored under keys starting so (no rule name can: a rule's
/// name is a label value of `alertname` the rule files allow only as an identifier).
pub const STORAGE_PREFIX: &str = "!external/";

/// An alert as a sender posted it (validated: labels well formed and named, times read).
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<TimestampMs>,
    pub ends_at: Option<TimestampMs>,
    pub generator_url: Option<String>,
}

/// A firing alert from elsewhere, as kept (and persisted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExternalAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub level: Level,
    pub starts_at: TimestampMs,
    /// When it resolves unless posted again.
    pub ends_at: TimestampMs,
    /// When it was last posted.
    pub updated_at: TimestampMs,
    pub level_since: TimestampMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// `as_state`, built once per change (`Shared`).
    #[serde(skip)]
    shared: Shared,
}

/// An alert in the shape of a rule's, kept for whoever lists alerts (the API's view takes a
/// reference each refresh instead of building every alert again). Emptied by every change of
/// the alert (`External::post` is the only place one changes); not part of its identity.
#[derive(Debug, Clone, Default)]
struct Shared(std::sync::OnceLock<Arc<AlertState>>);

impl PartialEq for Shared {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ExternalAlert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").unwrap_or("")
    }

    /// In the shape of a rule's alert, shared: built on the first call after a change.
    pub fn shared_state(&self) -> &Arc<AlertState> {
        self.shared.0.get_or_init(|| Arc::new(self.as_state()))
    }

    /// In the shape of a rule's alert, for the lists of alerts.
    pub fn as_state(&self) -> AlertState {
        AlertState {
            rule: self.name().to_string(),
            key: self.labels.fingerprint(),
            labels: self.labels.clone(),
            level: Some(self.level),
            holding_since: [None; 3],
            holding_runs: [0; 3],
            active_at: Some(self.starts_at),
            level_since: Some(self.level_since),
            value: f64::NAN,
            last_seen_ms: self.updated_at,
            annotations: self.annotations.clone(),
            changes: Vec::new(),
            flapping: false,
            last_level: Some(self.level),
            score: 0.0,
            band: None,
            cause: None,
            warming: false,
        }
    }

    fn transition(
        &self,
        kind: TransitionKind,
        at: TimestampMs,
        reason: Option<&'static str>,
    ) -> Transition {
        Transition {
            kind,
            rule: self.name().to_string(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            level: self.level,
            value: f64::NAN,
            threshold: String::new(),
            starts_at: self.starts_at,
            ends_at: (!kind.firing()).then_some(self.ends_at.min(at)),
            at,
            reason,
            external: true,
            generator_url: self.generator_url.clone(),
        }
    }
}

/// The level a posted alert fires at, from its `severity` label.
pub fn level_of(labels: &Labels) -> Level {
    match labels
        .get("severity")
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "emergency" | "disaster" | "fatal" => Level::Emergency,
        "critical" | "page" | "error" => Level::Critical,
        _ => Level::Warning,
    }
}

/// What a post did, for the sender's answer and the counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PostOutcome {
    /// New alerts.
    pub fired: usize,
    /// Firing alerts posted again (their end moved on).
    pub renewed: usize,
    pub resolved: usize,
    /// Resolutions of alerts not firing here (already resolved, or never seen).
    pub ignored: usize,
    /// Why alerts were not taken, one line each.
    pub refused: Vec<String>,
    /// Whether a refusal was for want of room (`max_alerts`) rather than the alert itself.
    pub full: bool,
}

/// Refusals named in an answer; the rest are counted.
pub const REASONS_NAMED: usize = 20;

impl PostOutcome {
    /// The refusals, `max` of them named and the rest counted, for an answer.
    pub fn reasons(&self, max: usize) -> String {
        let mut s = self
            .refused
            .iter()
            .take(max)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if self.refused.len() > max {
            s.push_str(&format!("; and {} more refused", self.refused.len() - max));
        }
        s
    }
}

/// The alerts posted from elsewhere that fire now.
#[derive(Debug)]
pub struct External {
    alerts: HashMap<u64, ExternalAlert>,
    /// The keys of the alerts of each `alertname`: what is looked up by name (the sources of
    /// inhibition, per batch) is found without walking every alert of a mass outage.
    by_name: HashMap<String, HashSet<u64>>,
    /// Keys changed since the last `take_changes`.
    changed: Vec<u64>,
    resolve_timeout_ms: i64,
    max_alerts: usize,
}

impl External {
    pub fn new(resolve_timeout_ms: i64, max_alerts: usize) -> Self {
        External {
            alerts: HashMap::new(),
            by_name: HashMap::new(),
            changed: Vec::new(),
            resolve_timeout_ms,
            max_alerts,
        }
    }

    /// Takes a sender's alerts. `is_rule` says whether a name is one of the collector's rules.
    pub fn post(
        &mut self,
        posted: Vec<Posted>,
        is_rule: &dyn Fn(&str) -> bool,
        now: TimestampMs,
    ) -> (Vec<Transition>, PostOutcome) {
        let mut out = Vec::new();
        let mut o = PostOutcome::default();
        for p in posted {
            let name = p.labels.get("alertname").unwrap_or("").to_string();
            if is_rule(&name) {
                o.refused.push(format!(
                    "alert {name:?}: a rule of this collector has that name; name it otherwise"
                ));
                continue;
            }
            let ends = p.ends_at.unwrap_or(now + self.resolve_timeout_ms);
            let starts = p.starts_at.unwrap_or(ends).min(now);
            if ends < starts {
                o.refused
                    .push(format!("alert {name:?}: endsAt before startsAt"));
                continue;
            }
            // The level is read from a label: a change of level is another alert, as in
            // Alertmanager (Prometheus' tiers are rules of their own, each its severity).
            let key = p.labels.fingerprint();
            if ends <= now {
                match self.remove(key) {
                    Some(mut a) => {
                        a.ends_at = ends;
                        a.annotations = p.annotations;
                        a.shared = Shared::default();
                        self.changed.push(key);
                        out.push(a.transition(TransitionKind::Resolved, now, None));
                        o.resolved += 1;
                    }
                    None => o.ignored += 1,
                }
                continue;
            }
            let held = self.alerts.len();
            match self.alerts.get_mut(&key) {
                Some(a) => {
                    a.ends_at = ends;
                    a.updated_at = now;
                    a.annotations = p.annotations;
                    a.generator_url = p.generator_url;
                    a.shared = Shared::default();
                    o.renewed += 1;
                    self.changed.push(key);
                }
                None if held >= self.max_alerts => {
                    o.full = true;
                    o.refused.push(format!(
                        "alert {name:?}: {held} alerts from elsewhere fire already, the most this collector keeps (external_alerts.max_alerts)"
                    ));
                }
                None => {
                    let a = ExternalAlert {
                        level: level_of(&p.labels),
                        labels: p.labels,
                        annotations: p.annotations,
                        starts_at: starts,
                        ends_at: ends,
                        updated_at: now,
                        level_since: now,
                        generator_url: p.generator_url,
                        shared: Shared::default(),
                    };
                    out.push(a.transition(TransitionKind::Firing, now, None));
                    self.insert(key, a);
                    self.changed.push(key);
                    o.fired += 1;
                }
            }
        }
        (out, o)
    }

    /// Resolves the alerts whose senders stopped posting them before their end.
    pub fn tick(&mut self, now: TimestampMs) -> Vec<Transition> {
        self.resolve_where(|a| a.ends_at <= now, now, "expired")
    }

    /// Resolves the alerts whose name a rule has taken since they were posted (a reload added
    /// it): from then on the rule's alerts are the ones of that name, and a post of it is
    /// refused; the posted ones would otherwise fire beside them until they ran out.
    pub fn resolve_named(
        &mut self,
        is_rule: &dyn Fn(&str) -> bool,
        now: TimestampMs,
    ) -> Vec<Transition> {
        self.resolve_where(|a| is_rule(a.name()), now, "a rule took its name")
    }

    /// Resolves, for `reason`, the alerts `pred` picks.
    fn resolve_where(
        &mut self,
        pred: impl Fn(&ExternalAlert) -> bool,
        now: TimestampMs,
        reason: &'static str,
    ) -> Vec<Transition> {
        let picked: Vec<u64> = self
            .alerts
            .iter()
            .filter(|(_, a)| pred(a))
            .map(|(k, _)| *k)
            .collect();
        picked
            .into_iter()
            .filter_map(|k| {
                let a = self.remove(k)?;
                self.changed.push(k);
                Some(a.transition(TransitionKind::Resolved, now, Some(reason)))
            })
            .collect()
    }

    /// Starts again from persisted alerts (`STORAGE_PREFIX` rows); those that ended while the
    /// collector was down resolve now.
    pub fn restore(&mut self, alerts: Vec<ExternalAlert>, now: TimestampMs) -> Vec<Transition> {
        self.alerts.clear();
        self.by_name.clear();
        self.changed.clear();
        for a in alerts {
            self.insert(a.labels.fingerprint(), a);
        }
        self.tick(now)
    }

    fn insert(&mut self, key: u64, a: ExternalAlert) {
        self.by_name
            .entry(a.name().to_string())
            .or_default()
            .insert(key);
        self.alerts.insert(key, a);
    }

    fn remove(&mut self, key: u64) -> Option<ExternalAlert> {
        let a = self.alerts.remove(&key)?;
        if let Some(keys) = self.by_name.get_mut(a.name()) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_name.remove(a.name());
            }
        }
        Some(a)
    }

    /// The firing alerts of this `alertname`, found by name.
    pub fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a ExternalAlert> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|k| self.alerts.get(k))
    }

    /// Persisted-state updates since the last call (`None`: gone), under `STORAGE_PREFIX`.
    pub fn take_changes(&mut self) -> Vec<StateChange<ExternalAlert>> {
        let mut keys = std::mem::take(&mut self.changed);
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|k| StateChange {
                key: format!("{STORAGE_PREFIX}{k:016x}"),
                state: self.alerts.get(&k).cloned(),
            })
            .collect()
    }

    pub fn alerts(&self) -> impl Iterator<Item = &ExternalAlert> {
        self.alerts.values()
    }

    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// The firing alert of this id (`tocsin_dispatch::alert_id`: its labels' fingerprint).
    pub fn get(&self, id: &str) -> Option<&ExternalAlert> {
        let key = u64::from_str_radix(id, 16).ok()?;
        self.alerts.get(&key)
    }

    /// Every firing alert `keep` accepts, as a firing transition at `now`.
    pub fn firing(
        &self,
        now: TimestampMs,
        keep: &dyn Fn(&Labels, Level) -> bool,
    ) -> Vec<Transition> {
        let mut v: Vec<&ExternalAlert> = self
            .alerts
            .values()
            .filter(|a| keep(&a.labels, a.level))
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v.into_iter()
            .map(|a| a.transition(TransitionKind::Firing, now, None))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn alert(pairs: &[(&str, &str)], ends: Option<TimestampMs>) -> Posted {
        Posted {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: BTreeMap::from([("summary".to_string(), "s".to_string())]),
            starts_at: None,
            ends_at: ends,
            generator_url: None,
        }
    }

    fn kinds(t: &[Transition]) -> Vec<(&str, &'static str, Level, Option<&str>)> {
        t.iter()
            .map(|t| (t.rule.as_str(), t.kind.as_str(), t.level, t.reason))
            .collect()
    }

    #[test]
    fn a_posted_alert_whose_name_a_rule_takes_resolves() {
        let mut e = External::new(5 * MIN, 10);
        let t0 = 1_000 * MIN;
        let posted = vec![
            alert(&[("alertname", "Disk")], Some(t0 + 60 * MIN)),
            alert(&[("alertname", "Load")], Some(t0 + 60 * MIN)),
        ];
        e.post(posted, &|_: &str| false, t0);
        e.take_changes();
        // A reload brings a rule named Disk.
        let is_rule = |n: &str| n == "Disk";
        let t = e.resolve_named(&is_rule, t0 + MIN);
        assert_eq!(
            kinds(&t),
            [(
                "Disk",
                "resolved",
                Level::Warning,
                Some("a rule took its name")
            )]
        );
        assert_eq!(e.len(), 1, "Load still fires");
        let gone = e.take_changes();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].state.is_none(), "its stored state goes with it");
        assert!(e.resolve_named(&is_rule, t0 + 2 * MIN).is_empty());
    }

    #[test]
    fn an_alert_fires_renews_and_resolves_as_posted() {
        let mut e = External::new(5 * MIN, 10);
        let no_rule = |_: &str| false;
        let t0 = 1_000 * MIN;
        let a = |sev: &str, ends| alert(&[("alertname", "Disk"), ("severity", sev)], ends);
        let (t, o) = e.post(vec![a("warning", Some(t0 + 4 * MIN))], &no_rule, t0);
        assert_eq!(kinds(&t), [("Disk", "firing", Level::Warning, None)]);
        assert!(t[0].external && t[0].value.is_nan() && t[0].ends_at.is_none());
        assert_eq!(o.fired, 1);
        // Posted again: nothing to tell, its end moves on.
        let (t, o) = e.post(vec![a("warning", Some(t0 + 5 * MIN))], &no_rule, t0 + MIN);
        assert!(t.is_empty());
        assert_eq!(o.renewed, 1);
        // Another severity is another alert (Prometheus' tiers are rules of their own).
        let (t, _) = e.post(
            vec![a("critical", Some(t0 + 6 * MIN))],
            &no_rule,
            t0 + 2 * MIN,
        );
        assert_eq!(kinds(&t), [("Disk", "firing", Level::Critical, None)]);
        assert_eq!(e.len(), 2);
        e.post(
            vec![a("warning", Some(t0 + 2 * MIN))],
            &no_rule,
            t0 + 2 * MIN,
        );
        // An end in the past resolves it, at that end; posted once more, it is ignored.
        let (t, o) = e.post(
            vec![a("critical", Some(t0 + 2 * MIN))],
            &no_rule,
            t0 + 3 * MIN,
        );
        assert_eq!(kinds(&t), [("Disk", "resolved", Level::Critical, None)]);
        assert_eq!(t[0].ends_at, Some(t0 + 2 * MIN));
        assert_eq!(o.resolved, 1);
        let (t, o) = e.post(
            vec![a("critical", Some(t0 + 2 * MIN))],
            &no_rule,
            t0 + 4 * MIN,
        );
        assert!(t.is_empty());
        assert_eq!(o.ignored, 1);
        assert!(e.is_empty());
        let changes = e.take_changes();
        assert_eq!(changes.len(), 2, "one row per alert, each gone");
        assert!(changes
            .iter()
            .all(|c| c.key.starts_with(STORAGE_PREFIX) && c.state.is_none()));
    }

    /// The shape the lists of alerts read is built once per change and shared: a reader holding
    /// it keeps what it read, and a renewal (a new `updatedAt`, new annotations) is seen.
    #[test]
    fn an_alert_is_listed_from_one_shared_copy_until_it_changes() {
        let mut e = External::new(5 * MIN, 10);
        let no_rule = |_: &str| false;
        let t0 = 1_000 * MIN;
        e.post(vec![alert(&[("alertname", "Disk")], None)], &no_rule, t0);
        let first = Arc::clone(e.alerts().next().expect("fires").shared_state());
        let again = e.alerts().next().expect("fires").shared_state();
        assert!(
            Arc::ptr_eq(&first, again),
            "not built again while unchanged"
        );
        assert_eq!(first.last_seen_ms, t0);
        let mut renewed = alert(&[("alertname", "Disk")], None);
        renewed.annotations.insert("summary".into(), "s2".into());
        e.post(vec![renewed], &no_rule, t0 + MIN);
        let now = e.alerts().next().expect("fires").shared_state();
        assert!(!Arc::ptr_eq(&first, now), "built again after the renewal");
        assert_eq!(now.last_seen_ms, t0 + MIN);
        assert_eq!(now.annotations["summary"], "s2");
        let built = e.alerts().next().expect("fires").as_state();
        assert_eq!(
            format!("{now:?}"),
            format!("{built:?}"),
            "the same as built afresh"
        );
        assert_eq!(first.last_seen_ms, t0, "what a reader holds stays as read");
        assert_eq!(first.annotations["summary"], "s");
    }

    /// Alerts are found by name (the sources of inhibition are looked up that way, per batch)
    /// however they came and went: posted, renewed, ended, expired, taken by a rule, restored.
    #[test]
    fn alerts_are_found_by_name_whatever_came_and_went() {
        let mut e = External::new(5 * MIN, 100);
        let t0 = 1_000 * MIN;
        let no_rule = |_: &str| false;
        let at = |name: &str, host: &str, ends| alert(&[("alertname", name), ("host", host)], ends);
        let hosts = |e: &External, name: &str| -> Vec<String> {
            let mut v: Vec<String> = e
                .named(name)
                .map(|a| a.labels.get("host").unwrap_or("").to_string())
                .collect();
            v.sort();
            v
        };
        e.post(
            vec![
                at("HostDown", "a", Some(t0 + 10 * MIN)),
                at("HostDown", "b", None),
                at("Disk", "a", Some(t0 + 10 * MIN)),
                at("Load", "c", Some(t0 + 10 * MIN)),
            ],
            &no_rule,
            t0,
        );
        assert_eq!(hosts(&e, "HostDown"), ["a", "b"]);
        assert_eq!(hosts(&e, "Disk"), ["a"]);
        assert!(hosts(&e, "Nothing").is_empty());
        // Renewed: still one; ended by its sender: gone.
        e.post(
            vec![at("HostDown", "a", Some(t0 + 20 * MIN))],
            &no_rule,
            t0 + MIN,
        );
        assert_eq!(hosts(&e, "HostDown"), ["a", "b"]);
        e.post(
            vec![at("HostDown", "a", Some(t0 + MIN))],
            &no_rule,
            t0 + 2 * MIN,
        );
        assert_eq!(hosts(&e, "HostDown"), ["b"]);
        // Expired (no end, not posted again) and taken by a rule.
        e.tick(t0 + 5 * MIN);
        assert!(hosts(&e, "HostDown").is_empty());
        e.resolve_named(&|n: &str| n == "Disk", t0 + 6 * MIN);
        assert!(hosts(&e, "Disk").is_empty());
        assert_eq!(hosts(&e, "Load"), ["c"]);
        // Restored after a restart.
        let kept: Vec<ExternalAlert> = e.alerts().cloned().collect();
        let mut again = External::new(5 * MIN, 100);
        again.restore(kept, t0 + 7 * MIN);
        assert_eq!(hosts(&again, "Load"), ["c"]);
        assert_eq!(again.by_name.len(), 1, "no name left without alerts");
    }

    #[test]
    fn a_sender_that_stops_posting_lets_its_alerts_expire() {
        let mut e = External::new(5 * MIN, 10);
        let t0 = 1_000 * MIN;
        e.post(vec![alert(&[("alertname", "A")], None)], &|_| false, t0);
        e.post(
            vec![alert(&[("alertname", "B")], Some(t0 + 10 * MIN))],
            &|_| false,
            t0,
        );
        assert!(e.tick(t0 + 5 * MIN - 1).is_empty());
        assert_eq!(
            kinds(&e.tick(t0 + 5 * MIN)),
            [("A", "resolved", Level::Warning, Some("expired"))]
        );
        // Kept across a restart; one that ended meanwhile resolves on restore.
        let kept: Vec<ExternalAlert> = e.alerts().cloned().collect();
        let mut again = External::new(5 * MIN, 10);
        assert!(again.restore(kept.clone(), t0 + 6 * MIN).is_empty());
        assert_eq!(again.len(), 1);
        assert_eq!(
            kinds(&again.restore(kept, t0 + 11 * MIN)),
            [("B", "resolved", Level::Warning, Some("expired"))]
        );
    }

    #[test]
    fn names_of_rules_and_alerts_beyond_the_bound_are_refused() {
        let mut e = External::new(5 * MIN, 2);
        let is_rule = |n: &str| n == "HostDown";
        let (t, o) = e.post(
            vec![
                alert(&[("alertname", "HostDown"), ("host", "db-1")], None),
                alert(&[("alertname", "A")], None),
                alert(&[("alertname", "B")], None),
                alert(&[("alertname", "C")], None),
            ],
            &is_rule,
            0,
        );
        assert_eq!(t.len(), 2);
        assert_eq!(o.refused.len(), 2, "{:?}", o.refused);
        assert!(o.refused[0].contains("a rule of this collector has that name"));
        assert!(o.refused[1].contains("max_alerts"));
        assert!(o.full);
        assert!(
            o.reasons(1).ends_with("; and 1 more refused"),
            "{}",
            o.reasons(1)
        );
        // A known alert is still renewed when full.
        let (_, o) = e.post(vec![alert(&[("alertname", "A")], None)], &is_rule, MIN);
        assert_eq!((o.renewed, o.refused.len()), (1, 0));
        let (_, o) = e.post(
            vec![Posted {
                starts_at: Some(10 * MIN),
                ..alert(&[("alertname", "D")], Some(5 * MIN))
            }],
            &is_rule,
            20 * MIN,
        );
        assert!(o.refused[0].contains("endsAt before startsAt"));
    }

    #[test]
    fn severity_names_the_level() {
        for (sev, want) in [
            ("critical", Level::Critical),
            ("PAGE", Level::Critical),
            ("emergency", Level::Emergency),
            ("info", Level::Warning),
            ("", Level::Warning),
        ] {
            assert_eq!(level_of(&Labels::from_pairs([("severity", sev)])), want);
        }
        assert_eq!(level_of(&Labels::new()), Level::Warning);
    }
}
