//! `tocsin-collector backtest`: replays a CSV of `timestamp,value` through one rule, exactly as
//! the collector evaluates it (same engine, the sample times as the clock), and writes
//! `timestamp,value,anomaly_score,level` per input row.

use std::io::{BufRead, Write};
use std::path::Path;

use tocsin_model::{Labels, Level, Sample, SeriesSamples, METRIC_NAME};
use tocsin_rules::expr::MatchOp;
use tocsin_rules::{Engine, EngineOptions, TransitionKind};

/// What a backtest found.
#[derive(Debug, Default)]
pub struct Summary {
    pub rows: usize,
    /// Alerts that fired, by the level they first fired at, and level increases.
    pub alerts: [usize; 3],
    pub first: Option<String>,
    pub last: Option<String>,
}

pub fn run(rules: &Path, rule: &str, csv: &Path, out: &mut dyn Write) -> Result<Summary, String> {
    let text = std::fs::read_to_string(rules).map_err(|e| format!("{}: {e}", rules.display()))?;
    let all =
        tocsin_rules::parse_file(&rules.display().to_string(), &text).map_err(|p| p.join("\n"))?;
    let names: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    let r = all.into_iter().find(|r| r.name == rule).ok_or_else(|| {
        format!(
            "{}: no rule {rule:?} (rules: {})",
            rules.display(),
            names.join(", ")
        )
    })?;
    if r.expr.leaves.len() != 1 {
        return Err(format!(
            "rule {rule:?} reads {} series; a backtest replays one",
            r.expr.leaves.len()
        ));
    }
    // The one series the rule selects, with the labels its matchers ask for.
    let sel = &r.expr.leaves[0].selector;
    let mut labels = Labels::from_pairs([(METRIC_NAME, sel.metric.as_str()), ("host", "backtest")]);
    for m in &sel.matchers {
        if m.op == MatchOp::Eq {
            labels.set(m.name.clone(), m.value.clone());
        }
    }
    let mut engine = Engine::new(
        vec![r],
        EngineOptions {
            stale_after_ms: i64::MAX / 4,
        },
    );
    let f = std::fs::File::open(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let mut lines = std::io::BufReader::new(f).lines();
    let header = lines
        .next()
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if !header.trim().starts_with("timestamp") {
        return Err(format!(
            "{}:1: expected the header `timestamp,value`",
            csv.display()
        ));
    }
    let io = |e: std::io::Error| e.to_string();
    writeln!(out, "timestamp,value,anomaly_score,level").map_err(io)?;
    let mut sum = Summary::default();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        let at = || format!("{}:{}", csv.display(), i + 2);
        let (ts_text, v_text) = line
            .split_once(',')
            .ok_or_else(|| format!("{}: expected `timestamp,value`", at()))?;
        let ts = tocsin_model::parse_timestamp(ts_text)
            .ok_or_else(|| format!("{}: invalid timestamp {ts_text:?}", at()))?;
        let v: f64 = v_text
            .trim()
            .parse()
            .map_err(|_| format!("{}: invalid value {v_text:?}", at()))?;
        let batch = [SeriesSamples {
            labels: labels.clone(),
            samples: vec![Sample::new(ts, v)],
        }];
        let mut transitions = engine.ingest(&batch, ts);
        transitions.extend(engine.tick(ts));
        for t in &transitions {
            let counts = match t.kind {
                TransitionKind::Firing | TransitionKind::Flapping => true,
                TransitionKind::LevelChanged { from } => t.level > from,
                _ => false,
            };
            if counts {
                sum.alerts[t.level.index()] += 1;
                sum.first.get_or_insert_with(|| ts_text.to_string());
                sum.last = Some(ts_text.to_string());
            }
        }
        let e = engine.take_last_evaluation();
        let (score, level) = e.map(|e| (e.score, e.level)).unwrap_or((0.0, None));
        writeln!(
            out,
            "{ts_text},{},{score},{}",
            v_text.trim(),
            level.map(Level::as_str).unwrap_or("")
        )
        .map_err(io)?;
        sum.rows += 1;
    }
    Ok(sum)
}
