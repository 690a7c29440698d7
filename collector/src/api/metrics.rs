//! `/metrics`: the collector's own metrics, and every series' newest sample when federating.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::error::ApiError;
use super::AppState;
use crate::writer::Msg;

pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    if !st.federate {
        return tocsin_runtime::metrics_response(&st.tel.registry);
    }
    let families = st.tel.registry.gather();
    let mut text = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        return ApiError::internal("request", format!("cannot encode metrics: {e}"))
            .into_response();
    }
    // The collector's own families are written above; their stored copies (`self_metrics`)
    // are left out, under every name they are stored by.
    let skip = crate::exposition::own_names(&families);
    let (reply, rx) = oneshot::channel();
    if st.writer.send(Msg::Federate { skip, reply }).await.is_err() {
        return ApiError::unavailable("shutting down").into_response();
    }
    match rx.await {
        Ok(series) => {
            text.push_str(&series);
            ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
        }
        Err(_) => ApiError::unavailable("shutting down").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::api::testing::{series, TestApi};

    #[tokio::test]
    async fn own_metrics_always_and_every_series_when_federating() {
        let api = TestApi::new("", "");
        let a = api.get("/metrics").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.json.as_str().unwrap().contains("tocsin_"));
        let api = TestApi::new("federate: true\n", "");
        api.write(&[series(&[("__name__", "fed_metric"), ("host", "h1")], 4.0)])
            .await;
        let a = api.get("/metrics").await;
        assert!(
            a.json
                .as_str()
                .unwrap()
                .contains("fed_metric{host=\"h1\"} 4"),
            "{}",
            a.json
        );
    }
}
