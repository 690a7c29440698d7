//! Service levels: each configured service with an objective keeps a record of its indicator
//! (`tocsin_service_probe_success_ratio{service}`, the share of its probes succeeding, every
//! tick; for a latency objective `tocsin_service_latency_ok_ratio{service}`, the share
//! answering successfully within its threshold) and derives every 10 s, labelled
//! `sli="availability"` or `sli="latency"`, the series its objective implies — budget left, burn rates,
//! and how far each of the workbook's alert conditions is from holding — which the shipped
//! rules (`rules/slo.yaml`) alert on. At start the record is rebuilt from the stored ratio
//! series, so a restart loses nothing of the budget.

use std::collections::BTreeMap;

use tocsin_config::services::ServiceConfig;
use tocsin_model::{Labels, Sample, SeriesSamples, TimestampMs, METRIC_NAME};
use tocsin_slo::{window_label, Tracker, FINE_MS, WORKBOOK};
use tocsin_store::{Store, StoreError};

use crate::services::{LATENCY_RATIO_METRIC, RATIO_METRIC};

/// The indicators an objective can be on, and the derived series each is read from.
const INDICATORS: [(&str, &str); 2] = [
    ("availability", RATIO_METRIC),
    ("latency", LATENCY_RATIO_METRIC),
];

pub const OBJECTIVE_METRIC: &str = "tocsin_slo_objective";
pub const BUDGET_METRIC: &str = "tocsin_slo_error_budget_remaining";
pub const BURN_METRIC: &str = "tocsin_slo_burn_rate";
pub const CONDITION_METRIC: &str = "tocsin_slo_burn_condition";

