//! Shipping: every batch is appended to the durable buffer (`tocsin-spool`) first, then a task
//! sends the buffer in order with retries, acknowledging records only once the collector has.
//! When the buffer cannot be written (the host's disk is full: exactly when its samples matter),
//! batches wait in memory behind it, up to `MEMORY_MAX_BYTES`, and go out in the same order; they
//! move into the buffer as soon as it can be written again.
//! While a backlog is being replayed (after an outage), each new batch also goes ahead of it as
//! a live-only request, so alerting sees fresh data while the backlog fills history, throttled
//! to `buffer.replay_rate`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tocsin_config::agent::{BufferConfig, ShippingConfig};
use tocsin_spool::{Options, Spool};
use tocsin_wire::client::{Answer, Verdict};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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

/// Most samples in one request read from the buffer.
const MAX_REQUEST_SAMPLES: usize = 10_000;
/// Most compressed bytes in one request read from the buffer.
const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Records waiting beyond which the buffer counts as a backlog (fresh batches go first, the
/// rest is throttled).
const BACKLOG_RECORDS: u64 = 3;

/// Most compressed bytes of batches held in memory while the buffer cannot be written.
const MEMORY_MAX_BYTES: usize = 16 << 20;

/// The durable buffer between the samplers and the shipping task.
pub struct Buffer {
    queue: Mutex<Queue>,
    ready: Notify,
    /// The newest batch, not yet sent ahead of a backlog.
    latest: Mutex<Option<Batch>>,
    max_age_ms: i64,
    sync_each: bool,
    tel: Telemetry,
}

/// The spool, then the batches that could not be written to it (all newer than anything in it).
struct Queue {
    spool: Spool,
    mem: VecDeque<Batch>,
    mem_bytes: usize,
    /// Batches at the front of `mem` read by the shipper and not yet acknowledged.
    mem_read: usize,
}

impl Queue {
    fn pending_records(&self) -> u64 {
        self.spool.pending_records() + self.mem.len() as u64
    }

    fn mem_samples(&self) -> u64 {
        self.mem.iter().map(|b| b.samples as u64).sum()
    }

    /// Appends `b` to the spool behind what waits in memory, moving that into the spool first,
    /// in order; old samples the spool drops for space are added to `dropped`. `Ok(false)` when
    /// a batch read from memory is being sent: `b` must wait behind it.
    fn append(&mut self, now: i64, b: &Batch, dropped: &mut u64) -> std::io::Result<bool> {
        if self.mem_read > 0 && !self.mem.is_empty() {
            return Ok(false);
        }
        self.move_mem(now, dropped)?;
        *dropped += self.spool.append(now, b.samples as u32, &b.body)?;
        Ok(true)
    }

    /// Moves the batches waiting in memory into the spool, oldest first, until one fails.
    fn move_mem(&mut self, now: i64, dropped: &mut u64) -> std::io::Result<()> {
        while let Some(m) = self.mem.front() {
            *dropped += self.spool.append(now, m.samples as u32, &m.body)?;
            if let Some(m) = self.mem.pop_front() {
                self.mem_bytes -= m.body.len();
            }
        }
        Ok(())
    }

    /// Keeps `b` in memory; over the bound the oldest not being sent go. Returns the samples
    /// given up.
    fn hold(&mut self, b: Batch) -> u64 {
        self.mem_bytes += b.body.len();
        self.mem.push_back(b);
        let mut dropped = 0;
        while self.mem_bytes > MEMORY_MAX_BYTES && self.mem.len() > self.mem_read.max(1) {
            let old = self.mem.remove(self.mem_read).expect("index within len");
            self.mem_bytes -= old.body.len();
            dropped += old.samples as u64;
        }
        dropped
    }
}

impl Buffer {
    pub fn open(cfg: &BufferConfig, tel: Telemetry) -> anyhow::Result<Arc<Self>> {
        let opts = Options {
            max_bytes: cfg.max_bytes,
            max_age_ms: cfg.max_age.as_millis() as i64,
            segment_bytes: cfg.segment_bytes,
        };
        let spool = Spool::open(&cfg.dir, opts)
            .map_err(|e| anyhow::anyhow!("cannot open the buffer in {}: {e}", cfg.dir.display()))?;
        let l = spool.losses();
        if l.torn_bytes > 0 {
            warn!(
                bytes = l.torn_bytes,
                "buffer: a torn last write was cut off"
            );
        }
        if l.corrupt_records > 0 {
            tel.buffer_corrupt.inc_by(l.corrupt_records);
            warn!(
                records = l.corrupt_records,
                "buffer: corrupt records found; the rest of their segments is skipped"
            );
        }
        info!(
            dir = %cfg.dir.display(),
            pending_samples = spool.pending_samples(),
            bytes = spool.bytes(),
            "buffer opened"
        );
        let b = Arc::new(Buffer {
            queue: Mutex::new(Queue {
                spool,
                mem: VecDeque::new(),
                mem_bytes: 0,
                mem_read: 0,
            }),
            ready: Notify::new(),
            latest: Mutex::new(None),
            max_age_ms: opts.max_age_ms,
            sync_each: cfg.fsync_interval.is_zero(),
            tel,
        });
        b.gauges(&b.lock());
        Ok(b)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gauges(&self, q: &Queue) {
        self.tel
            .buffer_bytes
            .set((q.spool.bytes() + q.mem_bytes as u64) as i64);
        self.tel.buffer_records.set(q.pending_records() as i64);
        let mem = q.mem_samples();
        self.tel
            .buffer_samples
            .set((q.spool.pending_samples() + mem) as i64);
        self.tel.buffer_memory_samples.set(mem as i64);
    }

    /// Appends a batch to the buffer (durable at the next fsync) and wakes the shipper. When
    /// the buffer cannot be written, the batch waits in memory instead.
    pub fn push(&self, b: Batch) {
        let mut q = self.lock();
        let mut dropped = 0;
        let written = q.append(tocsin_model::now_ms(), &b, &mut dropped);
        if dropped > 0 {
            self.dropped("full", dropped);
            warn!(
                samples = dropped,
                "buffer full; its oldest samples were dropped"
            );
        }
        let wait_in_memory = match written {
            Ok(true) => {
                if self.sync_each {
                    fsync(&mut q.spool);
                }
                false
            }
            // Behind a batch being sent from memory.
            Ok(false) => true,
            Err(e) => {
                self.tel.buffer_write_errors.inc();
                if q.mem.is_empty() {
                    error!(error = %e, "cannot write to the buffer; batches wait in memory (not durable) until it can be written");
                }
                true
            }
        };
        if wait_in_memory {
            let lost = q.hold(b.clone());
            if lost > 0 {
                self.dropped("write_error", lost);
            }
        }
        self.gauges(&q);
        drop(q);
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(b);
        self.ready.notify_one();
    }

    /// fsyncs what was appended.
    pub fn sync(&self) {
        fsync(&mut self.lock().spool);
    }

    /// At shutdown, once nothing sends any more: moves the batches waiting in memory (the
    /// buffer could not be written) into the buffer, in order, so the next start sends them.
    /// Returns the samples that still cannot be written: they are lost with the process.
    pub fn persist_memory(&self) -> u64 {
        let mut q = self.lock();
        // A batch the shipper was sending was not acknowledged: it goes too (the collector
        // drops what it already stored).
        q.mem_read = 0;
        let mut dropped = 0;
        if let Err(e) = q.move_mem(tocsin_model::now_ms(), &mut dropped) {
            self.tel.buffer_write_errors.inc();
            warn!(error = %e, "cannot write the batches held in memory to the buffer");
        }
        if dropped > 0 {
            self.dropped("full", dropped);
        }
        fsync(&mut q.spool);
        let lost = q.mem_samples();
        if lost > 0 {
            self.dropped("write_error", lost);
        }
        self.gauges(&q);
        lost
    }

    /// Counts samples the buffer lost, by reason (`tocsin_agent_buffer_dropped_samples_total`).
    fn dropped(&self, reason: &str, samples: u64) {
        self.tel
            .buffer_dropped
            .with_label_values(&[reason])
            .inc_by(samples);
    }

    /// Records waiting to be acknowledged.
    pub fn pending(&self) -> u64 {
        self.lock().pending_records()
    }

    fn backlog(&self) -> bool {
        self.pending() > BACKLOG_RECORDS
    }

    /// The newest batch, once, when a backlog stands before it.
    fn take_fresh(&self, backlog: bool) -> Option<Batch> {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if !backlog {
            // It goes in order with the rest.
            *latest = None;
            return None;
        }
        latest.take()
    }

    /// The next records in order, joined into one request body: (body, samples), or `None` when
    /// everything has been read.
    fn read_request(&self, max_samples: usize) -> Option<(Vec<u8>, usize)> {
        let mut q = self.lock();
        let now = tocsin_model::now_ms();
        let mut bodies = Vec::new();
        let (mut samples, mut bytes) = (0usize, 0usize);
        let s = &mut q.spool;
        let expired_before = s.losses().expired_samples;
        let corrupt_before = s.losses().corrupt_records;
        while samples < max_samples && bytes < MAX_REQUEST_BYTES {
            match s.next(now) {
                Ok(Some(r)) => {
                    samples += r.samples as usize;
                    bytes += r.body.len();
                    bodies.push(r.body);
                }
                Ok(None) => break,
                Err(e) => {
                    error!(error = %e, "cannot read the buffer");
                    break;
                }
            }
        }
        let l = s.losses();
        if l.expired_samples > expired_before {
            let n = l.expired_samples - expired_before;
            self.dropped("expired", n);
            warn!(
                samples = n,
                max_age_ms = self.max_age_ms,
                "buffered samples too old to ship; dropped"
            );
        }
        if l.corrupt_records > corrupt_before {
            self.tel
                .buffer_corrupt
                .inc_by(l.corrupt_records - corrupt_before);
            warn!("corrupt record in the buffer; the rest of its segment is skipped");
        }
        if bodies.is_empty() {
            // Expired records skipped at the cursor are acknowledged with nothing to send.
            let _ = s.commit();
            // Then what waits in memory, newer than anything in the spool.
            while samples < max_samples && bytes < MAX_REQUEST_BYTES {
                let Some(b) = q.mem.get(q.mem_read) else {
                    break;
                };
                samples += b.samples;
                bytes += b.body.len();
                bodies.push(b.body.as_ref().clone());
                q.mem_read += 1;
            }
            if bodies.is_empty() {
                self.gauges(&q);
                return None;
            }
        }
        drop(q);
        if bodies.len() == 1 {
            return bodies.pop().map(|b| (b, samples));
        }
        match tocsin_wire::concat(bodies.iter().map(Vec::as_slice)) {
            Ok(b) => Some((b, samples)),
            Err(e) => {
                // Records are checksummed, so this is a bug rather than damage: send them
                // one by one instead.
                error!(error = %e, "cannot join buffered requests");
                self.rewind();
                let mut q = self.lock();
                match q.spool.next(now).ok().flatten() {
                    Some(r) => Some((r.body, r.samples as usize)),
                    None => {
                        let b = q.mem.front()?.clone();
                        q.mem_read = 1;
                        Some((b.body.as_ref().clone(), b.samples))
                    }
                }
            }
        }
    }

    /// Everything read is acknowledged by the collector.
    fn commit(&self) {
        let mut q = self.lock();
        if let Err(e) = q.spool.commit() {
            warn!(error = %e, "cannot save the buffer's cursor; samples may be sent twice");
        }
        for _ in 0..q.mem_read {
            if let Some(b) = q.mem.pop_front() {
                q.mem_bytes -= b.body.len();
            }
        }
        q.mem_read = 0;
        self.gauges(&q);
    }

    fn rewind(&self) {
        let mut q = self.lock();
        q.spool.rewind();
        q.mem_read = 0;
    }
}

/// fsyncs the buffer every `every` until cancelled, then once more.
pub async fn sync_loop(buffer: Arc<Buffer>, every: Duration, cancel: CancellationToken) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let b = Arc::clone(&buffer);
        let _ = tokio::task::spawn_blocking(move || b.sync()).await;
    }
    buffer.sync();
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

/// Sends the buffer in order until cancelled; whatever is left stays in the buffer.
pub async fn run(
    cfg: ShippingConfig,
    replay_rate: u64,
    fresh_first: bool,
    buffer: Arc<Buffer>,
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
    // Replay throttle: when the next request of a backlog may go.
    let mut next_replay = Instant::now();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let backlog = buffer.backlog();
        if fresh_first && failures == 0 {
            if let Some(b) = buffer.take_fresh(backlog) {
                let token = cfg.token.as_ref().map(|t| t.expose());
                let sent_at = tocsin_model::now_ms().to_string();
                let live = [
                    (tocsin_wire::LIVE_HEADER, "1"),
                    (tocsin_wire::SENT_AT_HEADER, sent_at.as_str()),
                ];
                match tocsin_wire::client::send_with(
                    &client,
                    &cfg.urls[active],
                    token,
                    b.body.as_ref().clone(),
                    &live,
                )
                .await
                {
                    Answer::Accepted { .. } => tel.live_sent.inc_by(b.samples as u64),
                    // It is in the buffer: the ordered replay delivers it anyway.
                    _ => tel.send_errors.with_label_values(&["live"]).inc(),
                }
            }
        }
        if backlog && Instant::now() < next_replay {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next_replay.into()) => {}
                _ = buffer.ready.notified() => {}
            }
            continue;
        }
        // A backlog goes in requests of at most one second's worth of the replay rate.
        let max = if backlog {
            (replay_rate as usize).clamp(1, MAX_REQUEST_SAMPLES)
        } else {
            MAX_REQUEST_SAMPLES
        };
        let Some((body, samples)) = buffer.read_request(max) else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = buffer.ready.notified() => continue,
            }
        };
        if backlog {
            next_replay =
                Instant::now() + Duration::from_secs_f64(samples as f64 / replay_rate as f64);
        }
        // While on a fallback, look back at the preferred collector now and then.
        let target = if active != 0 && last_preferred_try.elapsed() >= cfg.preferred_retry {
            last_preferred_try = Instant::now();
            0
        } else {
            active
        };
        match send(&client, &cfg.urls[target], &cfg, body).await {
            Verdict::Sent { not_newer } => {
                buffer.commit();
                if not_newer > 0 {
                    // A clock that ran ahead and came back, or a batch sent twice.
                    warn!(
                        samples = not_newer,
                        "the collector kept no newer samples: their series already held later ones (clock set back?)"
                    );
                    tel.not_newer.inc_by(not_newer);
                }
                if target != active {
                    info!(url = %cfg.urls[target], "preferred collector is back; returning to it");
                    active = target;
                }
                tel.collector_index.set(active as i64);
                tried_in_cycle = 0;
                if failures > 0 {
                    info!(
                        after_failures = failures,
                        pending = buffer.pending(),
                        "collector reachable again"
                    );
                }
                failures = 0;
                tel.samples_sent
                    .inc_by((samples as u64).saturating_sub(not_newer));
            }
            Verdict::Drop {
                message: why,
                accepted: stored,
            } => {
                buffer.commit();
                let stored = stored.min(samples as u64);
                let lost = samples as u64 - stored;
                warn!(reason = %why, samples = lost, stored, "batch rejected by the collector; dropped");
                tel.send_errors.with_label_values(&["status_4xx"]).inc();
                tel.samples_sent.inc_by(stored);
                tel.dropped_samples
                    .with_label_values(&["rejected"])
                    .inc_by(lost);
            }
            Verdict::Retry {
                kind,
                message: why,
                after,
            } => {
                buffer.rewind();
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
                let wait = tocsin_model::Backoff {
                    first: Duration::from_secs(1),
                    cap: cfg.max_backoff,
                    max_retry_after: cfg.max_backoff.max(Duration::from_secs(1)),
                }
                .delay(failures, after);
                if failures == 1 || failures.is_power_of_two() {
                    warn!(reason = %why, failures, retry_in_ms = wait.as_millis() as u64, pending = buffer.pending(), "write failed; will retry");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, cfg: &ShippingConfig, body: Vec<u8>) -> Verdict {
    let token = cfg.token.as_ref().map(|t| t.expose());
    // Set at each attempt: a retried request tells the clock as it is sent again, and the
    // collector reads this host's clock from it (behind as well as ahead).
    let sent_at = tocsin_model::now_ms().to_string();
    let headers = [(tocsin_wire::SENT_AT_HEADER, sent_at.as_str())];
    tocsin_wire::client::send_with(client, url, token, body, &headers)
        .await
        .verdict(url)
}

fn fsync(s: &mut tocsin_spool::Spool) {
    if let Err(e) = s.sync() {
        error!(error = %e, "buffer fsync failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(v: f64) -> Batch {
        Batch::new(&[tocsin_model::SeriesSamples {
            labels: tocsin_model::Labels::from_pairs([("__name__", "m"), ("host", "h")]),
            samples: vec![tocsin_model::Sample::new(1_700_000_000_000 + v as i64, v)],
        }])
    }

    #[test]
    fn batches_held_in_memory_reach_the_buffer_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
            segment_bytes: 1 << 16,
            fsync_interval: Duration::ZERO,
            replay_rate: 1000,
            fresh_first: true,
        };
        let buf = Buffer::open(&cfg, Telemetry::new()).unwrap();
        {
            // As while the buffer could not be written: batches wait in memory, the first
            // of them being sent.
            let mut q = buf.lock();
            for v in [1.0, 2.0, 3.0] {
                q.hold(batch(v));
            }
            q.mem_read = 1;
        }
        assert_eq!(buf.persist_memory(), 0, "nothing lost");
        drop(buf);
        let again = Buffer::open(&cfg, Telemetry::new()).unwrap();
        assert_eq!(again.pending(), 3, "all three kept for the next start");
        let (_, samples) = again.read_request(100).unwrap();
        assert_eq!(samples, 3);
    }
}
