use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The agent's own health, served on its `/metrics`.
#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    pub sampler_seconds: GaugeVec,
    pub sampler_errors: IntCounterVec,
    pub cycle_seconds: Histogram,
    pub cycles: IntCounter,
    pub samples_sent: IntCounter,
    pub not_newer: IntCounter,
    pub send_errors: IntCounterVec,
    pub buffer_bytes: IntGauge,
    pub buffer_records: IntGauge,
    pub buffer_samples: IntGauge,
    pub buffer_memory_samples: IntGauge,
    pub buffer_write_errors: IntCounter,
    pub buffer_dropped: IntCounterVec,
    pub buffer_corrupt: IntCounter,
    pub live_sent: IntCounter,
    pub dropped_samples: IntCounterVec,
    pub probe_runs: IntCounterVec,
    pub collector_index: IntGauge,
    pub actions: IntCounterVec,
}

use tocsin_runtime::register as reg;

impl Telemetry {
    pub fn new() -> Self {
        let r = Registry::new();
        Telemetry {
            sampler_seconds: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "tocsin_agent_sampler_duration_seconds",
                        "Time the last cycle spent in each sampler.",
                    ),
                    &["sampler"],
                )
                .expect("valid"),
            ),
            sampler_errors: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("tocsin_agent_sampler_errors_total", "Sampler runs that failed."),
                    &["sampler"],
                )
                .expect("valid"),
            ),
            cycle_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tocsin_agent_cycle_duration_seconds",
                        "Time to take one full sample of the host.",
                    )
                    .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid")),
                )
                .expect("valid"),
            ),
            actions: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tocsin_agent_actions_total",
                        "Remediation requests by result (succeeded, failed, timed_out, refused, replayed; unreported: the collector never took the result).",
                    ),
                    &["result"],
                )
                .expect("valid"),
            ),
            cycles: reg(
                &r,
                IntCounter::new("tocsin_agent_cycles_total", "Sampling cycles run.").expect("valid"),
            ),
            samples_sent: reg(
                &r,
                IntCounter::new(
                    "tocsin_agent_samples_sent_total",
                    "Samples the collector acknowledged and stored.",
                )
                .expect("valid"),
            ),
            not_newer: reg(
                &r,
                IntCounter::new(
                    "tocsin_agent_samples_not_newer_total",
                    "Samples the collector acknowledged without storing them: their series already held a sample as new or newer (a clock set back, or a batch sent twice).",
                )
                .expect("valid"),
            ),
            send_errors: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tocsin_agent_send_errors_total",
                        "Failed write requests by reason (connect, status_4xx, status_5xx, throttled, unauthorized).",
                    ),
                    &["reason"],
                )
                .expect("valid"),
            ),
            buffer_bytes: reg(
                &r,
                IntGauge::new("tocsin_agent_buffer_bytes", "Bytes of the durable buffer on disk.")
                    .expect("valid"),
            ),
            buffer_records: reg(
                &r,
                IntGauge::new(
                    "tocsin_agent_buffer_records",
                    "Batches in the buffer not yet acknowledged by the collector.",
                )
                .expect("valid"),
            ),
            buffer_samples: reg(
                &r,
                IntGauge::new(
                    "tocsin_agent_buffer_samples",
                    "Samples in the buffer not yet acknowledged by the collector.",
                )
                .expect("valid"),
            ),
            buffer_memory_samples: reg(
                &r,
                IntGauge::new(
                    "tocsin_agent_buffer_memory_samples",
                    "Of those, samples held in memory (not durable) because the buffer could not be written.",
                )
                .expect("valid"),
            ),
            buffer_write_errors: reg(
                &r,
                IntCounter::new(
                    "tocsin_agent_buffer_write_errors_total",
                    "Batches the buffer could not write (disk full, file size limit); they wait in memory.",
                )
                .expect("valid"),
            ),
            buffer_dropped: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tocsin_agent_buffer_dropped_samples_total",
                        "Buffered samples given up, by reason (full: over buffer.max_size; expired: older than buffer.max_age; write_error: the buffer could not be written and the memory bound was reached).",
                    ),
                    &["reason"],
                )
                .expect("valid"),
            ),
            buffer_corrupt: reg(
                &r,
                IntCounter::new(
                    "tocsin_agent_buffer_corrupt_records_total",
                    "Records of the buffer that failed their checksum; the rest of their segment was skipped.",
                )
                .expect("valid"),
            ),
            live_sent: reg(
                &r,
                IntCounter::new(
                    "tocsin_agent_live_samples_sent_total",
                    "Fresh samples sent ahead of a backlog, for alerting only (stored later in order).",
                )
                .expect("valid"),
            ),
            dropped_samples: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tocsin_agent_dropped_samples_total",
                        "Samples the collector refused for good (4xx other than 401/403/429), by reason.",
                    ),
                    &["reason"],
                )
                .expect("valid"),
            ),
            probe_runs: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("tocsin_agent_probe_runs_total", "Probe runs by probe and result."),
                    &["probe", "result"],
                )
                .expect("valid"),
            ),
            collector_index: reg(
                &r,
                IntGauge::new(
                    "tocsin_agent_collector_index",
                    "Collector in use: 0 the preferred one, 1.. the fallbacks in order.",
                )
                .expect("valid"),
            ),
            registry: r,
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
