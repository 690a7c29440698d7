//! `tocsin-collector backtest`: replays a CSV of `timestamp,value` through one rule, exactly as
//! the collector evaluates it (same engine, the sample times as the clock), and writes
//! `timestamp,value,anomaly_score,level` per input row.

use std::collections::BTreeMap;
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

/// Loads one rule.
fn load_rule(rules: &Path, rule: &str) -> Result<tocsin_rules::Rule, String> {
    let (all, _) = crate::rulefiles::load(&[rules.to_path_buf()]).map_err(|p| p.join("\n"))?;
    let names: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    let r = all.into_iter().find(|r| r.name == rule).ok_or_else(|| {
        format!(
            "{}: no rule {rule:?} (rules: {})",
            rules.display(),
            names.join(", ")
        )
    })?;
    if r.expr.absent.is_some() {
        return Err(format!(
            "{}: {rule} uses absent_over_time, which is judged on the clock between samples; \
             a backtest replays samples only",
            rules.display()
        ));
    }
    if r.expr.aggregates() {
        return Err(format!(
            "{}: {rule} aggregates series, which is evaluated on the clock over many series; \
             a backtest replays one series' samples",
            rules.display()
        ));
    }
    Ok(r)
}

/// Labels for a CSV series: the rule's metric and the labels its matchers ask for.
fn csv_labels(r: &tocsin_rules::Rule) -> Labels {
    let sel = &r.expr.leaves[0].selector;
    let mut labels = Labels::from_pairs([(METRIC_NAME, sel.metric.as_str()), ("host", "backtest")]);
    for m in &sel.matchers {
        if m.op == MatchOp::Eq {
            labels.set(m.name.clone(), m.value.clone());
        }
    }
    labels
}

/// Feeds samples one at a time and writes one output row each.
struct Replay<'a> {
    engine: Engine,
    labels: Labels,
    out: &'a mut dyn Write,
    sum: Summary,
}

impl<'a> Replay<'a> {
    fn new(
        rule: tocsin_rules::Rule,
        labels: Labels,
        out: &'a mut dyn Write,
    ) -> Result<Self, String> {
        writeln!(out, "timestamp,value,anomaly_score,level").map_err(|e| e.to_string())?;
        Ok(Replay {
            engine: Engine::new(
                vec![rule],
                EngineOptions {
                    stale_after_ms: i64::MAX / 4,
                },
            ),
            labels,
            out,
            sum: Summary::default(),
        })
    }

    /// One CSV row: the value is the rule's one input.
    fn row(&mut self, ts: i64, v: f64, ts_text: &str, v_text: &str) -> Result<(), String> {
        let batch = [SeriesSamples {
            labels: self.labels.clone(),
            samples: vec![Sample::new(ts, v)],
        }];
        let e = self.feed(&batch, ts, ts_text);
        self.write(ts_text, v_text, e)
    }

    /// Feeds the inputs sampled at `ts`; the rule's evaluation, if it had all its inputs.
    fn feed(
        &mut self,
        batch: &[SeriesSamples],
        ts: i64,
        ts_text: &str,
    ) -> Option<tocsin_rules::Evaluation> {
        let mut transitions = self.engine.ingest(batch, ts);
        transitions.extend(self.engine.tick(ts));
        for t in &transitions {
            let counts = match t.kind {
                TransitionKind::Firing | TransitionKind::Flapping => true,
                TransitionKind::LevelChanged { from } => t.level > from,
                _ => false,
            };
            if counts {
                self.sum.alerts[t.level.index()] += 1;
                self.sum.first.get_or_insert_with(|| ts_text.to_string());
                self.sum.last = Some(ts_text.to_string());
            }
        }
        self.engine.take_last_evaluation()
    }

    fn write(
        &mut self,
        ts_text: &str,
        v_text: &str,
        e: Option<tocsin_rules::Evaluation>,
    ) -> Result<(), String> {
        let (score, level) = e.map(|e| (e.score, e.level)).unwrap_or((0.0, None));
        writeln!(
            self.out,
            "{ts_text},{v_text},{score},{}",
            level.map(Level::as_str).unwrap_or("")
        )
        .map_err(|e| e.to_string())?;
        self.sum.rows += 1;
        Ok(())
    }
}

