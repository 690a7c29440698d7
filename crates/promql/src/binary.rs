//! Binary operators: arithmetic, comparison (filter or `bool`), set operators, and vector
//! matching with `on`/`ignoring`/`group_left`/`group_right`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use tocsin_model::{Labels, METRIC_NAME};

use crate::eval::Ev;
use crate::{Element, Error, Result, Value};

pub(crate) fn eval(ev: &Ev<'_>, b: &BinaryExpr, t: i64) -> Result<Value> {
    let op = b.op.to_string();
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = elem(&op, l, r)?;
            Ok(Value::Scalar(if is_comparison(&op) {
                f64::from(u8::from(keep))
            } else {
                v
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
            ev,
            &op,
            v,
            s,
            false,
            return_bool,
        )?)),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(
            ev,
            &op,
            v,
            s,
            true,
            return_bool,
        )?)),
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            let sig = |e: &Element| Sig::new(ev, b, &e.labels, matching);
            Ok(Value::Vector(match op.as_str() {
                "and" => {
                    let right: HashSet<Sig> = r.iter().map(sig).collect();
                    l.into_iter().filter(|e| right.contains(&sig(e))).collect()
                }
                "unless" => {
                    let right: HashSet<Sig> = r.iter().map(sig).collect();
                    l.into_iter().filter(|e| !right.contains(&sig(e))).collect()
                }
                "or" => {
                    let left: HashSet<Sig> = l.iter().map(sig).collect();
                    let mut out = l;
                    out.extend(r.into_iter().filter(|e| !left.contains(&sig(e))));
                    out
                }
                _ => vector_vector(ev, b, &op, l, r, matching, &card, return_bool)?,
            }))
        }
        (l, r) => Err(Error::BadData(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Arithmetic operators drop the metric name; comparisons (without `bool`) and `atan2` keep
/// it (as Prometheus 2.x does).
fn drops_name(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^")
}

/// The value of `l op r`, and whether a comparison holds (always true for arithmetic).
fn elem(op: &str, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => {
            return Err(Error::BadData(format!(
                "operator \"{other}\" not allowed for these operands"
            )))
        }
    })
}

fn vector_scalar(
    ev: &Ev<'_>,
    op: &str,
    v: Vec<Element>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Element>> {
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let (l, r) = if swap { (s, e.value) } else { (e.value, s) };
        let (mut value, mut keep) = elem(op, l, r)?;
        // The vector's value is kept by a comparison, on whichever side it stands.
        if is_comparison(op) && swap {
            value = r;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            let labels = if drops_name(op) || return_bool {
                ev.drop_name(&e.labels)
            } else {
                e.labels
            };
            out.push(Element { labels, value });
        }
    }
    Ok(out)
}

/// What two series are matched on: an interned label set, compared by address.
#[derive(Clone)]
struct Sig(usize, Arc<Labels>);

impl PartialEq for Sig {
    fn eq(&self, o: &Sig) -> bool {
        self.0 == o.0
    }
}

impl Eq for Sig {}

impl std::hash::Hash for Sig {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl Sig {
    fn new(ev: &Ev<'_>, b: &BinaryExpr, l: &Arc<Labels>, matching: Option<&LabelModifier>) -> Sig {
        let op = b as *const BinaryExpr as usize;
        let a = ev.derive(op, l, |l| signature(l, matching));
        Sig(Arc::as_ptr(&a) as usize, a)
    }
}

fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(names)) => Labels::from_pairs(
            l.iter()
                .filter(|x| names.labels.contains(&x.name))
                .map(|x| (x.name.clone(), x.value.clone())),
        ),
        Some(LabelModifier::Exclude(names)) => Labels::from_pairs(
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !names.labels.contains(&x.name))
                .map(|x| (x.name.clone(), x.value.clone())),
        ),
        None => l.without_name(),
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &Ev<'_>,
    b: &BinaryExpr,
    op: &str,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Element>> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let include: &[String] = card.labels().map(|l| l.labels.as_slice()).unwrap_or(&[]);
    let (lhs, rhs) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    // The right side is the "one" side: its signatures must be unique.
    let mut right: HashMap<Sig, &Element> = HashMap::with_capacity(rhs.len());
    for e in &rhs {
        let sig = Sig::new(ev, b, &e.labels, matching);
        if let Some(prev) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                sig.1, prev.labels, e.labels
            )));
        }
        right.insert(sig, e);
    }
    let mut matched: HashMap<Sig, HashSet<Arc<Labels>>> = HashMap::new();
    let mut out = Vec::new();
    for l in &lhs {
        let sig = Sig::new(ev, b, &l.labels, matching);
        let Some(r) = right.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (r.value, l.value)
        } else {
            (l.value, r.value)
        };
        let (mut value, keep) = elem(op, vl, vr)?;
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let labels = Arc::new(result_labels(
            &l.labels,
            &r.labels,
            op,
            matching,
            one_to_one,
            include,
            return_bool,
        ));
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        } else if seen.contains(&labels) {
            return Err(Error::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        seen.insert(labels.clone());
        out.push(Element { labels, value });
    }
    Ok(out)
}

fn result_labels(
    l: &Labels,
    r: &Labels,
    op: &str,
    matching: Option<&LabelModifier>,
    one_to_one: bool,
    include: &[String],
    return_bool: bool,
) -> Labels {
    let mut out = l.clone();
    if drops_name(op) || return_bool {
        out.remove(METRIC_NAME);
    }
    if one_to_one {
        match matching {
            Some(LabelModifier::Include(names)) => {
                out = Labels::from_pairs(
                    out.iter()
                        .filter(|x| names.labels.contains(&x.name))
                        .map(|x| (x.name.clone(), x.value.clone())),
                );
            }
            Some(LabelModifier::Exclude(names)) => {
                for n in &names.labels {
                    out.remove(n);
                }
            }
            None => {}
        }
    }
    for n in include {
        match r.get(n).filter(|v| !v.is_empty()) {
            Some(v) => out.set(n.clone(), v),
            None => {
                out.remove(n);
            }
        }
    }
    out
}
