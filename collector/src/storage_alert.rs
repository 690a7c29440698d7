//! The collector's page about its own storage. When its database has refused every write for
//! `storage_alert_after`, samples are refused (agents keep them), rules stop advancing and the
//! outbox cannot take a notification: the one alert that can still go out is this one, sent
//! straight from memory. Receivers hear again when writes work.

use std::collections::BTreeMap;
use std::time::Duration;

use tocsin_dispatch::{alert_id, AlertInfo};
use tocsin_model::{Labels, Level, TimestampMs};

pub(crate) const ALERTNAME: &str = "TocsinStorageFailing";

/// Commits must work for this long after the last failure before storage counts as back, so
/// a commit that had nothing to write does not end the alert.
const RECOVERED_AFTER_MS: i64 = 10_000;

#[derive(Debug)]
pub(crate) struct StorageAlert {
    after_ms: Option<i64>,
    instance: String,
    failing_since: Option<TimestampMs>,
    last_failure: TimestampMs,
    last_error: String,
    paged: bool,
}

impl StorageAlert {
    /// `after`: how long writes must fail before the page (None: never); `instance`: how the
    /// page names this collector (its external URL).
    pub(crate) fn new(after: Option<Duration>, instance: &str) -> Self {
        StorageAlert {
            after_ms: after.map(|d| d.as_millis() as i64),
            instance: instance.to_string(),
            failing_since: None,
            last_failure: 0,
            last_error: String::new(),
            paged: false,
        }
    }

    /// A transaction failed at `now`: the firing alert when it is time to page.
    pub(crate) fn failed(&mut self, now: TimestampMs, error: &str) -> Option<AlertInfo> {
        let since = *self.failing_since.get_or_insert(now);
        self.last_failure = now;
        self.last_error = error.to_string();
        let due = self.after_ms.is_some_and(|a| now - since >= a);
        (due && !self.paged).then(|| {
            self.paged = true;
            self.alert(true, now)
        })
    }

    /// A transaction committed at `now`: the resolved alert when storage is back after a page.
    pub(crate) fn committed(&mut self, now: TimestampMs) -> Option<AlertInfo> {
        self.failing_since?;
        if now - self.last_failure < RECOVERED_AFTER_MS {
            return None;
        }
        let resolved = self.paged.then(|| self.alert(false, now));
        self.failing_since = None;
        self.paged = false;
        resolved
    }

    fn alert(&self, firing: bool, now: TimestampMs) -> AlertInfo {
        let since = self.failing_since.unwrap_or(now);
        let labels = Labels::from_pairs([
            ("alertname", ALERTNAME),
            ("instance", self.instance.as_str()),
            ("category", "tocsin"),
        ]);
        let summary = if firing {
            format!(
                "tocsin collector {} cannot write its database",
                self.instance
            )
        } else {
            format!(
                "tocsin collector {} writes its database again",
                self.instance
            )
        };
        let description = if firing {
            format!(
                "Every write has failed since {} ({}). Samples are refused (agents keep them \
                 and send them when it recovers), alert rules do not advance and no other \
                 notification can be queued. Free disk space or fix the database.",
                tocsin_alerting::format_rfc3339(since),
                self.last_error
            )
        } else {
            "Writes work again; refused samples are being delivered and alert rules caught up."
                .to_string()
        };
        AlertInfo {
            id: alert_id(&labels),
            rule: ALERTNAME.to_string(),
            labels,
            annotations: BTreeMap::from([
                ("summary".to_string(), summary),
                ("description".to_string(), description),
            ]),
            firing,
            event: if firing {
                tocsin_dispatch::Event::Firing
            } else {
                tocsin_dispatch::Event::Resolved
            },
            level: Level::Critical,
            previous_level: None,
            value: ((now - since) / 1000) as f64,
            threshold: format!(
                "writes failing for {}s",
                self.after_ms.unwrap_or_default() / 1000
            ),
            starts_at: since,
            ends_at: (!firing).then_some(now),
            at: now,
            reason: None,
            ack: None,
            generator_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    #[test]
    fn pages_once_after_the_delay_and_resolves_once_writes_hold() {
        let mut a = StorageAlert::new(Some(Duration::from_secs(60)), "http://c:9090");
        assert!(a.failed(0, "disk full").is_none());
        // A commit right after a failure (nothing to write) is not a recovery.
        assert!(a.committed(2 * S).is_none());
        assert!(a.failed(59 * S, "disk full").is_none());
        let page = a.failed(60 * S, "disk full").expect("paged at 60 s");
        assert!(page.firing);
        assert_eq!(page.labels.get("alertname"), Some(ALERTNAME));
        assert_eq!(page.level, Level::Critical);
        assert!(page.annotations["description"].contains("disk full"));
        assert!(a.failed(61 * S, "disk full").is_none(), "once");
        assert!(a.committed(65 * S).is_none(), "too soon after a failure");
        let back = a.committed(71 * S).expect("resolved");
        assert!(!back.firing);
        assert_eq!(back.id, page.id);
        assert_eq!(back.starts_at, 0);
        assert!(a.committed(72 * S).is_none());
        // A short failure never pages, and leaves nothing to resolve.
        assert!(a.failed(100 * S, "locked").is_none());
        assert!(a.committed(120 * S).is_none());
        assert!(
            a.failed(130 * S, "locked").is_none(),
            "a new episode starts"
        );
    }

    #[test]
    fn off_when_not_configured() {
        let mut a = StorageAlert::new(None, "c");
        assert!(a.failed(0, "x").is_none());
        assert!(a.failed(3_600 * S, "x").is_none());
        assert!(a.committed(4_000 * S).is_none());
    }
}
