//! Families in Prometheus' text exposition format, labelled exactly as they are shipped
//! ([`crate::to_series`]), so a Prometheus scraping the agent gets the series the collector
//! receives.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use tocsin_model::{Labels, METRIC_NAME};

use crate::{to_series, Family, MetricKind};

/// Appends `families` to `out` with `base` labels added; families sharing a name (one per
/// probe) are written under one HELP and TYPE; names in `skip` are left out.
pub fn render<'a>(
    families: impl IntoIterator<Item = &'a Family>,
    base: &Labels,
    skip: &HashSet<String>,
    out: &mut String,
) {
    let mut by_name: BTreeMap<&str, (&Family, Vec<String>)> = BTreeMap::new();
    for f in families {
        if skip.contains(&f.name) {
            continue;
        }
        let entry = by_name.entry(&f.name).or_insert_with(|| (f, Vec::new()));
        for s in to_series(std::slice::from_ref(f), base, 0) {
            let mut line = f.name.clone();
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value, true)))
                .collect();
            if !labels.is_empty() {
                let _ = write!(line, "{{{}}}", labels.join(","));
            }
            let _ = write!(line, " {}", tocsin_model::format_float(s.samples[0].value));
            entry.1.push(line);
        }
    }
    for (name, (f, lines)) in by_name {
        let kind = match f.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Untyped => "untyped",
        };
        let _ = writeln!(out, "# HELP {name} {}", escape(&f.help, false));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
}

fn escape(s: &str, quote: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '"' if quote => o.push_str("\\\""),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_of_one_name_share_their_header_and_carry_the_shipped_labels() {
        let base = Labels::from_pairs([("host", "web-1")]);
        let a = Family::gauge("probe_success", "Whether the probe succeeded.")
            .with([("probe", "a")], 1.0);
        let b = Family::gauge("probe_success", "Whether the probe succeeded.")
            .with([("probe", "b\"x")], 0.0);
        let c = Family::counter("node_x_total", "Line\nbreak.").with([], f64::NAN);
        let mut out = String::new();
        render([&a, &b, &c], &base, &HashSet::new(), &mut out);
        assert_eq!(
            out,
            "# HELP node_x_total Line\\nbreak.\n# TYPE node_x_total counter\nnode_x_total{host=\"web-1\"} NaN\n\
             # HELP probe_success Whether the probe succeeded.\n# TYPE probe_success gauge\n\
             probe_success{host=\"web-1\",probe=\"a\"} 1\nprobe_success{host=\"web-1\",probe=\"b\\\"x\"} 0\n"
        );
        let mut out = String::new();
        render([&a], &base, &["probe_success".to_string()].into(), &mut out);
        assert!(out.is_empty());
    }
}
