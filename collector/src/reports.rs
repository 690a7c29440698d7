//! Scheduled reports: the daily inspection and the weekly and monthly service reports,
//! gathered from what the collector keeps (incidents, changes, feedback, the stored series
//! through the query engine), queued for their receivers through the writer — so a report
//! goes out once, also across a restart — and available on demand
//! (`GET /api/v1/reports/{kind}`, `tocsin-collector report`).

use std::sync::Arc;
use std::time::Duration;

use tocsin_clock::Zone;
use tocsin_config::reports::ReportSchedule;
use tocsin_config::services::ServiceConfig;
use tocsin_model::{now_ms, Labels, Locale, TimestampMs};
use tocsin_reports::{CapacityLine, Inspection, PeriodInput, Report, ServiceLine};
use tracing::{error, info};

use crate::api::{ApiError, AppState};
use crate::writer::Msg;

/// What reports need from the configuration.
#[derive(Debug, Clone)]
pub struct Reporting {
    pub zone: Zone,
    pub locale: Locale,
    pub schedules: Vec<ReportSchedule>,
    pub services: Vec<ServiceConfig>,
}

/// What one report covers.
#[derive(Debug, Clone)]
pub struct Ask {
    /// daily, weekly or monthly.
    pub kind: String,
    pub from: TimestampMs,
    pub to: TimestampMs,
    /// Services reported on (empty: every configured one).
    pub services: Vec<String>,
    pub locale: Locale,
    pub disk_horizon: Duration,
    pub cert_horizon: Duration,
}

/// The vector an instant query answers at `t`, empty when it fails (logged).
async fn vector(st: &AppState, q: &str, t: TimestampMs) -> Vec<(Arc<Labels>, f64)> {
    let expr = match tocsin_promql::parse(q) {
        Ok(e) => e,
        Err(e) => {
            error!(query = q, error = %e, "report query does not parse");
            return Vec::new();
        }
    };
    let eng = st.query.engine;
    let r = st
        .query
        .run(move |r, _| eng.instant(&mut crate::query::Stored(r), &expr, t))
        .await;
    match r {
        Ok(Ok(tocsin_promql::Value::Vector(v))) => {
            v.into_iter().map(|e| (e.labels, e.value)).collect()
        }
        Ok(Ok(tocsin_promql::Value::Scalar(x))) => vec![(Arc::new(Labels::default()), x)],
        Ok(Ok(_)) => Vec::new(),
        Ok(Err(e)) => {
            error!(query = q, error = %e, "report query failed");
            Vec::new()
        }
        Err(e) => {
            error!(query = q, error = ?e, "report query not run");
            Vec::new()
        }
    }
}

fn label(l: &Labels, name: &str) -> String {
    l.get(name).unwrap_or_default().to_string()
}

