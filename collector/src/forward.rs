//! Remote-write forwarding: everything the collector made durable is sent on to
//! Prometheus-compatible TSDBs, each target with its own bounded queue, batching, retries with
//! backoff (honouring `Retry-After`), and metrics on what is sent, queued, dropped and how far
//! behind it is. A slow or dead target never holds up ingest: when its queue is full the oldest
//! samples are dropped and counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tocsin_config::collector::RemoteWriteConfig;
use tocsin_model::{now_ms, SeriesSamples};
use tocsin_wire::client::Verdict;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

#[derive(Clone)]
struct Metrics {
    samples: IntCounterVec,
    queued: IntGaugeVec,
    lag: IntGaugeVec,
}

impl Metrics {
    fn new(reg: &Registry) -> prometheus::Result<Metrics> {
        let samples = IntCounterVec::new(
            Opts::new(
                "tocsin_forward_samples_total",
                "Samples forwarded over remote-write, by target and result (sent, dropped, rejected).",
            ),
            &["target", "result"],
        )?;
        let queued = IntGaugeVec::new(
            Opts::new(
                "tocsin_forward_queued_samples",
                "Samples waiting to be forwarded.",
            ),
            &["target"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "tocsin_forward_lag_seconds",
                "Age of the oldest sample batch waiting to be forwarded (0 when caught up).",
            ),
            &["target"],
        )?;
        reg.register(Box::new(samples.clone()))?;
        reg.register(Box::new(queued.clone()))?;
        reg.register(Box::new(lag.clone()))?;
        Ok(Metrics {
            samples,
            queued,
            lag,
        })
    }
}

/// (when it was queued, the series) per committed group.
struct Queue {
    items: VecDeque<(i64, Arc<Vec<SeriesSamples>>)>,
    samples: usize,
}

/// One target's queue, fed by the writer after each commit.
pub struct Target {
    name: String,
    /// The other collector of a high-availability pair: gets only what agents sent.
    pub peer: bool,
    max_samples: usize,
    queue: Mutex<Queue>,
    ready: Notify,
    metrics: Metrics,
}

impl Target {
    /// Counts a request of `n` samples the receiver refused, `accepted` of them stored all the
    /// same (a tocsin collector says how many: `X-Tocsin-Accepted-Samples`); the rejected ones.
    fn count_refusal(&self, n: usize, accepted: usize) -> usize {
        let stored = accepted.min(n);
        let c = |result: &str, k: usize| {
            if k > 0 {
                self.metrics
                    .samples
                    .with_label_values(&[&self.name, result])
                    .inc_by(k as u64);
            }
        };
        c("sent", stored);
        c("rejected", n - stored);
        n - stored
    }

    /// Queues a committed group; drops the oldest groups beyond the bound.
    pub fn push(&self, batch: Arc<Vec<SeriesSamples>>) {
        let n: usize = batch.iter().map(|s| s.samples.len()).sum();
        if n == 0 {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.items.push_back((now_ms(), batch));
        q.samples += n;
        let mut dropped = 0;
        while q.samples > self.max_samples && q.items.len() > 1 {
            if let Some((_, old)) = q.items.pop_front() {
                let m: usize = old.iter().map(|s| s.samples.len()).sum();
                q.samples -= m;
                dropped += m;
            }
        }
        self.metrics
            .queued
            .with_label_values(&[&self.name])
            .set(q.samples as i64);
        drop(q);
        if dropped > 0 {
            self.metrics
                .samples
                .with_label_values(&[&self.name, "dropped"])
                .inc_by(dropped as u64);
            warn!(target = %self.name, dropped, "forwarding queue full; oldest samples dropped");
        }
        self.ready.notify_one();
    }

    /// Up to `max` samples from the front, without removing them; with how many groups that is.
    fn peek(&self, max: usize) -> (Vec<SeriesSamples>, usize, usize, Option<i64>) {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let (mut n, mut groups) = (0usize, 0usize);
        for (_, b) in &q.items {
            let m: usize = b.iter().map(|s| s.samples.len()).sum();
            if groups > 0 && n + m > max {
                break;
            }
            out.extend(b.iter().cloned());
            n += m;
            groups += 1;
        }
        (out, n, groups, q.items.front().map(|(t, _)| *t))
    }

    fn pop(&self, groups: usize, samples: usize) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..groups {
            q.items.pop_front();
        }
        q.samples = q.samples.saturating_sub(samples);
        self.metrics
            .queued
            .with_label_values(&[&self.name])
            .set(q.samples as i64);
    }
}

