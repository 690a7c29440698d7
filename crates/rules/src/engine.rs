//! The streaming evaluator: samples in, alert state changes out. Pure: time is a parameter,
//! nothing is sent or stored here; the caller persists `take_changes()` and delivers
//! `Transition`s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tocsin_model::{Labels, Level, SeriesSamples, TimestampMs};

use crate::expr::Accumulator;
use crate::rule::Rule;

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Inputs older than this are not evaluated, and an alert whose inputs stop for this long
    /// resolves.
    pub stale_after_ms: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            stale_after_ms: 5 * 60 * 1000,
        }
    }
}

/// Everything the engine remembers about one (rule, series): persisted across restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertState {
    pub rule: String,
    /// Fingerprint of the input series' labels less `__name__`: the alert's key within the rule.
    pub key: u64,
    /// Identity: input labels (less `__name__`), the rule's labels and `alertname`.
    pub labels: Labels,
    /// The level it fires at; `None` while pending.
    pub level: Option<Level>,
    /// Per level, since when its condition has held without a break.
    pub holding_since: [Option<TimestampMs>; 3],
    /// Per level, for how many consecutive evaluations of fresh input it has held.
    #[serde(default)]
    pub holding_runs: [u32; 3],
    /// When it started firing.
    pub active_at: Option<TimestampMs>,
    pub level_since: Option<TimestampMs>,
    pub value: f64,
    /// Collector time of the last evaluation from fresh input.
    pub last_seen_ms: TimestampMs,
    pub annotations: BTreeMap<String, String>,
    /// Times of recent state changes, for flapping detection.
    #[serde(default)]
    pub changes: Vec<TimestampMs>,
    #[serde(default)]
    pub flapping: bool,
    /// The level it fired at most recently.
    #[serde(default)]
    pub last_level: Option<Level>,
    /// Dynamic rules: the anomaly score and the band the baseline expected.
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub band: Option<[f64; 3]>,
    /// What made the score: `deviation`, `record` or `volatility` (tocsin_baseline::Cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The baseline was still warming up at the last evaluation: dynamic levels are judged by
    /// their static stand-ins (`dynamic.cold_start`), if any.
    #[serde(default)]
    pub warming: bool,
}

impl AlertState {
    /// Pending or firing (an alert remembered only for flapping detection is neither).
    pub fn is_active(&self) -> bool {
        self.level.is_some() || self.holding_since.iter().any(Option::is_some)
    }

    /// Key under which the state is persisted.
    pub fn storage_key(&self) -> String {
        storage_key(&self.rule, self.key)
    }

    pub fn fingerprint(&self) -> u64 {
        self.labels.fingerprint()
    }

    pub fn pending_since(&self) -> Option<TimestampMs> {
        self.holding_since.iter().flatten().min().copied()
    }
}

fn storage_key(rule: &str, key: u64) -> String {
    format!("{rule}/{key:016x}")
}

/// A persisted-state update: `state` is `None` when the alert is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange<S = AlertState> {
    pub key: String,
    pub state: Option<S>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    Firing,
    LevelChanged {
        from: Level,
    },
    Resolved,
    /// Changed state too often: notified once, then quiet while it lasts.
    Flapping,
    /// Calm again; `firing` says in which state it settled.
    FlappingEnded {
        firing: bool,
    },
}

impl TransitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Firing => "firing",
            TransitionKind::LevelChanged { .. } => "level_changed",
            TransitionKind::Resolved => "resolved",
            TransitionKind::Flapping => "flapping",
            TransitionKind::FlappingEnded { .. } => "flapping_ended",
        }
    }

    /// Whether the alert is firing after this transition.
    pub fn firing(self) -> bool {
        match self {
            TransitionKind::Resolved => false,
            TransitionKind::FlappingEnded { firing } => firing,
            _ => true,
        }
    }
}

/// A notifiable event: the alert as it is after the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub kind: TransitionKind,
    pub rule: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// The level it fires at, or fired at before resolving.
    pub level: Level,
    pub value: f64,
    /// The condition of `level`, e.g. `> 90`.
    pub threshold: String,
    pub starts_at: TimestampMs,
    pub ends_at: Option<TimestampMs>,
    pub at: TimestampMs,
    /// Why it resolved when not by its condition: `stale`, `rule removed`, or `expired` (an
    /// alert posted from elsewhere that was not posted again).
    pub reason: Option<&'static str>,
    /// Posted from elsewhere (`crate::external`), not raised by a rule: never remediated.
    pub external: bool,
    /// Where a sender says the alert comes from (Prometheus' link to its expression).
    pub generator_url: Option<String>,
}

#[derive(Clone, Default)]
struct LeafSeries {
    /// (timestamp, value), oldest first; one entry unless the leaf is a range function.
    window: VecDeque<(TimestampMs, f64)>,
    /// Samples judged ahead of a replayed backlog (sent live, stored later), all newer than
    /// `window`: what the next live sample is judged with. Their stored copies replace them.
    live: VecDeque<(TimestampMs, f64)>,
}

impl LeafSeries {
    /// Adds a stored sample newer than the window's newest and trims to the range; false when
    /// the sample is not used (NaN, or not newer).
    fn push(&mut self, ts: TimestampMs, v: f64, range: Option<i64>) -> bool {
        if v.is_nan() || self.window.back().is_some_and(|b| b.0 >= ts) {
            return false;
        }
        Self::add(&mut self.window, ts, v, range);
        while self.live.front().is_some_and(|l| l.0 <= ts) {
            self.live.pop_front();
        }
        true
    }

    /// Adds a live sample newer than anything held; false when it is not used.
    fn push_live(&mut self, ts: TimestampMs, v: f64, range: Option<i64>) -> bool {
        let newest = self.live.back().or(self.window.back());
        if v.is_nan() || newest.is_some_and(|b| b.0 >= ts) {
            return false;
        }
        Self::add(&mut self.live, ts, v, range);
        true
    }

