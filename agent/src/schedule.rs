//! A fixed-grid schedule: slots at start + k·interval (no drift), each shifted by a small random
//! jitter so that many agents, or many probes, do not fire in the same instant. A slot missed by
//! a slow run is skipped, not caught up.

use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Grid {
    start: Instant,
    interval: Duration,
    max_jitter: Duration,
    k: u64,
}

impl Grid {
    pub(crate) fn new(interval: Duration) -> Self {
        Grid {
            start: Instant::now(),
            interval,
            max_jitter: (interval / 20).min(Duration::from_millis(500)),
            k: 0,
        }
    }

    /// Sleeps until the next slot after now.
    pub(crate) async fn wait(&mut self) {
        let elapsed = self.start.elapsed();
        self.k = self
            .k
            .max((elapsed.as_nanos() / self.interval.as_nanos()) as u64)
            + 1;
        let jitter = self.max_jitter.mul_f64(fastrand::f64());
        let at = self.start + self.interval * self.k as u32 + jitter;
        tokio::time::sleep_until(at).await;
    }
}
