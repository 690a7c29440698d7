//! Host liveness: when each host last sent anything, at what interval it samples, and from that
//! the derived series `tocsin_host_up{host}` (1 or 0), which rules judge like any other series
//! (the shipped `HostDown` rule fires on 0).

use std::collections::BTreeMap;

use tocsin_model::{Labels, Sample, SeriesSamples, TimestampMs, METRIC_NAME};
use tocsin_store::{Store, StoreError};

pub const UP_METRIC: &str = "tocsin_host_up";
pub const INTERVAL_METRIC: &str = "tocsin_agent_interval_seconds";
pub const CLOCK_METRIC: &str = "tocsin_host_clock_ahead_seconds";
/// Used when a host's interval is unknown (data from Prometheus or another sender).
const DEFAULT_INTERVAL_MS: i64 = 10_000;
/// The longest interval an agent may report: an agent (or anyone holding its token) claiming
/// a day would put off `HostDown` for three. Agents sample at most every few minutes.
pub const MAX_INTERVAL_MS: i64 = 600_000;
/// After a start, or after the store refused writes (a full disk), hosts not heard from since
/// get this long (or their down-after time, if longer) to report again before they are judged:
/// their agents back off while the collector is away or answers 503 (`collector.max_backoff`,
/// 30 s by default) and come back one by one, and the collector's trouble must not page for
/// every host of the fleet.
pub const RESTART_GRACE_MS: i64 = 60_000;
/// Hosts are judged every second; a judgement this much later than the last means the
/// collector stood still.
pub const STALL_MS: i64 = 10_000;
/// How far before a host's last sign of life its reported interval is looked for at a start.
const INTERVAL_LOOKBACK_MS: i64 = 3_600_000;

#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub host: String,
    pub last_seen: TimestampMs,
    pub interval_ms: Option<i64>,
    pub up: bool,
    /// How far ahead of the collector's clock the newest sample of its last request was
    /// (0 when not ahead); `None` before a request was seen.
    pub clock_ahead_ms: Option<i64>,
}

#[derive(Debug)]
pub struct Liveness {
    down_after_ms: Option<i64>,
    forget_after_ms: i64,
    /// When this collector started or last refused writes: a host not seen since is not judged
    /// before its grace.
    away_since: TimestampMs,
    /// The collector's last tick: its own progress. A tick far later than the one before
    /// means the collector itself stood still (SIGSTOP, a paused VM, a disk stall) while its
    /// agents' samples waited in its queue: that is no sign of their hosts.
    last_tick: Option<TimestampMs>,
    hosts: BTreeMap<String, HostView>,
}

impl Liveness {
    pub fn new(
        down_after_ms: Option<i64>,
        forget_after_ms: i64,
        known: Vec<(String, TimestampMs)>,
        started: TimestampMs,
    ) -> Self {
        let hosts = known
            .into_iter()
            .map(|(h, t)| {
                (
                    h.clone(),
                    HostView {
                        host: h,
                        last_seen: t,
                        interval_ms: None,
                        up: true,
                        clock_ahead_ms: None,
                    },
                )
            })
            .collect();
        Liveness {
            down_after_ms,
            forget_after_ms,
            away_since: started,
            last_tick: None,
            hosts,
        }
    }

    /// The collector's once-a-second tick, before hosts are judged: one far later than the
    /// last means it stood still, and, as after a restart, hosts get their grace to be heard
    /// again.
    pub fn tick(&mut self, now: TimestampMs) {
        if self.last_tick.is_some_and(|t| now - t > STALL_MS) {
            self.away(now);
        }
        self.last_tick = Some(now);
    }

    /// The collector could not take what agents sent (its store refused writes) at `now`.
    pub fn away(&mut self, now: TimestampMs) {
        self.away_since = self.away_since.max(now);
    }

    pub fn seen(&mut self, host: &str, t: TimestampMs) {
        match self.hosts.get_mut(host) {
            Some(h) => h.last_seen = h.last_seen.max(t),
            None => {
                self.hosts.insert(
                    host.to_string(),
                    HostView {
                        host: host.to_string(),
                        last_seen: t,
                        interval_ms: None,
                        up: true,
                        clock_ahead_ms: None,
                    },
                );
            }
        }
    }

