//! One delivery worker per receiver, draining that receiver's outbox rows in order.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tocsin_alerting::Payload;
use tocsin_config::collector::{RateLimit, ReceiverConfig};
use tocsin_model::now_ms;
use tocsin_store::{Outbox, OutboxItem, OutboxStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

#[derive(Clone)]
pub struct DeliveryMetrics {
    sent: IntCounterVec,
    pending: IntGaugeVec,
    digested: IntCounterVec,
    held: IntGaugeVec,
}

/// Notifications that cannot go through the outbox because the collector's own database
/// cannot be written (the page that says so): held in memory per receiver and sent by that
/// receiver's worker ahead of its outbox. Lost if the collector stops before sending them.
#[derive(Debug, Default)]
pub struct Urgent {
    queue: Mutex<std::collections::BTreeMap<String, Vec<UrgentItem>>>,
}

#[derive(Debug, Clone)]
struct UrgentItem {
    /// Sent as `X-Tocsin-Notification-Id`: negative, so it never equals an outbox id.
    id: i64,
    payload: String,
    attempts: u32,
}

/// Attempts at an urgent notification before it is dropped (counted as `dead`).
const URGENT_ATTEMPTS: u32 = 10;

impl Urgent {
    pub fn push(&self, receiver: &str, payload: String, id: i64) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(receiver.to_string())
            .or_default()
            .push(UrgentItem {
                id: -id.abs().max(1),
                payload,
                attempts: 0,
            });
    }

    fn take(&self, receiver: &str) -> Vec<UrgentItem> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(receiver)
            .unwrap_or_default()
    }

    fn put_back(&self, receiver: &str, mut items: Vec<UrgentItem>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let e = q.entry(receiver.to_string()).or_default();
        items.append(e);
        *e = items;
    }

    fn waiting(&self, receiver: &str) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(receiver)
            .is_some_and(|v| !v.is_empty())
    }
}

/// At most `count` messages in any `per`, for each of its windows (an hour's and a day's):
/// sliding windows over the send times, kept as long as the longest window.
#[derive(Debug)]
pub struct RateLimiter {
    /// (count, per in ms)
    windows: Vec<(usize, i64)>,
    longest_ms: i64,
    sent: std::collections::VecDeque<i64>,
}

impl RateLimiter {
    /// `None` when there is no window.
    pub fn new(windows: &[RateLimit]) -> Option<RateLimiter> {
        let windows: Vec<(usize, i64)> = windows
            .iter()
            .map(|w| (w.count as usize, w.per.as_millis() as i64))
            .collect();
        let longest_ms = windows.iter().map(|w| w.1).max()?;
        Some(RateLimiter {
            windows,
            longest_ms,
            sent: Default::default(),
        })
    }

    /// How far back sends matter.
    pub fn memory_ms(&self) -> i64 {
        self.longest_ms
    }

    /// Takes in sends made before (by an earlier run), oldest first.
    pub fn remember(&mut self, times: impl IntoIterator<Item = i64>) {
        self.sent.extend(times);
    }

    /// Sends within a window of `per_ms` before `now`.
    fn within(&self, now: i64, per_ms: i64) -> usize {
        self.sent.len() - self.sent.partition_point(|t| now - t >= per_ms)
    }

    /// Messages that may go out at `now`: the fewest any window has left.
    pub fn available(&mut self, now: i64) -> usize {
        while self
            .sent
            .front()
            .is_some_and(|t| now - t >= self.longest_ms)
        {
            self.sent.pop_front();
        }
        self.windows
            .iter()
            .map(|&(count, per)| count.saturating_sub(self.within(now, per)))
            .min()
            .unwrap_or(usize::MAX)
    }

    /// When the next message may go out (after `available` said none): when every full
    /// window has let go of the send that fills it.
    pub fn next_free(&self, now: i64) -> i64 {
        self.windows
            .iter()
            .filter_map(|&(count, per)| {
                let n = self.within(now, per);
                (n >= count && count > 0).then(|| self.sent[self.sent.len() - count] + per)
            })
            .max()
            .unwrap_or(now)
    }

    pub fn record(&mut self, now: i64) {
        self.sent.push_back(now);
    }
}

