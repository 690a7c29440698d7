//! Closing the loop: the changes made to services and hosts (so an incident shows what changed
//! just before it), and what people said of the alerts they got (so rules are tuned on
//! evidence, not on the noisiest-rules list alone).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tocsin_model::TimestampMs;

use crate::Incident;

/// A change to a service: a deploy, a configuration change, infrastructure work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub id: i64,
    pub service: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// deploy, config, infra or other.
    pub kind: String,
    pub summary: String,
    pub by: String,
    #[serde(default)]
    pub link: Option<String>,
    pub start_ms: TimestampMs,
    #[serde(default)]
    pub end_ms: Option<TimestampMs>,
    /// The freeze it was made in, and why it went ahead (a warning, or an override's reason).
    #[serde(default)]
    pub freeze: Option<String>,
}

pub const CHANGE_KINDS: [&str; 4] = ["deploy", "config", "infra", "other"];

/// The series that marks each change at its start, for dashboards (value: the change's id).
pub const CHANGE_METRIC: &str = "tocsin_change";

/// The label that gives a late change's marker a series of its own (`Change::late_marker`).
const LATE_LABEL: &str = "change";

impl Change {
    /// Its marker: `tocsin_change{service, kind}` = its id, at its start.
    pub fn marker(&self, id: i64) -> tocsin_model::SeriesSamples {
        tocsin_model::SeriesSamples {
            labels: tocsin_model::Labels::from_pairs([
                (tocsin_model::METRIC_NAME, CHANGE_METRIC),
                ("service", self.service.as_str()),
                ("kind", self.kind.as_str()),
            ]),
            samples: vec![tocsin_model::Sample::new(self.start_ms, id as f64)],
        }
    }

    /// The marker of a change that starts before the newest marker of its service and kind
    /// (recorded late, or from pipelines that raced): a series of its own,
    /// `tocsin_change{service, kind, change="<id>"}`, as a series holds its samples in time
    /// order. An annotation query on `tocsin_change` shows both kinds.
    pub fn late_marker(&self, id: i64) -> tocsin_model::SeriesSamples {
        let mut m = self.marker(id);
        m.labels.set(LATE_LABEL, id.to_string());
        m
    }

    /// Whether it touched what the incident affects (one of its services or hosts) and
    /// started within `before_ms` before the incident opened, or while it was open.
    pub fn concerns(&self, i: &Incident, before_ms: i64, now: TimestampMs) -> bool {
        let touches =
            i.services.contains(&self.service) || self.hosts.iter().any(|h| i.hosts.contains(h));
        let until = i.resolved_at.unwrap_or(now);
        touches && self.start_ms >= i.opened_at - before_ms && self.start_ms <= until
    }
}

/// What someone said of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It told of something that needed doing.
    Useful,
    /// Nothing needed doing.
    Noise,
    /// Real, but at the wrong level (too loud or too quiet).
    WrongLevel,
    /// Told already by another alert.
    Duplicate,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Useful,
        Verdict::Noise,
        Verdict::WrongLevel,
        Verdict::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Useful => "useful",
            Verdict::Noise => "noise",
            Verdict::WrongLevel => "wrong_level",
            Verdict::Duplicate => "duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub incident: String,
    pub rule: String,
    pub verdict: Verdict,
    pub by: String,
    #[serde(default)]
    pub comment: String,
    pub at: TimestampMs,
}

/// One rule over a window: how often it fired, for how long, and what people said of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleReview {
    pub rule: String,
    pub fired: usize,
    /// Mean length of its firings that ended in the window, seconds.
    pub mean_firing_seconds: Option<f64>,
    pub feedback: BTreeMap<&'static str, usize>,
    /// Share of the verdicts that said useful.
    pub precision: Option<f64>,
    /// Share of the verdicts that said noise.
    pub noise_share: Option<f64>,
    /// Why it should be looked at, if it should.
    pub review: Option<String>,
}

/// Per rule, the firings of the incidents opened in [from, to) and the feedback given in it
/// (`feedback` already narrowed to the window), most fired first. A rule is to be reviewed
/// when at least half its verdicts say noise, when a third or more say it fires at the wrong
/// level or duplicates another, or when it fired five times or more and nobody called it
/// useful.
pub fn rule_review(
    incidents: &[Incident],
    feedback: &[Feedback],
    from: TimestampMs,
    to: TimestampMs,
) -> Vec<RuleReview> {
    let mut by_rule: BTreeMap<String, (RuleReview, Vec<i64>)> = BTreeMap::new();
    for i in incidents
        .iter()
        .filter(|i| (from..to).contains(&i.opened_at))
    {
        for a in i.alerts.values() {
            let (r, lengths) = by_rule.entry(a.rule.clone()).or_default();
            r.fired += a.spans.len();
            lengths.extend(a.spans.iter().filter_map(|(s, e)| e.map(|e| e - s)));
        }
    }
    for f in feedback {
        let (r, _) = by_rule.entry(f.rule.clone()).or_default();
        *r.feedback.entry(f.verdict.as_str()).or_default() += 1;
    }
    let mut out: Vec<RuleReview> = by_rule
        .into_iter()
        .map(|(rule, (mut r, lengths))| {
            r.rule = rule;
            r.mean_firing_seconds = (!lengths.is_empty())
                .then(|| lengths.iter().sum::<i64>() as f64 / lengths.len() as f64 / 1000.0);
            let n = |v: Verdict| r.feedback.get(v.as_str()).copied().unwrap_or(0);
            let total: usize = r.feedback.values().sum();
            if total > 0 {
                r.precision = Some(n(Verdict::Useful) as f64 / total as f64);
                r.noise_share = Some(n(Verdict::Noise) as f64 / total as f64);
            }
            let misplaced = n(Verdict::WrongLevel) + n(Verdict::Duplicate);
            r.review = if total > 0 && 2 * n(Verdict::Noise) >= total {
                Some(format!("{} of {total} said noise", n(Verdict::Noise)))
            } else if total > 0 && 3 * misplaced >= total {
                Some(format!(
                    "{misplaced} of {total} said wrong level or duplicate"
                ))
            } else if r.fired >= 5 && n(Verdict::Useful) == 0 {
                Some(format!("fired {} times, nobody called it useful", r.fired))
            } else {
                None
            };
            r
        })
        .collect();
    out.sort_by(|a, b| b.fired.cmp(&a.fired).then(a.rule.cmp(&b.rule)));
    out
}
