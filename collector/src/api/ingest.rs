//! `POST /api/v1/write`: the remote-write receiver.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tocsin_model::now_ms;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::AppState;
use super::BodyReceived;
use super::Bound;
use crate::writer::{Msg, Origin, WriteError};

/// A write taken: 204, saying how many samples were not stored because their series held a
/// newer one (`tocsin_wire::NOT_NEWER_HEADER`), so the sender counts them instead of taking
/// them as stored.
pub(crate) struct Written(usize);

impl IntoResponse for Written {
    fn into_response(self) -> Response {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if self.0 > 0 {
            r.headers_mut()
                .insert(tocsin_wire::NOT_NEWER_HEADER, HeaderValue::from(self.0));
        }
        r
    }
}

pub(crate) async fn write(
    State(st): State<AppState>,
    received: Option<axum::Extension<BodyReceived>>,
    axum::Extension(Bound(bound)): axum::Extension<Bound>,
    req: axum::extract::Request,
) -> Result<Written, ApiError> {
    let result = write_inner(&st, bound, received, req).await;
    let code = match &result {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(e) => e.status(),
    };
    st.tel.requests.with_label_values(&[code.as_str()]).inc();
    result
}

/// Refuses what is not a remote-write 1.0 body before it is read: 415, as the specification
/// asks (a 2.0 body read as 1.0 decodes to nothing and would be acknowledged and lost).
pub(crate) fn check_media_type(headers: &HeaderMap) -> Result<(), (&'static str, String)> {
    check_content_type(headers).map_err(|m| ("media_type", m))?;
    check_content_encoding(headers).map_err(|m| ("encoding", m))
}

pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), String> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(ctype) = ctype else {
        return Err(format!(
            "no Content-Type: remote-write 1.0 bodies are {}",
            tocsin_wire::CONTENT_TYPE
        ));
    };
    let mut parts = ctype.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let proto = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    if !media.eq_ignore_ascii_case(tocsin_wire::CONTENT_TYPE)
        || proto.is_some_and(|p| p != "prometheus.WriteRequest")
    {
        return Err(format!(
            "unsupported Content-Type {ctype:?}: this collector takes remote-write 1.0 ({}, proto=prometheus.WriteRequest)",
            tocsin_wire::CONTENT_TYPE
        ));
    }
    Ok(())
}

pub(crate) fn check_content_encoding(headers: &HeaderMap) -> Result<(), String> {
    let mut enc = headers.get_all(header::CONTENT_ENCODING).iter().peekable();
    if enc.peek().is_none() {
        return Err("no Content-Encoding: remote-write bodies are snappy-compressed".into());
    }
    for e in enc {
        if e.as_bytes() != tocsin_wire::CONTENT_ENCODING.as_bytes() {
            return Err(format!(
                "unsupported Content-Encoding {:?}: remote-write bodies are snappy-compressed",
                String::from_utf8_lossy(e.as_bytes())
            ));
        }
    }
    Ok(())
}

/// Series of a request refused by name.
#[derive(Debug, Default)]
struct Refused {
    series: usize,
    samples: usize,
    first: Option<String>,
}

impl Refused {
    fn of(reserved: &[tocsin_model::SeriesSamples]) -> Refused {
        Refused {
            series: reserved.len(),
            samples: reserved.iter().map(|s| s.samples.len()).sum(),
            first: reserved
                .first()
                .and_then(|s| s.labels.metric_name())
                .map(str::to_string),
        }
    }

    fn message(&self) -> Option<String> {
        let first = self.first.as_deref()?;
        Some(format!(
            "{} series ({} samples) refused: tocsin_* names are the collector's own (the agent's tocsin_agent_* and tocsin_log_* excepted), e.g. {first:?}",
            self.series, self.samples
        ))
    }
}

/// The largest clock offset taken from a sender's `SENT_AT_HEADER`: a century.
const MAX_CLOCK_OFFSET_MS: i64 = 100 * 366 * 86_400_000;