impl DeliveryMetrics {
    pub fn new(reg: &Registry) -> prometheus::Result<Self> {
        let sent = IntCounterVec::new(
            Opts::new(
                "tocsin_notifications_total",
                "Notification delivery attempts by receiver and result (delivered, failed, dead).",
            ),
            &["receiver", "result"],
        )?;
        let pending = IntGaugeVec::new(
            Opts::new(
                "tocsin_notifications_pending",
                "Notifications waiting in the outbox, by receiver.",
            ),
            &["receiver"],
        )?;
        let digested = IntCounterVec::new(
            Opts::new(
                "tocsin_notifications_digested_total",
                "Notifications merged into a digest message because the receiver's rate limit was reached.",
            ),
            &["receiver"],
        )?;
        let held = IntGaugeVec::new(
            Opts::new(
                "tocsin_notifications_rate_limited",
                "1 while a receiver's notifications wait for its rate limit (every message its windows allow has gone out), else 0.",
            ),
            &["receiver"],
        )?;
        reg.register(Box::new(sent.clone()))?;
        reg.register(Box::new(pending.clone()))?;
        reg.register(Box::new(digested.clone()))?;
        reg.register(Box::new(held.clone()))?;
        Ok(Self {
            sent,
            pending,
            digested,
            held,
        })
    }
}

/// How a failed delivery waits: 1 s doubling to 5 min.
const DELIVERY_BACKOFF: tocsin_model::Backoff = tocsin_model::Backoff {
    first: Duration::from_secs(1),
    cap: Duration::from_secs(300),
    max_retry_after: Duration::from_secs(300),
};

/// Delay before attempt `attempts + 1`, jittered.
pub fn backoff_ms(attempts: u32) -> i64 {
    DELIVERY_BACKOFF.delay(attempts + 1, None).as_millis() as i64
}

/// One worker per receiver, to run as a task each (the caller spawns and watches them). `wake`
/// changes after every commit that queued notifications.
pub fn workers(
    receivers: &[ReceiverConfig],
    db: &Path,
    urgent: &Arc<Urgent>,
    wake: watch::Receiver<u64>,
    metrics: DeliveryMetrics,
    cancel: CancellationToken,
) -> Result<Vec<impl std::future::Future<Output = ()> + Send + 'static>, String> {
    let mut out = Vec::with_capacity(receivers.len());
    for r in receivers {
        let channel = crate::channel::build(r)?;
        let outbox = Outbox::open(db, true).map_err(|e| format!("receiver {}: {e}", r.name))?;
        let w = Worker {
            name: r.name.clone(),
            limiter: limiter(&outbox, r).map(Mutex::new),
            max_attempts: r.max_attempts,
            channel,
            outbox: Arc::new(Mutex::new(outbox)),
            metrics: metrics.clone(),
            unsettled: Mutex::new(Vec::new()),
            urgent: Arc::clone(urgent),
        };
        // Every result from zero, so that the first failure is an increase (rules read
        // `increase(tocsin_notifications_total[…])`).
        for result in ["delivered", "failed", "dead"] {
            metrics.sent.with_label_values(&[&r.name, result]);
        }
        let span = tracing::info_span!("receiver", name = %r.name);
        out.push(w.run(wake.clone(), cancel.clone()).instrument(span));
    }
    Ok(out)
}

/// The receivers of `config`, delivered until `cancel`. When `config` changes (a configuration
/// reload), the workers finish the send under way and stop, then the new receivers' start:
/// each reads its outbox afresh, so nothing queued is lost, and no two workers ever send one
/// receiver's rows at once. A receiver removed leaves its queued rows in the outbox (counted by
/// the caller), delivered if it comes back. The sender checks receivers before it hands them
/// over (`check_receiver`); workers that cannot start are tried again each second. A worker that panics
/// panics this task too: the collector's supervisor stops it, to be restarted.
pub async fn run_workers(
    mut config: watch::Receiver<Arc<Vec<ReceiverConfig>>>,
    db: std::path::PathBuf,
    urgent: Arc<Urgent>,
    wake: watch::Receiver<u64>,
    metrics: DeliveryMetrics,
    cancel: CancellationToken,
) {
    let mut receivers = config.borrow_and_update().clone();
    let mut watching = true;
    loop {
        let round = cancel.child_token();
        let mut set = tokio::task::JoinSet::new();
        match workers(
            &receivers,
            &db,
            &urgent,
            wake.clone(),
            metrics.clone(),
            round.clone(),
        ) {
            Ok(ws) => {
                for w in ws {
                    set.spawn(w);
                }
            }
            Err(e) => tracing::error!(error = %e, "delivery workers cannot start; retrying"),
        }
        let next = loop {
            tokio::select! {
                _ = cancel.cancelled() => break None,
                r = config.changed(), if watching => match r {
                    Ok(()) => break Some(config.borrow_and_update().clone()),
                    Err(_) => watching = false,
                },
                Some(j) = set.join_next() => rethrow(j),
                // No worker started: try again shortly.
                _ = tokio::time::sleep(Duration::from_secs(1)), if set.is_empty() && !receivers.is_empty() => break Some(receivers.clone()),
            }
        };
        round.cancel();
        while let Some(j) = set.join_next().await {
            rethrow(j);
        }
        match next {
            Some(r) => {
                // The gauges of receivers gone would hold their last values for good.
                for gone in receivers
                    .iter()
                    .filter(|o| r.iter().all(|n| n.name != o.name))
                {
                    let _ = metrics.pending.remove_label_values(&[&gone.name]);
                    let _ = metrics.held.remove_label_values(&[&gone.name]);
                }
                receivers = r;
            }
            None => return,
        }
    }
}

