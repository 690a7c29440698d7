//! Series the collector exposes about its own judgement, for dashboards: alert states as
//! `tocsin_alerts` (like Prometheus' `ALERTS`), and the band each dynamic rule expects each of
//! its series in (`tocsin_baseline_expected`, `_lower`, `_upper`) with the series' value and
//! anomaly score.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::writer::View;

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
