//! What the agent measures: host samplers reading `/proc`, `statfs` and `sysinfo`, and the
//! node_exporter-style textfile source. Each sampler is independent, so one failing source
//! never hides the others. Shipping and scheduling belong to the agent.

pub mod exposition;
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
                // The agent's own labels (`host`, static ones) win, as Prometheus does without
                // honor_labels: a textfile cannot speak for another host (the collector would
                // refuse the whole batch). Its value is kept as `exported_NAME`.
                if base.get(&x.name).is_some() {
                    if base.get(&x.name) != Some(x.value.as_str()) {
                        l.set(format!("exported_{}", x.name), x.value.clone());
                    }
                } else {
                    l.set(x.name.clone(), x.value.clone());
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_cannot_override_the_agents_own_labels() {
        let base = Labels::from_pairs([("host", "web-7"), ("dc", "bj")]);
        let f = Family::gauge("act_metric", "h")
            .with([("host", "victim-db"), ("dc", "bj"), ("unit", "x")], 1.0);
        let s = to_series(&[f], &base, 1);
        let l = &s[0].labels;
        assert_eq!(l.get("host"), Some("web-7"));
        assert_eq!(l.get("exported_host"), Some("victim-db"));
        assert_eq!(l.get("dc"), Some("bj"));
        assert_eq!(l.get("exported_dc"), None, "same value: nothing to keep");
        assert_eq!(l.get("unit"), Some("x"));
    }
}
