//! From the file's structs to the collector's configuration: one small validator per section,
//! every problem collected, defaults from [`super::defaults`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::defaults as d;
use super::*;
use crate::{ConfigError, Problems};

impl RawCollectorConfig {
    pub fn validate(self) -> Result<CollectorConfig, ConfigError> {
        let mut p = Problems::default();
        let listen = p
            .take(
                "listen",
                self.listen
                    .as_deref()
                    .unwrap_or(d::LISTEN)
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("{e}, expected HOST:PORT such as 127.0.0.1:9760")),
            )
            .unwrap_or_else(|| d::LISTEN.parse().expect("valid default"));
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from(d::DATA_DIR));
        let rules = if self.rules.is_empty() {
            vec![PathBuf::from(d::RULES)]
        } else {
            self.rules
        };
        let retention = p.duration("retention", self.retention.as_deref(), d::RETENTION);
        if retention < Duration::from_secs(3600) {
            p.push("retention: must be at least 1h");
        }
        let second = Duration::from_secs(1);
        let checkpoint_interval = p.duration_min(
            "checkpoint_interval",
            self.checkpoint_interval.as_deref(),
            d::CHECKPOINT_INTERVAL,
            second,
        );
        let stale_after = p.duration_min(
            "stale_after",
            self.stale_after.as_deref(),
            d::STALE_AFTER,
            second,
        );
        let host_down_after = self
            .host_down_after
            .as_deref()
            .map(|s| p.duration_min("host_down_after", Some(s), s, second));
        let host_forget_after = p.duration_min(
            "host_forget_after",
            self.host_forget_after.as_deref(),
            d::HOST_FORGET_AFTER,
            Duration::from_secs(60),
        );
        let storage_alert_after = Some(p.duration(
            "storage_alert_after",
            self.storage_alert_after.as_deref(),
            d::STORAGE_ALERT_AFTER,
        ))
        .filter(|d| !d.is_zero());
        let external_url = self
            .external_url
            .unwrap_or_else(|| format!("http://{listen}"));
        let ingest = ingest(&mut p, self.ingest);
        let query = query(&mut p, self.query);
        let self_metrics = SelfMetricsConfig {
            interval: Some(p.duration(
                "self_metrics.interval",
                self.self_metrics.interval.as_deref(),
                d::SELF_METRICS_INTERVAL,
            ))
            .filter(|d| !d.is_zero()),
            forward: self.self_metrics.forward.unwrap_or(false),
        };
        let timezone = crate::reports::validate_zone(&mut p, self.timezone.as_deref());
        let receivers = super::receivers::validate(&mut p, self.receivers, &data_dir, &timezone);
        let admin_token = self
            .admin_token
            .and_then(|t| p.take("admin_token", t.resolve()));
        let read_token = self
            .read_token
            .and_then(|t| p.take("read_token", t.resolve()));
        let external_alerts = ExternalAlertsConfig {
            token: self
                .external_alerts
                .token
                .and_then(|t| p.take("external_alerts.token", t.resolve())),
            resolve_timeout: p.duration_min(
                "external_alerts.resolve_timeout",
                self.external_alerts.resolve_timeout.as_deref(),
                d::EXTERNAL_RESOLVE_TIMEOUT,
                second,
            ),
            max_alerts: self
                .external_alerts
                .max_alerts
                .unwrap_or(d::EXTERNAL_MAX_ALERTS),
        };
        let inhibit_rules = crate::inhibit::validate(&mut p, self.inhibit_rules);
        let known: Vec<String> = receivers.iter().map(|r| r.name.clone()).collect();
        let escalation_policies =
            crate::escalation::validate(&mut p, self.escalation_policies, &known);
        let policies: Vec<String> = escalation_policies.iter().map(|e| e.name.clone()).collect();
        let intervals = crate::route::validate_time_intervals(&mut p, self.time_intervals);
        let route = match self.route {
            Some(raw) => crate::route::validate(
                &mut p,
                raw,
                &crate::route::Known {
                    receivers: &known,
                    policies: &policies,
                    intervals: &intervals,
                },
            ),
            // Every receiver gets every alert.
            None => crate::route::Route::to_all(known.clone()),
        };
        let ack = AckConfig {
            secret: self
                .ack
                .secret
                .and_then(|t| p.take("ack.secret", t.resolve())),
            link_ttl: p.duration_min(
                "ack.link_ttl",
                self.ack.link_ttl.as_deref(),
                d::ACK_LINK_TTL,
                Duration::from_secs(60),
            ),
        };
        if let Some(t) = &self.dashboard_url {
            p.take("dashboard_url", check_template(t));
        }
        let incidents = incidents(&mut p, self.incidents);
        let remediation = remediation(&mut p, self.remediation);
        let actions = crate::actions::validate(&mut p, self.actions, "actions");
        let remote_write = remote_write(&mut p, self.remote_write);
        let heartbeat = self.heartbeat.and_then(|h| heartbeat(&mut p, h));
        let tls = self.tls.and_then(|t| tls(&mut p, t));
        let services = crate::services::validate_services(&mut p, self.services);
        let deadlines = crate::services::validate_deadlines(&mut p, self.deadlines);
        let change_freezes = crate::services::validate_freezes(&mut p, self.change_freezes);
        let can_report: Vec<(String, bool)> = receivers
            .iter()
            .map(|r| (r.name.clone(), r.kind.carries_text()))
            .collect();
        let service_names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
        let reports =
            crate::reports::validate_reports(&mut p, self.reports, &can_report, &service_names);
        p.finish(|| CollectorConfig {
            listen,
            data_dir,
            rules,
            retention,
            checkpoint_interval,
            stale_after,
            federate: self.federate.unwrap_or(false),
            external_url,
            host_down_after,
            host_forget_after,
            storage_alert_after,
            ingest,
            query,
            self_metrics,
            receivers,
            route,
            admin_token,
            read_token,
            external_alerts,
            inhibit_rules,
            escalation_policies,
            ack,
            dashboard_url: self.dashboard_url,
            incidents,
            remediation,
            actions,
            remote_write,
            heartbeat,
            tls,
            services,
            deadlines,
            change_freezes,
            timezone,
            reports,
        })
    }
}