    /// Notes how far ahead of `now` (arrival) the newest sample of each host in a request
    /// sent now (not forwarded, not a backlog) is. A clock behind cannot be told from a
    /// backlog by the data alone; a clock ahead makes a host's later, correct samples look
    /// out of order, so it is what is watched.
    pub fn observe_clock(&mut self, batch: &[SeriesSamples], now: TimestampMs) {
        let mut newest: BTreeMap<&str, TimestampMs> = BTreeMap::new();
        for s in batch {
            if let (Some(h), Some(last)) = (s.labels.get("host"), s.samples.last()) {
                let e = newest.entry(h).or_insert(i64::MIN);
                *e = (*e).max(last.timestamp_ms);
            }
        }
        for (h, t) in newest {
            if let Some(v) = self.hosts.get_mut(h) {
                v.clock_ahead_ms = Some((t - now).max(0));
            }
        }
    }

    /// Learns each agent's interval from the series it ships.
    pub fn observe(&mut self, batch: &[SeriesSamples]) {
        for s in batch {
            if s.labels.metric_name() != Some(INTERVAL_METRIC) {
                continue;
            }
            let (Some(host), Some(last)) = (s.labels.get("host"), s.samples.last()) else {
                continue;
            };
            if let Some(h) = self.hosts.get_mut(host) {
                if last.value.is_finite() && last.value > 0.0 {
                    h.interval_ms = Some(((last.value * 1000.0) as i64).min(MAX_INTERVAL_MS));
                }
            }
        }
    }

    /// The liveness of the hosts `store` knows, each with the interval its agent last reported:
    /// after a restart a host is judged by its own interval (an agent sampling every 2 minutes
    /// is not down after 30 s), not by the default, before it reports again.
    pub fn restore(
        store: &Store,
        down_after_ms: Option<i64>,
        forget_after_ms: i64,
        started: TimestampMs,
    ) -> Result<Self, StoreError> {
        let known = store.hosts()?;
        let seen: BTreeMap<&str, TimestampMs> =
            known.iter().map(|(h, t)| (h.as_str(), *t)).collect();
        let mut intervals = Vec::new();
        for (id, labels) in store.select(|l| l.metric_name() == Some(INTERVAL_METRIC)) {
            let Some(&t) = labels.get("host").and_then(|h| seen.get(h)) else {
                continue;
            };
            if let Some(&last) = store.query(id, t - INTERVAL_LOOKBACK_MS, t)?.last() {
                intervals.push(SeriesSamples {
                    labels,
                    samples: vec![last],
                });
            }
        }
        let mut l = Liveness::new(down_after_ms, forget_after_ms, known, started);
        l.observe(&intervals);
        Ok(l)
    }