/// Starts one sender per target, watched by `sup`; returns the queues the writer feeds.
pub fn start(
    targets: &[RemoteWriteConfig],
    reg: &Registry,
    cancel: CancellationToken,
    tracker: &TaskTracker,
    sup: &tocsin_runtime::Supervisor,
) -> anyhow::Result<Vec<Arc<Target>>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let metrics = Metrics::new(reg)?;
    let mut out = Vec::new();
    for cfg in targets {
        let t = Arc::new(Target {
            name: cfg.name.clone(),
            peer: cfg.peer,
            max_samples: cfg.queue_max_samples,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                samples: 0,
            }),
            ready: Notify::new(),
            metrics: metrics.clone(),
        });
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("tocsin-collector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        info!(target = %cfg.name, url = %tocsin_config::redact_url(&cfg.url), "forwarding over remote-write");
        sup.spawn(
            tracker,
            "forwarding",
            send_loop(cfg.clone(), Arc::clone(&t), client, cancel.clone()),
        );
        out.push(t);
    }
    Ok(out)
}

/// How a failed forward waits: 1 s doubling to a minute; a target's `Retry-After` up to 5 min.
const FORWARD_BACKOFF: tocsin_model::Backoff = tocsin_model::Backoff {
    first: Duration::from_secs(1),
    cap: Duration::from_secs(60),
    max_retry_after: Duration::from_secs(300),
};

async fn send_once(client: &reqwest::Client, cfg: &RemoteWriteConfig, body: Vec<u8>) -> Verdict {
    let token = cfg.bearer_token.as_ref().map(|t| t.expose());
    let marks: &[(&str, &str)] = if cfg.peer {
        &[(tocsin_wire::FORWARDED_HEADER, "1")]
    } else {
        &[]
    };
    tocsin_wire::client::send_with(client, &cfg.url, token, body, marks)
        .await
        .verdict(&tocsin_config::redact_url(&cfg.url))
}

/// Adds each external label to the series that lack it (a series' own value wins, as with
/// Prometheus' `external_labels`).
fn with_external_labels(series: &mut [SeriesSamples], external: &[(String, String)]) {
    for s in series.iter_mut() {
        for (k, v) in external {
            if s.labels.get(k).is_none() {
                s.labels.set(k.as_str(), v.as_str());
            }
        }
    }
}