/// A worker's panic, passed on.
fn rethrow(j: Result<(), tokio::task::JoinError>) {
    if let Err(e) = j {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// The receiver's rate limiter, with the sends of its windows made before this start (a
/// restart does not start a day's budget afresh).
fn limiter(outbox: &Outbox, r: &ReceiverConfig) -> Option<RateLimiter> {
    let mut l = RateLimiter::new(&r.rate_limits)?;
    let since = now_ms() - l.memory_ms();
    match outbox.sends_since(&r.name, since) {
        Ok(times) => l.remember(times),
        // The limiter starts empty: at worst one window's worth more, as before sends were kept.
        Err(e) => {
            warn!(receiver = %r.name, error = %e, "cannot read earlier sends for the rate limit")
        }
    }
    Some(l)
}

struct Worker {
    name: String,
    limiter: Option<Mutex<RateLimiter>>,
    max_attempts: u32,
    channel: Box<dyn crate::channel::Channel>,
    outbox: Arc<Mutex<Outbox>>,
    metrics: DeliveryMetrics,
    /// Outcomes of sends that could not be recorded (the database refused the write: a full
    /// disk, a lock). They are recorded before anything else is fetched, so a notification
    /// already delivered is not sent again while the outbox cannot be written.
    unsettled: Mutex<Vec<Outcome>>,
    urgent: Arc<Urgent>,
}

/// What one send means for its outbox rows.
#[derive(Debug, Clone)]
enum Outcome {
    Delivered(Vec<i64>),
    Failed {
        id: i64,
        error: String,
        retry_at: Option<i64>,
    },
}

impl Worker {
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> tocsin_store::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let ob = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || {
            let ob = ob.lock().unwrap_or_else(|p| p.into_inner());
            f(&ob)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    async fn run(self, mut wake: watch::Receiver<u64>, cancel: CancellationToken) {
        let mut wake_alive = true;
        loop {
            self.send_urgent().await;
            let wait = match self.drain().await {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "outbox unavailable");
                    Duration::from_secs(1)
                }
            };
            let wait = if self.urgent.waiting(&self.name) {
                wait.min(Duration::from_secs(2))
            } else {
                wait
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = wake.changed(), if wake_alive => wake_alive = r.is_ok(),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends the urgent notifications waiting for this receiver; failed ones wait for the next
    /// round, up to `URGENT_ATTEMPTS`.
    async fn send_urgent(&self) {
        let mut keep = Vec::new();
        for mut it in self.urgent.take(&self.name) {
            let result = match self.deliver(&it.payload, it.id).await {
                Ok(()) => "delivered",
                Err(e) => {
                    it.attempts += 1;
                    if it.attempts < URGENT_ATTEMPTS {
                        info!(id = it.id, attempts = it.attempts, error = %e, "urgent notification failed, will retry");
                        keep.push(it);
                        "failed"
                    } else {
                        warn!(id = it.id, attempts = it.attempts, error = %e, "urgent notification dropped");
                        "dead"
                    }
                }
            };
            self.metrics
                .sent
                .with_label_values(&[&self.name, result])
                .inc();
        }
        if !keep.is_empty() {
            self.urgent.put_back(&self.name, keep);
        }
    }

    /// Records the outcomes kept from sends whose record failed, oldest first.
    async fn record_unsettled(&self) -> Result<(), String> {
        loop {
            let Some(first) = self
                .unsettled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first()
                .cloned()
            else {
                return Ok(());
            };
            self.record(first).await?;
            self.unsettled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(0);
        }
    }

    async fn record(&self, outcome: Outcome) -> Result<(), String> {
        self.db(move |o| match &outcome {
            Outcome::Delivered(ids) => ids.iter().try_for_each(|id| o.mark_delivered(*id)),
            Outcome::Failed {
                id,
                error,
                retry_at,
            } => o.mark_failed(*id, error, *retry_at),
        })
        .await
    }

    /// Sends what is due, in order; returns how long to wait before looking again.
    async fn drain(&self) -> Result<Duration, String> {
        self.record_unsettled().await?;
        'fetch: loop {
            let name = self.name.clone();
            let items: Vec<OutboxItem> = self.db(move |o| o.pending(&name, 32)).await?;
            let name = self.name.clone();
            let n = self
                .db(move |o| o.count(&name, OutboxStatus::Pending))
                .await?;
            self.metrics
                .pending
                .with_label_values(&[&self.name])
                .set(n as i64);
            if items.is_empty() {
                return Ok(Duration::from_secs(5));
            }
            for it in items {
                let now = now_ms();
                if it.next_attempt_ms > now {
                    return Ok(Duration::from_millis((it.next_attempt_ms - now) as u64));
                }
                // A report is one message a day at most: not held by, nor counted against,
                // the rate limit, and never merged into a digest.
                let report = tocsin_reports::Report::is_outbox(&it.payload);
                if let Some(lim) = self.limiter.as_ref().filter(|_| !report) {
                    let available = lim.lock().unwrap_or_else(|p| p.into_inner()).available(now);
                    self.metrics
                        .held
                        .with_label_values(&[&self.name])
                        .set(i64::from(available == 0));
                    if available == 0 {
                        let free = lim.lock().unwrap_or_else(|p| p.into_inner()).next_free(now);
                        return Ok(Duration::from_millis((free - now).max(10) as u64));
                    }
                    if available == 1 && n > 1 {
                        // The last message a window allows: everything due goes in it.
                        self.send_digest(it, now).await?;
                        continue 'fetch;
                    }
                }
                let result = self.deliver(&it.payload, it.id).await;
                if result.is_ok() && !report {
                    self.count_send(now).await;
                }
                if !self.settle(&[it], result).await? {
                    // Keep order: nothing after this item goes out before it does.
                    break;
                }
            }
        }
    }

    /// Counts a message the receiver took against its rate limit, in memory and in the
    /// database (kept across a restart). A failed attempt is not counted: a provider that
    /// errs for an hour must not spend the day's texts on retries. When the database cannot
    /// take the record, memory still holds it (a restart then forgets that one message).
    async fn count_send(&self, now: i64) {
        let Some(lim) = &self.limiter else {
            return;
        };
        let forget = {
            let mut l = lim.lock().unwrap_or_else(|p| p.into_inner());
            l.record(now);
            now - l.memory_ms()
        };
        let name = self.name.clone();
        if let Err(e) = self.db(move |o| o.record_send(&name, now, forget)).await {
            warn!(error = %e, "cannot record a send for the rate limit across restarts");
        }
    }

    /// Sends one stored notification through the channel.
    async fn deliver(&self, payload: &str, id: i64) -> Result<(), String> {
        if let Some(r) = tocsin_reports::Report::from_outbox(payload) {
            return self
                .channel
                .send_report(payload, &r, id)
                .await
                .map_err(|e| e.to_string());
        }
        let n = Payload::parse(payload)?;
        self.channel
            .send(payload, &n, id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Merges `first` and every other due item into one message and sends it.
    async fn send_digest(&self, first: OutboxItem, now: i64) -> Result<(), String> {
        let name = self.name.clone();
        let mut items: Vec<OutboxItem> = self.db(move |o| o.pending(&name, 1000)).await?;
        items
            .retain(|i| i.next_attempt_ms <= now && !tocsin_reports::Report::is_outbox(&i.payload));
        if items.first().map(|i| i.id) != Some(first.id) {
            items.insert(0, first);
        }
        let bodies: Vec<Payload> = items
            .iter()
            .filter_map(|i| Payload::parse(&i.payload).ok())
            .collect();
        let body = if items.len() == 1 || bodies.is_empty() {
            items[0].payload.clone()
        } else {
            tocsin_alerting::digest(&bodies).to_json()
        };
        info!(merged = items.len(), "rate limit reached: sending a digest");
        let result = self.deliver(&body, items[0].id).await;
        if result.is_ok() {
            self.count_send(now).await;
        }
        if result.is_ok() && items.len() > 1 {
            self.metrics
                .digested
                .with_label_values(&[&self.name])
                .inc_by(items.len() as u64);
        }
        self.settle(&items, result).await.map(drop)
    }

    /// Records the outcome of one send standing for `items`; true when delivered (or
    /// dead-lettered), false when it will be retried.
    async fn settle(
        &self,
        items: &[OutboxItem],
        result: Result<(), String>,
    ) -> Result<bool, String> {
        match result {
            Ok(()) => {
                self.metrics
                    .sent
                    .with_label_values(&[&self.name, "delivered"])
                    .inc();
                let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
                self.settle_with(Outcome::Delivered(ids)).await?;
                Ok(true)
            }
            Err(e) => {
                // The first item carries the attempt count; the rest wait behind it.
                let it = &items[0];
                let attempts = it.attempts + 1;
                let dead = attempts >= self.max_attempts;
                let retry = (!dead).then(|| now_ms() + backoff_ms(attempts - 1));
                let result = if dead { "dead" } else { "failed" };
                self.metrics
                    .sent
                    .with_label_values(&[&self.name, result])
                    .inc();
                if dead {
                    warn!(id = it.id, attempts, error = %e, "notification dead-lettered");
                } else {
                    info!(id = it.id, attempts, error = %e, "notification failed, will retry");
                }
                self.settle_with(Outcome::Failed {
                    id: it.id,
                    error: e,
                    retry_at: retry,
                })
                .await?;
                Ok(dead)
            }
        }
    }

    /// Records an outcome, or keeps it for `record_unsettled` when the outbox cannot be
    /// written now (an error, so the caller waits before fetching again).
    async fn settle_with(&self, outcome: Outcome) -> Result<(), String> {
        match self.record(outcome.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                warn!(error = %e, ?outcome, "cannot record a delivery: kept, not sent again");
                self.unsettled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(outcome);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(count: u32, secs: u64) -> RateLimit {
        RateLimit {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn rate_limiter_window() {
        let mut l = RateLimiter::new(&[window(3, 60)]).unwrap();
        assert_eq!(l.available(0), 3);
        l.record(0);
        l.record(1_000);
        l.record(2_000);
        assert_eq!(l.available(59_999), 0);
        assert_eq!(l.next_free(59_999), 60_000);
        assert_eq!(l.available(60_000), 1);
        assert_eq!(l.available(62_000), 3);
        assert!(RateLimiter::new(&[]).is_none());
    }

    /// With an hour's window and a day's, a message needs both: the hour frees up, the day's
    /// budget holds until its oldest send is a day old.
    #[test]
    fn every_window_must_allow_a_message() {
        const H: i64 = 3_600_000;
        let mut l = RateLimiter::new(&[window(2, 3600), window(3, 86_400)]).unwrap();
        l.record(0);
        l.record(1);
        assert_eq!(l.available(2), 0);
        assert_eq!(
            l.next_free(2),
            H,
            "the hour's window lets go of the first send"
        );
        assert_eq!(l.available(H + 1), 1, "one left of the day's three");
        l.record(H + 1);
        assert_eq!(l.available(2 * H), 0);
        assert_eq!(l.next_free(2 * H), 24 * H, "the day's budget is spent");
        assert_eq!(l.available(24 * H), 1);
        // Sends of an earlier run count the same.
        let mut again = RateLimiter::new(&[window(2, 3600), window(3, 86_400)]).unwrap();
        again.remember([0, 1, H + 1]);
        assert_eq!(again.available(2 * H), 0);
        assert_eq!(again.memory_ms(), 24 * H);
    }

    #[test]
    fn backoff_grows_and_caps() {
        for a in 0..20 {
            let b = backoff_ms(a);
            let base = (1000i64 << a.min(9)).min(300_000);
            assert!(b >= base * 8 / 10 && b <= base * 12 / 10, "{a}: {b}");
        }
    }
}
