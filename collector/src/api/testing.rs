//! A collector's API in a test: the real router, writer thread and store (a temporary SQLite
//! file), built the way the collector builds them, called with `oneshot` — no socket.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tocsin_model::{Labels, Sample, SeriesSamples};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::AppState;
use crate::view::View;
use crate::writer::{Msg, Writer};
use crate::Telemetry;

pub(crate) struct TestApi {
    pub(crate) app: Router,
    pub(crate) state: AppState,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers, and the body as JSON (or as a JSON string when it is not JSON).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) json: Value,
}

impl TestApi {
    /// A collector with `config` (YAML; it listens on loopback unless it says otherwise) and
    /// the rules in `rules` (YAML, may be empty).
    pub(crate) fn new(config: &str, rules: &str) -> TestApi {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules_path = dir.path().join("rules.yaml");
        std::fs::write(
            &rules_path,
            if rules.is_empty() { "rules: []" } else { rules },
        )
        .unwrap();
        let yaml = format!(
            "data_dir: {}\nrules: [{}]\n{config}",
            dir.path().display(),
            rules_path.display()
        );
        let raw: tocsin_config::collector::RawCollectorConfig =
            tocsin_config::parse_yaml(&yaml).expect("test config parses");
        let cfg = raw.validate().expect("test config is valid");
        let (rules, _) = crate::rulefiles::load(&cfg.rules).expect("test rules load");
        let db = dir.path().join("tocsin.db");
        let store =
            tocsin_store::Store::open(&db, crate::cli::serve::store_options(&cfg)).expect("store");
        let tel = Telemetry::new();
        let view = Arc::new(RwLock::new(View::default()));
        let (wake, _) = watch::channel(0u64);
        let (tx, rx) = mpsc::channel::<Msg>(64);
        let secret = Arc::new(b"test ack key".to_vec());
        let settings = crate::cli::serve::writer_settings(
            &cfg,
            Arc::clone(&secret),
            Arc::new(tocsin_notify::Urgent::default()),
        );
        let resolver = store.resolver();
        let writer = Writer::new(store, rules, settings, Arc::clone(&view), wake, tel.clone())
            .expect("writer");
        // Ends when every sender (the state, the router) is dropped.
        std::thread::spawn(move || writer.run(rx));
        let state = crate::cli::serve::app_state(&cfg, &db, tx, resolver, view, tel, secret)
            .expect("state");
        TestApi {
            app: super::app(state.clone()),
            state,
            _dir: dir,
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("Content-Type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Answer {
        let r = self.app.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            json,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None).await
    }

    /// A remote-write request of `series`, with `token` when given.
    pub(crate) fn write_request(series: &[SeriesSamples], token: Option<&str>) -> Request<Body> {
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/v1/write")
            .header("Content-Type", tocsin_wire::CONTENT_TYPE)
            .header("Content-Encoding", tocsin_wire::CONTENT_ENCODING);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.body(Body::from(tocsin_wire::encode(&tocsin_wire::to_request(
            series,
        ))))
        .unwrap()
    }

    /// Stores samples through the API, as an agent does; the answer's status.
    pub(crate) async fn write(&self, series: &[SeriesSamples]) -> StatusCode {
        self.send(Self::write_request(series, None)).await.status
    }

    /// Has the writer evaluate time-driven state (`for`, staleness, the view) now.
    pub(crate) async fn tick(&self) {
        self.state.writer.send(Msg::Tick).await.unwrap();
    }

    /// Asks `path` until `ok` holds for its answer, for at most five seconds (the writer
    /// refreshes what the API reads after its commits, or — after a burst, when a refresh
    /// costs much next to the time since the last — at its next tick: ticked every second
    /// meanwhile, as the collector's clock does).
    pub(crate) async fn wait_for(&self, path: &str, ok: impl Fn(&Answer) -> bool) -> Answer {
        let start = std::time::Instant::now();
        let deadline = start + std::time::Duration::from_secs(5);
        let mut ticked = start;
        loop {
            let a = self.get(path).await;
            if ok(&a) {
                return a;
            }
            if ticked.elapsed() >= std::time::Duration::from_secs(1) {
                self.tick().await;
                ticked = std::time::Instant::now();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} never became as expected; last answer {} {}",
                a.status,
                a.json
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// One series with one sample now.
pub(crate) fn series(pairs: &[(&str, &str)], value: f64) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples: vec![Sample {
            timestamp_ms: tocsin_model::now_ms(),
            value,
        }],
    }
}
