//! Rules as the engine uses them, and their thresholds.

use std::collections::BTreeMap;
use std::fmt;

use tocsin_model::{Labels, Level};

use crate::expr::Compiled;

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `path:line` where the rule is defined.
    pub source: String,
    pub expr_text: String,
    pub expr: Compiled,
    /// Indexed by `Level::index()`; at least one is set.
    pub levels: [Option<LevelSpec>; 3],
    pub for_ms: i64,
    /// Consecutive evaluations (probe runs, samples) a level's condition must hold; 1 = any.
    pub for_runs: u32,
    /// Flapping detection; `None` when switched off.
    pub flapping: Option<Flapping>,
    /// Dynamic thresholds: levels judged on the anomaly score of a learned baseline.
    pub dynamic: Option<Dynamic>,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub remediation: Option<Remediation>,
    /// How often a rule that aggregates (`Compiled::aggregates`) is evaluated, on the clock;
    /// other rules run on each sample of their inputs.
    pub interval_ms: i64,
    /// A recording rule: its values are stored as series named `name` (with its labels), and
    /// it raises no alert.
    pub record: bool,
}

/// A rule that aggregates is evaluated this often unless it says (`interval`).
pub const AGGREGATE_INTERVAL_MS: i64 = 15_000;

/// Where a remediation parameter's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSource {
    /// Fixed in the rule.
    Value(String),
    /// The alert's label, only if it is one of `values`: labels are what agents send, and an
    /// agent (or whoever holds its token) must not choose what runs.
    Label { label: String, values: Vec<String> },
    /// A replica count: one `step` above the last count asked for (from `start`), never above
    /// `max` (a scale-out that has reached it is refused).
    Scale { start: u32, max: u32, step: u32 },
}

/// What to run when the alert fires, and the limits around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remediation {
    pub action: String,
    /// Run by the collector rather than the alert's agent.
    pub on_collector: bool,
    /// Action parameter → where its value comes from.
    pub params: BTreeMap<String, ParamSource>,
    pub level: Level,
    pub verify_within_ms: i64,
    pub cooldown_ms: i64,
    pub max_attempts: u32,
    pub window_ms: i64,
    pub breaker_after: u32,
    pub approval: bool,
    pub dry_run: bool,
}

impl Rule {
    /// A series' (or a group's) labels with the rule's own set over them.
    pub fn labelled(&self, key: &Labels) -> Labels {
        let mut labels = key.clone();
        for l in self.labels.iter() {
            labels.set(l.name.clone(), l.value.clone());
        }
        labels
    }

    pub fn level(&self, l: Level) -> Option<&LevelSpec> {
        self.levels[l.index()].as_ref()
    }

