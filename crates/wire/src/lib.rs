//! The agent → collector protocol: Prometheus remote-write 1.0 (protobuf in a snappy block),
//! encoding, decoding and validation into model types. Transport (HTTP) lives elsewhere.

#[cfg(feature = "client")]
pub mod client;
mod decode;
mod proto;

pub use proto::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest};

use prost::Message;
use tocsin_model::SeriesSamples;

/// Header values a remote-write 1.0 sender sets.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const CONTENT_ENCODING: &str = "snappy";
/// Request header (value `1`) of a tocsin extension: the samples are for rule evaluation only,
/// not to be stored; the sender will send them again, in order, to be stored. Agents use it to
/// put fresh samples ahead of a backlog without writing history out of order.
pub const LIVE_HEADER: &str = "X-Tocsin-Live";
/// Request header (value `1`) of a tocsin extension: the samples were forwarded by the other
/// collector of a high-availability pair, which already forwarded them wherever they go; the
/// receiver stores and evaluates them but does not forward them again.
pub const FORWARDED_HEADER: &str = "X-Tocsin-Forwarded";
/// Response header of a tocsin extension on a 4xx: how many of the request's samples were
/// stored anyway (a request partly over `max_series_per_host`), so the sender counts as lost
/// only the rest.
pub const ACCEPTED_HEADER: &str = "X-Tocsin-Accepted-Samples";
/// Response header of a tocsin extension on a 2xx: how many samples of the request were not
/// stored because their series already held a sample as new or newer (out of order, or sent
/// twice), so the sender counts and reports them instead of taking them as stored.
pub const NOT_NEWER_HEADER: &str = "X-Tocsin-Not-Newer-Samples";
/// Request header of a tocsin extension: the sender's clock (Unix milliseconds) as it sent
/// the request. The receiver reads the sender's clock offset from it, behind as well as ahead —
/// which the samples' own times cannot tell from a backlog being replayed.
pub const SENT_AT_HEADER: &str = "X-Tocsin-Sent-At";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub const VERSION: &str = "0.1.0";

/// Bounds applied while decoding a request; each breach is a distinct error.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_decompressed_bytes: usize,
    pub max_samples: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 64 << 20,
            max_samples: 1_000_000,
            max_labels_per_series: 64,
            max_label_name_len: 256,
            max_label_value_len: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("body is not a valid snappy block: {0}")]
    Snappy(String),
    #[error("decompressed body would be {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("body is not a valid remote-write protobuf: {0}")]
    Protobuf(String),
    #[error("request holds {count} samples, over the limit of {limit}")]
    TooManySamples { count: usize, limit: usize },
    #[error("series {index}: {reason}")]
    InvalidSeries { index: usize, reason: String },
    #[error("series {index} ({series}): timestamp {timestamp_ms} ms is {reason}; nothing of this request was stored")]
    Timestamp {
        index: usize,
        series: String,
        timestamp_ms: i64,
        reason: &'static str,
    },
}

impl WireError {
    /// A short, fixed reason for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Snappy(_) => "snappy",
            WireError::TooLarge { .. } => "too_large",
            WireError::Protobuf(_) => "protobuf",
            WireError::TooManySamples { .. } => "too_many_samples",
            WireError::InvalidSeries { .. } => "invalid_series",
            WireError::Timestamp { .. } => "timestamp",
        }
    }
}

/// The earliest timestamp taken: 2000-01-01. Anything before is a clock or a unit gone wrong
/// (0, seconds sent as milliseconds), not history anyone backfills into a monitoring system.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// Refuses a request holding a timestamp no clock should give: before `MIN_TIMESTAMP_MS`, or
/// more than `max_future_ms` ahead of `now_ms`. All or nothing, so the sender keeps nothing
/// it believes stored; the error names the first such sample.
pub fn check_timestamps(
    batch: &[SeriesSamples],
    now_ms: i64,
    max_future_ms: i64,
) -> Result<(), WireError> {
    let latest = now_ms.saturating_add(max_future_ms);
    for (index, s) in batch.iter().enumerate() {
        for x in &s.samples {
            let reason = if x.timestamp_ms < MIN_TIMESTAMP_MS {
                "before the year 2000 (seconds sent as milliseconds, or no clock?)"
            } else if x.timestamp_ms > latest {
                "too far in the future (is the sender's clock ahead?)"
            } else {
                continue;
            };
            return Err(WireError::Timestamp {
                index,
                series: s.labels.to_string(),
                timestamp_ms: x.timestamp_ms,
                reason,
            });
        }
    }
    Ok(())
}

/// Protobuf-encodes and snappy-compresses a request, ready to POST.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// Builds a request from model series.
pub fn to_request(series: &[SeriesSamples]) -> WriteRequest {
    WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| Sample {
                        value: x.value,
                        timestamp: x.timestamp_ms,
                    })
                    .collect(),
            })
            .collect(),
        metadata: Vec::new(),
    }
}

/// Decompresses, decodes and validates a request body.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Vec<SeriesSamples>, WireError> {
    let size = snap::raw::decompress_len(body).map_err(|e| WireError::Snappy(e.to_string()))?;
    if size > limits.max_decompressed_bytes {
        return Err(WireError::TooLarge {
            size,
            limit: limits.max_decompressed_bytes,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WireError::Snappy(e.to_string()))?;
    decode::decode_request(&raw, limits)
}

#[cfg(test)]
mod tests;

/// Joins encoded requests into one, in order: protobuf messages concatenate into one whose
/// repeated fields hold both, so only the snappy framing is redone.
pub fn concat<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, WireError> {
    let mut raw = Vec::new();
    let mut dec = snap::raw::Decoder::new();
    for b in bodies {
        raw.extend_from_slice(
            &dec.decompress_vec(b)
                .map_err(|e| WireError::Snappy(e.to_string()))?,
        );
    }
    Ok(snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compression of an in-memory buffer cannot fail"))
}