    /// What a live sample is judged with: the stored window and the live samples after it,
    /// trimmed to the range.
    fn with_live(&self, range: Option<i64>) -> LeafSeries {
        let mut all = LeafSeries::default();
        for &(ts, v) in self.window.iter().chain(&self.live) {
            Self::add(&mut all.window, ts, v, range);
        }
        all
    }

    /// The leaf's value as of `ts`: its newest sample, or its function over the window; none
    /// when empty or when the newest sample is more than `stale_ms` old.
    fn value(&self, leaf: &crate::expr::Leaf, ts: TimestampMs, stale_ms: i64) -> Option<f64> {
        let newest = self.window.back()?;
        if ts - newest.0 > stale_ms {
            return None;
        }
        match leaf.func {
            None => Some(newest.1),
            Some((f, range)) => {
                // The window holds the range before its newest sample; evaluated later (a
                // rule over a fleet, on the clock), the range ends at `ts`.
                let w = self.window.as_slices().0;
                let from = w.partition_point(|s| s.0 < ts - range);
                f.apply(&w[from..], ts, range)
            }
        }
    }

    fn add(w: &mut VecDeque<(TimestampMs, f64)>, ts: TimestampMs, v: f64, range: Option<i64>) {
        w.push_back((ts, v));
        let keep_from = ts - range.unwrap_or(0);
        while w.len() > 1 && w.front().is_some_and(|f| f.0 < keep_from) {
            w.pop_front();
        }
        // Evaluation reads the window as one slice.
        w.make_contiguous();
    }
}

/// The outcome of the latest evaluation, for backtests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub value: f64,
    pub score: f64,
    pub level: Option<Level>,
}

pub struct Engine {
    opts: EngineOptions,
    /// Learned baselines of dynamic rules, per (rule, series).
    detectors: HashMap<(usize, u64), tocsin_baseline::Detector>,
    /// The latest band of each dynamic (rule, series): its labels and expected, lower, upper.
    /// Per dynamic series: [expected, lower, upper, last value, anomaly score].
    bands: HashMap<(usize, u64), (Labels, [f64; 5])>,
    last_eval: Option<Evaluation>,
    rules: Vec<Arc<Rule>>,
    /// Each rule's index by its name (the first's, should two share one: rule files refuse it).
    by_name: HashMap<String, usize>,
    by_metric: HashMap<String, Arc<[(usize, usize)]>>,
    /// [rule][leaf]: series key → recent samples.
    leaves: Vec<Vec<HashMap<u64, LeafSeries>>>,
    /// Shared with the API's view, which takes a reference rather than a copy: a change
    /// copies an alert only while the view still holds it (`Arc::make_mut`).
    alerts: HashMap<(usize, u64), Arc<AlertState>>,
    changes: BTreeMap<String, Option<AlertState>>,
    evaluations: u64,
    /// Samples of a replayed backlog learned by dynamic baselines without being judged.
    learned_late: u64,
    /// Per (rule, series): the newest instant judged live, ahead of its stored copy; stored
    /// samples up to it are learned, not judged again.
    judged_live: HashMap<(usize, u64), TimestampMs>,
    /// Per rule of `absent_over_time`: when a sample of its selector last arrived (collector
    /// time); unset until the first tick, which starts the clock.
    absent_seen: Vec<Option<TimestampMs>>,
    /// Per rule that aggregates: the series read (by key) with their group and their
    /// sender's clock offset (as for `ingest_sent`), and when the rule is next evaluated.
    agg_series: Vec<HashMap<u64, AggSeries>>,
    agg_due: Vec<TimestampMs>,
    /// Values of recording rules not yet taken (`take_recorded`).
    recorded: Vec<SeriesSamples>,
}

/// A series a rule that aggregates reads.
struct AggSeries {
    /// Its group's fingerprint and labels (the labels shared by the group's series).
    group: (u64, Arc<Labels>),
    /// Its sender's clock less the collector's, as its last batch came.
    clock_offset_ms: i64,
    /// Its `host` label, for `forget_host`.
    host: Option<Box<str>>,
    /// Its recent samples per leaf of the rule (kept here rather than in `Engine::leaves`:
    /// an evaluation walks every series of the rule, one lookup-free pass).
    leaves: Vec<LeafSeries>,
}