    pub fn defined_levels(&self) -> impl DoubleEndedIterator<Item = (Level, &LevelSpec)> {
        Level::ALL
            .into_iter()
            .filter_map(|l| self.level(l).map(|s| (l, s)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Both,
}

/// How a rule learns and judges each series' own normal.
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamic {
    pub detector: tocsin_baseline::DetectorConfig,
    pub direction: Direction,
    /// Deviations from the expected value smaller than this never fire.
    pub min_abs_deviation: f64,
    /// ... nor smaller than this share of the expected value.
    pub min_rel_deviation: f64,
    /// Times (deploys, maintenance) when the baseline neither learns nor judges.
    pub exclude: Vec<Exclusion>,
}

/// A time the baseline ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// Every week on some days between two times of day (UTC, at an offset or in a zone).
    Weekly(tocsin_clock::Window),
    /// Once, from `start_ms` to `end_ms`.
    Once { start_ms: i64, end_ms: i64 },
}

impl Exclusion {
    pub fn contains(&self, ts_ms: i64) -> bool {
        match self {
            Exclusion::Once { start_ms, end_ms } => (*start_ms..*end_ms).contains(&ts_ms),
            Exclusion::Weekly(w) => w.contains(ts_ms),
        }
    }
}

/// Anomaly-score cutoffs per level (warning, critical, emergency) for a sensitivity. A score s
/// stands for a tail probability of about 10^(-10·s): medium warns at 1 %, is critical at 0.01 %
/// and an emergency at one in a million.
pub fn score_cutoffs(sensitivity: &str) -> Option<[f64; 3]> {
    match sensitivity {
        "low" => Some([0.3, 0.5, 0.7]),
        "medium" => Some([0.2, 0.4, 0.6]),
        "high" => Some([0.15, 0.3, 0.5]),
        _ => None,
    }
}

/// An alert that changes state `changes` times within `window_ms` is flapping: notified once,
/// then quiet until it has changed at most half as often over a whole window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    pub changes: u32,
    pub window_ms: i64,
}

impl Default for Flapping {
    fn default() -> Self {
        Flapping {
            changes: 6,
            window_ms: 10 * 60 * 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LevelSpec {
    pub when: Condition,
    /// Hysteresis: once firing at this level it stays until this holds. `None`: until `when`
    /// no longer holds.
    pub recover: Option<Condition>,
    /// Overrides the rule's `for` for this level.
    pub for_ms: Option<i64>,
    /// Overrides the rule's `for_runs` for this level.
    pub for_runs: Option<u32>,
    /// Judged on the anomaly score of a dynamic rule instead of the value.
    pub on_score: bool,
    /// A dynamic level's static stand-in (`when` and `recover` on the value) while the
    /// series' baseline is still warming up; `None`: the level stays quiet until then.
    pub cold_start: Option<Box<LevelSpec>>,
}

impl LevelSpec {
    /// Whether the level's condition holds for value `v` with anomaly score `score` (`warming`:
    /// the baseline has too little history to score), given whether the alert already fires at
    /// or above it.
    pub fn holds_for(&self, v: f64, score: f64, warming: bool, active: bool) -> bool {
        match (self.on_score, warming, &self.cold_start) {
            (false, _, _) => self.holds(v, active),
            (true, false, _) => self.holds(score, active),
            (true, true, Some(c)) => c.holds(v, active),
            (true, true, None) => false,
        }
    }

    /// The condition in force: a dynamic level's static stand-in while its baseline warms up.
    pub fn in_force(&self, warming: bool) -> &LevelSpec {
        match &self.cold_start {
            Some(c) if self.on_score && warming => c,
            _ => self,
        }
    }

    pub fn holds(&self, v: f64, active: bool) -> bool {
        match (&self.recover, active) {
            (Some(r), true) => !r.holds(v),
            _ => self.when.holds(v),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    /// +1 for "above is bad", -1 for "below is bad", 0 for equality tests.
    pub fn direction(self) -> i8 {
        match self {
            CmpOp::Gt | CmpOp::Ge => 1,
            CmpOp::Lt | CmpOp::Le => -1,
            CmpOp::Eq | CmpOp::Ne => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: CmpOp,
    pub threshold: f64,
}

impl Condition {
    pub fn holds(&self, v: f64) -> bool {
        let t = self.threshold;
        match self.op {
            CmpOp::Gt => v > t,
            CmpOp::Ge => v >= t,
            CmpOp::Lt => v < t,
            CmpOp::Le => v <= t,
            CmpOp::Eq => v == t,
            CmpOp::Ne => v != t,
        }
    }

    /// Parses `"> 80"`, `">=0.9"`, `"== 0"`.
    pub fn parse(s: &str) -> Result<Condition, String> {
        let t = s.trim();
        let (op, rest) = [
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ]
        .iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r)))
        .ok_or_else(|| {
            format!(
                "condition {s:?} must start with one of >, >=, <, <=, ==, != followed by a number"
            )
        })?;
        let threshold: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("condition {s:?}: {:?} is not a number", rest.trim()))?;
        if !threshold.is_finite() {
            return Err(format!("condition {s:?}: threshold must be finite"));
        }
        Ok(Condition { op, threshold })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}
