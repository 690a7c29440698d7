//! The collector's own metrics and the events that both log and count, so logs and metrics
//! never disagree.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tracing::warn;

#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub rejected: IntCounterVec,
    pub samples: IntCounterVec,
    pub commit_seconds: Histogram,
    /// Time to refresh the snapshot the API answers from (alerts, incidents, groups).
    pub view_refresh_seconds: Histogram,
    /// Time the rules' step on the clock took (rules over a fleet, pending and stale alerts).
    pub rule_tick_seconds: Histogram,
    pub series: IntGauge,
    pub head_samples: IntGauge,
    pub checkpoints: IntCounter,
    pub rules_loaded: IntGauge,
    pub rule_reloads: IntCounterVec,
    /// Configuration reloads by result (success, failure).
    pub config_reloads: IntCounterVec,
    /// 1 when the last configuration reload took (or none was asked for), else 0.
    pub config_reload_ok: IntGauge,
    /// When the configuration in force was taken (start or the last reload that took).
    pub config_reload_time: IntGauge,
    pub evaluations: IntCounter,
    /// Samples recording rules made, by outcome (stored, refused: not newer than the series'
    /// newest, or over a limit).
    pub recorded: IntCounterVec,
    pub learned_late: IntCounter,
    pub alerts: IntGaugeVec,
    pub transitions: IntCounterVec,
    pub storage_errors: IntCounter,
    /// Probe series carrying a service's label from a host its `hosts` do not admit.
    pub service_probes_refused: IntCounter,
    pub silenced: IntCounter,
    pub ack_refused: IntCounter,
    pub remediation: IntCounterVec,
    pub incidents_open: IntGauge,
    pub deadline_breaches: IntCounterVec,
    /// Change requests by outcome: recorded, recorded_in_freeze, refused, invalid.
    pub changes: IntCounterVec,
    /// Change markers by outcome: written, late, out_of_order, unreadable.
    pub change_markers: IntCounterVec,
    /// Feedback on alerts by verdict.
    pub feedback: IntCounterVec,
    pub tls_handshake_failures: IntCounter,
    pub incidents_resolved: IntCounterVec,
    /// Seconds from opening to acknowledged / resolved / remediated, by what it measures.
    pub incident_seconds: prometheus::HistogramVec,
    pub inhibited: IntCounter,
    pub denied: IntCounterVec,
    /// API requests refused for what they asked (4xx other than a credential's), by route and
    /// status code.
    pub refused: IntCounterVec,
    /// Query API requests by endpoint and outcome (success or Prometheus' error type).
    pub queries: IntCounterVec,
    pub query_seconds: prometheus::HistogramVec,
    /// When the writer last committed a group (it does every second, at least with its tick).
    pub last_commit: IntGauge,
    /// When a group last failed to commit.
    pub last_failed_commit: IntGauge,
    /// Calls of the heartbeat URL, by result: sent, failed, skipped (the collector unwell).
    pub heartbeats: IntCounterVec,
    /// Alerts posted from elsewhere, by what became of each: fired, renewed, resolved,
    /// ignored (a resolution of an alert not firing here), refused.
    pub external_alerts: IntCounterVec,
    /// Alerts posted from elsewhere firing now.
    pub external_firing: IntGauge,
}

use tocsin_runtime::register as reg;