fn ingest(p: &mut Problems, i: RawIngest) -> IngestConfig {
    IngestConfig {
        token: i.token.and_then(|t| p.take("ingest.token", t.resolve())),
        max_body_bytes: p.size("ingest.max_body", i.max_body.as_deref(), d::MAX_BODY) as usize,
        request_timeout: p.duration_min(
            "ingest.request_timeout",
            i.request_timeout.as_deref(),
            d::REQUEST_TIMEOUT,
            Duration::from_secs(1),
        ),
        max_decompressed_bytes: p.size(
            "ingest.max_decompressed",
            i.max_decompressed.as_deref(),
            d::MAX_DECOMPRESSED,
        ) as usize,
        max_samples_per_request: i
            .max_samples_per_request
            .unwrap_or(d::MAX_SAMPLES_PER_REQUEST),
        max_labels_per_series: i.max_labels_per_series.unwrap_or(d::MAX_LABELS_PER_SERIES),
        max_series_per_host: i.max_series_per_host.unwrap_or(d::MAX_SERIES_PER_HOST),
        max_hosts: i.max_hosts.unwrap_or(d::MAX_HOSTS),
        max_connections: match i.max_connections.unwrap_or(d::MAX_CONNECTIONS) {
            0 => {
                p.push("ingest.max_connections: must be at least 1".to_string());
                1
            }
            n => n,
        },
        idle_timeout: p.duration_min(
            "ingest.idle_timeout",
            i.idle_timeout.as_deref(),
            d::IDLE_TIMEOUT,
            Duration::from_secs(1),
        ),
    }
}

fn query(p: &mut Problems, q: RawQuery) -> QueryConfig {
    let at_least_one = |p: &mut Problems, what: &str, v: usize| {
        if v == 0 {
            p.push(format!("query.{what}: must be at least 1"));
        }
        v.max(1)
    };
    QueryConfig {
        max_concurrent: at_least_one(
            p,
            "max_concurrent",
            q.max_concurrent.unwrap_or(d::QUERY_MAX_CONCURRENT),
        ),
        timeout: p.duration_min(
            "query.timeout",
            q.timeout.as_deref(),
            d::QUERY_TIMEOUT,
            Duration::from_millis(10),
        ),
        max_samples: at_least_one(
            p,
            "max_samples",
            q.max_samples.unwrap_or(d::QUERY_MAX_SAMPLES),
        ),
        max_series: at_least_one(p, "max_series", q.max_series.unwrap_or(d::QUERY_MAX_SERIES)),
        lookback_delta: p.duration(
            "query.lookback_delta",
            q.lookback_delta.as_deref(),
            d::QUERY_LOOKBACK,
        ),
    }
}

