//! `/api/v1/rules`: the rules in force, their levels and how many of their alerts are in each
//! state; `/api/v1/status/collector`: the collector's own health at a glance.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tocsin_alerting::format_rfc3339;
use tocsin_model::Level;

use super::error::{with_outbox, ApiError};
use super::AppState;

/// A rule's levels: the condition, its recovery (hysteresis), `for`, and whether it judges
/// the anomaly score of a dynamic baseline.
pub(crate) fn levels_json(r: &tocsin_rules::Rule) -> Value {
    let levels: serde_json::Map<String, Value> = Level::ALL
        .iter()
        .filter_map(|l| {
            r.levels[l.index()].as_ref().map(|s| {
                (
                    l.as_str().to_string(),
                    json!({
                        "op": s.when.op.as_str(),
                        "threshold": s.when.threshold,
                        "recover": s.recover.as_ref().map(|c| json!({"op": c.op.as_str(), "threshold": c.threshold})),
                        "for": s.for_ms.unwrap_or(r.for_ms) as f64 / 1000.0,
                        "onScore": s.on_score,
                    }),
                )
            })
        })
        .collect();
    Value::Object(levels)
}

pub(crate) async fn list(State(st): State<AppState>) -> Json<Value> {
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = view
        .rules
        .iter()
        .map(|r| {
            let mut firing = serde_json::Map::new();
            let mut pending = 0;
            for a in view.alerts.iter().filter(|a| a.rule == r.name) {
                match a.level {
                    Some(l) => {
                        let n = firing.entry(l.as_str()).or_insert(json!(0));
                        *n = json!(n.as_u64().unwrap_or(0) + 1);
                    }
                    None => pending += 1,
                }
            }
            json!({
                "name": r.name,
                // As Prometheus' rule API says it.
                "type": if r.record { "recording" } else { "alerting" },
                // Rules over a fleet run on the clock, every `interval` seconds.
                "interval": r.expr.aggregates().then_some(r.interval_ms as f64 / 1000.0),
                "source": r.source,
                "expr": r.expr_text,
                "levels": levels_json(r),
                "for": r.for_ms as f64 / 1000.0,
                "dynamic": r.dynamic.is_some(),
                "labels": r.labels,
                "annotations": r.annotations,
                "remediation": r.remediation.as_ref().map(|m| m.action.as_str()),
                "firing": firing,
                "pending": pending,
            })
        })
        .collect();
    Json(json!({ "status": "success", "data": { "rules": list } }))
}

/// When this process started serving.
static STARTED_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// When this process started serving (now, if it has not yet).
pub(crate) fn started_ms() -> i64 {
    *STARTED_MS.get_or_init(tocsin_model::now_ms)
}

pub(crate) fn mark_started() {
    STARTED_MS.get_or_init(tocsin_model::now_ms);
}

pub(crate) async fn collector_status(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let dead = with_outbox(&st, "counting dead letters", |o| {
        o.count_all(tocsin_store::OutboxStatus::Dead)
    })
    .await?;
    let pending = with_outbox(&st, "counting pending notifications", |o| {
        o.count_all(tocsin_store::OutboxStatus::Pending)
    })
    .await?;
    let started = *STARTED_MS.get_or_init(tocsin_model::now_ms);
    let t = &st.tel;
    let samples = t.samples.with_label_values(&["accepted"]).get();
    let view = st.view.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(json!({ "status": "success", "data": {
        "version": env!("CARGO_PKG_VERSION"),
        "startedAt": format_rfc3339(started),
        "uptimeSeconds": (tocsin_model::now_ms() - started).max(0) as f64 / 1000.0,
        "series": t.series.get(),
        "headSamples": t.head_samples.get(),
        "samplesAccepted": samples,
        "storageErrors": t.storage_errors.get(),
        "rules": view.rules.len(),
        "hostsUp": view.hosts.iter().filter(|h| h.up).count(),
        "hostsDown": view.hosts.iter().filter(|h| !h.up).count(),
        "incidentsOpen": t.incidents_open.get(),
        "notificationsPending": pending,
        "deadLetters": dead,
        // As Prometheus' runtime information says it: whether the file on disk is what runs.
        "reloadConfigSuccess": t.config_reload_ok.get() == 1,
        "lastConfigTime": format_rfc3339(t.config_reload_time.get() * 1000),
    } })))
}
