//! What the agent measures: host samplers reading `/proc`, `statfs` and `sysinfo`, and the
//! node_exporter-style textfile source. Each sampler is independent, so one failing source
//! never hides the others. Shipping and scheduling belong to the agent.

mod family;
mod fs;
mod host;
pub mod textfile;

pub use family::{Family, MetricKind};
pub use host::{HostSampler, SamplerRun};

use tocsin_model::{Labels, SeriesSamples, TimestampMs, METRIC_NAME};

/// Flattens families into series for shipping, adding `base` labels (host and static labels)
/// to each; a series' own label wins over a base label of the same name.
pub fn to_series(families: &[Family], base: &Labels, ts: TimestampMs) -> Vec<SeriesSamples> {
    let mut out = Vec::with_capacity(families.iter().map(|f| f.samples.len()).sum());
    for f in families {
        for (labels, v) in &f.samples {
            let mut l = base.clone();
            for x in labels.iter() {
                l.set(x.name.clone(), x.value.clone());
            }
            l.set(METRIC_NAME, f.name.clone());
            out.push(SeriesSamples {
                labels: l,
                samples: vec![tocsin_model::Sample::new(ts, *v)],
            });
        }
    }
    out
}
