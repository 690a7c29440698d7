//! The dead man's switch: a call to a URL outside the collector every `every` while it works,
//! so that the service behind the URL pages when the calls stop — the collector, its host or
//! its disk down, when nothing inside can say so.

use tocsin_config::collector::HeartbeatConfig;
use tocsin_model::{error_chain, now_ms};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Telemetry;

/// The writer commits at least every second (its tick). The collector says it works when it
/// has committed within this long and no commit has failed within it: a writer stuck, or a
/// database refusing writes (a full disk refuses most, not all), holds the heartbeat back.
pub const UNWELL_AFTER_MS: i64 = 15_000;

/// Whether the collector works, as far as its heartbeat tells (times in Unix seconds, 0 for
/// never).
pub fn well(last_commit: i64, last_failure: i64, now_ms: i64) -> bool {
    let within = |t: i64| t > 0 && now_ms - t * 1000 <= UNWELL_AFTER_MS;
    within(last_commit) && !within(last_failure)
}

/// Calls the heartbeat URL every `every` (the first after one period) while the collector
/// works; counts each call by result, and logs when the result changes, never the URL.
pub async fn run(cfg: HeartbeatConfig, tel: Telemetry, cancel: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(cfg.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %error_chain(&e), "cannot build the heartbeat's HTTP client: no heartbeat");
            return;
        }
    };
    let start = tokio::time::Instant::now() + cfg.every;
    let mut tick = tokio::time::interval_at(start, cfg.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut told: Option<&'static str> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (last, failed) = (tel.last_commit.get(), tel.last_failed_commit.get());
        let (result, detail) = if !well(last, failed, now_ms()) {
            let now = now_ms() / 1000;
            let why = if failed > 0 && now - failed <= UNWELL_AFTER_MS / 1000 {
                format!("a write to the database failed {} s ago", now - failed)
            } else {
                format!("no commit for {} s", now - last)
            };
            ("skipped", why)
        } else {
            match client.get(cfg.url.expose()).send().await {
                Ok(r) if r.status().is_success() => ("sent", String::new()),
                Ok(r) => ("failed", format!("HTTP {}", r.status())),
                // Without the URL: its path is the check's token.
                Err(e) => ("failed", error_chain(&e.without_url())),
            }
        };
        tel.heartbeats.with_label_values(&[result]).inc();
        if told != Some(result) {
            match result {
                "sent" => info!("heartbeat calls go out"),
                "failed" => {
                    warn!(error = %detail, "heartbeat call failed; the service behind it will page if this goes on")
                }
                _ => {
                    warn!(reason = %detail, "heartbeat held back: the collector does not work as it should")
                }
            }
            told = Some(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_while_it_commits_and_nothing_fails() {
        let now = 1_700_000_000_000;
        let s = now / 1000;
        assert!(well(s - 1, 0, now));
        assert!(well(s - 15, 0, now));
        assert!(!well(s - 16, 0, now), "a writer stuck or refused");
        assert!(!well(0, 0, now), "nothing committed yet");
        assert!(
            !well(s, s - 3, now),
            "a write failed lately, whatever succeeded since"
        );
        assert!(well(s, s - 16, now), "a failure long past");
    }
}
