//! Service health across probes: every probe whose series carry a `service` label counts
//! toward that service. Each tick derives `tocsin_service_probe_success_ratio{service}` (share
//! of the service's probes succeeding) and `tocsin_service_probes{service}`, so one rule tells a
//! partial outage (some probes down) from a complete one (all down).
//!
//! Recovery points: for the services given an `rpo`, the age of their newest backup — the
//! largest over their `file` probes (`probe_file_newest_age_seconds`, aged on since the
//! sample) — as `tocsin_service_backup_age_seconds{service}` beside
//! `tocsin_service_rpo_seconds{service}`; `RecoveryPointAtRisk` (rules/slo.yaml) compares them.

use std::collections::{BTreeMap, HashMap};

use tocsin_model::{Labels, Sample, SeriesSamples, TimestampMs, METRIC_NAME};

pub const RATIO_METRIC: &str = "tocsin_service_probe_success_ratio";
pub const COUNT_METRIC: &str = "tocsin_service_probes";
pub const LATENCY_RATIO_METRIC: &str = "tocsin_service_latency_ok_ratio";
pub const BACKUP_AGE_METRIC: &str = "tocsin_service_backup_age_seconds";
pub const RPO_METRIC: &str = "tocsin_service_rpo_seconds";
const BACKUP_AGE_SOURCE: &str = "probe_file_newest_age_seconds";

#[derive(Debug, Default)]
pub struct Services {
    /// service → probe series fingerprint → (collector time seen, success).
    latest: BTreeMap<String, HashMap<u64, (TimestampMs, bool)>>,
    /// Recovery point objective per service, seconds.
    rpo: BTreeMap<String, f64>,
    /// service → backup probe fingerprint → (collector time seen, age at the sample, sample time).
    backups: BTreeMap<String, HashMap<u64, (TimestampMs, f64, TimestampMs)>>,
    /// Latency threshold per service with a latency objective, seconds.
    latency: BTreeMap<String, f64>,
    /// service → probe (its labels but the name) → what was last seen of it.
    timed: BTreeMap<String, HashMap<u64, Timed>>,
    /// The services with `hosts`, by name: only the hosts they admit count; a service not
    /// here admits every host.
    admitting: BTreeMap<String, tocsin_config::services::ServiceConfig>,
    /// (service, host) pairs whose probes were refused, each told once; at most `TOLD_MAX`
    /// (a sender may make up host names: past that, refusals are only counted).
    told: std::collections::BTreeSet<(String, String)>,
}

/// The most (service, host) refusals remembered to be told once.
const TOLD_MAX: usize = 1024;

/// Probe series `Services::observe` did not count: the service does not admit their host.
#[derive(Debug, Default, PartialEq)]
pub struct Refused {
    /// Series refused.
    pub series: u64,
    /// (service, host) pairs refused for the first time, to be logged.
    pub new: Vec<(String, String)>,
}

/// A probe's latest result: (collector time seen, success, duration in seconds).
type Timed = (TimestampMs, Option<bool>, Option<f64>);

/// A probe's identity across its series: its labels but the metric name.
fn probe_key(l: &Labels) -> u64 {
    l.without_name().fingerprint()
}

impl Services {
    /// With the recovery point objectives and the latency thresholds (seconds) of the
    /// services that have them.
    pub fn new(rpo: BTreeMap<String, f64>, latency: BTreeMap<String, f64>) -> Services {
        Services {
            rpo,
            latency,
            ..Services::default()
        }
    }

    /// Only the hosts a service's `hosts` admit count toward it: any agent can put a `service`
    /// label on a probe, and a service's probes burn its error budget.
    pub fn with_hosts(mut self, services: &[tocsin_config::services::ServiceConfig]) -> Self {
        self.admitting = services
            .iter()
            .filter(|s| !s.hosts.is_empty())
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        self
    }