impl Telemetry {
    pub fn new() -> Self {
        let r = Registry::new();
        let cv = |n: &str, h: &str, l: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(n, h), l).expect("valid metric"),
            )
        };
        let g = |n: &str, h: &str| reg(&r, IntGauge::new(n, h).expect("valid metric"));
        let t = Telemetry {
            requests: cv(
                "tocsin_ingest_requests_total",
                "Remote-write requests by HTTP status code.",
                &["code"],
            ),
            rejected: cv(
                "tocsin_ingest_rejected_requests_total",
                "Remote-write requests refused, by reason.",
                &["reason"],
            ),
            samples: cv(
                "tocsin_ingest_samples_total",
                "Samples received, by outcome (accepted, out_of_order, too_far_in_future, over_series_limit, reserved_name: a tocsin_* name the collector derives itself; live: sent ahead of a backlog for rule evaluation only, stored when the backlog reaches them).",
                &["result"],
            ),
            rule_tick_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tocsin_rule_tick_duration_seconds",
                        "Time the rules' step on the clock took, about once a second: rules over a fleet evaluated when due, pending alerts whose for has passed, stale ones resolved, absences.",
                    )
                    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid")),
                )
                .expect("valid metric"),
            ),
            commit_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tocsin_ingest_commit_duration_seconds",
                        "Time to make one group of write requests durable.",
                    )
                    .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid")),
                )
                .expect("valid metric"),
            ),
            view_refresh_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tocsin_api_view_refresh_duration_seconds",
                        "Time the writer spent refreshing the snapshot of alerts, incidents and notification groups the API answers from (after changes, at most a share of its time: the rest waits for the next change or tick).",
                    )
                    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 14).expect("valid")),
                )
                .expect("valid metric"),
            ),
            series: g("tocsin_storage_series", "Series known to the store."),
            head_samples: g(
                "tocsin_storage_head_samples",
                "Samples in the in-memory head, not yet in chunks.",
            ),
            checkpoints: reg(
                &r,
                IntCounter::new(
                    "tocsin_storage_checkpoints_total",
                    "Checkpoints of the head into chunks.",
                )
                .expect("valid metric"),
            ),
            storage_errors: reg(
                &r,
                IntCounter::new(
                    "tocsin_storage_errors_total",
                    "Failed storage transactions.",
                )
                .expect("valid metric"),
            ),
            service_probes_refused: reg(
                &r,
                IntCounter::new(
                    "tocsin_service_probes_refused_total",
                    "Probe series carrying a service label from a host the service's hosts do not admit: not counted toward it.",
                )
                .expect("valid metric"),
            ),
            inhibited: reg(
                &r,
                IntCounter::new(
                    "tocsin_notifications_inhibited_total",
                    "Notifications not sent because a firing alert inhibits them.",
                )
                .expect("valid metric"),
            ),
            silenced: reg(
                &r,
                IntCounter::new(
                    "tocsin_notifications_silenced_total",
                    "Notifications not sent because a silence matched.",
                )
                .expect("valid metric"),
            ),
            ack_refused: reg(
                &r,
                IntCounter::new(
                    "tocsin_ack_links_refused_total",
                    "Acknowledgement links refused: forged, malformed or expired.",
                )
                .expect("valid metric"),
            ),
            remediation: cv(
                "tocsin_remediation_events_total",
                "Remediation events by kind (requested, dispatched, succeeded, failed, verified, verify_failed, refused, skipped, breaker_open, lost, dry_run, …).",
                &["kind"],
            ),
            incidents_open: g("tocsin_incidents_open", "Incidents open or acknowledged."),
            changes: cv(
                "tocsin_change_requests_total",
                "Changes posted (POST /api/v1/changes, change add) by outcome: recorded, recorded_in_freeze, refused (by a freeze), invalid.",
                &["result"],
            ),
            change_markers: cv(
                "tocsin_change_markers_total",
                "Change markers (tocsin_change) by outcome: written (in the series of their service and kind), late (starting before that series' newest: in a series of their own, with a change label), out_of_order (not stored), unreadable (the change's row does not parse).",
                &["result"],
            ),
            feedback: cv(
                "tocsin_alert_feedback_total",
                "Feedback given on alerts, by verdict (useful, noise, wrong_level, duplicate).",
                &["verdict"],
            ),
            deadline_breaches: cv(
                "tocsin_incident_deadline_breaches_total",
                "Incidents past a deadline: not acknowledged or not resolved within their severity's deadline (kind=ack|resolve), open past a service's recovery time objective (kind=rto).",
                &["kind", "severity"],
            ),
            tls_handshake_failures: reg(
                &r,
                IntCounter::new(
                    "tocsin_tls_handshake_failures_total",
                    "TLS handshakes that failed or timed out (wrong CA, missing client certificate, plain HTTP on the TLS port).",
                )
                .expect("valid metric"),
            ),
            incidents_resolved: cv(
                "tocsin_incidents_resolved_total",
                "Incidents resolved, by category and by whom (auto, remediation, or a person).",
                &["category", "resolved_by"],
            ),
            incident_seconds: reg(
                &r,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "tocsin_incident_duration_seconds",
                        "Per resolved incident, by its severity: seconds from opening to acknowledgement (to=ack), to resolution (to=resolve) and to a verified remediation (to=remediate). MTTA and MTTR are sum/count.",
                    )
                    .buckets(vec![
                        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                        21600.0, 86400.0,
                    ]),
                    &["to", "severity"],
                )
                .expect("valid metric"),
            ),
            rules_loaded: g("tocsin_rules_loaded", "Rules currently loaded."),
            rule_reloads: cv(
                "tocsin_rule_reloads_total",
                "Rule reloads by result (success, failure).",
                &["result"],
            ),
            config_reloads: cv(
                "tocsin_config_reloads_total",
                "Configuration reloads (SIGHUP, POST /-/reload) by result (success, failure).",
                &["result"],
            ),
            config_reload_ok: g(
                "tocsin_config_last_reload_successful",
                "1 if the last configuration reload took (or none was asked for since the start), 0 if it was refused and the previous configuration stays in force.",
            ),
            config_reload_time: g(
                "tocsin_config_last_reload_success_timestamp_seconds",
                "When the configuration in force was taken: the start, or the last reload that took.",
            ),
            evaluations: reg(
                &r,
                IntCounter::new(
                    "tocsin_rule_evaluations_total",
                    "Rule evaluations of one series.",
                )
                .expect("valid metric"),
            ),
            recorded: cv(
                "tocsin_rule_recorded_samples_total",
                "Samples recording rules made, by result (stored; refused: not newer than their series' newest, or over a series limit).",
                &["result"],
            ),
            learned_late: reg(
                &r,
                IntCounter::new(
                    "tocsin_baseline_backlog_samples_total",
                    "Samples of a replayed backlog, too old to alert on, learned by the baselines of dynamic rules.",
                )
                .expect("valid metric"),
            ),
            alerts: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tocsin_alerts_active",
                        "Alerts by state (pending, firing) and level.",
                    ),
                    &["state", "level"],
                )
                .expect("valid metric"),
            ),
            transitions: cv(
                "tocsin_alert_transitions_total",
                "Alert transitions by kind (firing, level_changed, resolved).",
                &["kind"],
            ),
            denied: cv(
                "tocsin_api_denied_requests_total",
                "API requests refused for their credential, by reason (unauthorized: missing or wrong; disabled: no credential configured on a network listener).",
                &["reason"],
            ),
            refused: cv(
                "tocsin_api_refused_requests_total",
                "API requests answered with a client error for what they asked (a malformed parameter or body, an unknown id, a conflict), by route and status code; credentials refused are in tocsin_api_denied_requests_total.",
                &["route", "code"],
            ),
            queries: cv(
                "tocsin_query_requests_total",
                "Query API requests by endpoint and outcome (success, bad_data, execution, timeout, unavailable, internal).",
                &["endpoint", "result"],
            ),
            query_seconds: reg(
                &r,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "tocsin_query_duration_seconds",
                        "Time to answer a query API request, by endpoint.",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 4.0, 10).expect("valid")),
                    &["endpoint"],
                )
                .expect("valid metric"),
            ),
            last_commit: g(
                "tocsin_writer_last_commit_timestamp_seconds",
                "When the writer last committed to the database (Unix seconds): it does at least every second while it works.",
            ),
            last_failed_commit: g(
                "tocsin_writer_last_failed_commit_timestamp_seconds",
                "When a write to the database last failed (Unix seconds; 0: none since the start).",
            ),
            heartbeats: cv(
                "tocsin_heartbeat_total",
                "Calls of the heartbeat URL, by result: sent, failed (it did not answer 2xx), skipped (the collector has not committed for a while, so it does not say it works).",
                &["result"],
            ),
            external_alerts: cv(
                "tocsin_external_alerts_received_total",
                "Alerts posted to /api/v2/alerts, by what became of each: fired (new), renewed (firing, posted again), resolved, ignored (a resolution of an alert not firing here), refused (invalid, a rule's name, or beyond external_alerts.max_alerts).",
                &["result"],
            ),
            external_firing: reg(
                &r,
                IntGauge::new(
                    "tocsin_external_alerts_firing",
                    "Alerts posted from elsewhere firing now.",
                )
                .expect("valid metric"),
            ),
            registry: r,
        };
        // The configuration in force was taken at the start: no reload has been refused (read
        // by rules from the first own sample on, before any reload could run).
        t.config_reload_ok.set(1);
        t.config_reload_time.set(tocsin_model::now_ms() / 1000);
        t
    }

    /// A query API request answered: counted with its outcome and time; a failure also logged
    /// (a malformed query at debug level: dashboards being edited make many).
    pub fn query_done(
        &self,
        endpoint: &'static str,
        error: Option<(&'static str, &str)>,
        secs: f64,
    ) {
        let result = error.map_or("success", |e| e.0);
        self.queries.with_label_values(&[endpoint, result]).inc();
        self.query_seconds
            .with_label_values(&[endpoint])
            .observe(secs);
        match error {
            Some(("bad_data", msg)) => tracing::debug!(endpoint, error = msg, "query refused"),
            Some((kind, msg)) => warn!(endpoint, kind, error = msg, "query failed"),
            None => {}
        }
    }

    /// Counts a post of alerts from elsewhere (refusals also logged: the sender hears them
    /// in its answer, the operator here).
    pub fn count_external(&self, o: &tocsin_rules::external::PostOutcome) {
        for (result, n) in [
            ("fired", o.fired),
            ("renewed", o.renewed),
            ("resolved", o.resolved),
            ("ignored", o.ignored),
            ("refused", o.refused.len()),
        ] {
            if n > 0 {
                self.external_alerts
                    .with_label_values(&[result])
                    .inc_by(n as u64);
            }
        }
        // Bounded: one request may refuse thousands.
        let named = tocsin_rules::external::REASONS_NAMED;
        for r in o.refused.iter().take(named) {
            warn!(reason = %r, "alert posted from elsewhere refused");
        }
        if o.refused.len() > named {
            warn!(
                more = o.refused.len() - named,
                "more alerts posted from elsewhere refused in the same request"
            );
        }
    }

    /// An API request refused for its credential; the message names no secret.
    pub fn api_denied(&self, reason: &'static str, path: &str, detail: &str) {
        self.denied.with_label_values(&[reason]).inc();
        warn!(reason, path, detail, "API request refused");
    }

    pub fn api_refused(&self, method: &str, route: &str, code: u16, error: &str) {
        self.refused
            .with_label_values(&[route, &code.to_string()])
            .inc();
        warn!(
            method,
            route, code, error, "API request answered with a client error"
        );
    }

    /// A refused write request: one log line and one count.
    pub fn ingest_rejected(&self, reason: &'static str, detail: &str) {
        self.rejected.with_label_values(&[reason]).inc();
        warn!(reason, detail, "remote-write request rejected");
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
