//! Aggregation operators over instant vectors, grouped `by` or `without` labels.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};
use tocsin_model::window::{quantile, stdvar};
use tocsin_model::{is_valid_label_name, Labels, METRIC_NAME};

use crate::eval::Ev;
use crate::{format_value, Element, Error, Result, Value};

pub(crate) fn eval(ev: &Ev<'_>, a: &AggregateExpr, t: i64) -> Result<Value> {
    let op = a.op.to_string();
    let mut input = ev.vector(&a.expr, t)?;
    let param = a.param.as_deref();
    let need_param = || param.ok_or_else(|| Error::BadData(format!("{op} needs a parameter")));
    let mut by: Option<Vec<String>> = None;
    let mut without: Vec<String> = Vec::new();
    match &a.modifier {
        Some(LabelModifier::Include(l)) => by = Some(l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => without = l.labels.clone(),
        None => by = Some(Vec::new()),
    }
    if op == "count_values" {
        let label = match ev.eval(need_param()?, t)? {
            Value::String(s) => s,
            other => {
                return Err(Error::BadData(format!(
                    "expected string parameter for count_values, got {}",
                    other.type_name()
                )))
            }
        };
        if !is_valid_label_name(&label) {
            return Err(Error::Execution(format!("invalid label name \"{label}\"")));
        }
        for e in &mut input {
            let mut l = (*e.labels).clone();
            l.set(label.clone(), format_value(e.value));
            e.labels = Arc::new(l);
        }
        if let Some(by) = &mut by {
            by.push(label);
        }
    }
    let group_of = |l: &Labels| -> Labels {
        match &by {
            Some(names) => Labels::from_pairs(
                l.iter()
                    .filter(|x| names.contains(&x.name))
                    .map(|x| (x.name.clone(), x.value.clone())),
            ),
            None => Labels::from_pairs(
                l.iter()
                    .filter(|x| x.name != METRIC_NAME && !without.contains(&x.name))
                    .map(|x| (x.name.clone(), x.value.clone())),
            ),
        }
    };
    // Groups in order of first appearance, keyed by their interned label set's address.
    let node = a as *const AggregateExpr as usize;
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<(Arc<Labels>, Vec<Element>)> = Vec::new();
    for e in input {
        let g = ev.derive(node, &e.labels, group_of);
        let i = *index.entry(Arc::as_ptr(&g) as usize).or_insert_with(|| {
            groups.push((g, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(e);
    }
    let mut out = Vec::with_capacity(groups.len());
    match op.as_str() {
        "topk" | "bottomk" => {
            let k = ev.scalar(need_param()?, t)?;
            if k.is_nan() || k < 1.0 {
                return Ok(Value::Vector(Vec::new()));
            }
            let k = if k >= 1e9 { usize::MAX } else { k as usize };
            let top = op == "topk";
            for (_, members) in groups {
                out.extend(go_heap_select(members, k, top));
            }
            return Ok(Value::Vector(out));
        }
        "quantile" => {
            let q = ev.scalar(need_param()?, t)?;
            for (g, members) in groups {
                let mut vals: Vec<f64> = members.iter().map(|e| e.value).collect();
                out.push(element(g, quantile(q, &mut vals)));
            }
            return Ok(Value::Vector(out));
        }
        _ => {}
    }
    for (g, members) in groups {
        let vals = members.iter().map(|e| e.value);
        let v = match op.as_str() {
            "sum" => vals.sum(),
            "count" | "count_values" => members.len() as f64,
            "group" => 1.0,
            "max" => vals.fold(f64::NAN, |m, v| if m < v || m.is_nan() { v } else { m }),
            "min" => vals.fold(f64::NAN, |m, v| if m > v || m.is_nan() { v } else { m }),
            "avg" => avg(vals),
            "stddev" => stdvar(vals).sqrt(),
            "stdvar" => stdvar(vals),
            other => {
                return Err(Error::BadData(format!(
                    "aggregation {other} is not supported"
                )))
            }
        };
        out.push(element(g, v));
    }
    Ok(Value::Vector(out))
}

fn element(labels: Arc<Labels>, value: f64) -> Element {
    Element { labels, value }
}

/// `topk`/`bottomk` of one group exactly as Prometheus picks them, ties included: a binary
/// heap (Go's `container/heap`) of the k best seen so far, whose root (the worst kept, NaN
/// lowest) a better element replaces.
fn go_heap_select(members: Vec<Element>, k: usize, top: bool) -> Vec<Element> {
    // "i is worse than j": the heap's Less.
    let less = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let mut h: Vec<Element> = Vec::new();
    for e in members {
        if h.len() < k {
            h.push(e);
            // up
            let mut j = h.len() - 1;
            while j > 0 {
                let i = (j - 1) / 2;
                if !less(h[j].value, h[i].value) {
                    break;
                }
                h.swap(i, j);
                j = i;
            }
        } else if less(h[0].value, e.value) && !(h[0].value.is_nan() && e.value.is_nan()) {
            h[0] = e;
            if k > 1 {
                // down from the root (what Go's heap.Fix does first)
                let mut i = 0;
                loop {
                    let j1 = 2 * i + 1;
                    if j1 >= h.len() {
                        break;
                    }
                    let mut j = j1;
                    if j1 + 1 < h.len() && less(h[j1 + 1].value, h[j1].value) {
                        j = j1 + 1;
                    }
                    if !less(h[j].value, h[i].value) {
                        break;
                    }
                    h.swap(i, j);
                    i = j;
                }
            }
        }
    }
    h
}

/// The running mean Prometheus computes (it does not overflow where a plain sum would).
pub(crate) fn avg(vals: impl Iterator<Item = f64>) -> f64 {
    let mut mean = 0.0;
    let mut n = 0.0;
    for v in vals {
        n += 1.0;
        if n == 1.0 {
            mean = v;
            continue;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / n - mean / n;
    }
    mean
}
