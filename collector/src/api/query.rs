//! The Prometheus HTTP query API over the stored history: `/api/v1/query`, `query_range`,
//! `series`, `labels`, `label/{name}/values`, `metadata`, `status/buildinfo`, with
//! Prometheus' JSON shapes, error types and status codes, so that Grafana's Prometheus data
//! source and `promtool query` work against the collector. GET and POST (form body) alike;
//! reads, under the read credential.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value as Json_};
use tocsin_model::{Labels, Sample};
use tocsin_promql::{format_value, Element, Series, Value};
use tracing::error;

use super::AppState;
use crate::query::{RunError, Stored};

/// Compatibility level reported by `status/buildinfo`: the Prometheus whose semantics the
/// evaluator follows (and whose API Grafana and promtool then expect).
const COMPATIBLE_VERSION: &str = "2.42.0";

/// An error answer as Prometheus gives it: `errorType`, message, status code.
pub(crate) struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(m: impl Into<String>) -> Self {
        PromError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: m.into(),
        }
    }
}

impl From<tocsin_promql::Error> for PromError {
    fn from(e: tocsin_promql::Error) -> Self {
        use tocsin_promql::Error as E;
        let status = match &e {
            E::BadData(_) => StatusCode::BAD_REQUEST,
            E::Execution(_) | E::Limit(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::Storage(detail) => return storage_failed(detail),
        };
        PromError {
            status,
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<RunError> for PromError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Storage(d) => storage_failed(&d),
            RunError::Internal(d) => {
                error!(error = %d, "query task failed");
                PromError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "internal",
                    message: "internal error; the collector's log has the details".into(),
                }
            }
            RunError::ShuttingDown => PromError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "unavailable",
                message: "the collector is shutting down".into(),
            },
        }
    }
}

/// Storage failed: logged with its detail; the client learns only that it did.
fn storage_failed(detail: &str) -> PromError {
    error!(error = %detail, "query: reading the store failed");
    PromError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "unavailable",
        message: "storage temporarily unavailable; retry later".into(),
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "status": "error", "errorType": self.kind, "error": self.message })),
        )
            .into_response()
    }
}

type Answer = Result<Json<Json_>, PromError>;

/// Runs one endpoint's work; counts, times and (failures) logs its answer.
async fn timed(
    st: &AppState,
    endpoint: &'static str,
    work: impl std::future::Future<Output = Answer>,
) -> Answer {
    let t0 = std::time::Instant::now();
    let a = work.await;
    let err = a.as_ref().err().map(|e| (e.kind, e.message.as_str()));
    st.tel.query_done(endpoint, err, t0.elapsed().as_secs_f64());
    a
}

fn success(data: Json_) -> Answer {
    Ok(Json(json!({ "status": "success", "data": data })))
}

/// The request's parameters: the URL's, then (POST) the form body's.
pub(crate) struct Params(Vec<(String, String)>);

/// The parameters of a request, read by axum before the handler: a malformed request is a
/// `bad_data` answer that the handler still counts.
impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = PromError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, PromError> {
        let (parts, body) = req.into_parts();
        let body = Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        .map_err(|e| PromError::bad_data(format!("cannot read the request body: {e}")))?;
        Params::read(&parts.method, &parts.uri, &parts.headers, &body)
    }
}