pub(crate) async fn write_inner(
    st: &AppState,
    bound: Option<String>,
    received: Option<axum::Extension<BodyReceived>>,
    req: axum::extract::Request,
) -> Result<Written, ApiError> {
    if let Err((reason, msg)) = check_media_type(req.headers()) {
        st.tel.ingest_rejected(reason, &msg);
        return Err(ApiError::UnsupportedMedia(msg));
    }
    let headers = req.headers().clone();
    let clock_offset = match headers.get(tocsin_wire::SENT_AT_HEADER) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.parse::<i64>().ok()) {
            // Bounded, so that no arithmetic on it can overflow whatever a sender says (a clock
            // reset to 1970 is still told as far behind as it is, up to a century).
            Some(sent) => Some(
                sent.saturating_sub(now_ms())
                    .clamp(-MAX_CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS),
            ),
            None => {
                let msg = format!(
                    "{}: {:?} is not a time in Unix milliseconds",
                    tocsin_wire::SENT_AT_HEADER,
                    String::from_utf8_lossy(&v.as_bytes()[..v.len().min(40)])
                );
                st.tel.ingest_rejected("header", &msg);
                return Err(ApiError::bad_request(msg));
            }
        },
    };
    let body = axum::body::to_bytes(req.into_body(), st.max_body_bytes)
        .await
        .map_err(|_| {
            let msg = format!(
                "body over ingest.max_body ({} bytes), or cut short",
                st.max_body_bytes
            );
            st.tel.ingest_rejected("body", &msg);
            ApiError::TooLarge(msg)
        })?;
    if let Some(axum::Extension(r)) = received {
        r.mark();
    }
    // Decoding is CPU work bounded by the body's size: off the async workers, a few at a time,
    // so a flood of large bodies neither stalls the server nor multiplies its memory.
    let permit = Arc::clone(&st.decode_permits)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let limits = st.limits;
    let resolver = st.resolver.clone();
    // The series are looked up here too, in parallel with other requests: the writer, which
    // takes requests one at a time, then only creates the new ones.
    let decoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        tocsin_wire::decode(&body, &limits).map(|batch| {
            let reserved_name = |s: &tocsin_model::SeriesSamples| {
                s.labels
                    .metric_name()
                    .is_some_and(tocsin_model::is_reserved_metric_name)
            };
            // The common request names none: it is not copied.
            let (reserved, batch): (Vec<_>, Vec<_>) = if batch.iter().any(reserved_name) {
                batch.into_iter().partition(reserved_name)
            } else {
                (Vec::new(), batch)
            };
            let hints = resolver.resolve(&batch);
            (batch, hints, Refused::of(&reserved))
        })
    })
    .await
    .map_err(|e| ApiError::internal("decoding a remote-write body", e))?;
    let (batch, hints, reserved) = decoded.map_err(|e| {
        let msg = e.to_string();
        st.tel.ingest_rejected(e.kind(), &msg);
        match e {
            tocsin_wire::WireError::TooLarge { .. } => ApiError::TooLarge(msg),
            _ => ApiError::BadRequest(msg),
        }
    })?;
    if let Err(e) = tocsin_wire::check_timestamps(&batch, now_ms(), st.max_future_ms) {
        let msg = e.to_string();
        st.tel.ingest_rejected(e.kind(), &msg);
        return Err(ApiError::bad_request(msg));
    }
    if let Some(host) = &bound {
        if let Some(other) = batch
            .iter()
            .find_map(|s| s.labels.get("host").filter(|h| h != host))
        {
            let msg =
                format!("this token belongs to host {host:?}; series for host {other:?} refused");
            st.tel.ingest_rejected("wrong_host", &msg);
            return Err(ApiError::Forbidden(msg));
        }
        if let Some(s) = batch.iter().find(|s| s.labels.get("host").is_none()) {
            let msg = format!(
                "this token belongs to host {host:?}; every series needs that host label ({} has none)",
                s.labels
            );
            st.tel.ingest_rejected("wrong_host", &msg);
            return Err(ApiError::Forbidden(msg));
        }
    }
    if let Some(msg) = reserved.message() {
        st.tel.ingest_rejected("reserved_name", &msg);
        st.tel
            .samples
            .with_label_values(&["reserved_name"])
            .inc_by(reserved.samples as u64);
    }
    if batch.is_empty() {
        return match reserved.message() {
            Some(msg) => Err(ApiError::bad_request(msg)),
            None => Ok(Written(0)),
        };
    }
    let (reply, rx) = oneshot::channel();
    let marked = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"1");
    let origin = if marked(tocsin_wire::LIVE_HEADER) {
        Origin::Live
    } else if marked(tocsin_wire::FORWARDED_HEADER) {
        Origin::Peer
    } else {
        Origin::Sender
    };
    if origin == Origin::Live {
        let n = batch.iter().map(|s| s.samples.len() as u64).sum();
        st.tel.samples.with_label_values(&["live"]).inc_by(n);
    }
    if let Err(e) = st.writer.try_send(Msg::Ingest {
        batch,
        hints,
        origin,
        clock_offset,
        reply,
    }) {
        let err = match e {
            mpsc::error::TrySendError::Full(_) => ApiError::Busy {
                message: "ingest queue is full; retry later".into(),
                retry_after: 1,
            },
            mpsc::error::TrySendError::Closed(_) => ApiError::Unavailable {
                message: "collector is shutting down".into(),
                retry_after: Some(1),
            },
        };
        st.tel.ingest_rejected("backpressure", err.message());
        return Err(err);
    }
    // The series come back with the answer, to be freed here.
    match rx.await.map(|answer| answer.result) {
        Ok(Ok(stats)) if stats.refused_series > 0 || reserved.series > 0 => {
            // The rest of the request is stored; say what was not, so the sender does not
            // retry it.
            let mut said = Vec::new();
            if stats.refused_series > 0 {
                let msg = format!(
                    "{} new series ({} samples) refused: their host has reached ingest.max_series_per_host, or the collector ingest.max_hosts",
                    stats.refused_series, stats.over_limit
                );
                st.tel.ingest_rejected("cardinality", &msg);
                said.push(msg);
            }
            said.extend(reserved.message());
            Err(ApiError::Partial {
                message: format!("{}; {} samples accepted", said.join("; "), stats.accepted),
                accepted: stats.accepted,
            })
        }
        Ok(Ok(stats)) => Ok(Written(stats.out_of_order)),
        Ok(Err(WriteError::Unavailable(e))) => Err(ApiError::storage("storing samples", e)),
        Ok(Err(WriteError::Failed(e))) => Err(ApiError::internal("samples could not be stored", e)),
        Err(_) => Err(ApiError::shutting_down()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    use crate::api::testing::{series, TestApi};

    fn post(ctype: Option<&str>, encoding: Option<&str>, body: Vec<u8>) -> Request<Body> {
        let mut r = Request::post("/api/v1/write");
        if let Some(c) = ctype {
            r = r.header("Content-Type", c);
        }
        if let Some(e) = encoding {
            r = r.header("Content-Encoding", e);
        }
        r.body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn samples_are_stored_and_what_is_not_remote_write_1_0_is_refused_before_reading() {
        let api = TestApi::new("", "");
        let s = series(&[("__name__", "x"), ("host", "h1")], 1.0);
        assert_eq!(
            api.write(std::slice::from_ref(&s)).await,
            StatusCode::NO_CONTENT
        );
        // The same sample again: taken, and said not newer.
        let a = api.send(TestApi::write_request(&[s], None)).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        assert_eq!(a.headers[tocsin_wire::NOT_NEWER_HEADER], "1");
        let body = tocsin_wire::encode(&tocsin_wire::to_request(&[]));
        let cases = [
            (None, Some("snappy"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
            (
                Some("application/json"),
                Some("snappy"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Some("snappy"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Some("application/x-protobuf"),
                None,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Some("application/x-protobuf"),
                Some("gzip"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Some("application/x-protobuf"),
                Some("snappy"),
                StatusCode::NO_CONTENT,
            ),
        ];
        for (ctype, enc, want) in cases {
            let a = api.send(post(ctype, enc, body.clone())).await;
            assert_eq!(a.status, want, "{ctype:?} {enc:?}: {}", a.json);
        }
        let a = api
            .send(post(
                Some("application/x-protobuf"),
                Some("snappy"),
                b"not snappy".to_vec(),
            ))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
    }

    #[tokio::test]
    async fn a_sample_no_clock_could_give_refuses_the_request_naming_it() {
        let api = TestApi::new("", "");
        let mut s = series(&[("__name__", "x"), ("host", "h1")], 1.0);
        s.samples[0].timestamp_ms = 1_000; // seconds sent as milliseconds
        let a = api.send(TestApi::write_request(&[s], None)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(
            a.json["error"]
                .as_str()
                .unwrap()
                .contains("before the year 2000"),
            "{}",
            a.json
        );
    }

    /// The sender's clock is an input like any other: one that does not read is refused with
    /// what was wrong, before the body is read.
    #[tokio::test]
    async fn a_send_time_that_does_not_read_refuses_the_request() {
        let api = TestApi::new("", "");
        let s = series(&[("__name__", "x"), ("host", "h1")], 1.0);
        let mut req = TestApi::write_request(std::slice::from_ref(&s), None);
        req.headers_mut().insert(
            tocsin_wire::SENT_AT_HEADER,
            axum::http::HeaderValue::from_static("yesterday"),
        );
        let a = api.send(req).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let msg = a.json["error"].as_str().unwrap();
        assert!(
            msg.contains("X-Tocsin-Sent-At") && msg.contains("\"yesterday\""),
            "{msg}"
        );
        let send_at = |sent: i64| {
            let mut req = TestApi::write_request(std::slice::from_ref(&s), None);
            req.headers_mut().insert(
                tocsin_wire::SENT_AT_HEADER,
                axum::http::HeaderValue::from_str(&sent.to_string()).unwrap(),
            );
            req
        };
        let now = tocsin_model::now_ms();
        assert_eq!(
            api.send(send_at(now - 600_000)).await.status,
            StatusCode::NO_CONTENT
        );
        // The host known now, a value at the edge of what parses is taken (bounded), not an
        // overflow in the writer; the writer goes on.
        for edge in [i64::MIN, i64::MAX, now - 600_000] {
            assert_eq!(
                api.send(send_at(edge)).await.status,
                StatusCode::NO_CONTENT,
                "{edge}"
            );
        }
    }

    #[tokio::test]
    async fn new_series_over_the_host_limit_are_refused_and_the_rest_stored() {
        let api = TestApi::new("ingest: { max_series_per_host: 2 }\n", "");
        let batch: Vec<_> = (0..3)
            .map(|i| series(&[("__name__", &format!("m{i}")), ("host", "h1")], 1.0))
            .collect();
        let a = api.send(TestApi::write_request(&batch, None)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        assert_eq!(a.headers[tocsin_wire::ACCEPTED_HEADER], "2");
    }

    /// A sender cannot write the series the collector derives (a service's burn condition
    /// pages its owners); the rest of its request is stored, the agent's own telemetry too.
    #[tokio::test]
    async fn the_collectors_own_names_are_refused_and_the_rest_stored() {
        let api = TestApi::new("", "");
        let batch = [
            series(
                &[
                    ("__name__", "tocsin_slo_burn_condition"),
                    ("service", "payments"),
                    ("host", "h1"),
                ],
                1.0,
            ),
            series(
                &[("__name__", "tocsin_agent_cycles_total"), ("host", "h1")],
                1.0,
            ),
            series(
                &[("__name__", "tocsin_log_lines_total"), ("host", "h1")],
                1.0,
            ),
            series(&[("__name__", "app_value"), ("host", "h1")], 1.0),
        ];
        let a = api.send(TestApi::write_request(&batch, None)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        assert_eq!(a.headers[tocsin_wire::ACCEPTED_HEADER], "3");
        let msg = a.json["error"].as_str().unwrap();
        assert!(
            msg.starts_with("1 series (1 samples) refused: tocsin_* names are the collector's own")
                && msg.contains("\"tocsin_slo_burn_condition\"")
                && msg.ends_with("; 3 samples accepted"),
            "{msg}"
        );
        let stored = |q: &str| {
            let q = q.to_string();
            let api = &api;
            async move {
                let a = api.get(&format!("/api/v1/query?query={q}")).await;
                a.json["data"]["result"].as_array().unwrap().len()
            }
        };
        assert_eq!(stored("tocsin_slo_burn_condition").await, 0);
        assert_eq!(stored("app_value").await, 1);
        assert_eq!(stored("tocsin_agent_cycles_total").await, 1);
        // Nothing but such names: refused whole, nothing accepted.
        let a = api.send(TestApi::write_request(&batch[..1], None)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        assert!(!a.headers.contains_key(tocsin_wire::ACCEPTED_HEADER));
        let m = api.get("/metrics").await.json;
        let m = m.as_str().unwrap();
        assert!(
            m.contains("tocsin_ingest_rejected_requests_total{reason=\"reserved_name\"} 2"),
            "{m}"
        );
    }
}