    fn down_after(&self, h: &HostView) -> i64 {
        self.down_after_ms
            .unwrap_or_else(|| 3 * h.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS))
    }

    /// Judges every host at `now`: one `tocsin_host_up` sample each. Hosts silent for longer
    /// than `forget_after` are dropped; hosts not heard from since the start (or the store's
    /// last refusal) are left unjudged (no sample: their alerts keep their state) for a grace
    /// after it.
    pub fn judge(&mut self, now: TimestampMs) -> Vec<SeriesSamples> {
        let forget = self.forget_after_ms;
        self.hosts.retain(|_, h| now - h.last_seen <= forget);
        let downs: Vec<(String, bool)> = self
            .hosts
            .values()
            .filter(|h| {
                h.last_seen >= self.away_since
                    || now - self.away_since > RESTART_GRACE_MS.max(self.down_after(h))
            })
            .map(|h| (h.host.clone(), now - h.last_seen <= self.down_after(h)))
            .collect();
        let mut out = Vec::with_capacity(2 * downs.len());
        for (host, up) in downs {
            let ahead = self.hosts.get_mut(&host).and_then(|h| {
                h.up = up;
                h.clock_ahead_ms
            });
            let series = |name: &str, v: f64| SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, name), ("host", host.as_str())]),
                samples: vec![Sample::new(now, v)],
            };
            out.push(series(UP_METRIC, if up { 1.0 } else { 0.0 }));
            if let Some(a) = ahead {
                out.push(series(CLOCK_METRIC, a as f64 / 1000.0));
            }
        }
        out
    }

    pub fn view(&self) -> Vec<HostView> {
        self.hosts.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_three_intervals_and_forgotten_later() {
        let mut l = Liveness::new(None, 1_000_000, vec![("old".into(), 0)], 0);
        l.seen("a", 1_000_000);
        l.observe(&[SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, INTERVAL_METRIC), ("host", "a")]),
            samples: vec![Sample::new(1_000_000, 1.0)],
        }]);
        let up = |v: &[SeriesSamples], h: &str| {
            v.iter()
                .find(|s| s.labels.get("host") == Some(h))
                .map(|s| s.samples[0].value)
        };
        let j = l.judge(1_003_000);
        assert_eq!(up(&j, "a"), Some(1.0));
        assert_eq!(
            up(&j, "old"),
            None,
            "silent for longer than forget_after: forgotten"
        );
        assert_eq!(up(&l.judge(1_003_001), "a"), Some(0.0));
        assert!(!l.view()[0].up);
        l.seen("a", 1_004_000);
        assert_eq!(up(&l.judge(1_004_500), "a"), Some(1.0));
    }

    #[test]
    fn a_collector_that_stood_still_does_not_page_its_hosts() {
        let t0 = 10_000_000;
        let mut l = Liveness::new(None, 3_600_000, vec![], t0);
        let up =
            |v: Vec<SeriesSamples>| -> Vec<f64> { v.iter().map(|s| s.samples[0].value).collect() };
        for t in (1_000..=5_000).step_by(1_000) {
            l.seen("web", t0 + t);
            l.tick(t0 + t);
            assert_eq!(up(l.judge(t0 + t)), vec![1.0]);
        }
        // Frozen for 60 s (SIGSTOP): the first judgement after it comes before the queued
        // samples are taken in.
        let resumed = t0 + 65_000;
        l.tick(resumed);
        assert!(
            up(l.judge(resumed)).is_empty(),
            "not judged on stale knowledge"
        );
        l.seen("web", resumed + 500);
        assert_eq!(up(l.judge(resumed + 1_000)), vec![1.0]);
        // A host that really went away is judged once the grace is over.
        let mut t = resumed + 1_000;
        while t < resumed + RESTART_GRACE_MS + 40_000 {
            t += 1_000;
            l.tick(t);
        }
        assert_eq!(up(l.judge(t)), vec![0.0]);
    }

    #[test]
    fn a_clock_ahead_is_measured_from_arrival() {
        let t0 = 10_000_000;
        let mut l = Liveness::new(None, 3_600_000, vec![("a".into(), t0)], t0);
        let batch = |ts: i64| {
            vec![SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, "up"), ("host", "a")]),
                samples: vec![Sample::new(ts - 1_000, 1.0), Sample::new(ts, 1.0)],
            }]
        };
        let clock = |v: &[SeriesSamples]| {
            v.iter()
                .find(|s| s.labels.metric_name() == Some(CLOCK_METRIC))
                .map(|s| s.samples[0].value)
        };
        assert_eq!(clock(&l.judge(t0)), None, "nothing known yet");
        // An agent 300 s fast.
        l.observe_clock(&batch(t0 + 1_000 + 300_000), t0 + 1_000);
        l.seen("a", t0 + 1_000);
        assert_eq!(clock(&l.judge(t0 + 1_500)), Some(300.0));
        // Its clock set right (or a backlog of old samples): not ahead.
        l.observe_clock(&batch(t0 - 60_000), t0 + 2_000);
        assert_eq!(clock(&l.judge(t0 + 2_500)), Some(0.0));
    }

    #[test]
    fn a_huge_reported_interval_does_not_put_host_down_off() {
        let mut l = Liveness::new(None, 1_000_000_000, vec![], 0);
        l.seen("a", 1_000_000);
        l.observe(&[SeriesSamples {
            labels: Labels::from_pairs([(METRIC_NAME, INTERVAL_METRIC), ("host", "a")]),
            samples: vec![Sample::new(1_000_000, 86_400.0 * 365.0)],
        }]);
        assert_eq!(l.view()[0].interval_ms, Some(MAX_INTERVAL_MS));
        assert_eq!(
            l.judge(1_000_000 + 3 * MAX_INTERVAL_MS)[0].samples[0].value,
            1.0
        );
        assert_eq!(
            l.judge(1_000_001 + 3 * MAX_INTERVAL_MS)[0].samples[0].value,
            0.0
        );
    }

    #[test]
    fn a_restart_judges_known_hosts_by_the_interval_they_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tocsin.db");
        let start = tocsin_model::now_ms();
        let last = start - 10_000;
        {
            let mut store = Store::open(&path, Default::default()).unwrap();
            let mut txn = store.begin().unwrap();
            let mut batch: Vec<SeriesSamples> = [("slow", 120.0), ("fast", 10.0)]
                .into_iter()
                .map(|(h, secs)| SeriesSamples {
                    labels: Labels::from_pairs([(METRIC_NAME, INTERVAL_METRIC), ("host", h)]),
                    samples: vec![Sample::new(last - 120_000, 1.0), Sample::new(last, secs)],
                })
                .collect();
            txn.append(&mut batch, start).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path, Default::default()).unwrap();
        let mut l = Liveness::restore(&store, None, 3_600_000, start).unwrap();
        let intervals: Vec<_> = l.view().iter().map(|h| h.interval_ms).collect();
        assert_eq!(intervals, vec![Some(10_000), Some(120_000)]);
        // Past the grace, 70 s after their last batch: the 10 s agent has missed three beats,
        // the 2-minute one not even one.
        let judged: Vec<(String, f64)> = l
            .judge(start + RESTART_GRACE_MS + 1)
            .iter()
            .map(|s| {
                (
                    s.labels.get("host").unwrap().to_string(),
                    s.samples[0].value,
                )
            })
            .collect();
        assert_eq!(
            judged,
            vec![("fast".to_string(), 0.0), ("slow".to_string(), 1.0)]
        );
    }

    #[test]
    fn explicit_down_after_wins() {
        let mut l = Liveness::new(Some(500), 3_600_000, vec![], 0);
        l.seen("a", 0);
        assert_eq!(l.judge(501)[0].samples[0].value, 0.0);
    }

    #[test]
    fn hosts_get_a_grace_after_the_store_refused_writes() {
        let t0 = 10_000_000;
        let mut l = Liveness::new(None, 3_600_000, vec![], t0);
        l.seen("web", t0 + 1_000);
        l.seen("db", t0 + 1_000);
        let up =
            |v: Vec<SeriesSamples>| -> Vec<f64> { v.iter().map(|s| s.samples[0].value).collect() };
        assert_eq!(up(l.judge(t0 + 2_000)), vec![1.0, 1.0]);
        // A full disk from t0 + 5 s to t0 + 40 s: agents are answered 503 and back off.
        for t in (5_000..=40_000).step_by(1_000) {
            l.away(t0 + t);
            assert!(up(l.judge(t0 + t)).is_empty(), "at {t}");
        }
        // One host comes back and is judged again; the other, silent, only after the grace.
        l.seen("web", t0 + 45_000);
        assert_eq!(up(l.judge(t0 + 46_000)), vec![1.0]);
        assert_eq!(
            up(l.judge(t0 + 40_000 + RESTART_GRACE_MS + 1)),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn hosts_known_from_before_a_restart_get_a_grace() {
        let start = 10_000_000;
        // Two hosts last seen 5 minutes before the start; one reports again soon, one never.
        let known = vec![
            ("back".into(), start - 300_000),
            ("gone".into(), start - 300_000),
        ];
        let mut l = Liveness::new(None, 3_600_000, known, start);
        let judged = |v: &[SeriesSamples]| -> Vec<(String, f64)> {
            v.iter()
                .map(|s| {
                    (
                        s.labels.get("host").unwrap().to_string(),
                        s.samples[0].value,
                    )
                })
                .collect()
        };
        assert_eq!(judged(&l.judge(start + 1_000)), vec![]);
        l.seen("back", start + 20_000);
        assert_eq!(
            judged(&l.judge(start + 21_000)),
            vec![("back".to_string(), 1.0)]
        );
        assert_eq!(
            judged(&l.judge(start + RESTART_GRACE_MS + 1)),
            vec![("back".to_string(), 0.0), ("gone".to_string(), 0.0)]
        );
    }
}