impl Params {
    fn read(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, PromError> {
        let mut all: Vec<(String, String)> = match uri.query() {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| PromError::bad_data(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        if *method == Method::POST && !body.is_empty() {
            let form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !form {
                return Err(PromError::bad_data(
                    "a POST body must be application/x-www-form-urlencoded",
                ));
            }
            let text = std::str::from_utf8(body)
                .map_err(|_| PromError::bad_data("the form body is not UTF-8"))?;
            all.extend(
                serde_urlencoded::from_str::<Vec<(String, String)>>(text)
                    .map_err(|e| PromError::bad_data(format!("invalid form body: {e}")))?,
            );
        }
        Ok(Params(all))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn required(&self, name: &str) -> Result<&str, PromError> {
        self.get(name)
            .ok_or_else(|| PromError::bad_data(format!("invalid parameter \"{name}\": missing")))
    }

    fn time(&self, name: &str) -> Result<Option<i64>, PromError> {
        self.get(name)
            .map(|s| {
                parse_time(s)
                    .map_err(|e| PromError::bad_data(format!("invalid parameter \"{name}\": {e}")))
            })
            .transpose()
    }
}

/// A time: Unix seconds (fractions allowed) or RFC 3339; in milliseconds.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f.abs() > 9.2e15 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))?;
    Ok(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    })
}

/// A duration: seconds (fractions allowed) or Prometheus' form (`90s`, `1h30m`, `250ms`); in
/// milliseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {s:?} to a valid duration");
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f.abs() > 9.2e15 {
            return Err(bad());
        }
        return Ok((f * 1000.0).round() as i64);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn now_ms() -> i64 {
    tocsin_model::now_ms()
}

fn ts(ms: i64) -> Json_ {
    json!(ms as f64 / 1000.0)
}

fn labels_json(l: &Labels) -> Json_ {
    let mut m = Map::new();
    for x in l.iter() {
        m.insert(x.name.clone(), Json_::String(x.value.clone()));
    }
    Json_::Object(m)
}

fn point(p: &Sample) -> Json_ {
    json!([ts(p.timestamp_ms), format_value(p.value)])
}

fn vector_json(v: &[Element], t: i64) -> Json_ {
    Json_::Array(
        v.iter()
            .map(|e| json!({ "metric": labels_json(&e.labels), "value": [ts(t), format_value(e.value)] }))
            .collect(),
    )
}

fn matrix_json(mut m: Vec<Series>) -> Json_ {
    m.sort_by(|a, b| a.labels.cmp(&b.labels));
    Json_::Array(
        m.iter()
            .map(|s| json!({ "metric": labels_json(&s.labels), "values": s.points.iter().map(point).collect::<Vec<_>>() }))
            .collect(),
    )
}

/// The per-request timeout a client may ask for (never above the configured one).
fn with_timeout(st: &AppState, p: &Params) -> Result<tocsin_promql::Engine, PromError> {
    let mut eng = st.query.engine;
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration(t)
            .map_err(|e| PromError::bad_data(format!("invalid parameter \"timeout\": {e}")))?;
        let asked = std::time::Duration::from_millis(ms.max(0) as u64);
        eng.limits.timeout = eng.limits.timeout.min(asked);
    }
    Ok(eng)
}

/// `GET|POST /api/v1/query`.
pub(crate) async fn query(State(st): State<AppState>, p: Result<Params, PromError>) -> Answer {
    timed(&st, "query", query_of(&st, p)).await
}

async fn query_of(st: &AppState, p: Result<Params, PromError>) -> Answer {
    let p = p?;
    let q = p.required("query")?.to_string();
    let t = p.time("time")?.unwrap_or_else(now_ms);
    let eng = with_timeout(st, &p)?;
    let expr = tocsin_promql::parse(&q).map_err(|e| PromError::bad_data(e.to_string()))?;
    let v = st
        .query
        .run(move |r, _| eng.instant(&mut Stored(r), &expr, t))
        .await??;
    let (kind, result) = match v {
        Value::Scalar(x) => ("scalar", json!([ts(t), format_value(x)])),
        Value::String(s) => ("string", json!([ts(t), s])),
        Value::Vector(v) => ("vector", vector_json(&v, t)),
        Value::Matrix(m) => ("matrix", matrix_json(m)),
    };
    success(json!({ "resultType": kind, "result": result }))
}

/// `GET|POST /api/v1/query_range`.
pub(crate) async fn query_range(
    State(st): State<AppState>,
    p: Result<Params, PromError>,
) -> Answer {
    timed(&st, "query_range", query_range_of(&st, p)).await
}

async fn query_range_of(st: &AppState, p: Result<Params, PromError>) -> Answer {
    let p = p?;
    let q = p.required("query")?.to_string();
    let start = p
        .time("start")?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"start\": missing"))?;
    let end = p
        .time("end")?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"end\": missing"))?;
    let step = parse_duration(p.required("step")?)
        .map_err(|e| PromError::bad_data(format!("invalid parameter \"step\": {e}")))?;
    let eng = with_timeout(st, &p)?;
    let expr = tocsin_promql::parse(&q).map_err(|e| PromError::bad_data(e.to_string()))?;
    let m = st
        .query
        .run(move |r, _| eng.range(&mut Stored(r), &expr, start, end, step))
        .await??;
    success(json!({ "resultType": "matrix", "result": matrix_json(m) }))
}

