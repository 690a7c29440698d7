use tocsin_model::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Untyped,
}

/// One metric name with its help text, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub samples: Vec<(Labels, f64)>,
}

impl Family {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricKind::Gauge)
    }

    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricKind::Counter)
    }

    pub fn with<const N: usize>(mut self, labels: [(&str, &str); N], v: f64) -> Self {
        self.push(labels, v);
        self
    }

    pub fn push<const N: usize>(&mut self, labels: [(&str, &str); N], v: f64) {
        self.samples.push((Labels::from_pairs(labels), v));
    }
}
