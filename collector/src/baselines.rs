//! `tocsin_baseline_expected`, `_lower` and `_upper`: the band each dynamic rule expects each
//! of its series in, so that a dashboard can draw it around the value.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::writer::View;

const NAMES: [(&str, &str); 3] = [
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
