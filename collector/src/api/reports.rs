//! `GET /api/v1/reports/{kind}`: the daily inspection, or a weekly or monthly service report,
//! on demand.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tocsin_model::{now_ms, Locale};

use super::error::ApiError;
use super::AppState;
use crate::reports::Ask;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// Comma-separated services (default: every configured one).
    service: Option<String>,
    /// Default: the period before now (a day, 7 days, 30 days).
    from: Option<String>,
    to: Option<String>,
    /// zh-CN or en (default: reports.locale).
    locale: Option<String>,
    /// markdown (default), html or json.
    format: Option<String>,
}

pub(crate) async fn report(
    State(st): State<AppState>,
    super::error::Path(kind): super::error::Path<String>,
    super::error::Query(q): super::error::Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let span = match kind.as_str() {
        "daily" => 86_400_000,
        "weekly" => 7 * 86_400_000,
        "monthly" => 30 * 86_400_000,
        _ => {
            return Err(ApiError::not_found(format!(
                "no report {kind:?}: daily, weekly or monthly"
            )))
        }
    };
    let time = |s: &Option<String>, d: i64| match s {
        None => Ok(d),
        Some(s) => tocsin_model::parse_timestamp(s)
            .ok_or_else(|| ApiError::bad_request(format!("invalid time {s:?}"))),
    };
    let now = now_ms();
    let to = time(&q.to, now)?;
    let from = time(&q.from, to - span)?;
    if to <= from {
        return Err(ApiError::bad_request("to must be after from"));
    }
    let locale = match &q.locale {
        None => st.reporting.locale,
        Some(l) => Locale::parse(Some(l), "zh-CN").map_err(ApiError::bad_request)?,
    };
    let services: Vec<String> = q
        .service
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for s in &services {
        if !st.reporting.services.iter().any(|c| &c.name == s) {
            return Err(ApiError::bad_request(format!(
                "service {s:?} is not in services:"
            )));
        }
    }
    let daily = st.reporting.schedules.iter().find(|s| s.kind == "daily");
    let ask = Ask {
        kind: kind.clone(),
        from,
        to,
        services,
        locale,
        disk_horizon: daily.map_or(std::time::Duration::from_secs(7 * 86_400), |d| {
            d.disk_horizon
        }),
        cert_horizon: daily.map_or(std::time::Duration::from_secs(30 * 86_400), |d| {
            d.cert_horizon
        }),
    };
    let r = crate::reports::build(&st, &ask).await?;
    Ok(match q.format.as_deref().unwrap_or("markdown") {
        "markdown" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            r.markdown,
        )
            .into_response(),
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], r.html).into_response(),
        "json" => Json(serde_json::json!({ "status": "success", "data": r })).into_response(),
        f => {
            return Err(ApiError::bad_request(format!(
                "format {f:?}: markdown, html or json"
            )))
        }
    })
}
