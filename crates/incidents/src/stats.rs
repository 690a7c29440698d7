//! Statistics over the incidents of a window.

use std::collections::BTreeMap;

use serde::Serialize;
use tocsin_model::{Level, TimestampMs};

use crate::Incident;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub from: TimestampMs,
    pub to: TimestampMs,
    pub count: usize,
    pub by_category: BTreeMap<String, usize>,
    /// Incidents by outage kind: complete, partial, intermittent, degraded.
    #[serde(default)]
    pub by_outage: BTreeMap<String, usize>,
    pub by_host: BTreeMap<String, usize>,
    pub by_service: BTreeMap<String, usize>,
    /// Mean time to acknowledge / resolve / remediate, seconds, over the incidents that were.
    pub mtta_seconds: Option<f64>,
    pub mttr_seconds: Option<f64>,
    pub mean_time_to_remediate_seconds: Option<f64>,
    /// Share of the window each host was up (no `HostDown`), each service had no critical or
    /// worse alert firing: from the liveness and probe alerts the incidents hold.
    pub availability_host: BTreeMap<String, f64>,
    pub availability_service: BTreeMap<String, f64>,
    /// Rules by how many times they fired, most first.
    pub noisy_rules: Vec<(String, usize)>,
    /// Share of resolved incidents closed by remediation with nobody acknowledging.
    pub auto_remediated_share: Option<f64>,
    /// Per severity: how many incidents were acknowledged and resolved within their deadline.
    #[serde(default)]
    pub deadlines: BTreeMap<String, DeadlineStats>,
    /// Per service: incidents open past its recovery time objective.
    #[serde(default)]
    pub rto_breaches: BTreeMap<String, usize>,
    /// Incidents by recorded root-cause category (`unrecorded` where nobody said).
    #[serde(default)]
    pub by_cause: BTreeMap<String, usize>,
    /// Follow-up actions of the window's incidents, by state.
    #[serde(default)]
    pub follow_ups: BTreeMap<String, usize>,
}

/// Deadline compliance of one severity's incidents. An incident that resolved by itself
/// before its acknowledgement deadline needed no acknowledgement and counts in neither.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeadlineStats {
    pub incidents: usize,
    pub acked_in_time: usize,
    pub ack_missed: usize,
    pub resolved_in_time: usize,
    pub resolve_missed: usize,
    /// acked_in_time / (acked_in_time + ack_missed).
    pub response_rate: Option<f64>,
    /// resolved_in_time / (resolved_in_time + resolve_missed).
    pub resolution_rate: Option<f64>,
}

fn mean(v: impl Iterator<Item = i64>) -> Option<f64> {
    let v: Vec<i64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<i64>() as f64 / v.len() as f64 / 1000.0)
}

