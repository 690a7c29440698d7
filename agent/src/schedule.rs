//! A fixed-grid schedule: slots at start + phase + k·interval (no drift). The phase is a small
//! random offset drawn once, so that many agents, or many probes, do not fire in the same
//! instant, while the time between two runs stays exactly one interval (a per-slot jitter would
//! stretch some gaps, and with them the worst-case detection time). A slot missed by a slow run
//! is skipped, not caught up.

use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Grid {
    start: Instant,
    interval: Duration,
    k: u64,
}

impl Grid {
    pub(crate) fn new(interval: Duration) -> Self {
        // Configuration refuses less than 100 ms; a zero here would divide by zero.
        let interval = interval.max(Duration::from_millis(1));
        let max_phase = (interval / 20).min(Duration::from_millis(500));
        Grid {
            start: Instant::now() + max_phase.mul_f64(fastrand::f64()),
            interval,
            k: 0,
        }
    }

    /// Sleeps until the next slot after now.
    pub(crate) async fn wait(&mut self) {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        self.k = self
            .k
            .max((elapsed.as_nanos() / self.interval.as_nanos()) as u64)
            + 1;
        tokio::time::sleep_until(self.start + self.interval * self.k as u32).await;
    }
}