fn incidents(p: &mut Problems, i: RawIncidents) -> IncidentsConfig {
    IncidentsConfig {
        group_by: i
            .group_by
            .unwrap_or_else(|| d::INCIDENT_GROUP_BY.map(String::from).to_vec()),
        reopen_within: p.duration(
            "incidents.reopen_within",
            i.reopen_within.as_deref(),
            d::INCIDENT_REOPEN_WITHIN,
        ),
        changes_before: p.duration(
            "incidents.changes_before",
            i.changes_before.as_deref(),
            d::INCIDENT_CHANGES_BEFORE,
        ),
    }
}

fn remediation(p: &mut Problems, r: RawRemediationLimits) -> RemediationLimits {
    RemediationLimits {
        max_concurrent: r
            .max_concurrent
            .unwrap_or(d::REMEDIATION_MAX_CONCURRENT)
            .max(1),
        per_host: r.per_host.unwrap_or(d::REMEDIATION_PER_HOST).max(1),
        answer_within: p.duration(
            "remediation.answer_within",
            r.answer_within.as_deref(),
            d::REMEDIATION_ANSWER_WITHIN,
        ),
        dry_run: r.dry_run,
    }
}

fn remote_write(p: &mut Problems, raw: Vec<RawRemoteWrite>) -> Vec<RemoteWriteConfig> {
    let mut out: Vec<RemoteWriteConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("remote_write[{i}]");
        if let Some(why) = crate::http_url_problem(&r.url) {
            p.push(format!("{at}.url {why}"));
        }
        let name = r.name.unwrap_or_else(|| {
            r.url
                .split("://")
                .nth(1)
                .and_then(|h| h.split('/').next())
                .unwrap_or("remote")
                .to_string()
        });
        if out.iter().any(|o| o.name == name) {
            p.push(format!("{at}: duplicate name {name:?}"));
        }
        let peer = r.peer.unwrap_or(false);
        for (k, v) in &r.external_labels {
            if !tocsin_model::is_valid_label_name(k) || k.starts_with("__") {
                p.push(format!(
                    "{at}.external_labels: {k:?} is not a label name (letters, digits, _; not __…)"
                ));
            }
            if v.is_empty() {
                p.push(format!("{at}.external_labels.{k}: empty value"));
            }
        }
        if peer && !r.external_labels.is_empty() {
            p.push(format!(
                "{at}.external_labels: not for a peer (it stores what agents sent, as sent)"
            ));
        }
        out.push(RemoteWriteConfig {
            name,
            url: r.url,
            bearer_token: r
                .bearer_token
                .and_then(|t| p.take(&format!("{at}.bearer_token"), t.resolve())),
            timeout: p.duration_min(
                &format!("{at}.timeout"),
                r.timeout.as_deref(),
                d::REMOTE_WRITE_TIMEOUT,
                Duration::from_millis(100),
            ),
            queue_max_samples: r.queue_max_samples.unwrap_or(d::QUEUE_MAX_SAMPLES).max(1),
            max_samples_per_send: r
                .max_samples_per_send
                .unwrap_or(d::MAX_SAMPLES_PER_SEND)
                .max(1),
            peer,
            external_labels: r.external_labels.into_iter().collect(),
        });
    }
    out
}

fn tls(p: &mut Problems, t: RawServerTls) -> Option<ServerTls> {
    let mut read = |field: &str, f: &PathBuf| {
        p.take(
            field,
            std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display())),
        )
    };
    let cert_pem = read("tls.cert_file", &t.cert_file);
    let key_pem = read("tls.key_file", &t.key_file);
    let client_ca_pem = t
        .client_ca_file
        .as_ref()
        .and_then(|f| read("tls.client_ca_file", f));
    Some(ServerTls {
        cert_pem: cert_pem?,
        key_pem: key_pem?,
        client_ca_pem,
    })
}

fn heartbeat(p: &mut Problems, h: RawHeartbeat) -> Option<HeartbeatConfig> {
    let every = p.duration_min(
        "heartbeat.every",
        h.every.as_deref(),
        d::HEARTBEAT_EVERY,
        Duration::from_secs(1),
    );
    let timeout = p.duration_min(
        "heartbeat.timeout",
        h.timeout.as_deref(),
        d::HEARTBEAT_TIMEOUT,
        Duration::from_millis(100),
    );
    let url = p.take("heartbeat.url", h.url.resolve())?;
    // Said without the URL: its path is usually the check's token.
    if crate::http_url_problem(url.expose()).is_some() {
        p.push("heartbeat.url: must be an http(s) URL with a host (not shown: it is a secret)");
    }
    Some(HeartbeatConfig {
        url,
        every,
        timeout,
    })
}
