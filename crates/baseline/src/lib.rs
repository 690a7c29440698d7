//! Dynamic baselines: an online, per-series anomaly detector. Each sample updates the model and
//! gets a score in [0, 1] computed from the past only. State is a fixed-size struct (no
//! windows of samples), so cost per sample and memory per series are bounded.
//! Pure: no I/O, time comes with each sample.

mod detector;

pub use detector::{Cause, DecodeError, Detector, DetectorConfig, Output};