/// The series `match[]` selects (every series when it is absent and `required` is false).
async fn matching_series(
    st: &AppState,
    p: &Params,
    required: bool,
) -> Result<Vec<Arc<Labels>>, PromError> {
    let raw = p.all("match[]");
    if raw.is_empty() && required {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let selectors = raw
        .iter()
        .map(|s| tocsin_promql::parse_selector(s).map_err(PromError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = st
        .query
        .run(
            move |r, _| -> Result<Vec<Arc<Labels>>, tocsin_store::StoreError> {
                if selectors.is_empty() {
                    return r.series(None, |_| true);
                }
                let mut out: Vec<Arc<Labels>> = Vec::new();
                for vs in &selectors {
                    let sel = tocsin_promql::Selector(vs);
                    out.extend(r.series(sel.metric_name(), |l| sel.matches(l))?);
                }
                out.sort();
                out.dedup();
                Ok(out)
            },
        )
        .await?
        .map_err(|e| storage_failed(&e.to_string()))?;
    Ok(rows)
}

/// `GET|POST /api/v1/series`: the label sets of the series `match[]` selects. The store's
/// index answers, whatever the series' time range (`start`/`end` are checked, not applied).
pub(crate) async fn series(State(st): State<AppState>, p: Result<Params, PromError>) -> Answer {
    timed(&st, "series", series_of(&st, p)).await
}

async fn series_of(st: &AppState, p: Result<Params, PromError>) -> Answer {
    let p = p?;
    p.time("start")?;
    p.time("end")?;
    let rows = matching_series(st, &p, true).await?;
    success(Json_::Array(rows.iter().map(|l| labels_json(l)).collect()))
}

/// `GET|POST /api/v1/labels`: label names, sorted.
pub(crate) async fn labels(State(st): State<AppState>, p: Result<Params, PromError>) -> Answer {
    timed(&st, "labels", labels_of(&st, p)).await
}

async fn labels_of(st: &AppState, p: Result<Params, PromError>) -> Answer {
    let rows = matching_series(st, &p?, false).await?;
    let mut names: Vec<&str> = rows
        .iter()
        .flat_map(|l| l.iter().map(|x| x.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    success(json!(names))
}

/// `GET /api/v1/label/{name}/values`: the values a label takes, sorted.
pub(crate) async fn label_values(
    State(st): State<AppState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    p: Result<Params, PromError>,
) -> Answer {
    timed(&st, "label_values", label_values_of(&st, name, p)).await
}

async fn label_values_of(
    st: &AppState,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    p: Result<Params, PromError>,
) -> Answer {
    let Path(name) = name.map_err(|e| PromError::bad_data(e.body_text()))?;
    if !tocsin_model::is_valid_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let rows = matching_series(st, &p?, false).await?;
    let mut values: Vec<&str> = rows.iter().filter_map(|l| l.get(&name)).collect();
    values.sort_unstable();
    values.dedup();
    success(json!(values))
}

/// `GET /api/v1/metadata`: metric metadata is not kept; an empty answer, as Prometheus gives
/// for metrics it has none for.
pub(crate) async fn metadata() -> Answer {
    success(json!({}))
}

/// `GET /api/v1/query_exemplars`: none are kept.
pub(crate) async fn exemplars() -> Answer {
    success(json!([]))
}

/// `GET /api/v1/status/buildinfo`.
pub(crate) async fn buildinfo() -> Answer {
    success(json!({
        "version": COMPATIBLE_VERSION,
        "revision": format!("tocsin-collector {}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::json;
    use tocsin_model::{Labels, Sample, SeriesSamples};

    use super::{parse_duration, parse_time};

    fn enc(s: &str) -> String {
        urlencoding::encode(s).into_owned()
    }
    use crate::api::testing::TestApi;

    fn counter(host: &str, per_10s: f64, until_ms: i64) -> SeriesSamples {
        SeriesSamples {
            labels: Labels::from_pairs([("__name__", "node_cpu_seconds_total"), ("host", host)]),
            samples: (0..60)
                .map(|i| Sample::new(until_ms - (59 - i) * 10_000, per_10s * i as f64))
                .collect(),
        }
    }

    #[tokio::test]
    async fn instant_and_range_queries_read_what_was_written() {
        let api = TestApi::new("", "");
        let now = tocsin_model::now_ms() / 1000 * 1000;
        assert_eq!(
            api.write(&[counter("a", 1.0, now), counter("b", 3.0, now)])
                .await,
            StatusCode::NO_CONTENT
        );
        let t = now as f64 / 1000.0;
        let a = api
            .wait_for(
                &format!(
                    "/api/v1/query?query={}&time={t}",
                    enc("sum(rate(node_cpu_seconds_total[2m]))")
                ),
                |a| {
                    a.json["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                },
            )
            .await;
        assert_eq!(a.json["data"]["resultType"], "vector");
        let v: f64 = a.json["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((v - 0.4).abs() < 1e-9, "{}", a.json);

        let a = api
            .get(&format!(
                "/api/v1/query_range?query={}&start={}&end={t}&step=60",
                enc("node_cpu_seconds_total{host=\"b\"}"),
                t - 300.0
            ))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        assert_eq!(
            a.json["data"]["result"][0]["values"]
                .as_array()
                .unwrap()
                .len(),
            6
        );

        // Grafana posts forms.
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/query")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "query=count(node_cpu_seconds_total)&time={t}"
            )))
            .unwrap();
        let a = api.send(req).await;
        assert_eq!(a.json["data"]["result"][0]["value"][1], "2", "{}", a.json);

        let a = api.get("/api/v1/label/host/values").await;
        assert_eq!(a.json["data"], json!(["a", "b"]));
        let a = api
            .get(&format!(
                "/api/v1/series?{}={}",
                enc("match[]"),
                enc("node_cpu_seconds_total{host=\"a\"}")
            ))
            .await;
        assert_eq!(
            a.json["data"],
            json!([{"__name__": "node_cpu_seconds_total", "host": "a"}])
        );
        let a = api.get("/api/v1/labels").await;
        assert_eq!(a.json["data"], json!(["__name__", "host"]));
    }

    #[tokio::test]
    async fn the_collector_keeps_its_own_metrics_in_its_store() {
        let api = TestApi::new("", "");
        api.tick().await;
        let q = format!(
            "/api/v1/query?query={}",
            enc("count({__name__=~\"tocsin_(rules_loaded|storage_series|incidents_open)\"})")
        );
        let a = api
            .wait_for(&q, |a| {
                a.json["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            })
            .await;
        let n: f64 = a.json["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n, 3.0, "{}", a.json);
    }

    #[tokio::test]
    async fn errors_have_prometheus_types_and_codes() {
        let api = TestApi::new("", "");
        let a = api
            .get(&format!("/api/v1/query?query={}", enc("sum(")))
            .await;
        assert_eq!(
            (a.status, a.json["errorType"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_data"))
        );
        let a = api.get("/api/v1/query").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = api
            .get("/api/v1/query_range?query=up&start=10&end=0&step=1")
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        let a = api
            .get(&format!(
                "/api/v1/query_range?query={}&start=0&end=10&step=1",
                enc("up[5m]")
            ))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        let a = api.get("/api/v1/query?query=histogram_count(up)").await;
        assert_eq!(a.json["errorType"], "bad_data", "{}", a.json);
        let a = api.get("/api/v1/series").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = api
            .get(&format!(
                "/api/v1/series?{}={}",
                enc("match[]"),
                enc("{a=~\".*\"}")
            ))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = api.get("/api/v1/status/buildinfo").await;
        assert_eq!(a.json["data"]["version"], "2.42.0");
        // Counted by outcome.
        let bad = api
            .state
            .tel
            .queries
            .with_label_values(&["query", "bad_data"])
            .get();
        assert_eq!(bad, 3);
    }

    /// A query past a limit fails with Prometheus' error type and names the limit; the
    /// collector goes on answering.
    #[tokio::test]
    async fn limits_fail_the_query_not_the_collector() {
        let api = TestApi::new("query: { max_series: 1, max_samples: 100 }\n", "");
        let now = tocsin_model::now_ms() / 1000 * 1000;
        api.write(&[counter("a", 1.0, now), counter("b", 1.0, now)])
            .await;
        let q = |expr: &str, extra: &str| {
            format!(
                "/api/v1/query?query={}&time={}{extra}",
                enc(expr),
                now / 1000
            )
        };
        let a = api
            .wait_for(&q("node_cpu_seconds_total", ""), |a| {
                a.status != StatusCode::OK
            })
            .await;
        assert_eq!(
            (a.status, a.json["errorType"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("execution"))
        );
        assert!(
            a.json["error"].as_str().unwrap().contains("max_series"),
            "{}",
            a.json
        );
        // One ten-minute window of one series (61 samples) fits under 100; two do not.
        let a = api
            .get(&q(
                "count_over_time(node_cpu_seconds_total{host=\"a\"}[10m])",
                "",
            ))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let a = api
            .get(&q(
                "count_over_time(node_cpu_seconds_total{host=\"a\"}[10m]) + count_over_time(node_cpu_seconds_total{host=\"a\"}[10m] offset 1s)",
                "",
            ))
            .await;
        assert!(
            a.json["error"].as_str().unwrap().contains("max_samples"),
            "{}",
            a.json
        );
        // A request may lower the time limit, here to nothing.
        let a = api
            .get(&q("node_cpu_seconds_total{host=\"a\"}", "&timeout=0s"))
            .await;
        assert_eq!(
            (a.status, a.json["errorType"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("timeout")),
            "{}",
            a.json
        );
        assert_eq!(api.get(&q("1", "")).await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_collector_on_the_network_wants_the_read_credential() {
        let api = TestApi::new("listen: 0.0.0.0:0\nread_token: r\nadmin_token: w\n", "");
        assert_eq!(
            api.get("/api/v1/query?query=1").await.status,
            StatusCode::UNAUTHORIZED
        );
        let a = api
            .call("POST", "/api/v1/query?query=1", Some("r"), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        assert_eq!(a.json["data"]["resultType"], "scalar");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("90"), Ok(90_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
