//! Series the collector exposes about its own judgement, for dashboards: alert states as
//! `tocsin_alerts` (like Prometheus' `ALERTS`), and the band each dynamic rule expects each of
//! its series in (`tocsin_baseline_expected`, `_lower`, `_upper`) with the series' value and
//! anomaly score. Optionally (`federate: true`), the newest sample of every stored series.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::view::View;
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

const NAMES: [(&str, &str); 5] = [
    (
        "tocsin_baseline_expected",
        "Value a dynamic rule expects for the series now.",
    ),
    (
        "tocsin_baseline_lower",
        "Lower edge of the band a dynamic rule expects the series in.",
    ),
    (
        "tocsin_baseline_upper",
        "Upper edge of the band a dynamic rule expects the series in.",
    ),
    (
        "tocsin_baseline_value",
        "Latest value of the series a dynamic rule judges.",
    ),
    (
        "tocsin_baseline_anomaly_score",
        "Latest anomaly score (0..1) of the series a dynamic rule judges.",
    ),
];

pub(crate) struct Baselines {
    view: Arc<RwLock<View>>,
    descs: Vec<Desc>,
}

impl Baselines {
    pub(crate) fn new(view: Arc<RwLock<View>>) -> Self {
        let descs = NAMES
            .iter()
            .map(|(n, h)| {
                Desc::new(n.to_string(), h.to_string(), vec![], Default::default())
                    .expect("valid desc")
            })
            .collect();
        Baselines { view, descs }
    }
}