/// The most one indicator sample stands for: a longer silence (the collector stopped, no
/// fresh probe) counts neither way beyond it.
const MAX_GAP_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct Slos {
    /// (service, indicator) → its record.
    trackers: BTreeMap<(String, &'static str), Tracker>,
    /// The 10-second step last derived.
    last_step: Option<i64>,
}

impl Slos {
    pub fn new(services: &[ServiceConfig]) -> Slos {
        Slos {
            trackers: services
                .iter()
                .flat_map(|s| {
                    [
                        s.objective.map(|o| ((s.name.clone(), INDICATORS[0].0), o)),
                        s.latency
                            .map(|l| ((s.name.clone(), INDICATORS[1].0), l.objective)),
                    ]
                })
                .flatten()
                .map(|(k, o)| (k, Tracker::new(o, MAX_GAP_MS)))
                .collect(),
            last_step: None,
        }
    }

    /// Rebuilds each record from the stored indicator over its objective's period, a day at
    /// a time. Returns the samples read.
    pub fn restore(&mut self, store: &Store, now: TimestampMs) -> Result<usize, StoreError> {
        let mut read = 0;
        for ((service, sli), tr) in &mut self.trackers {
            let metric = source(sli);
            let series = store
                .select(|l| l.metric_name() == Some(metric) && l.get("service") == Some(service));
            let Some((id, _)) = series.first() else {
                continue;
            };
            let day = tocsin_slo::DAY_MS;
            let mut from = now - tr.objective().period_ms;
            while from <= now {
                let to = (from + day - 1).min(now);
                for s in store.query(*id, from, to)? {
                    tr.observe(s.timestamp_ms, s.value);
                    read += 1;
                }
                from += day;
            }
        }
        Ok(read)
    }

    /// Before a group commit: what is observed from here on can be undone.
    pub fn mark(&mut self) {
        self.trackers.values_mut().for_each(Tracker::mark);
    }

    /// After a group commit failed, the records hold a tick the store does not: forgets what
    /// was observed since the mark, exactly (rebuilding from the store took 44 ms per
    /// objective: docs/BENCHMARKS.md).
    pub fn undo(&mut self) {
        self.trackers.values_mut().for_each(Tracker::undo);
    }

    /// Takes in the indicator samples among the series just derived.
    pub fn observe(&mut self, derived: &[SeriesSamples]) {
        for s in derived {
            let Some(sli) = INDICATORS
                .iter()
                .find(|(_, m)| s.labels.metric_name() == Some(*m))
                .map(|(i, _)| *i)
            else {
                continue;
            };
            let Some(tr) = s
                .labels
                .get("service")
                .and_then(|n| self.trackers.get_mut(&(n.to_string(), sli)))
            else {
                continue;
            };
            for x in &s.samples {
                tr.observe(x.timestamp_ms, x.value);
            }
        }
    }

    /// Once per 10-second step: per service, its objective, the budget left, the burn rate of
    /// every window, and each condition's ratio to its threshold (at 1 or more it holds).
    pub fn judge(&mut self, now: TimestampMs) -> Vec<SeriesSamples> {
        let step = now.div_euclid(FINE_MS);
        if self.last_step == Some(step) {
            return Vec::new();
        }
        self.last_step = Some(step);
        let mut out = Vec::new();
        for ((service, sli), tr) in &self.trackers {
            let obj = *tr.objective();
            let mut push = |name: &str, extra: Option<(&str, &str)>, v: Option<f64>| {
                let Some(v) = v else { return };
                let mut pairs = vec![
                    (METRIC_NAME, name),
                    ("service", service.as_str()),
                    ("sli", sli),
                ];
                pairs.extend(extra);
                out.push(SeriesSamples {
                    labels: Labels::from_pairs(pairs),
                    samples: vec![Sample::new(now, v)],
                });
            };
            push(OBJECTIVE_METRIC, None, Some(obj.target));
            push(BUDGET_METRIC, None, tr.budget_remaining(now));
            for w in tocsin_slo::windows(&obj) {
                push(
                    BURN_METRIC,
                    Some(("window", &window_label(w))),
                    tr.burn_rate(now, w),
                );
            }
            for a in &WORKBOOK {
                push(
                    CONDITION_METRIC,
                    Some(("speed", a.speed.as_str())),
                    tr.alert_ratio(now, a),
                );
            }
        }
        out
    }
}

/// The derived series an indicator is read from.
fn source(sli: &str) -> &'static str {
    INDICATORS
        .iter()
        .find(|(i, _)| *i == sli)
        .map_or(RATIO_METRIC, |(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, objective: Option<f64>) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            owner: None,
            objective: objective
                .map(|o| tocsin_slo::Objective::new(o, 30 * tocsin_slo::DAY_MS).unwrap()),
            rto: None,
            rpo: None,
            impact: None,
            latency: None,
        }
    }

    fn ratio(service: &str, t: TimestampMs, v: f64) -> SeriesSamples {
        SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, RATIO_METRIC), ("service", service)]),
            samples: vec![Sample::new(t, v)],
        }
    }

    fn value(out: &[SeriesSamples], name: &str, extra: Option<(&str, &str)>) -> f64 {
        out.iter()
            .find(|s| {
                s.labels.metric_name() == Some(name)
                    && extra.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
            })
            .unwrap_or_else(|| panic!("{name} {extra:?}"))
            .samples[0]
            .value
    }

    #[test]
    fn a_service_down_burns_its_budget_and_meets_the_fast_condition() {
        let mut s = Slos::new(&[service("members", Some(0.999)), service("docs", None)]);
        let t0 = 1_800_000_000_000;
        for i in 0..600 {
            s.observe(&[ratio("members", t0 + i * 1000, 1.0), ratio("docs", t0, 0.0)]);
        }
        let up = s.judge(t0 + 599_000);
        assert_eq!(value(&up, BUDGET_METRIC, None), 1.0);
        assert_eq!(value(&up, CONDITION_METRIC, Some(("speed", "fast"))), 0.0);
        assert!(
            up.iter()
                .all(|x| x.labels.get("service") == Some("members")),
            "no objective, no series"
        );
        // One minute down after ten up.
        for i in 600..660 {
            s.observe(&[ratio("members", t0 + i * 1000, 0.0)]);
        }
        assert!(s.judge(t0 + 599_500).is_empty(), "once per 10-second step");
        let down = s.judge(t0 + 659_000);
        let burn_1h = value(&down, BURN_METRIC, Some(("window", "1h")));
        assert!((burn_1h - 60.0 / 659.0 * 1000.0).abs() < 1.0, "{burn_1h}");
        assert!(value(&down, CONDITION_METRIC, Some(("speed", "fast"))) >= 1.0);
        assert!(down
            .iter()
            .all(|x| x.labels.get("sli") == Some("availability")));
        // A minute of the 43.2 the month allows.
        let left = value(&down, BUDGET_METRIC, None);
        assert!((left - (1.0 - 60.0 / 2592.0)).abs() < 1e-3, "{left}");
    }

    #[test]
    fn an_undo_forgets_what_the_store_does_not_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(
            &dir.path().join("t.db"),
            tocsin_store::StoreOptions::default(),
        )
        .unwrap();
        let t0 = tocsin_model::now_ms() - 600_000;
        // Stored: a minute up, then a minute down.
        let mut stored: Vec<SeriesSamples> = (0..120)
            .map(|i| ratio("members", t0 + i * 1000, if i < 60 { 1.0 } else { 0.0 }))
            .collect();
        let mut tx = store.begin().unwrap();
        tx.append_derived(&mut stored, t0 + 120_000).unwrap();
        tx.commit().unwrap();
        let mut s = Slos::new(&[service("members", Some(0.999))]);
        s.restore(&store, t0 + 120_000).unwrap();
        let burn = |s: &Slos| {
            s.trackers
                .values()
                .next()
                .unwrap()
                .burn_rate(t0 + 180_000, 3_600_000)
        };
        let before = burn(&s);
        // Another minute down observed, whose commit failed: the undo forgets it, and the
        // record is the one a restart would rebuild from the store.
        s.mark();
        for i in 120..180 {
            s.observe(&[ratio("members", t0 + i * 1000, 0.0)]);
        }
        assert!(burn(&s) > before);
        s.undo();
        assert_eq!(burn(&s), before);
        let mut rebuilt = Slos::new(&[service("members", Some(0.999))]);
        rebuilt.restore(&store, t0 + 180_000).unwrap();
        assert_eq!(burn(&rebuilt), before);
    }

    #[test]
    fn a_latency_objective_keeps_its_own_record() {
        let mut svc = service("members", None);
        svc.latency = Some(tocsin_config::services::LatencyObjective {
            threshold: 0.5,
            objective: tocsin_slo::Objective::new(0.99, 30 * tocsin_slo::DAY_MS).unwrap(),
        });
        let mut s = Slos::new(&[svc]);
        let t0 = 1_800_000_000_000;
        let lat = |t: i64, v: f64| SeriesSamples {
            labels: Labels::from_pairs([
                (METRIC_NAME, crate::services::LATENCY_RATIO_METRIC),
                ("service", "members"),
            ]),
            samples: vec![Sample::new(t, v)],
        };
        for i in 0..120 {
            // Slow half the time: 50 % bad against a 1 % budget.
            s.observe(&[
                lat(t0 + i * 1000, if i >= 60 { 0.0 } else { 1.0 }),
                ratio("members", t0, 0.0),
            ]);
        }
        let out = s.judge(t0 + 119_000);
        assert!(
            out.iter().all(|x| x.labels.get("sli") == Some("latency")),
            "no availability objective"
        );
        let burn = value(&out, BURN_METRIC, Some(("window", "5m")));
        assert!((burn - 60.0 / 119.0 / 0.01).abs() < 1.0, "{burn}");
    }
}