async fn send_loop(
    cfg: RemoteWriteConfig,
    t: Arc<Target>,
    client: reqwest::Client,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let (mut series, n, groups, oldest) = t.peek(cfg.max_samples_per_send);
        t.metrics
            .lag
            .with_label_values(&[&t.name])
            .set(oldest.map_or(0, |o| (now_ms() - o) / 1000));
        if groups == 0 {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = t.ready.notified() => continue,
            }
        }
        with_external_labels(&mut series, &cfg.external_labels);
        let body = tocsin_wire::encode(&tocsin_wire::to_request(&series));
        match send_once(&client, &cfg, body).await {
            Verdict::Sent { .. } => {
                if failures > 0 {
                    info!(target = %t.name, after_failures = failures, "forwarding target reachable again");
                }
                failures = 0;
                t.metrics
                    .samples
                    .with_label_values(&[&t.name, "sent"])
                    .inc_by(n as u64);
                t.pop(groups, n);
            }
            Verdict::Drop {
                message: why,
                accepted,
            } => {
                // Out-of-order or duplicate samples a TSDB refuses: retrying cannot help.
                let rejected = t.count_refusal(n, usize::try_from(accepted).unwrap_or(usize::MAX));
                warn!(target = %t.name, reason = %why, samples = rejected, stored = n - rejected, "forwarded samples rejected");
                t.pop(groups, n);
            }
            Verdict::Retry {
                message: why,
                after,
                ..
            } => {
                failures += 1;
                let wait = FORWARD_BACKOFF.delay(failures, after);
                if failures == 1 || failures.is_power_of_two() {
                    warn!(target = %t.name, reason = %why, failures, "forwarding failed; will retry");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_model::{Labels, Sample};

    fn target(max_samples: usize) -> Target {
        Target {
            name: "t".into(),
            peer: false,
            max_samples,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                samples: 0,
            }),
            ready: Notify::new(),
            metrics: Metrics::new(&Registry::new()).unwrap(),
        }
    }

    /// A committed group of `n` samples of one series named `name`.
    fn group(name: &str, n: usize) -> Arc<Vec<SeriesSamples>> {
        Arc::new(vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", name)]),
            samples: (0..n as i64)
                .map(|i| Sample::new(1_700_000_000_000 + i, 1.0))
                .collect(),
        }])
    }

    fn names(series: &[SeriesSamples]) -> Vec<&str> {
        series
            .iter()
            .map(|s| s.labels.get("__name__").unwrap())
            .collect()
    }

    #[test]
    fn batches_are_whole_groups_in_order_and_stay_until_popped() {
        let t = target(100);
        t.push(group("a", 3));
        t.push(group("b", 4));
        t.push(group("c", 5));
        t.push(group("empty", 0));
        // At most 8 samples: a and b (7); c would pass the limit.
        let (series, n, groups, oldest) = t.peek(8);
        assert_eq!((names(&series), n, groups), (vec!["a", "b"], 7, 2));
        assert!(oldest.is_some());
        // A failed send leaves them in place.
        assert_eq!(t.peek(8).1, 7);
        t.pop(groups, n);
        let (series, n, groups, _) = t.peek(8);
        assert_eq!((names(&series), n, groups), (vec!["c"], 5, 1));
        // A group larger than the batch limit still goes, alone.
        t.push(group("big", 50));
        t.pop(1, 5);
        assert_eq!(t.peek(8).1, 50);
    }

    #[test]
    fn samples_a_receiver_stored_of_a_refused_request_count_as_sent() {
        let t = target(100);
        let count = |r: &str| t.metrics.samples.with_label_values(&["t", r]).get();
        // A collector refusing the derived series of another: the rest stored.
        assert_eq!(t.count_refusal(10, 7), 3);
        assert_eq!((count("sent"), count("rejected")), (7, 3));
        // A receiver that says nothing: all of them rejected; an absurd count is bounded.
        assert_eq!(t.count_refusal(5, 0), 5);
        assert_eq!(t.count_refusal(4, 9), 0);
        assert_eq!((count("sent"), count("rejected")), (11, 8));
    }

    #[test]
    fn beyond_the_bound_the_oldest_groups_go_and_are_counted() {
        let t = target(10);
        t.push(group("a", 4));
        t.push(group("b", 4));
        t.push(group("c", 4));
        let (series, n, _, _) = t.peek(100);
        assert_eq!((names(&series), n), (vec!["b", "c"], 8));
        let dropped = t.metrics.samples.with_label_values(&["t", "dropped"]).get();
        assert_eq!(dropped, 4);
        // The newest group is kept whatever its size.
        t.push(group("huge", 25));
        let (series, n, _, _) = t.peek(100);
        assert_eq!((names(&series), n), (vec!["huge"], 25));
        assert_eq!(t.metrics.queued.with_label_values(&["t"]).get(), 25);
    }
}