impl Collector for Baselines {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        if view.bands.is_empty() {
            return Vec::new();
        }
        NAMES
            .iter()
            .enumerate()
            .map(|(i, (name, help))| {
                let mut mf = MetricFamily::default();
                mf.set_name(name.to_string());
                mf.set_help(help.to_string());
                mf.set_field_type(MetricType::GAUGE);
                let metrics = view
                    .bands
                    .iter()
                    .filter(|(_, _, b)| b[i].is_finite())
                    .map(|(rule, labels, b)| {
                        let mut pairs = vec![label("rule", rule)];
                        pairs.extend(
                            labels
                                .iter()
                                .filter(|l| l.name != "rule")
                                .map(|l| label(&l.name, &l.value)),
                        );
                        let mut g = Gauge::default();
                        g.set_value(b[i]);
                        let mut m = Metric::default();
                        m.set_label(pairs);
                        m.set_gauge(g);
                        m
                    })
                    .collect();
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// `tocsin_alerts{alertname, alertstate, level, …} 1` for every pending or firing alert.
pub(crate) struct Alerts {
    view: Arc<RwLock<View>>,
    desc: Desc,
}

impl Alerts {
    pub(crate) fn new(view: Arc<RwLock<View>>) -> Self {
        let desc = Desc::new(
            "tocsin_alerts".into(),
            "Alerts pending or firing, one series each, with the alert's labels, its state and level.".into(),
            vec![],
            Default::default(),
        )
        .expect("valid desc");
        Alerts { view, desc }
    }
}

impl Collector for Alerts {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let mut mf = MetricFamily::default();
        mf.set_name("tocsin_alerts".into());
        mf.set_help(self.desc.help.clone());
        mf.set_field_type(MetricType::GAUGE);
        let metrics = view
            .alerts
            .iter()
            .map(|a| {
                let mut pairs: Vec<LabelPair> = a
                    .labels
                    .iter()
                    .filter(|l| !matches!(l.name.as_str(), "alertstate" | "level"))
                    .map(|l| label(&l.name, &l.value))
                    .collect();
                pairs.push(label(
                    "alertstate",
                    if a.level.is_some() {
                        "firing"
                    } else {
                        "pending"
                    },
                ));
                pairs.push(label("level", a.level.map(|l| l.as_str()).unwrap_or("")));
                pairs.sort_by(|x, y| x.name().cmp(y.name()));
                let mut g = Gauge::default();
                g.set_value(1.0);
                let mut m = Metric::default();
                m.set_label(pairs);
                m.set_gauge(g);
                m
            })
            .collect();
        mf.set_metric(metrics);
        vec![mf]
    }
}

/// The text exposition of the newest sample of each series, with its timestamp, grouped by
/// metric name (untyped); names in `skip` are left out so that they cannot clash with the
/// collector's own families.
pub(crate) fn federation(
    latest: impl Iterator<Item = (tocsin_model::Labels, tocsin_model::Sample)>,
    skip: &std::collections::HashSet<String>,
) -> String {
    use std::fmt::Write;
    let mut items: Vec<(tocsin_model::Labels, tocsin_model::Sample)> = latest
        .filter(|(l, _)| l.metric_name().is_some_and(|n| !skip.contains(n)))
        .collect();
    items.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let mut out = String::new();
    let mut family = "";
    for (labels, s) in &items {
        let name = labels.metric_name().unwrap_or_default();
        if name != family {
            let _ = writeln!(out, "# HELP {name} Newest stored sample (federated).");
            let _ = writeln!(out, "# TYPE {name} untyped");
            family = name;
        }
        out.push_str(name);
        let mut sep = '{';
        for l in labels
            .iter()
            .filter(|l| l.name != tocsin_model::METRIC_NAME)
        {
            out.push(sep);
            sep = ',';
            out.push_str(&l.name);
            out.push_str("=\"");
            for c in l.value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        if sep == ',' {
            out.push('}');
        }
        let _ = writeln!(
            out,
            " {} {}",
            tocsin_model::format_float(s.value),
            s.timestamp_ms
        );
    }
    out
}

/// Every metric name [`own_samples`] stores the families under.
pub(crate) fn own_names(families: &[MetricFamily]) -> std::collections::HashSet<String> {
    families
        .iter()
        .flat_map(|f| {
            let n = f.name();
            [
                n.to_string(),
                format!("{n}_bucket"),
                format!("{n}_sum"),
                format!("{n}_count"),
            ]
        })
        .collect()
}

/// The collector's own metrics as one sample each at `now`, named and labelled as its
/// `/metrics` shows them (histograms as `_bucket`, `_sum`, `_count`), so that its store holds
/// its own history and dashboards over the collector need no scraper.
pub(crate) fn own_samples(families: &[MetricFamily], now: i64) -> Vec<SeriesSamples> {
    let mut out = Vec::new();
    for f in families {
        let name = f.name();
        for m in f.get_metric() {
            let mut push = |metric: String, extra: Option<(&str, String)>, v: f64| {
                let mut l = Labels::from_pairs(
                    m.get_label()
                        .iter()
                        .map(|p| (p.name().to_string(), p.value().to_string())),
                );
                l.set(METRIC_NAME, metric);
                if let Some((k, v)) = extra {
                    l.set(k, v);
                }
                out.push(SeriesSamples {
                    labels: l,
                    samples: vec![Sample::new(now, v)],
                });
            };
            match f.get_field_type() {
                MetricType::COUNTER => push(name.to_string(), None, m.get_counter().get_value()),
                MetricType::GAUGE => push(name.to_string(), None, m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        let ub = b.upper_bound();
                        if ub.is_infinite() && ub > 0.0 {
                            continue;
                        }
                        push(
                            format!("{name}_bucket"),
                            Some(("le", ub.to_string())),
                            b.cumulative_count() as f64,
                        );
                    }
                    let n = h.get_sample_count() as f64;
                    push(format!("{name}_bucket"), Some(("le", "+Inf".into())), n);
                    push(format!("{name}_sum"), None, h.get_sample_sum());
                    push(format!("{name}_count"), None, n);
                }
                // Summaries and untyped metrics: the registry holds none.
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tocsin_model::{Labels, Sample};

    #[test]
    fn federation_groups_by_name_escapes_and_skips() {
        let a = Labels::from_pairs([("__name__", "load1"), ("host", "b")]);
        let b = Labels::from_pairs([("__name__", "disk_free"), ("mount", "/x\"y\\z\nw")]);
        let c = Labels::from_pairs([("__name__", "load1"), ("host", "a")]);
        let own = Labels::from_pairs([("__name__", "tocsin_alerts"), ("host", "a")]);
        let bare = Labels::from_pairs([("__name__", "up")]);
        let items = [
            (&a, Sample::new(1000, 0.5)),
            (&b, Sample::new(2000, f64::INFINITY)),
            (&own, Sample::new(3000, 1.0)),
            (&c, Sample::new(4000, f64::NAN)),
            (&bare, Sample::new(5000, 1e21)),
        ];
        let skip = ["tocsin_alerts".to_string()].into_iter().collect();
        let text = super::federation(items.iter().map(|(l, s)| ((*l).clone(), *s)), &skip);
        assert_eq!(
            text,
            "# HELP disk_free Newest stored sample (federated).\n\
             # TYPE disk_free untyped\n\
             disk_free{mount=\"/x\\\"y\\\\z\\nw\"} +Inf 2000\n\
             # HELP load1 Newest stored sample (federated).\n\
             # TYPE load1 untyped\n\
             load1{host=\"b\"} 0.5 1000\n\
             load1{host=\"a\"} NaN 4000\n\
             # HELP up Newest stored sample (federated).\n\
             # TYPE up untyped\n\
             up 1000000000000000000000 5000\n"
        );
    }
}
