//! How tocsin waits before trying again — delivering a notification, shipping samples,
//! forwarding them: exponential backoff with ±20 % jitter (so senders that failed together do
//! not retry together), honouring a server's `Retry-After` within a bound.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure; each further failure doubles it…
    pub first: Duration,
    /// … up to this.
    pub cap: Duration,
    /// A `Retry-After` from the server replaces the doubling, up to this.
    pub max_retry_after: Duration,
}

impl Backoff {
    /// The wait after `failures` failures in a row (1 for the first), before jitter.
    pub fn base(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.max_retry_after),
            None => self
                .first
                .saturating_mul(1 << failures.saturating_sub(1).min(20))
                .min(self.cap),
        }
    }

    /// The wait after `failures` failures in a row, jittered.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        self.base(failures, retry_after)
            .mul_f64(0.8 + fastrand::f64() * 0.4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        first: Duration::from_secs(1),
        cap: Duration::from_secs(300),
        max_retry_after: Duration::from_secs(60),
    };

    #[test]
    fn doubles_from_the_first_wait_to_the_cap_with_bounded_jitter() {
        let want = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300];
        for (f, w) in (1..).zip(want) {
            assert_eq!(B.base(f, None), Duration::from_secs(w), "failure {f}");
            for _ in 0..50 {
                let d = B.delay(f, None).as_secs_f64();
                assert!((0.8 * w as f64..=1.2 * w as f64).contains(&d), "{f}: {d}");
            }
        }
        assert_eq!(B.base(u32::MAX, None), B.cap);
    }

    #[test]
    fn a_retry_after_replaces_the_doubling_within_its_bound() {
        assert_eq!(
            B.base(9, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            B.base(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }
}
