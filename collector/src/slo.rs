//! Service levels: each configured service with an objective keeps a record of its indicator
//! (`tocsin_service_probe_success_ratio{service}`, the share of its probes succeeding, every
//! tick; for a latency objective `tocsin_service_latency_ok_ratio{service}`, the share
//! answering successfully within its threshold) and derives every 10 s, labelled
//! `sli="availability"` or `sli="latency"`, the series its objective implies — budget left, burn rates,
//! and how far each of the workbook's alert conditions is from holding — which the shipped
//! rules (`rules/slo.yaml`) alert on. The records are saved at start, hourly and at stop; at start each is
//! read back and takes in the stored ratio series after it (or, not saved, is rebuilt from the
//! series over its period), so a restart loses nothing of the budget.

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

/// What `Slos::restore` did.
#[derive(Debug, Default)]
pub struct Restored {
    /// Indicator samples read from the store.
    pub read: usize,
    /// Records taken from their saved bytes.
    pub loaded: usize,
    /// Saved records not taken, and why (each rebuilt from the store instead).
    pub refused: Vec<(String, String)>,
}

/// A record's key among the saved ones: the service, then the indicator (the indicator's
/// names have no slash, so no two records share a key).
fn key(service: &str, sli: &str) -> String {
    format!("{service}/{sli}")
}

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

    /// Each record as saved at the last checkpoint, then what the store holds after its newest
    /// observation; a record not saved (or saved for another objective, or unreadable) rebuilt
    /// from the stored indicator over its objective's period, a day at a time.
    pub fn restore(&mut self, store: &Store, now: TimestampMs) -> Result<Restored, StoreError> {
        let mut saved: BTreeMap<String, Vec<u8>> = store.error_budgets()?.into_iter().collect();
        let mut out = Restored::default();
        for ((service, sli), tr) in &mut self.trackers {
            let key = key(service, sli);
            if let Some(bytes) = saved.remove(&key) {
                match Tracker::load(*tr.objective(), MAX_GAP_MS, &bytes) {
                    Ok(t) => {
                        *tr = t;
                        out.loaded += 1;
                    }
                    Err(e) => out.refused.push((key, e)),
                }
            }
            let metric = source(sli);
            let series = store
                .select(|l| l.metric_name() == Some(metric) && l.get("service") == Some(service));
            let Some((id, _)) = series.first() else {
                continue;
            };
            let day = tocsin_slo::DAY_MS;
            let mut from =
                (now - tr.objective().period_ms).max(tr.last().map_or(i64::MIN, |t| t + 1));
            while from <= now {
                let to = (from + day - 1).min(now);
                for s in store.query(*id, from, to)? {
                    tr.observe(s.timestamp_ms, s.value);
                    out.read += 1;
                }
                from += day;
            }
        }
        Ok(out)
    }

    /// Every record as bytes, by `service/indicator`, for the store to keep until the next
    /// checkpoint (`restore` reads them).
    pub fn save(&self) -> Vec<(String, Vec<u8>)> {
        self.trackers
            .iter()
            .map(|((service, sli), tr)| (key(service, sli), tr.save()))
            .collect()
    }

    /// Before a group commit: what is observed from here on can be undone.
    pub fn mark(&mut self) {
        self.trackers.values_mut().for_each(Tracker::mark);
    }

    /// After a group commit failed, the records hold a tick the store does not: forgets what
    /// was observed since the mark, exactly (rebuilding from the store took 50 ms per
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
            hosts: Vec::new(),
        }
    }

    /// A store in a directory that lives as long as the returned guard.
    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("t.db"),
            tocsin_store::StoreOptions::default(),
        )
        .unwrap();
        (dir, store)
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
        let (_dir, mut store) = temp_store();
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
    fn a_restart_takes_the_saved_records_then_only_what_came_after() {
        let (_dir, mut store) = temp_store();
        let t0 = tocsin_model::now_ms() - 3_600_000;
        // Stored and observed as they come: 20 minutes; from the 5th to the 7th, members down
        // and half of docs' probes failing.
        let mut live = Slos::new(&[service("members", Some(0.999)), service("docs", Some(0.99))]);
        let store_and_observe = |store: &mut Store, live: &mut Slos, from: i64, to: i64| {
            let mut batch: Vec<SeriesSamples> = (from..to)
                .flat_map(|i| {
                    let v = if (300..420).contains(&i) { 0.0 } else { 1.0 };
                    [
                        ratio("members", t0 + i * 1000, v),
                        ratio("docs", t0 + i * 1000, 0.5 + v / 2.0),
                    ]
                })
                .collect();
            live.observe(&batch);
            let mut tx = store.begin().unwrap();
            tx.append_derived(&mut batch, t0 + to * 1000).unwrap();
            tx.commit().unwrap();
        };
        store_and_observe(&mut store, &mut live, 0, 600);
        // A checkpoint saves the records; ten more minutes come before the collector stops.
        store.save_error_budgets(&live.save()).unwrap();
        store_and_observe(&mut store, &mut live, 600, 1_200);
        let now = t0 + 1_200_000;
        let mut restarted =
            Slos::new(&[service("members", Some(0.999)), service("docs", Some(0.99))]);
        let r = restarted.restore(&store, now).unwrap();
        assert_eq!((r.loaded, r.read), (2, 2 * 600), "{:?}", r.refused);
        // Exactly the records of a collector that never stopped.
        assert_eq!(restarted.save(), live.save());
        // Saved for another objective: refused and rebuilt from the whole period instead.
        let mut changed =
            Slos::new(&[service("members", Some(0.995)), service("docs", Some(0.99))]);
        let r = changed.restore(&store, now).unwrap();
        assert_eq!(r.loaded, 1);
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].0, "members/availability");
        assert_eq!(r.read, 1_200 + 600);
        let burn = |s: &Slos| {
            s.trackers
                .values()
                .map(|t| t.burn_rate(now, 3_600_000).unwrap())
                .collect::<Vec<_>>()
        };
        let (a, b) = (burn(&changed), burn(&live));
        // Members' 99.5 % allows five times the budget: a fifth of the burn rate.
        assert!((a[1] - b[1] / 5.0).abs() < 1e-9, "{a:?} {b:?}");
        assert_eq!(a[0], b[0]);
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
