//! Service health across probes: every probe whose series carry a `service` label counts
//! toward that service. Each tick derives `tocsin_service_probe_success_ratio{service}` (share
//! of the service's probes succeeding) and `tocsin_service_probes{service}`, so one rule tells a
//! partial outage (some probes down) from a complete one (all down).

use std::collections::{BTreeMap, HashMap};

use tocsin_model::{Labels, Sample, SeriesSamples, TimestampMs, METRIC_NAME};

pub const RATIO_METRIC: &str = "tocsin_service_probe_success_ratio";
pub const COUNT_METRIC: &str = "tocsin_service_probes";

#[derive(Debug, Default)]
pub struct Services {
    /// service → probe series fingerprint → (collector time seen, success).
    latest: BTreeMap<String, HashMap<u64, (TimestampMs, bool)>>,
}

impl Services {
    pub fn observe(&mut self, batch: &[SeriesSamples], now: TimestampMs) {
        for s in batch {
            if s.labels.metric_name() != Some("probe_success") {
                continue;
            }
            let (Some(service), Some(last)) = (s.labels.get("service"), s.samples.last()) else {
                continue;
            };
            self.latest
                .entry(service.to_string())
                .or_default()
                .insert(s.labels.fingerprint(), (now, last.value >= 1.0));
        }
    }

    /// Derived series at `now`; probes silent for longer than `stale_ms` no longer count.
    pub fn judge(&mut self, now: TimestampMs, stale_ms: i64) -> Vec<SeriesSamples> {
        let mut out = Vec::new();
        self.latest.retain(|service, probes| {
            probes.retain(|_, (t, _)| now - *t <= stale_ms);
            if probes.is_empty() {
                return false;
            }
            let ok = probes.values().filter(|(_, s)| *s).count();
            let series = |name: &str, v: f64| SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, name), ("service", service.as_str())]),
                samples: vec![Sample::new(now, v)],
            };
            out.push(series(RATIO_METRIC, ok as f64 / probes.len() as f64));
            out.push(series(COUNT_METRIC, probes.len() as f64));
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(name: &str, host: &str, ok: bool) -> SeriesSamples {
        SeriesSamples {
            labels: Labels::from_pairs([
                (METRIC_NAME, "probe_success"),
                ("probe", name),
                ("host", host),
                ("service", "shop"),
            ]),
            samples: vec![Sample::new(0, if ok { 1.0 } else { 0.0 })],
        }
    }

    #[test]
    fn ratio_per_service_and_staleness() {
        let mut s = Services::default();
        s.observe(&[probe("a", "h1", true), probe("a", "h2", false)], 1000);
        s.observe(&[probe("b", "h1", true)], 5000);
        let v = s.judge(5000, 10_000);
        assert_eq!(v[0].labels.get("service"), Some("shop"));
        assert!((v[0].samples[0].value - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(v[1].samples[0].value, 3.0);
        // The first two probes go stale; only b remains.
        let v = s.judge(12_000, 10_000);
        assert_eq!(v[0].samples[0].value, 1.0);
        assert!(s.judge(100_000, 10_000).is_empty());
    }
}