/// Total length of the union of `spans` clipped to [from, to).
fn covered(mut spans: Vec<(TimestampMs, TimestampMs)>, from: TimestampMs, to: TimestampMs) -> i64 {
    spans.sort();
    let mut total = 0;
    let mut cur: Option<(i64, i64)> = None;
    for (a, b) in spans {
        let (a, b) = (a.max(from), b.min(to));
        if a >= b {
            continue;
        }
        cur = match cur {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + cur.map_or(0, |(s, e)| e - s)
}

/// Statistics of the incidents opened in [from, to); downtime counts within the window.
pub fn stats(
    incidents: &[Incident],
    from: TimestampMs,
    to: TimestampMs,
    now: TimestampMs,
) -> Stats {
    let window: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.opened_at < to && i.resolved_at.unwrap_or(now) >= from)
        .collect();
    let opened: Vec<&&Incident> = window.iter().filter(|i| i.opened_at >= from).collect();
    let mut by_category = BTreeMap::new();
    let mut by_outage = BTreeMap::new();
    let mut by_host = BTreeMap::new();
    let mut by_service = BTreeMap::new();
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    for i in &opened {
        *by_category.entry(i.category.clone()).or_default() += 1;
        *by_outage.entry(i.outage.clone()).or_default() += 1;
        for h in &i.hosts {
            *by_host.entry(h.clone()).or_default() += 1;
        }
        for s in &i.services {
            *by_service.entry(s.clone()).or_default() += 1;
        }
        for a in i.alerts.values() {
            *rules.entry(a.rule.clone()).or_default() += a.spans.len();
        }
    }
    let mut host_down: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut service_down: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for i in &window {
        for h in &i.hosts {
            host_down.entry(h.clone()).or_default();
        }
        for s in &i.services {
            service_down.entry(s.clone()).or_default();
        }
        for a in i.alerts.values() {
            let spans = a.spans.iter().map(|(s, e)| (*s, e.unwrap_or(now)));
            if a.rule == "HostDown" {
                if let Some(h) = &a.host {
                    host_down
                        .entry(h.clone())
                        .or_default()
                        .extend(spans.clone());
                }
            }
            if a.level >= Level::Critical {
                if let Some(s) = &a.service {
                    service_down.entry(s.clone()).or_default().extend(spans);
                }
            }
        }
    }
    let len = (to - from).max(1) as f64;
    let avail = |m: BTreeMap<String, Vec<(i64, i64)>>| {
        m.into_iter()
            .map(|(k, v)| (k, 1.0 - covered(v, from, to) as f64 / len))
            .collect()
    };
    let mut noisy_rules: Vec<(String, usize)> = rules.into_iter().collect();
    noisy_rules.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    noisy_rules.truncate(10);
    let resolved: Vec<&&Incident> = opened
        .iter()
        .copied()
        .filter(|i| i.resolved_at.is_some())
        .collect();
    let auto = resolved
        .iter()
        .filter(|i| i.resolved_by.as_deref() == Some("remediation"))
        .count();
    let mut deadlines: BTreeMap<String, DeadlineStats> = BTreeMap::new();
    let mut rto_breaches: BTreeMap<String, usize> = BTreeMap::new();
    for i in &opened {
        let d = deadlines.entry(i.severity.to_string()).or_default();
        d.incidents += 1;
        if i.breaches.contains("ack") {
            d.ack_missed += 1;
        } else if i.acked_at.is_some() {
            d.acked_in_time += 1;
        }
        if i.breaches.contains("resolve") {
            d.resolve_missed += 1;
        } else if i.resolved_at.is_some() {
            d.resolved_in_time += 1;
        }
        for b in &i.breaches {
            if let Some(service) = b.strip_prefix("rto:") {
                *rto_breaches.entry(service.to_string()).or_default() += 1;
            }
        }
    }
    let mut by_cause: BTreeMap<String, usize> = BTreeMap::new();
    let mut follow_ups: BTreeMap<String, usize> = BTreeMap::new();
    for i in &opened {
        let c = i
            .root_cause
            .as_ref()
            .map_or("unrecorded", |c| c.category.as_str());
        *by_cause.entry(c.to_string()).or_default() += 1;
        for f in &i.follow_ups {
            *follow_ups.entry(f.state.clone()).or_default() += 1;
        }
    }
    let rate =
        |met: usize, missed: usize| (met + missed > 0).then(|| met as f64 / (met + missed) as f64);
    for d in deadlines.values_mut() {
        d.response_rate = rate(d.acked_in_time, d.ack_missed);
        d.resolution_rate = rate(d.resolved_in_time, d.resolve_missed);
    }
    Stats {
        from,
        to,
        count: opened.len(),
        by_category,
        by_outage,
        by_host,
        by_service,
        mtta_seconds: mean(opened.iter().filter_map(|i| i.time_to_ack_ms())),
        mttr_seconds: mean(opened.iter().filter_map(|i| i.time_to_resolve_ms())),
        mean_time_to_remediate_seconds: mean(
            opened.iter().filter_map(|i| i.time_to_remediate_ms()),
        ),
        availability_host: avail(host_down),
        availability_service: avail(service_down),
        noisy_rules,
        auto_remediated_share: (!resolved.is_empty()).then(|| auto as f64 / resolved.len() as f64),
        deadlines,
        rto_breaches,
        by_cause,
        follow_ups,
    }
}

#[cfg(test)]
mod tests {
    use super::covered;

    #[test]
    fn union_of_spans() {
        assert_eq!(covered(vec![(0, 10), (5, 20), (30, 40)], 0, 100), 30);
        assert_eq!(covered(vec![(0, 10), (5, 20), (30, 40)], 8, 35), 17);
        assert_eq!(covered(vec![], 0, 10), 0);
    }
}
