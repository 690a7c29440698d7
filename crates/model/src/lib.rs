//! Plain data shared by every tocsin crate: labels, samples, series identity and alert levels.
//! No I/O lives here.

mod labels;
mod level;

pub use labels::{is_valid_label_name, is_valid_metric_name, Label, Labels, METRIC_NAME};
pub use level::{Level, ParseLevelError};

/// Milliseconds since the Unix epoch, the unit of every timestamp in tocsin.
pub type TimestampMs = i64;

/// One observation of one series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub timestamp_ms: TimestampMs,
    pub value: f64,
}

impl Sample {
    pub const fn new(timestamp_ms: TimestampMs, value: f64) -> Self {
        Self {
            timestamp_ms,
            value,
        }
    }
}

/// A series with the samples of one batch, the unit that crosses the wire and enters the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Current wall-clock time in milliseconds.
pub fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