pub fn run(rules: &Path, rule: &str, csv: &Path, out: &mut dyn Write) -> Result<Summary, String> {
    let r = load_rule(rules, rule)?;
    // Every leaf must select the same series (`x / deriv(x[1h])` reads one).
    let key = |l: &tocsin_rules::expr::Leaf| {
        let s = &l.selector;
        let m: Vec<_> = s
            .matchers
            .iter()
            .map(|m| (&m.name, m.op, &m.value))
            .collect();
        (s.metric.clone(), format!("{m:?}"))
    };
    let distinct: std::collections::BTreeSet<_> = r.expr.leaves.iter().map(key).collect();
    if distinct.len() != 1 {
        return Err(format!(
            "rule {rule:?} reads {} series; a CSV holds one (replay stored history with --data-dir)",
            distinct.len()
        ));
    }
    let labels = csv_labels(&r);
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
    let mut replay = Replay::new(r, labels, out)?;
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| e.to_string())?;
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
        replay.row(ts, v, ts_text, v_text.trim())?;
    }
    Ok(replay.sum)
}

/// Replays the collector's own stored history of the series the rule reads (narrowed by
/// `host`) between `from` and `to`: one row per evaluation, its value the rule's (the expression
/// over its inputs). The inputs must come down to one series key, as the engine joins them.
pub fn run_stored(
    rules: &Path,
    rule: &str,
    data_dir: &Path,
    range: (&str, &str),
    host: Option<&str>,
    out: &mut dyn Write,
) -> Result<Summary, String> {
    let r = load_rule(rules, rule)?;
    let t = |s: &str| tocsin_model::parse_timestamp(s).ok_or_else(|| format!("invalid time {s:?}"));
    let (from, to) = (t(range.0)?, t(range.1)?);
    let store = tocsin_store::Store::open(
        &data_dir.join("tocsin.db"),
        tocsin_store::StoreOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    // Per input, the stored series it selects, by the key the engine joins inputs on (their
    // labels without the metric name); keys every input has.
    let mut keys: Option<BTreeMap<u64, Labels>> = None;
    let mut inputs = Vec::new();
    for leaf in &r.expr.leaves {
        let found = store
            .select(|l| leaf.selector.matches(l) && host.is_none_or(|h| l.get("host") == Some(h)));
        let these: BTreeMap<u64, Labels> = found
            .iter()
            .map(|(_, l)| {
                let k = l.without_name();
                (k.fingerprint(), k)
            })
            .collect();
        keys = Some(match keys {
            None => these,
            Some(mut k) => {
                k.retain(|fp, _| these.contains_key(fp));
                k
            }
        });
        inputs.push(found);
    }
    let keys = keys.unwrap_or_default();
    let key = match keys.len() {
        1 => *keys.keys().next().expect("one"),
        0 if r.expr.leaves.len() == 1 => {
            return Err(format!("no stored series matches {}", r.expr_text))
        }
        0 => {
            return Err(format!(
                "no stored series of the same labels for every input of {}",
                r.expr_text
            ))
        }
        n => {
            let list: Vec<String> = keys.values().take(10).map(|l| l.to_string()).collect();
            return Err(format!(
                "{n} stored series match; narrow with --host or the rule's matchers: {}",
                list.join(", ")
            ));
        }
    };
    // Every input sample of that key, in time order, fed as the agents' batches would be: the
    // samples of one instant together.
    let mut samples: Vec<(i64, usize, f64)> = Vec::new();
    let mut series: Vec<Labels> = Vec::new();
    for found in &inputs {
        for (id, labels) in found {
            if labels.without_name().fingerprint() != key || series.contains(labels) {
                continue;
            }
            let at = series.len();
            series.push(labels.clone());
            let stored = store.query(*id, from, to).map_err(|e| e.to_string())?;
            samples.extend(stored.into_iter().map(|s| (s.timestamp_ms, at, s.value)));
        }
    }
    samples.sort_by_key(|&(ts, at, _)| (ts, at));
    let mut replay = Replay::new(r, Labels::new(), out)?;
    for instant in samples.chunk_by(|a, b| a.0 == b.0) {
        let ts = instant[0].0;
        let batch: Vec<SeriesSamples> = instant
            .iter()
            .map(|&(_, at, v)| SeriesSamples {
                labels: series[at].clone(),
                samples: vec![Sample::new(ts, v)],
            })
            .collect();
        let ts_text = tocsin_alerting::format_rfc3339(ts);
        if let Some(e) = replay.feed(&batch, ts, &ts_text) {
            replay.write(&ts_text, &e.value.to_string(), Some(e))?;
        }
    }
    Ok(replay.sum)
}
