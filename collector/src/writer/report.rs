//! What the writer tells the outside after a change: counters, log lines, the API's view.

use std::collections::BTreeMap;
use std::sync::Arc;

use tocsin_alerting::Effects;
use tocsin_model::now_ms;
use tocsin_rules::{AlertState, Transition};
use tocsin_store::AppendStats;
use tracing::info;

use super::Writer;

impl Writer {
    /// Counts what a committed group decided.
    pub(super) fn count_effects(&self, fx: &Effects) {
        self.tel.silenced.inc_by(fx.silenced);
        self.tel.inhibited.inc_by(fx.inhibited);
        for kind in &fx.remediation {
            self.tel.remediation.with_label_values(&[kind]).inc();
        }
        for (kind, severity) in &fx.breaches {
            self.tel
                .deadline_breaches
                .with_label_values(&[kind, severity.as_str()])
                .inc();
        }
        for r in &fx.resolved {
            self.tel
                .incidents_resolved
                .with_label_values(&[&r.category, r.by])
                .inc();
            for (to, ms) in [
                ("ack", r.to_ack_ms),
                ("resolve", r.to_resolve_ms),
                ("remediate", r.to_remediate_ms),
            ] {
                if let Some(ms) = ms {
                    self.tel
                        .incident_seconds
                        .with_label_values(&[to, r.severity.as_str()])
                        .observe(ms as f64 / 1000.0);
                }
            }
        }
    }

    /// Refreshes the API's view after a committed change, before anyone is answered (who
    /// asked for a change reads it back): at once after a person's change (`asked`), after an
    /// automatic one when the last refresh is more than `VIEW_SHARE` times its cost ago, else
    /// later (with the next change or tick).
    pub(super) fn view_after_commit(&mut self, changed: bool, asked: bool) {
        if !(changed || asked || self.view_stale) {
            return;
        }
        if asked || self.view_refreshed.elapsed() >= self.view_cost * super::VIEW_SHARE {
            self.refresh_view(false);
        } else {
            self.view_stale = true;
        }
    }

    /// Logs and counts what changed; wakes the delivery workers when something was queued.
    pub(super) fn after_commit(&mut self, transitions: &[Transition], queued: usize) {
        if queued > 0 {
            self.wake.send_modify(|n| *n += 1);
        }
        for t in transitions {
            let kind = t.kind.as_str();
            self.tel.transitions.with_label_values(&[kind]).inc();
            info!(
                alert = %t.rule,
                labels = %t.labels,
                event = kind,
                level = %t.level,
                value = t.value,
                reason = t.reason.unwrap_or(""),
                "alert transition"
            );
        }
    }

    pub(super) fn count(&self, s: &AppendStats) {
        let c = |r: &str, n: usize| {
            if n > 0 {
                self.tel.samples.with_label_values(&[r]).inc_by(n as u64);
            }
        };
        c("accepted", s.accepted);
        c("out_of_order", s.out_of_order);
        c("too_far_in_future", s.too_far_in_future);
        c("over_series_limit", s.over_limit);
        if s.out_of_order > 0 || s.too_far_in_future > 0 {
            // Retries after a lost acknowledgement land here too: worth a debug line, not a warning.
            tracing::debug!(
                out_of_order = s.out_of_order,
                future = s.too_far_in_future,
                "samples not stored"
            );
        }
    }

    pub(super) fn refresh_view(&mut self, with_hosts: bool) {
        let started = std::time::Instant::now();
        self.fill_view(with_hosts);
        self.view_refreshed = std::time::Instant::now();
        self.view_cost = self.view_refreshed - started;
        self.tel
            .view_refresh_seconds
            .observe(self.view_cost.as_secs_f64());
        self.view_stale = false;
    }

    fn fill_view(&mut self, with_hosts: bool) {
        let alerts: Vec<Arc<AlertState>> = self
            .core
            .engine
            .shared_alerts()
            .chain(self.core.external.alerts().map(|a| a.shared_state()))
            .cloned()
            .collect();
        self.tel
            .external_firing
            .set(self.core.external.len() as i64);
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for a in &alerts {
            let state = if a.level.is_some() {
                "firing"
            } else {
                "pending"
            };
            let level = a.level.map(|l| l.as_str()).unwrap_or("");
            *counts.entry((state, level)).or_default() += 1;
        }
        self.tel.alerts.reset();
        for ((s, l), n) in counts {
            self.tel.alerts.with_label_values(&[s, l]).set(n);
        }
        self.tel.series.set(self.store.series_count() as i64);
        self.tel.head_samples.set(self.store.head_samples() as i64);
        let delta = self
            .core
            .engine
            .evaluations()
            .saturating_sub(self.tel.evaluations.get());
        self.tel.evaluations.inc_by(delta);
        let late = self
            .core
            .engine
            .learned_late()
            .saturating_sub(self.tel.learned_late.get());
        self.tel.learned_late.inc_by(late);
        let hosts = with_hosts.then(|| self.core.liveness.view());
        let bands = with_hosts.then(|| {
            self.core
                .engine
                .bands()
                .map(|(r, l, b)| (r.to_string(), l.clone(), b))
                .collect::<Vec<_>>()
        });
        let acks = self.core.pipeline.acks().clone();
        let now = now_ms();
        let firing: Vec<&AlertState> = alerts
            .iter()
            .map(|a| &**a)
            .filter(|a| a.level.is_some())
            .collect();
        let labels: Vec<&tocsin_model::Labels> = firing.iter().map(|a| &a.labels).collect();
        let held: BTreeMap<String, (Vec<i64>, Vec<String>)> = firing
            .iter()
            .zip(self.core.pipeline.held_back(&labels, now))
            .filter(|(_, (s, i))| !s.is_empty() || !i.is_empty())
            .map(|(a, h)| (format!("{:016x}", a.fingerprint()), h))
            .collect();
        let groups = self.core.pipeline.group_views();
        let rules = self.core.engine.rules().to_vec();
        let incidents: Vec<tocsin_incidents::Incident> =
            self.core.pipeline.incidents(now_ms()).cloned().collect();
        let actions: Vec<tocsin_remedy::Request> = self.core.pipeline.actions().cloned().collect();
        let open = incidents
            .iter()
            .filter(|i| i.state != tocsin_incidents::State::Resolved)
            .count();
        self.tel.incidents_open.set(open as i64);
        let mut v = self.view.write().unwrap_or_else(|p| p.into_inner());
        v.acks = acks;
        v.incidents = incidents;
        v.actions = actions;
        v.alerts = alerts;
        v.held = held;
        v.groups = groups;
        v.rules = rules;
        if let Some(h) = hosts {
            v.hosts = h;
        }
        if let Some(b) = bands {
            v.bands = b;
        }
    }
}
