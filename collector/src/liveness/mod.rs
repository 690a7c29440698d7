//! Host liveness: when each host last sent anything, at what interval it samples, and from that
//! the derived series `tocsin_host_up{host}` (1 or 0), which rules judge like any other series
//! (the shipped `HostDown` rule fires on 0).

use std::collections::BTreeMap;

use tocsin_model::{Labels, Sample, SeriesSamples, TimestampMs, METRIC_NAME};
use tocsin_store::{Store, StoreError};

pub const UP_METRIC: &str = "tocsin_host_up";
pub const INTERVAL_METRIC: &str = "tocsin_agent_interval_seconds";
pub const CLOCK_METRIC: &str = "tocsin_host_clock_ahead_seconds";
pub const CLOCK_BEHIND_METRIC: &str = "tocsin_host_clock_behind_seconds";
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
    /// How far behind the collector's clock its agent's clock was as it sent its last request
    /// (0 when not behind); `None` until a sender that tells its clock was seen.
    pub clock_behind_ms: Option<i64>,
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
                        clock_behind_ms: None,
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
                        clock_behind_ms: None,
                    },
                );
            }
        }
    }

    /// Notes each host's clock from a request that arrived at `now` (not forwarded). With the
    /// sender's `offset` (its clock as it sent, less `now`: `SENT_AT_HEADER`), ahead and
    /// behind alike. Without it, how far ahead of `now` the newest sample is: a clock behind
    /// cannot be told from a backlog by the data alone. Both matter: a clock ahead makes the
    /// host's later, correct samples look out of order; one behind by more than `stale_after`
    /// makes every sample look like a backlog, learned but never judged — the host's alerts off.
    pub fn observe_clock(
        &mut self,
        batch: &[SeriesSamples],
        now: TimestampMs,
        offset: Option<i64>,
    ) {
        if let Some(off) = offset {
            let hosts: std::collections::BTreeSet<&str> =
                batch.iter().filter_map(|s| s.labels.get("host")).collect();
            for h in hosts {
                if let Some(v) = self.hosts.get_mut(h) {
                    v.clock_ahead_ms = Some(off.max(0));
                    v.clock_behind_ms = Some((-off).max(0));
                }
            }
            return;
        }
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

    /// Forgets `host` now (taken out of service): no more `tocsin_host_up` for it until it
    /// sends again. False when it was not known.
    pub fn forget(&mut self, host: &str) -> bool {
        self.hosts.remove(host).is_some()
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
        let mut out = Vec::with_capacity(3 * downs.len());
        for (host, up) in downs {
            let (ahead, behind) = self.hosts.get_mut(&host).map_or((None, None), |h| {
                h.up = up;
                (h.clock_ahead_ms, h.clock_behind_ms)
            });
            let series = |name: &str, v: f64| SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, name), ("host", host.as_str())]),
                samples: vec![Sample::new(now, v)],
            };
            out.push(series(UP_METRIC, if up { 1.0 } else { 0.0 }));
            if let Some(a) = ahead {
                out.push(series(CLOCK_METRIC, a as f64 / 1000.0));
            }
            if let Some(b) = behind {
                out.push(series(CLOCK_BEHIND_METRIC, b as f64 / 1000.0));
            }
        }
        out
    }

    pub fn view(&self) -> Vec<HostView> {
        self.hosts.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