/// A PromQL string literal.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Builds the report `ask` describes.
pub async fn build(st: &AppState, ask: &Ask) -> Result<Report, ApiError> {
    let rp = &st.reporting;
    if ask.kind == "daily" {
        return Ok(tocsin_reports::inspection(
            &inspect(st, ask).await?,
            &rp.zone,
            ask.locale,
        ));
    }
    let (from, to) = (ask.from, ask.to);
    let span_s = ((to - from) / 1000).max(1);
    let mut services = Vec::new();
    for s in rp
        .services
        .iter()
        .filter(|s| ask.services.is_empty() || ask.services.contains(&s.name))
    {
        let sel = format!(
            "tocsin_service_probe_success_ratio{{service={}}}",
            quoted(&s.name)
        );
        let availability = vector(st, &format!("avg_over_time({sel}[{span_s}s])"), to - 1)
            .await
            .first()
            .map(|x| x.1);
        let budget = vector(
            st,
            &format!(
                "last_over_time(tocsin_slo_error_budget_remaining{{service={},sli=\"availability\"}}[{span_s}s])",
                quoted(&s.name)
            ),
            to - 1,
        )
        .await
        .first()
        .map(|x| x.1);
        let latency = match s.latency {
            Some(lo) => Some((
                lo.threshold,
                lo.objective.target,
                vector(
                    st,
                    &format!(
                        "avg_over_time(tocsin_service_latency_ok_ratio{{service={}}}[{span_s}s])",
                        quoted(&s.name)
                    ),
                    to - 1,
                )
                .await
                .first()
                .map(|x| x.1),
            )),
            None => None,
        };
        services.push(ServiceLine {
            latency,
            name: s.name.clone(),
            owner: s.owner.clone(),
            objective: s.objective.map(|o| o.target),
            availability,
            budget_remaining: budget,
            rto_ms: s.rto.map(|d| d.as_millis() as i64),
        });
    }
    let all = crate::api::load_incidents(st, from - 86_400_000, to, 100_000).await?;
    let incidents: Vec<_> = all
        .into_iter()
        .filter(|i| ask.services.is_empty() || i.services.iter().any(|s| ask.services.contains(s)))
        .collect();
    let before = st.changes.show_before_ms;
    let changes: Vec<_> = crate::api::load_changes(st, from - before, to)
        .await?
        .into_iter()
        .filter(|c| ask.services.is_empty() || ask.services.contains(&c.service))
        .collect();
    let feedback = crate::api::load_feedback(st, from, to).await?;
    // Filesystems: share used now, its growth over the period, days to full at that rate.
    let used = "1 - node_filesystem_avail_bytes / node_filesystem_size_bytes";
    let now_used = vector(st, used, to - 1).await;
    let then_used = vector(st, used, from).await;
    let mut capacity: Vec<CapacityLine> = now_used
        .iter()
        .map(|(l, u)| {
            let then = then_used
                .iter()
                .find(|(m, _)| {
                    m.get("host") == l.get("host") && m.get("mountpoint") == l.get("mountpoint")
                })
                .map(|x| x.1);
            let growth = then.map(|t| u - t).unwrap_or(0.0);
            let days = (to - from) as f64 / 86_400_000.0;
            CapacityLine {
                host: label(l, "host"),
                mount: label(l, "mountpoint"),
                used: *u,
                growth,
                days_to_full: (growth > 0.0).then(|| (1.0 - u) / (growth / days)),
            }
        })
        .collect();
    capacity.sort_by(|a, b| b.used.total_cmp(&a.used));
    capacity.truncate(20);
    Ok(tocsin_reports::period_report(&PeriodInput {
        kind: &ask.kind,
        from,
        to,
        zone: &rp.zone,
        locale: ask.locale,
        services,
        incidents: &incidents,
        changes: &changes,
        feedback: &feedback,
        changes_before_ms: before,
        capacity,
    }))
}

/// What the daily inspection looks at, now.
async fn inspect(st: &AppState, ask: &Ask) -> Result<Inspection, ApiError> {
    let at = ask.to;
    let (hosts_down, silences_ending, open_incidents) = {
        let v = st.view.read().unwrap_or_else(|p| p.into_inner());
        let hosts = v
            .hosts
            .iter()
            .filter(|h| !h.up)
            .map(|h| (h.host.clone(), Some(h.last_seen)))
            .collect::<Vec<_>>();
        let silences = v
            .silences
            .iter()
            .filter(|s| s.ends_ms > at && s.ends_ms <= at + 86_400_000)
            .map(|s| (s.id, s.comment.clone(), s.ends_ms))
            .collect::<Vec<_>>();
        let open = v
            .incidents
            .iter()
            .filter(|i| i.state != tocsin_incidents::State::Resolved)
            .cloned()
            .collect::<Vec<_>>();
        (hosts, silences, open)
    };
    let disk_days = ask.disk_horizon.as_secs_f64() / 86_400.0;
    let disks = vector(
        st,
        &format!("node_filesystem_avail_bytes / clamp_min(0 - deriv(node_filesystem_avail_bytes[6h]), 1e-9) / 86400 < {disk_days}"),
        at,
    )
    .await
    .into_iter()
    .map(|(l, d)| (label(&l, "host"), label(&l, "mountpoint"), d))
    .collect();
    let cert_days = ask.cert_horizon.as_secs_f64() / 86_400.0;
    let certs = vector(
        st,
        &format!("(probe_ssl_earliest_cert_expiry - time()) / 86400 < {cert_days}"),
        at,
    )
    .await
    .into_iter()
    .map(|(l, d)| {
        let t = label(&l, "target");
        (if t.is_empty() { label(&l, "probe") } else { t }, d)
    })
    .collect();
    let failing_probes = vector(st, "probe_success == 0", at)
        .await
        .into_iter()
        .map(|(l, _)| (label(&l, "probe"), label(&l, "host"), label(&l, "service")))
        .collect();
    let dead_letters = crate::api::with_outbox(st, "counting dead letters", |o| {
        o.count_all(tocsin_store::OutboxStatus::Dead)
    })
    .await?;
    let incidents_last_day = crate::api::load_incidents(st, at - 86_400_000, at, 100_000)
        .await?
        .iter()
        .filter(|i| i.opened_at >= at - 86_400_000)
        .count();
    Ok(Inspection {
        at,
        hosts_down,
        disks,
        certs,
        failing_probes,
        silences_ending,
        dead_letters,
        open_incidents,
        incidents_last_day,
    })
}

