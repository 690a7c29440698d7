//! Shipping: a bounded queue of encoded batches and the task that sends them in order with
//! retries. The queue is in memory; a durable on-disk buffer can take its place behind the same
//! push / front / pop interface.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tocsin_config::agent::ShippingConfig;
use tocsin_wire::client::Answer;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Telemetry;

/// One remote-write request body, ready to send.
#[derive(Debug, Clone)]
pub struct Batch {
    pub body: Arc<Vec<u8>>,
    pub samples: usize,
}

impl Batch {
    pub fn new(series: &[tocsin_model::SeriesSamples]) -> Self {
        Batch {
            body: Arc::new(tocsin_wire::encode(&tocsin_wire::to_request(series))),
            samples: series.iter().map(|s| s.samples.len()).sum(),
        }
    }
}

/// Bounded FIFO; when full the oldest batch is dropped and counted.
pub struct Queue {
    inner: Mutex<VecDeque<Batch>>,
    max: usize,
    ready: Notify,
    tel: Telemetry,
}

impl Queue {
    pub fn new(max: usize, tel: Telemetry) -> Arc<Self> {
        Arc::new(Queue {
            inner: Mutex::new(VecDeque::new()),
            max,
            ready: Notify::new(),
            tel,
        })
    }

    pub fn push(&self, b: Batch) {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while q.len() >= self.max {
            if let Some(old) = q.pop_front() {
                self.tel
                    .dropped_samples
                    .with_label_values(&["queue_full"])
                    .inc_by(old.samples as u64);
                warn!(
                    samples = old.samples,
                    "shipping queue full; oldest batch dropped"
                );
            }
        }
        q.push_back(b);
        self.tel.queue_batches.set(q.len() as i64);
        drop(q);
        self.ready.notify_one();
    }

    fn front(&self) -> Option<Batch> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .cloned()
    }

    fn pop(&self) {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        q.pop_front();
        self.tel.queue_batches.set(q.len() as i64);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

enum Outcome {
    Sent,
    /// The collector will never accept it (4xx other than 429): drop it.
    Rejected(String),
    Retry(&'static str, String, Option<Duration>),
}

/// The HTTP client for the collector: its timeout, the collector's CA and the agent's client
/// certificate when configured.
pub(crate) fn client(cfg: &ShippingConfig, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("tocsin-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &cfg.ca_pem {
        for c in reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|e| format!("collector.ca_file: {e}"))?
        {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(id) = &cfg.identity_pem {
        b = b.identity(
            reqwest::Identity::from_pem(id)
                .map_err(|e| format!("collector.cert_file/key_file: {e}"))?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// Sends queued batches in order until cancelled; on cancel, tries once to flush what is left.
pub async fn run(
    cfg: ShippingConfig,
    queue: Arc<Queue>,
    tel: Telemetry,
    cancel: CancellationToken,
) {
    let client = match client(&cfg, cfg.timeout) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build HTTP client; nothing will be shipped");
            return;
        }
    };
    let mut failures = 0u32;
    // Index of the collector in use; 0 is the preferred one.
    let mut active = 0usize;
    let mut tried_in_cycle = 0usize;
    let mut last_preferred_try = Instant::now();
    loop {
        let Some(batch) = queue.front() else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = queue.ready.notified() => continue,
            }
        };
        // While on a fallback, look back at the preferred collector now and then.
        let target = if active != 0 && last_preferred_try.elapsed() >= cfg.preferred_retry {
            last_preferred_try = Instant::now();
            0
        } else {
            active
        };
        match send(&client, &cfg.urls[target], &cfg, &batch).await {
            Outcome::Sent => {
                if target != active {
                    info!(url = %cfg.urls[target], "preferred collector is back; returning to it");
                    active = target;
                }
                tel.collector_index.set(active as i64);
                tried_in_cycle = 0;
                if failures > 0 {
                    info!(after_failures = failures, "collector reachable again");
                }
                failures = 0;
                tel.samples_sent.inc_by(batch.samples as u64);
                queue.pop();
            }
            Outcome::Rejected(why) => {
                warn!(reason = %why, samples = batch.samples, "batch rejected by the collector; dropped");
                tel.send_errors.with_label_values(&["status_4xx"]).inc();
                tel.dropped_samples
                    .with_label_values(&["rejected"])
                    .inc_by(batch.samples as u64);
                queue.pop();
            }
            Outcome::Retry(kind, why, after) => {
                tel.send_errors.with_label_values(&[kind]).inc();
                if target != active {
                    // The preferred collector is still down: carry on with the fallback.
                    continue;
                }
                let unreachable = matches!(kind, "connect" | "status_5xx");
                if unreachable && tried_in_cycle + 1 < cfg.urls.len() {
                    tried_in_cycle += 1;
                    active = (active + 1) % cfg.urls.len();
                    last_preferred_try = Instant::now();
                    tel.collector_index.set(active as i64);
                    warn!(reason = %why, next = %cfg.urls[active], "collector unreachable; failing over");
                    continue;
                }
                tried_in_cycle = 0;
                failures += 1;
                let base = Duration::from_millis(500)
                    .saturating_mul(1 << failures.min(10))
                    .min(cfg.max_backoff);
                let wait = after
                    .unwrap_or(base)
                    .min(cfg.max_backoff.max(Duration::from_secs(1)));
                let wait = wait.mul_f64(0.8 + fastrand::f64() * 0.4);
                if failures == 1 || failures.is_power_of_two() {
                    warn!(reason = %why, failures, retry_in_ms = wait.as_millis() as u64, queued = queue.len(), "write failed; will retry");
                }
                if cancel.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, cfg: &ShippingConfig, b: &Batch) -> Outcome {
    let token = cfg.token.as_ref().map(|t| t.expose());
    match tocsin_wire::client::send(client, url, token, b.body.as_ref().clone()).await {
        Answer::Accepted => Outcome::Sent,
        Answer::Refused {
            status,
            retry_after,
            message,
        } => match status {
            429 => Outcome::Retry("throttled", message, retry_after),
            // Auth problems are fixed by people, not by dropping data: keep retrying.
            401 | 403 => Outcome::Retry("unauthorized", message, retry_after),
            500..=599 => Outcome::Retry("status_5xx", message, retry_after),
            _ => Outcome::Rejected(message),
        },
        Answer::Unreachable(e) => Outcome::Retry("connect", e, None),
    }
}