/// What a dynamic rule's baseline made of a value.
#[derive(Debug, Clone, Copy, Default)]
struct Judgement {
    score: f64,
    band: Option<[f64; 3]>,
    warming: bool,
    cause: Option<&'static str>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>, opts: EngineOptions) -> Self {
        let mut e = Engine {
            opts,
            detectors: HashMap::new(),
            bands: HashMap::new(),
            last_eval: None,
            rules: Vec::new(),
            by_name: HashMap::new(),
            by_metric: HashMap::new(),
            leaves: Vec::new(),
            alerts: HashMap::new(),
            changes: BTreeMap::new(),
            evaluations: 0,
            learned_late: 0,
            judged_live: HashMap::new(),
            absent_seen: Vec::new(),
            agg_series: Vec::new(),
            agg_due: Vec::new(),
            recorded: Vec::new(),
        };
        e.install(rules.into_iter().map(Arc::new).collect());
        e
    }

    fn install(&mut self, rules: Vec<Arc<Rule>>) {
        let mut by_metric: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        self.leaves = rules
            .iter()
            .map(|r| r.expr.leaves.iter().map(|_| HashMap::new()).collect())
            .collect();
        for (ri, r) in rules.iter().enumerate() {
            for (li, leaf) in r.expr.leaves.iter().enumerate() {
                by_metric
                    .entry(leaf.selector.metric.clone())
                    .or_default()
                    .push((ri, li));
            }
        }
        self.by_metric = by_metric.into_iter().map(|(k, v)| (k, v.into())).collect();
        self.absent_seen = vec![None; rules.len()];
        self.agg_series = rules.iter().map(|_| HashMap::new()).collect();
        self.agg_due = vec![TimestampMs::MIN; rules.len()];
        self.by_name = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            self.by_name.entry(r.name.clone()).or_insert(i);
        }
        self.rules = rules;
    }

    /// Whether a rule in force has this name (a posted alert may not take it): looked up, not
    /// searched, as every alert of a post asks.
    pub fn has_rule(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The rule in force of this name.
    pub fn rule(&self, name: &str) -> Option<&Arc<Rule>> {
        self.by_name.get(name).map(|&i| &self.rules[i])
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Evaluations run since start (one per (rule, series) touched by a batch or a tick).
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Samples of replayed backlogs learned by dynamic baselines without being judged.
    pub fn learned_late(&self) -> u64 {
        self.learned_late
    }

    /// Swaps the rule set. Alerts of rules that remain keep their state; alerts of removed
    /// rules resolve, and so do those of a rule whose new expression no longer reads their
    /// series (a selector narrowed: `fstype!~"tmpfs"`) — at once, as Prometheus' next
    /// evaluation would, not when they go stale. Inputs of rules whose expression is unchanged
    /// are kept.
    pub fn replace_rules(&mut self, rules: Vec<Rule>, now: TimestampMs) -> Vec<Transition> {
        // Keyed by rule index; at worst a sample judged live is judged again when stored.
        self.judged_live.clear();
        let old_rules = std::mem::take(&mut self.rules);
        let mut old_leaves = std::mem::take(&mut self.leaves);
        let old_seen = std::mem::take(&mut self.absent_seen);
        let new: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        self.install(new);
        let index: HashMap<String, usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut same: HashMap<usize, usize> = HashMap::new();
        for (oi, old) in old_rules.iter().enumerate() {
            if let Some(&ni) = index.get(old.name.as_str()) {
                if self.rules[ni].expr_text == old.expr_text {
                    self.leaves[ni] = std::mem::take(&mut old_leaves[oi]);
                    self.absent_seen[ni] = old_seen[oi];
                    same.insert(oi, ni);
                }
            }
        }
        self.detectors = std::mem::take(&mut self.detectors)
            .into_iter()
            .filter_map(|((oi, k), d)| same.get(&oi).map(|&ni| ((ni, k), d)))
            .collect();
        self.bands = std::mem::take(&mut self.bands)
            .into_iter()
            .filter_map(|((oi, k), b)| same.get(&oi).map(|&ni| ((ni, k), b)))
            .collect();
        let mut out = Vec::new();
        let alerts = std::mem::take(&mut self.alerts);
        for ((oi, key), st) in alerts {
            let old = &old_rules[oi];
            match index.get(old.name.as_str()) {
                Some(&ni) if same.contains_key(&oi) || reads(&self.rules[ni], old, &st) => {
                    self.alerts.insert((ni, key), st);
                }
                Some(&ni) => {
                    let rule = Arc::clone(&self.rules[ni]);
                    let st = Arc::unwrap_or_clone(st);
                    if let Some(t) = self.resolve(&rule, st, now, Some("rule changed")) {
                        out.push(t);
                    }
                }
                None => {
                    let st = Arc::unwrap_or_clone(st);
                    if let Some(t) = self.resolve(old, st, now, Some("rule removed")) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// Loads persisted states; those of rules no longer loaded resolve at once.
    pub fn restore(&mut self, states: Vec<AlertState>, now: TimestampMs) -> Vec<Transition> {
        let mut out = Vec::new();
        for mut st in states {
            // Give every restored alert a full staleness window to hear from its series again.
            st.last_seen_ms = now;
            match self.by_name.get(&st.rule).copied() {
                Some(ri) => {
                    self.alerts.insert((ri, st.key), Arc::new(st));
                }
                None => {
                    let gone = Arc::new(placeholder_rule(&st.rule));
                    if let Some(t) = self.resolve(&gone, st, now, Some("rule removed")) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// Feeds a batch of samples; evaluates each touched (rule, series) once, on its newest
    /// sample, if that sample is fresh.
    pub fn ingest(&mut self, batch: &[SeriesSamples], now: TimestampMs) -> Vec<Transition> {
        self.ingest_sent(batch, now, false, 0)
    }

    /// Feeds a batch sent ahead of a replayed backlog, to alert on now; its samples are stored
    /// (and fed with `ingest`) when the replay reaches them. Each (rule, series) is judged
    /// without learning from the batch or keeping it, so that its baseline learns the backlog
    /// and then these samples in order, each once.
    pub fn ingest_live(&mut self, batch: &[SeriesSamples], now: TimestampMs) -> Vec<Transition> {
        self.ingest_sent(batch, now, true, 0)
    }

    /// As `ingest` (`live`: `ingest_live`), for a batch whose sender's clock reads
    /// `clock_offset_ms` off the collector's (its clock as it sent, less the collector's as the
    /// batch arrived): freshness is judged on the sender's clock, so that a host whose clock
    /// runs behind is judged like any other, rather than each of its samples taken for a
    /// replayed backlog and none judged. A backlog is old on any clock and stays unjudged.
    pub fn ingest_sent(
        &mut self,
        batch: &[SeriesSamples],
        now: TimestampMs,
        live: bool,
        clock_offset_ms: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let fresh_from = now.saturating_add(clock_offset_ms) - self.opts.stale_after_ms;
        // Rules over several series are evaluated once per batch, when all inputs are in; their
        // samples are taken in time order across inputs (a batch holds each series' samples in
        // turn), so that each instant of a backlog is joined, and learned, as it was.
        let mut touched: HashMap<(usize, u64), (Labels, TimestampMs)> = HashMap::new();
        let mut joined: Vec<(usize, u64, TimestampMs, usize, f64)> = Vec::new();
        for s in batch {
            let Some(name) = s.labels.metric_name() else {
                continue;
            };
            let Some(targets) = self.by_metric.get(name).map(Arc::clone) else {
                continue;
            };
            let mut key: Option<(Labels, u64)> = None;
            for &(ri, li) in targets.iter() {
                let leaf = &self.rules[ri].expr.leaves[li];
                if !leaf.selector.matches(&s.labels) {
                    continue;
                }
                if let Some(range) = self.rules[ri].expr.absent {
                    // Presence within the range is all an absence rule reads.
                    if s.samples.iter().any(|x| x.timestamp_ms >= now - range) {
                        if let Some(t) = self.present(ri, now) {
                            out.push(t);
                        }
                    }
                    continue;
                }
                let range = leaf.func.map(|(_, r)| r);
                let single = self.rules[ri].expr.leaves.len() == 1;
                let (kl, kfp) = key.get_or_insert_with(|| {
                    let l = s.labels.without_name();
                    let fp = l.fingerprint();
                    (l, fp)
                });
                let (kl, kfp) = (&*kl, *kfp);
                if self.rules[ri].expr.aggregates() {
                    // Kept for the rule's next evaluation on the clock (`aggregate`); a live
                    // sample's stored copy is not newer, and is not taken twice.
                    let rule = &self.rules[ri];
                    let series = self.agg_series[ri].entry(kfp).or_insert_with(|| {
                        let g = rule.expr.aggs[0].grouping.group(kl);
                        AggSeries {
                            group: (g.fingerprint(), Arc::new(g)),
                            clock_offset_ms,
                            host: kl.get("host").map(Box::from),
                            leaves: vec![LeafSeries::default(); rule.expr.leaves.len()],
                        }
                    });
                    series.clock_offset_ms = clock_offset_ms;
                    for x in &s.samples {
                        series.leaves[li].push(x.timestamp_ms, x.value, range);
                    }
                    continue;
                }
                if !single {
                    let ls = self.leaves[ri][li].entry(kfp).or_default();
                    let mut newest = None;
                    for x in &s.samples {
                        let ts = x.timestamp_ms;
                        if !live {
                            joined.push((ri, kfp, ts, li, x.value));
                            newest = newest.max(Some(ts));
                        } else if ls.push_live(ts, x.value, range) {
                            newest = newest.max(Some(ts));
                        }
                    }
                    if let Some(ts) = newest.filter(|&ts| ts >= fresh_from) {
                        let e = touched.entry((ri, kfp)).or_insert_with(|| (kl.clone(), ts));
                        e.1 = e.1.max(ts);
                    }
                    continue;
                }
                for x in &s.samples {
                    let ts = x.timestamp_ms;
                    let ls = self.leaves[ri][li].entry(kfp).or_default();
                    if live {
                        if !ls.push_live(ts, x.value, range) || ts < fresh_from {
                            continue;
                        }
                        if let Some(t) = self.judge_live(ri, kfp, kl, ts, now) {
                            out.push(t);
                        }
                        continue;
                    }
                    if !ls.push(ts, x.value, range) {
                        continue;
                    }
                    if ts < fresh_from || self.judged_live(ri, kfp, ts) {
                        // A replayed backlog, or the stored copy of a sample judged live: not
                        // judged (again), but a learned baseline takes it in, in order, so an
                        // outage leaves no hole in what it knows of the series.
                        self.learn(ri, kfp, ts);
                        continue;
                    }
                    // Each sample is one run: rules over one series see every one of them.
                    if let Some(t) = self.evaluate(ri, kfp, kl, ts, now) {
                        out.push(t);
                    }
                }
            }
        }
        if live {
            for ((ri, kfp), (key_labels, ts)) in touched {
                if let Some(t) = self.judge_live(ri, kfp, &key_labels, ts, now) {
                    out.push(t);
                }
            }
            return out;
        }
        // Rules over several series: instant by instant, oldest first.
        joined.sort_by_key(|&(ri, kfp, ts, li, _)| (ri, kfp, ts, li));
        let mut judge: HashMap<(usize, u64), TimestampMs> = HashMap::new();
        for instant in joined.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
            let (ri, kfp, ts) = (instant[0].0, instant[0].1, instant[0].2);
            let mut new = false;
            for &(_, _, _, li, v) in instant {
                let range = self.rules[ri].expr.leaves[li].func.map(|(_, r)| r);
                let ls = self.leaves[ri][li].entry(kfp).or_default();
                new |= ls.push(ts, v, range);
            }
            if !new {
                continue;
            }
            if ts < fresh_from || self.judged_live(ri, kfp, ts) {
                self.learn(ri, kfp, ts);
            } else {
                judge.insert((ri, kfp), ts);
            }
        }
        for ((ri, kfp), (key_labels, _)) in touched {
            if let Some(&ts) = judge.get(&(ri, kfp)) {
                if let Some(t) = self.evaluate(ri, kfp, &key_labels, ts, now) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Whether the stored sample at `ts` of (rule, series) was judged live already (it is
    /// learned then, not judged again); forgets the mark once the replay has passed it.
    fn judged_live(&mut self, ri: usize, kfp: u64, ts: TimestampMs) -> bool {
        match self.judged_live.get(&(ri, kfp)) {
            Some(&j) if ts >= j => {
                self.judged_live.remove(&(ri, kfp));
                ts == j
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Judges the live samples of (rule, series) as of `ts` (they are in its inputs' live
    /// samples): the alert steps as for any sample; the inputs and the learned baseline are
    /// left as they were, for the stored copies to be learned in order.
    fn judge_live(
        &mut self,
        ri: usize,
        kfp: u64,
        key_labels: &Labels,
        ts: TimestampMs,
        now: TimestampMs,
    ) -> Option<Transition> {
        let rule = Arc::clone(&self.rules[ri]);
        let mut kept = Vec::new();
        for (li, leaf) in rule.expr.leaves.iter().enumerate() {
            if let Some(ls) = self.leaves[ri][li].get_mut(&kfp) {
                let view = ls.with_live(leaf.func.map(|(_, r)| r));
                kept.push((li, std::mem::replace(ls, view)));
            }
        }
        let baseline = self.detectors.get(&(ri, kfp)).cloned();
        let t = self.evaluate(ri, kfp, key_labels, ts, now);
        for (li, ls) in kept {
            self.leaves[ri][li].insert(kfp, ls);
        }
        match baseline {
            Some(d) => self.detectors.insert((ri, kfp), d),
            None => self.detectors.remove(&(ri, kfp)),
        };
        self.judged_live.insert((ri, kfp), ts);
        t
    }

    /// The value of rule `ri`'s expression for series key `kfp` as of sample time `ts`; none
    /// while an input is missing or stale.
    fn value_at(&self, ri: usize, kfp: u64, ts: TimestampMs) -> Option<f64> {
        self.rules[ri].expr.eval(ts as f64 / 1000.0, &mut |li| {
            self.leaf_value(ri, li, kfp, ts)
        })
    }

    /// Leaf `li` of rule `ri` for series key `kfp` as of `ts` (on its sender's clock): its
    /// newest sample, or its function over its window; none when missing or stale.
    fn leaf_value(&self, ri: usize, li: usize, kfp: u64, ts: TimestampMs) -> Option<f64> {
        let ls = self.leaves[ri][li].get(&kfp)?;
        ls.value(
            &self.rules[ri].expr.leaves[li],
            ts,
            self.opts.stale_after_ms,
        )
    }

    /// Evaluates the rules that aggregate and are due: each series' inner value as of now
    /// (on its sender's clock, as samples are judged fresh), combined per group, and each
    /// group's value judged as one series' sample would be. Series silent for longer than
    /// the staleness window are in no group and forgotten; a group left without series has no
    /// value, and its alert resolves as stale.
    fn aggregate(&mut self, now: TimestampMs, out: &mut Vec<Transition>) {
        for ri in 0..self.rules.len() {
            let rule = Arc::clone(&self.rules[ri]);
            if !rule.expr.aggregates() || now < self.agg_due[ri] {
                continue;
            }
            self.agg_due[ri] = now.saturating_add(rule.interval_ms);
            let stale = self.opts.stale_after_ms;
            let time = now as f64 / 1000.0;
            let n = rule.expr.aggs.len();
            let mut groups: HashMap<u64, (Arc<Labels>, Vec<Accumulator>)> = HashMap::new();
            // One pass: a series silent past the staleness window is forgotten, the others
            // join their group.
            self.agg_series[ri].retain(|_, series| {
                let at = now.saturating_add(series.clock_offset_ms);
                let fresh = series
                    .leaves
                    .iter()
                    .any(|ls| ls.window.back().is_some_and(|b| at - b.0 <= stale));
                if !fresh {
                    return false;
                }
                for ai in 0..n {
                    let Some(v) = rule.expr.eval_inner(ai, time, &mut |li| {
                        series.leaves[li].value(&rule.expr.leaves[li], at, stale)
                    }) else {
                        continue;
                    };
                    let (gfp, labels) = &series.group;
                    groups
                        .entry(*gfp)
                        .or_insert_with(|| (Arc::clone(labels), vec![Accumulator::default(); n]))
                        .1[ai]
                        .add(v, rule.expr.aggs[ai].op.keeps_values());
                }
                true
            });
            for (gfp, (labels, mut acc)) in groups {
                let v = rule
                    .expr
                    .eval(time, &mut |ai| acc[ai].value(rule.expr.aggs[ai].op));
                if let Some(t) = v.and_then(|v| self.evaluate_value(ri, gfp, &labels, now, v, now))
                {
                    out.push(t);
                }
            }
        }
    }

    /// Scores `v` with the learned baseline of (rule, series) and learns from it; none outside
    /// dynamic rules and inside their excluded windows (which neither learn nor judge).
    fn detect(
        &mut self,
        ri: usize,
        kfp: u64,
        ts: TimestampMs,
        v: f64,
    ) -> Option<tocsin_baseline::Output> {
        let d = self.rules[ri].dynamic.as_ref()?;
        if d.exclude.iter().any(|e| e.contains(ts)) {
            return None;
        }
        let cfg = d.detector;
        let det = self
            .detectors
            .entry((ri, kfp))
            .or_insert_with(|| tocsin_baseline::Detector::new(cfg));
        Some(det.update(ts, v))
    }

    /// Learns a sample too old to be judged (one of a replayed backlog) into the baseline of
    /// a dynamic rule; nothing fires and the exported band stays the live one.
    fn learn(&mut self, ri: usize, kfp: u64, ts: TimestampMs) {
        if self.rules[ri].dynamic.is_none() {
            return;
        }
        if let Some(v) = self.value_at(ri, kfp, ts) {
            self.detect(ri, kfp, ts, v);
            self.learned_late += 1;
        }
    }

    /// Evaluates rule `ri` for series key `kfp` as of sample time `ts`, and steps its alert.
    fn evaluate(
        &mut self,
        ri: usize,
        kfp: u64,
        key_labels: &Labels,
        ts: TimestampMs,
        now: TimestampMs,
    ) -> Option<Transition> {
        let v = self.value_at(ri, kfp, ts)?;
        self.evaluate_value(ri, kfp, key_labels, ts, v, now)
    }

    /// Judges value `v` of rule `ri` for series key `kfp` at `ts`, and steps its alert.
    fn evaluate_value(
        &mut self,
        ri: usize,
        kfp: u64,
        key_labels: &Labels,
        ts: TimestampMs,
        v: f64,
        now: TimestampMs,
    ) -> Option<Transition> {
        let rule = Arc::clone(&self.rules[ri]);
        if rule.record {
            // A sample of the recorded series: the input's labels (a group's, for a rule over
            // a fleet) and the rule's, named by the rule.
            let mut labels = rule.labelled(key_labels);
            labels.set(tocsin_model::METRIC_NAME, rule.name.clone());
            self.evaluations += 1;
            self.recorded.push(SeriesSamples {
                labels,
                samples: vec![tocsin_model::Sample::new(ts, v)],
            });
            return None;
        }
        let judged = match &rule.dynamic {
            Some(d) => match self.detect(ri, kfp, ts, v) {
                None => Judgement::default(),
                Some(o) => {
                    let dev = v - o.expected;
                    let gated = match d.direction {
                        crate::rule::Direction::Up => dev <= 0.0,
                        crate::rule::Direction::Down => dev >= 0.0,
                        crate::rule::Direction::Both => false,
                    } || dev.abs() < d.min_abs_deviation
                        || dev.abs() < d.min_rel_deviation * o.expected.abs();
                    let band = [o.expected, o.lower, o.upper];
                    let full = [o.expected, o.lower, o.upper, v, o.score];
                    match self.bands.get_mut(&(ri, kfp)) {
                        Some(b) => b.1 = full,
                        None => {
                            self.bands.insert((ri, kfp), (key_labels.clone(), full));
                        }
                    }
                    Judgement {
                        score: if gated { 0.0 } else { o.score },
                        band: Some(band),
                        warming: o.warming,
                        cause: Some(o.cause.as_str()),
                    }
                }
            },
            None => Judgement::default(),
        };
        self.judge(ri, kfp, key_labels, v, judged, now)
    }

    /// Steps the alert of rule `ri` for series key `kfp` on value `v`, from fresh input.
    fn judge(
        &mut self,
        ri: usize,
        kfp: u64,
        key_labels: &Labels,
        v: f64,
        judged: Judgement,
        now: TimestampMs,
    ) -> Option<Transition> {
        let rule = Arc::clone(&self.rules[ri]);
        let Judgement {
            score,
            band,
            warming,
            cause,
        } = judged;
        self.evaluations += 1;
        if !self.alerts.contains_key(&(ri, kfp))
            && !rule
                .defined_levels()
                .any(|(_, spec)| spec.holds_for(v, score, warming, false))
        {
            // Nothing holds and nothing is remembered (the common case: a healthy series): no
            // state to create, step, persist and drop again.
            self.last_eval = Some(Evaluation {
                value: v,
                score,
                level: None,
            });
            return None;
        }
        let st = self.alerts.entry((ri, kfp)).or_insert_with(|| {
            let mut key = key_labels.clone();
            // `level` is tocsin's, set on delivery from the alert's level: a series' own is
            // kept as `exported_level` (as Prometheus keeps a target's clashing label), so it
            // neither reads as the alert's level nor matches a silence or route meant for it.
            if let Some(v) = key.remove("level") {
                key.set("exported_level", v);
            }
            let mut labels = rule.labelled(&key);
            labels.set("alertname", rule.name.clone());
            Arc::new(AlertState {
                rule: rule.name.clone(),
                key: kfp,
                labels,
                level: None,
                holding_since: [None; 3],
                holding_runs: [0; 3],
                active_at: None,
                level_since: None,
                value: v,
                last_seen_ms: now,
                annotations: BTreeMap::new(),
                changes: Vec::new(),
                flapping: false,
                last_level: None,
                score: 0.0,
                band: None,
                cause: None,
                warming: false,
            })
        });
        let st = Arc::make_mut(st);
        st.last_seen_ms = now;
        st.score = score;
        st.band = band;
        if st.cause.as_deref() != cause {
            st.cause = cause.map(str::to_string);
        }
        st.warming = warming;
        let t = self.step(ri, kfp, v, now, true);
        self.last_eval = Some(Evaluation {
            value: v,
            score,
            level: self.alerts.get(&(ri, kfp)).and_then(|a| a.level),
        });
        t
    }

    /// A sample of absence rule `ri`'s selector arrived: its alert, if any, resolves.
    fn present(&mut self, ri: usize, now: TimestampMs) -> Option<Transition> {
        self.absent_seen[ri] = Some(now);
        let kfp = self.rules[ri].expr.leaves[0]
            .selector
            .fixed_labels()
            .fingerprint();
        let st = Arc::unwrap_or_clone(self.alerts.remove(&(ri, kfp))?);
        let rule = Arc::clone(&self.rules[ri]);
        self.resolve(&rule, st, now, None)
    }

    /// Judges the absence rules: value 1 for each whose selector has had no sample for its
    /// range, and for each still absent since its alert began (a restored one included).
    fn absences(&mut self, now: TimestampMs, out: &mut Vec<Transition>) {
        for ri in 0..self.rules.len() {
            let Some(range) = self.rules[ri].expr.absent else {
                continue;
            };
            let seen = *self.absent_seen[ri].get_or_insert(now);
            let labels = self.rules[ri].expr.leaves[0].selector.fixed_labels();
            let kfp = labels.fingerprint();
            if now - seen > range || self.alerts.contains_key(&(ri, kfp)) {
                if let Some(t) = self.judge(ri, kfp, &labels, 1.0, Judgement::default(), now) {
                    out.push(t);
                }
            }
        }
    }

    /// Advances time: judges absences, fires pending alerts whose `for` has elapsed and
    /// resolves stale ones.
    pub fn tick(&mut self, now: TimestampMs) -> Vec<Transition> {
        let mut out = Vec::new();
        self.absences(now, &mut out);
        self.aggregate(now, &mut out);
        let keys: Vec<(usize, u64)> = self.alerts.keys().copied().collect();
        for k in keys {
            let st = &self.alerts[&k];
            if now - st.last_seen_ms > self.opts.stale_after_ms {
                out.extend(self.resolve_key(k, now, "stale"));
            } else {
                if st.level.is_none() || st.holding_since.iter().any(Option::is_some) {
                    let v = st.value;
                    if let Some(t) = self.step(k.0, k.1, v, now, false) {
                        out.push(t);
                    }
                }
                if let Some(t) = self.calm(k, now) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The values recording rules made since the last call, as samples to store (and to feed
    /// back, for rules that read recorded series).
    pub fn take_recorded(&mut self) -> Vec<SeriesSamples> {
        std::mem::take(&mut self.recorded)
    }

    /// Resolves every alert of `host` (its `host` label), reason `host removed`: a host taken
    /// out of service on purpose is not down, and none of its alerts is news any more.
    /// Its series leave the groups of the rules over a fleet at once (else they would count
    /// until they go stale).
    pub fn forget_host(&mut self, host: &str, now: TimestampMs) -> Vec<Transition> {
        for series in &mut self.agg_series {
            series.retain(|_, s| s.host.as_deref() != Some(host));
        }
        let keys: Vec<(usize, u64)> = self
            .alerts
            .iter()
            .filter(|(_, st)| st.labels.get("host") == Some(host))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.resolve_key(k, now, "host removed"))
            .collect()
    }

    /// Resolves the alert under `k` (of a rule in force) for `reason`, dropping its state.
    fn resolve_key(
        &mut self,
        k: (usize, u64),
        now: TimestampMs,
        reason: &'static str,
    ) -> Option<Transition> {
        let st = Arc::unwrap_or_clone(self.alerts.remove(&k)?);
        let rule = Arc::clone(&self.rules[k.0]);
        self.resolve(&rule, st, now, Some(reason))
    }

    /// Forgets old state changes; ends flapping once calm; drops what is no longer needed.
    fn calm(&mut self, k: (usize, u64), now: TimestampMs) -> Option<Transition> {
        let rule = Arc::clone(&self.rules[k.0]);
        let st = Arc::make_mut(self.alerts.get_mut(&k)?);
        let before = (st.changes.len(), st.flapping);
        let mut out = None;
        match rule.flapping {
            Some(f) => {
                st.changes.retain(|&t| now - t < f.window_ms);
                if st.flapping && st.changes.len() as u32 <= f.changes / 2 {
                    st.flapping = false;
                    let firing = st.level.is_some();
                    let kind = TransitionKind::FlappingEnded { firing };
                    let level = st.level.or(st.last_level)?;
                    out = Some(render(&rule, st, kind, level, now, None));
                }
            }
            None => {
                st.changes.clear();
                st.flapping = false;
            }
        }
        if !st.is_active() && st.changes.is_empty() && !st.flapping {
            let st = self.alerts.remove(&k).expect("present");
            self.changes.insert(st.storage_key(), None);
        } else if before != (st.changes.len(), st.flapping) {
            let st = st.clone();
            self.changes.insert(st.storage_key(), Some(st));
        }
        out
    }

    /// Runs the level state machine for one alert on value `v`; `fresh` when `v` comes from new
    /// input (counts as a run), not a re-check on the clock.
    fn step(
        &mut self,
        ri: usize,
        key: u64,
        v: f64,
        now: TimestampMs,
        fresh: bool,
    ) -> Option<Transition> {
        let rule = Arc::clone(&self.rules[ri]);
        let st = Arc::make_mut(self.alerts.get_mut(&(ri, key))?);
        let prev = st.level;
        let prev_holding = st.holding_since.map(|h| h.is_some());
        st.value = v;
        for (l, spec) in rule.defined_levels() {
            let active = prev.is_some_and(|p| p >= l);
            let i = l.index();
            if spec.holds_for(v, st.score, st.warming, active) {
                st.holding_since[i] = Some(st.holding_since[i].unwrap_or(now));
                if fresh {
                    st.holding_runs[i] = st.holding_runs[i].saturating_add(1);
                }
            } else {
                st.holding_since[i] = None;
                st.holding_runs[i] = 0;
            }
        }
        let new = rule
            .defined_levels()
            .rev()
            .find(|(l, spec)| match st.holding_since[l.index()] {
                Some(since) => {
                    prev.is_some_and(|p| p >= *l)
                        || (now - since >= spec.for_ms.unwrap_or(rule.for_ms)
                            && st.holding_runs[l.index()] >= spec.for_runs.unwrap_or(rule.for_runs))
                }
                None => false,
            })
            .map(|(l, _)| l);
        let changed = new != prev || prev_holding != st.holding_since.map(|h| h.is_some());
        let kind = match (prev, new) {
            (None, Some(_)) => {
                st.active_at = Some(now);
                st.level_since = Some(now);
                Some(TransitionKind::Firing)
            }
            (Some(a), Some(b)) if a != b => {
                st.level_since = Some(now);
                Some(TransitionKind::LevelChanged { from: a })
            }
            (Some(_), None) => Some(TransitionKind::Resolved),
            _ => None,
        };
        st.level = new;
        if new.is_some() {
            st.last_level = new;
        }
        let mut kind = kind;
        let mut changed = changed;
        if let (Some(_), Some(f)) = (kind, rule.flapping) {
            st.changes.retain(|&t| now - t < f.window_ms);
            st.changes.push(now);
            changed = true;
            if st.flapping {
                // Already announced: the state moves on quietly.
                kind = None;
            } else if st.changes.len() as u32 >= f.changes {
                st.flapping = true;
                kind = Some(TransitionKind::Flapping);
            }
        }
        let idle = !st.is_active() && st.changes.is_empty() && !st.flapping;
        let transition = kind.map(|k| {
            let level = new.or(prev).expect("a transition has a level");
            render(&rule, st, k, level, now, None)
        });
        if let Some(t) = &transition {
            st.annotations = t.annotations.clone();
        }
        if idle {
            let st = self.alerts.remove(&(ri, key)).expect("present");
            self.changes.insert(st.storage_key(), None);
        } else if changed {
            let st = st.clone();
            self.changes.insert(st.storage_key(), Some(st));
        }
        transition
    }

    fn resolve(
        &mut self,
        rule: &Rule,
        st: AlertState,
        now: TimestampMs,
        reason: Option<&'static str>,
    ) -> Option<Transition> {
        self.changes.insert(st.storage_key(), None);
        let level = st.level?;
        Some(render(
            rule,
            &st,
            TransitionKind::Resolved,
            level,
            now,
            reason,
        ))
    }

    /// A `firing` transition for each alert firing now whose labels and level `keep` accepts
    /// (flapping ones aside, whose notifications wait for the flapping to end), as of `now`:
    /// for receivers that did not hear of it when it fired (a silence or an inhibition held it
    /// back and has ended since). Only the alerts kept are rendered.
    pub fn firing(
        &self,
        now: TimestampMs,
        keep: impl Fn(&Labels, Level) -> bool,
    ) -> Vec<Transition> {
        self.alerts
            .iter()
            .filter(|(_, st)| !st.flapping)
            .filter_map(|(&(ri, _), st)| {
                let level = st.level.filter(|&l| keep(&st.labels, l))?;
                Some(render(
                    &self.rules[ri],
                    st,
                    TransitionKind::Firing,
                    level,
                    now,
                    None,
                ))
            })
            .collect()
    }

    /// State updates since the last call, to persist together with the batch that caused them.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changes)
            .into_iter()
            .map(|(key, state)| StateChange { key, state })
            .collect()
    }

    /// Learned baselines of dynamic rules, as `(key, state)` to persist.
    pub fn baselines(&self) -> Vec<(String, Vec<u8>)> {
        self.detectors
            .iter()
            .map(|((ri, k), d)| (storage_key(&self.rules[*ri].name, *k), d.to_bytes()))
            .collect()
    }

    /// Restores baselines saved by `baselines` (or, as JSON, by earlier versions); those of
    /// rules no longer loaded or no longer dynamic are dropped. Returns how many were restored,
    /// and the keys of those that could not be read, with why.
    pub fn restore_baselines(
        &mut self,
        items: Vec<(String, Vec<u8>)>,
    ) -> (usize, Vec<(String, String)>) {
        let index: HashMap<&str, usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.dynamic.is_some())
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let mut n = 0;
        let mut unreadable = Vec::new();
        for (key, data) in items {
            let Some((rule, k)) = key.rsplit_once('/') else {
                continue;
            };
            let (Some(&ri), Ok(k)) = (index.get(rule), u64::from_str_radix(k, 16)) else {
                continue;
            };
            let Some(dy) = &self.rules[ri].dynamic else {
                continue;
            };
            let read = if data.first() == Some(&b'{') {
                serde_json::from_slice::<tocsin_baseline::Detector>(&data)
                    .map_err(|e| e.to_string())
                    .and_then(|d| d.check().map(|()| d).map_err(|e| e.to_string()))
            } else {
                tocsin_baseline::Detector::from_bytes(&data, dy.detector).map_err(|e| e.to_string())
            };
            match read {
                Ok(mut d) => {
                    d.set_config(dy.detector);
                    self.detectors.insert((ri, k), d);
                    n += 1;
                }
                Err(e) => unreadable.push((key, e)),
            }
        }
        (n, unreadable)
    }

    /// The latest evaluation of any rule since the last call (backtests feed one series and
    /// read it per sample).
    pub fn take_last_evaluation(&mut self) -> Option<Evaluation> {
        self.last_eval.take()
    }

    /// The latest expected value and band of every series of every dynamic rule.
    /// Dynamic series: rule, labels, [expected, lower, upper, last value, anomaly score].
    pub fn bands(&self) -> impl Iterator<Item = (&str, &Labels, [f64; 5])> {
        self.bands
            .iter()
            .map(|((ri, _), (l, b))| (self.rules[*ri].name.as_str(), l, *b))
    }

    /// Alerts pending or firing now.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertState> {
        self.shared_alerts().map(|a| &**a)
    }

    /// The same, shared: a reader keeping them (the API's view) holds references, and the
    /// engine copies an alert only when it changes one still held.
    pub fn shared_alerts(&self) -> impl Iterator<Item = &Arc<AlertState>> {
        self.alerts.values().filter(|a| a.is_active())
    }
}

fn render(
    rule: &Rule,
    st: &AlertState,
    kind: TransitionKind,
    level: Level,
    now: TimestampMs,
    reason: Option<&'static str>,
) -> Transition {
    let threshold = rule
        .level(level)
        .map(|s| s.in_force(st.warming).when.to_string())
        .unwrap_or_default();
    let ctx = minijinja::context! {
        labels => st.labels.to_map(),
        host => st.labels.get("host").unwrap_or(""),
        value => st.value,
        level => level.as_str(),
        threshold => threshold.as_str(),
        rule => rule.name.as_str(),
        score => st.score,
        expected => st.band.map(|b| b[0]),
        lower => st.band.map(|b| b[1]),
        upper => st.band.map(|b| b[2]),
        cause => st.cause.as_deref(),
    };
    let env = minijinja::Environment::new();
    let annotations = rule
        .annotations
        .iter()
        .map(|(k, t)| {
            let text = env
                .render_str(t, &ctx)
                .unwrap_or_else(|e| format!("(template error: {e})"));
            (k.clone(), text)
        })
        .collect();
    Transition {
        kind,
        rule: rule.name.clone(),
        labels: st.labels.clone(),
        annotations,
        level,
        value: st.value,
        threshold,
        starts_at: st.active_at.unwrap_or(now),
        ends_at: (!kind.firing()).then_some(now),
        at: now,
        reason,
        external: false,
        generator_url: None,
    }
}

/// Stands in for a rule that no longer exists, so its alerts can be resolved and rendered.
fn placeholder_rule(name: &str) -> Rule {
    Rule {
        name: name.to_string(),
        source: String::new(),
        expr_text: String::new(),
        expr: crate::expr::parse("absent_rule").expect("valid"),
        levels: [None, None, None],
        for_ms: 0,
        for_runs: 1,
        flapping: None,
        dynamic: None,
        labels: Labels::new(),
        annotations: BTreeMap::new(),
        remediation: None,
        interval_ms: crate::rule::AGGREGATE_INTERVAL_MS,
        record: false,
    }
}

/// Whether `rule` may read the series an alert of `old` (the same rule before a reload) was
/// raised for: the alert's labels match every matcher of one of `rule`'s selectors. A matcher
/// on a label `old` sets itself (which hides the input's value) or on `alertname` cannot be
/// judged and counts as matching; an absence rule's alert is judged on the clock and kept.
fn reads(rule: &Rule, old: &Rule, st: &AlertState) -> bool {
    if rule.expr.absent.is_some() || old.expr.absent.is_some() {
        return true;
    }
    // An aggregation's alert is a group: kept while the groups are made alike (a group the
    // new expression no longer forms resolves as stale); else its labels name no series.
    if rule.expr.aggregates() || old.expr.aggregates() {
        let grouping = |r: &Rule| r.expr.aggs.first().map(|a| a.grouping.clone());
        return grouping(rule) == grouping(old);
    }
    let unknown = |name: &str| name == "alertname" || old.labels.get(name).is_some();
    rule.expr.leaves.iter().any(|leaf| {
        leaf.selector
            .matchers
            .iter()
            .all(|m| unknown(&m.name) || m.matches(st.labels.get(&m.name)))
    })
}