    pub fn observe(&mut self, batch: &[SeriesSamples], now: TimestampMs) -> Refused {
        let mut refused = Refused::default();
        for s in batch {
            let name = s.labels.metric_name();
            if !matches!(
                name,
                Some("probe_success" | "probe_duration_seconds" | BACKUP_AGE_SOURCE)
            ) {
                continue;
            }
            let (Some(service), Some(last)) = (s.labels.get("service"), s.samples.last()) else {
                continue;
            };
            let host = s.labels.get("host");
            if let Some(cfg) = self.admitting.get(service).filter(|c| !c.admits(host)) {
                refused.series += 1;
                let pair = (cfg.name.clone(), host.unwrap_or("").to_string());
                if self.told.len() < TOLD_MAX && self.told.insert(pair.clone()) {
                    refused.new.push(pair);
                }
                continue;
            }
            if name == Some(BACKUP_AGE_SOURCE) {
                if self.rpo.contains_key(service) && last.value.is_finite() {
                    self.backups
                        .entry(service.to_string())
                        .or_default()
                        .insert(s.labels.fingerprint(), (now, last.value, last.timestamp_ms));
                }
                continue;
            }
            let success = name == Some("probe_success");
            if self.latency.contains_key(service) {
                let e = self
                    .timed
                    .entry(service.to_string())
                    .or_default()
                    .entry(probe_key(&s.labels))
                    .or_insert((now, None, None));
                e.0 = now;
                if success {
                    e.1 = Some(last.value >= 1.0);
                } else {
                    e.2 = Some(last.value).filter(|v| v.is_finite());
                }
            }
            if success {
                self.latest
                    .entry(service.to_string())
                    .or_default()
                    .insert(s.labels.fingerprint(), (now, last.value >= 1.0));
            }
        }
        refused
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
        let latency = &self.latency;
        self.timed.retain(|service, probes| {
            probes.retain(|_, (t, _, _)| now - *t <= stale_ms);
            let Some(threshold) = latency.get(service) else {
                return false;
            };
            let judged: Vec<bool> = probes
                .values()
                .filter_map(|(_, ok, d)| {
                    let ok = (*ok)?;
                    Some(ok && d.is_some_and(|d| d <= *threshold))
                })
                .collect();
            if !judged.is_empty() {
                let good = judged.iter().filter(|x| **x).count();
                out.push(SeriesSamples {
                    labels: Labels::from_pairs([
                        (METRIC_NAME, LATENCY_RATIO_METRIC),
                        ("service", service.as_str()),
                    ]),
                    samples: vec![Sample::new(now, good as f64 / judged.len() as f64)],
                });
            }
            !probes.is_empty()
        });
        let rpo = &self.rpo;
        self.backups.retain(|service, probes| {
            probes.retain(|_, (t, _, _)| now - *t <= stale_ms);
            let Some(age) = probes
                .values()
                .map(|(_, age, at)| age + (now - at).max(0) as f64 / 1000.0)
                .reduce(f64::max)
            else {
                return false;
            };
            let series = |name: &str, v: f64| SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, name), ("service", service.as_str())]),
                samples: vec![Sample::new(now, v)],
            };
            out.push(series(BACKUP_AGE_METRIC, age));
            if let Some(r) = rpo.get(service) {
                out.push(series(RPO_METRIC, *r));
            }
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any agent can label a probe `service="shop"`: only the hosts the service admits count
    /// toward it, the others are counted as refused and told once per host.
    #[test]
    fn only_the_services_hosts_count_toward_it() {
        let raw: Vec<tocsin_config::services::RawService> =
            serde_yaml_ng::from_str("- { name: shop, hosts: [web-*] }\n").unwrap();
        let mut p = tocsin_config::Problems::default();
        let cfg = tocsin_config::services::validate_services(&mut p, raw);
        let mut s = Services::new(BTreeMap::new(), BTreeMap::new()).with_hosts(&cfg);
        let r = s.observe(
            &[probe("a", "web-1", true), probe("b", "laptop", false)],
            1000,
        );
        assert_eq!(
            r,
            Refused {
                series: 1,
                new: vec![("shop".into(), "laptop".into())],
            }
        );
        let r = s.observe(&[probe("b", "laptop", false)], 2000);
        assert_eq!((r.series, r.new.len()), (1, 0), "told once");
        let out = s.judge(2000, 60_000);
        let ratio = out
            .iter()
            .find(|x| x.labels.metric_name() == Some(RATIO_METRIC))
            .unwrap();
        assert_eq!(
            ratio.samples[0].value, 1.0,
            "the laptop's failure did not count"
        );
    }

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

    #[test]
    fn the_oldest_newest_backup_of_a_service_against_its_rpo() {
        let mut s = Services::new(
            BTreeMap::from([("shop".to_string(), 900.0)]),
            BTreeMap::new(),
        );
        let backup = |probe: &str, service: &str, age: f64, t: i64| SeriesSamples {
            labels: Labels::from_pairs([
                (METRIC_NAME, BACKUP_AGE_SOURCE),
                ("probe", probe),
                ("service", service),
            ]),
            samples: vec![Sample::new(t, age)],
        };
        s.observe(
            &[
                backup("wal", "shop", 60.0, 10_000),
                backup("dump", "shop", 600.0, 10_000),
                backup("other", "blog", 99_999.0, 10_000),
            ],
            10_000,
        );
        let v = s.judge(40_000, 60_000);
        let get = |name: &str| {
            v.iter()
                .find(|x| x.labels.metric_name() == Some(name))
                .map(|x| {
                    (
                        x.labels.get("service").unwrap().to_string(),
                        x.samples[0].value,
                    )
                })
        };
        // The dump, 600 s old at its sample, 30 s later.
        assert_eq!(get(BACKUP_AGE_METRIC), Some(("shop".into(), 630.0)));
        assert_eq!(get(RPO_METRIC), Some(("shop".into(), 900.0)));
        assert!(
            v.iter().all(|x| x.labels.get("service") == Some("shop")),
            "no rpo: not derived"
        );
        assert!(
            s.judge(200_000, 60_000).is_empty(),
            "stale probes no longer count"
        );
    }

    #[test]
    fn the_share_of_probes_answering_within_the_latency_threshold() {
        let mut s = Services::new(BTreeMap::new(), BTreeMap::from([("shop".to_string(), 0.5)]));
        let sample = |name: &str, probe: &str, v: f64| SeriesSamples {
            labels: Labels::from_pairs([
                (METRIC_NAME, name),
                ("probe", probe),
                ("host", "h1"),
                ("service", "shop"),
            ]),
            samples: vec![Sample::new(0, v)],
        };
        s.observe(
            &[
                sample("probe_success", "fast", 1.0),
                sample("probe_duration_seconds", "fast", 0.2),
                sample("probe_success", "slow", 1.0),
                sample("probe_duration_seconds", "slow", 1.5),
                sample("probe_success", "down", 0.0),
                sample("probe_duration_seconds", "down", 0.1),
            ],
            1000,
        );
        let v = s.judge(1000, 10_000);
        let lat = v
            .iter()
            .find(|x| x.labels.metric_name() == Some(LATENCY_RATIO_METRIC))
            .unwrap();
        // Fast and up: one of three (a failed probe is not within any threshold).
        assert!((lat.samples[0].value - 1.0 / 3.0).abs() < 1e-12);
        // The availability ratio is still derived beside it.
        let ok = v
            .iter()
            .find(|x| x.labels.metric_name() == Some(RATIO_METRIC))
            .unwrap();
        assert!((ok.samples[0].value - 2.0 / 3.0).abs() < 1e-12);
    }
}
