//! Exports tocsin rules as Prometheus rules where an equivalent exists: recording rules as
//! they are, alerting rules where an equivalent exists. Each level
//! becomes one alert with exclusive conditions (`warning` fires only while `critical` does not),
//! `for` carries over, labels get `level` and `severity`, and annotation templates are
//! translated (`{{ value }}` → `{{ $value }}`, `{{ host }}` → `{{ $labels.host }}`, …). What has
//! no equivalent is said: dynamic rules are left out, and hysteresis (`recover`) and `for_runs`
//! are noted on the alert.

use std::collections::BTreeMap;

use serde::Serialize;
use tocsin_rules::Rule;

#[derive(Serialize)]
struct File {
    groups: Vec<Group>,
}

#[derive(Serialize)]
struct Group {
    name: String,
    rules: Vec<Entry>,
}

/// A rule of a Prometheus rule group, in the order of tocsin's files.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    Record(Record),
    Alert(Alert),
}

#[derive(Serialize)]
struct Record {
    record: String,
    expr: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Alert {
    alert: String,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn duration(ms: i64) -> Option<String> {
    (ms > 0).then(|| {
        if ms % 60_000 == 0 {
            format!("{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    })
}

/// A tocsin annotation template in Prometheus's template language, or `None` when it uses
/// something without a translation.
fn template(t: &str, level: &str, threshold: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}")?;
        let inner = after[..j].trim();
        let (var, filter) = match inner.split_once('|') {
            Some((v, f)) => (v.trim(), Some(f.trim())),
            None => (inner, None),
        };
        let value = match var {
            "value" => "$value".to_string(),
            "host" => "$labels.host".to_string(),
            "rule" => "$labels.alertname".to_string(),
            v if v.starts_with("labels.") => format!("$labels.{}", &v[7..]),
            "level" => {
                out.push_str(level);
                rest = &after[j + 2..];
                continue;
            }
            "threshold" => {
                out.push_str(threshold);
                rest = &after[j + 2..];
                continue;
            }
            _ => return None,
        };
        match filter {
            None => out.push_str(&format!("{{{{ {value} }}}}")),
            Some(f) => {
                let digits = f
                    .strip_prefix("round(")
                    .and_then(|d| d.strip_suffix(')'))
                    .and_then(|d| d.trim().parse::<u32>().ok())?;
                out.push_str(&format!("{{{{ printf \"%.{digits}f\" {value} }}}}"));
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// What a rule over a fleet cannot carry over: its own `interval`.
fn interval_caveat(r: &Rule) -> Option<&'static str> {
    (r.expr.aggregates() && r.interval_ms != tocsin_rules::AGGREGATE_INTERVAL_MS)
        .then_some("interval is not exported: Prometheus evaluates at its evaluation_interval")
}

/// The Prometheus rule file for `rules`, and what was left out or changed, one line each.
pub fn prometheus(rules: &[Rule]) -> (String, Vec<String>) {
    let mut alerts = Vec::new();
    let mut notes = Vec::new();
    for r in rules {
        if r.record {
            alerts.push(Entry::Record(Record {
                record: r.name.clone(),
                expr: r.expr_text.clone(),
                labels: r
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
            }));
            if let Some(c) = interval_caveat(r) {
                notes.push(format!("{}: {c}", r.name));
            }
            continue;
        }
        if r.dynamic.is_some() {
            notes.push(format!(
                "{}: dynamic thresholds have no Prometheus equivalent; left out",
                r.name
            ));
            continue;
        }
        let levels: Vec<_> = r.defined_levels().collect();
        for (i, (level, spec)) in levels.iter().enumerate() {
            let cond = |c: &tocsin_rules::Condition| {
                format!("({}) {} {}", r.expr_text, c.op.as_str(), c.threshold)
            };
            // Exclusive levels: this one only while no higher one holds.
            let higher: Vec<String> = levels[i + 1..].iter().map(|(_, s)| cond(&s.when)).collect();
            let expr = if higher.is_empty() {
                cond(&spec.when)
            } else {
                format!("({}) unless ({})", cond(&spec.when), higher.join(" or "))
            };
            let mut labels: BTreeMap<String, String> = r
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            labels.insert("level".into(), level.as_str().into());
            labels.insert("severity".into(), level.as_str().into());
            let threshold = spec.when.to_string();
            let mut annotations = BTreeMap::new();
            for (k, t) in &r.annotations {
                match template(t, level.as_str(), &threshold) {
                    Some(t) => {
                        annotations.insert(k.clone(), t);
                    }
                    None => notes.push(format!(
                        "{} ({level}): annotation {k} uses a template without a translation; left out",
                        r.name
                    )),
                }
            }
            let mut caveats = Vec::new();
            if spec.recover.is_some() {
                caveats.push("recover (hysteresis) is not exported");
            }
            if spec.for_runs.unwrap_or(r.for_runs) > 1 {
                caveats.push("for_runs is not exported: set for to that many scrape intervals");
            }
            caveats.extend(interval_caveat(r));
            if !caveats.is_empty() {
                notes.push(format!("{} ({level}): {}", r.name, caveats.join("; ")));
                annotations.insert("tocsin_export_note".into(), caveats.join("; "));
            }
            alerts.push(Entry::Alert(Alert {
                alert: r.name.clone(),
                expr,
                for_: duration(spec.for_ms.unwrap_or(r.for_ms)),
                labels,
                annotations,
            }));
        }
    }
    let file = File {
        groups: vec![Group {
            name: "tocsin".into(),
            rules: alerts,
        }],
    };
    let yaml = serde_yaml_ng::to_string(&file).expect("rules serialize");
    let header = "# Prometheus rules exported by `tocsin-collector export-rules`.\n";
    (format!("{header}{yaml}"), notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_translate_or_are_refused() {
        assert_eq!(
            template("{{ value|round(1) }}% on {{ host }} ({{ level }}: {{ threshold }}), {{ labels.mountpoint }}", "critical", "> 90").unwrap(),
            "{{ printf \"%.1f\" $value }}% on {{ $labels.host }} (critical: > 90), {{ $labels.mountpoint }}"
        );
        assert!(template("{{ (value * 100)|round(0) }}", "warning", "> 1").is_none());
        assert!(template("{{ expected }}", "warning", "> 1").is_none());
    }

    #[test]
    fn levels_become_exclusive_alerts() {
        let rules = tocsin_rules::parse_file(
            "t.yaml",
            "rules:
  - name: Disk
    expr: disk_used_percent
    for: 2m
    levels: { warning: \"> 80\", critical: { when: \"> 90\", recover: \"< 85\" } }
    labels: { category: host }
    annotations: { summary: \"{{ value }}% used on {{ host }}\" }
  - name: Dyn
    expr: x
    dynamic: {}
",
        )
        .unwrap();
        let (yaml, notes) = prometheus(&rules);
        assert!(
            yaml.contains("expr: ((disk_used_percent) > 80) unless ((disk_used_percent) > 90)"),
            "{yaml}"
        );
        assert!(yaml.contains("expr: (disk_used_percent) > 90\n"), "{yaml}");
        assert!(yaml.contains("for: 2m"), "{yaml}");
        assert!(
            yaml.contains("summary: '{{ $value }}% used on {{ $labels.host }}'"),
            "{yaml}"
        );
        assert_eq!(
            notes,
            vec![
                "Disk (critical): recover (hysteresis) is not exported",
                "Dyn: dynamic thresholds have no Prometheus equivalent; left out"
            ]
        );
    }
}