fn meta_key(kind: &str) -> String {
    format!("report.{kind}.last_run")
}

/// Runs the schedules: every 10 s, each report due is built and queued; a report due while
/// the collector was down goes out once when it is back; on a first start nothing is sent
/// until the next due time.
pub async fn run(st: AppState, cancel: tokio_util::sync::CancellationToken) {
    if st.reporting.schedules.is_empty() {
        return;
    }
    loop {
        for s in &st.reporting.schedules {
            if let Err(e) = run_one(&st, s, now_ms()).await {
                st.tel.storage_errors.inc();
                error!(report = s.kind, error = %e.message(), "scheduled report not sent; will retry");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn run_one(st: &AppState, s: &ReportSchedule, now: TimestampMs) -> Result<(), ApiError> {
    let key = meta_key(s.kind);
    let k2 = key.clone();
    let last: Option<TimestampMs> =
        crate::api::with_records(st, "reading report runs", move |o| o.meta(&k2))
            .await?
            .and_then(|v| v.parse().ok());
    let zone = &st.reporting.zone;
    let messages = match (last, s.schedule.due(last, now, zone)) {
        // First start: the first report is the next one.
        (None, _) => Vec::new(),
        (Some(_), None) => return Ok(()),
        (Some(_), Some(due)) => {
            let (from, to) = s.schedule.period(due, zone);
            let ask = Ask {
                kind: s.kind.to_string(),
                from,
                to: if s.kind == "daily" { now } else { to },
                services: s.services.clone(),
                locale: st.reporting.locale,
                disk_horizon: s.disk_horizon,
                cert_horizon: s.cert_horizon,
            };
            let report = build(st, &ask).await?;
            info!(report = s.kind, title = %report.title, receivers = s.receivers.len(), "scheduled report queued");
            let body = report.to_outbox();
            s.receivers
                .iter()
                .map(|r| (r.clone(), body.clone()))
                .collect()
        }
    };
    crate::api::writer_op(st, |reply| Msg::ReportRun {
        key,
        at: now,
        messages,
        reply,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::TestApi;

    fn ms(local: &str) -> TimestampMs {
        let dt: jiff::civil::DateTime = local.parse().unwrap();
        jiff::tz::TimeZone::get("Asia/Shanghai")
            .unwrap()
            .to_zoned(dt)
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn queued(api: &TestApi) -> Vec<Report> {
        let outbox = api.state.outbox.lock().unwrap();
        outbox
            .pending("mail", 100)
            .unwrap()
            .iter()
            .map(|i| Report::from_outbox(&i.payload).expect("a report"))
            .collect()
    }

    /// The scheduler on an injected clock, against the real writer and store: nothing on a
    /// first start, the weekly report once at Monday 09:00 in Shanghai, not again ten
    /// minutes later, and the next week's once when the collector comes back on Tuesday
    /// having been down over Monday.
    #[tokio::test]
    async fn a_weekly_report_is_queued_once_per_due_time_on_an_injected_clock() {
        let api = TestApi::new(
            "timezone: Asia/Shanghai\nreceivers:\n  - { name: mail, log: { path: r.log } }\n\
             reports:\n  weekly: { day: mon, at: \"09:00\", receivers: [mail] }\n",
            "",
        );
        let s = api.state.reporting.schedules[0].clone();
        let run = |now: &str| {
            let (st, s) = (api.state.clone(), s.clone());
            let now = ms(now);
            async move { run_one(&st, &s, now).await.unwrap() }
        };
        run("2026-12-05T12:00").await; // a Saturday: the first start
        run("2026-12-07T08:59").await;
        assert!(queued(&api).is_empty(), "nothing before the first due time");
        run("2026-12-07T09:00:05").await;
        let r = queued(&api);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].title, "服务周报 2026-11-30 – 2026-12-07");
        assert!(r[0]
            .markdown
            .contains("统计时段 2026-11-30 09:00 – 2026-12-07 09:00 (UTC+8)"));
        run("2026-12-07T09:10").await;
        assert_eq!(queued(&api).len(), 1, "once per due time");
        run("2026-12-15T10:00").await; // down from Sunday to Tuesday
        let r = queued(&api);
        assert_eq!(r.len(), 2, "the report missed on Monday, once");
        assert_eq!(r[1].title, "服务周报 2026-12-07 – 2026-12-14");
        run("2026-12-15T10:01").await;
        assert_eq!(queued(&api).len(), 2);
    }
}
