//! PromQL functions, as Prometheus 2.x computes them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Datelike, TimeZone, Timelike, Utc};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};
use tocsin_model::window::{self, quantile, stdvar};
use tocsin_model::{is_valid_label_name, Labels, Sample, METRIC_NAME};

use crate::aggregate::avg;
use crate::eval::{unparen, Ev, RangeArg};
use crate::{Element, Error, Result, Value};

pub(crate) fn call(ev: &Ev<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| &**a).collect();
    let arg = |i: usize| -> Result<&Expr> {
        args.get(i)
            .copied()
            .ok_or_else(|| Error::BadData(format!("{name}: missing argument {}", i + 1)))
    };
    let vector = |v: Vec<Element>| Ok(Value::Vector(v));
    match name {
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => vector(vec![Element {
            labels: Arc::new(Labels::new()),
            value: ev.scalar(arg(0)?, t)?,
        }]),
        "scalar" => {
            let v = ev.vector(arg(0)?, t)?;
            Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "absent" => {
            let v = ev.vector(arg(0)?, t)?;
            vector(if v.is_empty() {
                vec![absent_element(arg(0)?)]
            } else {
                Vec::new()
            })
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unparen(arg(0)?) {
                return vector(
                    ev.instant_samples(vs, t)
                        .map(|(l, s)| Element {
                            labels: ev.drop_name(l),
                            value: s.timestamp_ms as f64 / 1000.0,
                        })
                        .collect(),
                );
            }
            let v = ev.vector(arg(0)?, t)?;
            vector(map_values(ev, v, |_| t as f64 / 1000.0))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector(arg(0)?, t)?;
            let desc = name == "sort_desc";
            // NaN last either way, as Prometheus orders them.
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.value.total_cmp(&a.value),
                _ => a.value.total_cmp(&b.value),
            });
            vector(v)
        }
        "round" => {
            let to = match args.get(1) {
                Some(e) => ev.scalar(e, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            let v = ev.vector(arg(0)?, t)?;
            vector(map_values(ev, v, |x| (x * inv + 0.5).floor() / inv))
        }
        "clamp" => {
            let v = ev.vector(arg(0)?, t)?;
            let (lo, hi) = (ev.scalar(arg(1)?, t)?, ev.scalar(arg(2)?, t)?);
            if hi < lo {
                return vector(Vec::new());
            }
            vector(map_values(ev, v, |x| lo.max(hi.min(x))))
        }
        "clamp_min" => {
            let v = ev.vector(arg(0)?, t)?;
            let lo = ev.scalar(arg(1)?, t)?;
            vector(map_values(ev, v, |x| lo.max(x)))
        }
        "clamp_max" => {
            let v = ev.vector(arg(0)?, t)?;
            let hi = ev.scalar(arg(1)?, t)?;
            vector(map_values(ev, v, |x| hi.min(x)))
        }
        "histogram_quantile" => {
            let q = ev.scalar(arg(0)?, t)?;
            let v = ev.vector(arg(1)?, t)?;
            vector(histogram_quantile(q, v))
        }
        "label_replace" => {
            let v = ev.vector(arg(0)?, t)?;
            let dst = string_arg(ev, arg(1)?, t)?;
            let repl = string_arg(ev, arg(2)?, t)?;
            let src = string_arg(ev, arg(3)?, t)?;
            let re = string_arg(ev, arg(4)?, t)?;
            let re = regex::Regex::new(&format!("^(?:{re})$")).map_err(|_| {
                Error::BadData(format!(
                    "invalid regular expression in label_replace(): {re}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(Error::BadData(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            vector(
                v.into_iter()
                    .map(|e| {
                        let value = e.labels.get(&src).unwrap_or("");
                        let Some(caps) = re.captures(value) else {
                            return e;
                        };
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        let mut l = (*e.labels).clone();
                        set_or_remove(&mut l, &dst, res);
                        Element {
                            labels: Arc::new(l),
                            value: e.value,
                        }
                    })
                    .collect(),
            )
        }
        "label_join" => {
            let v = ev.vector(arg(0)?, t)?;
            let dst = string_arg(ev, arg(1)?, t)?;
            let sep = string_arg(ev, arg(2)?, t)?;
            let src = args[3.min(args.len())..]
                .iter()
                .map(|e| string_arg(ev, e, t))
                .collect::<Result<Vec<_>>>()?;
            if !is_valid_label_name(&dst) {
                return Err(Error::BadData(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            vector(
                v.into_iter()
                    .map(|e| {
                        let joined = src
                            .iter()
                            .map(|s| e.labels.get(s).unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join(&sep);
                        let mut l = (*e.labels).clone();
                        set_or_remove(&mut l, &dst, joined);
                        Element {
                            labels: Arc::new(l),
                            value: e.value,
                        }
                    })
                    .collect(),
            )
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = match args.first() {
                Some(e) => ev.vector(e, t)?,
                None => vec![Element {
                    labels: Arc::new(Labels::new()),
                    value: t as f64 / 1000.0,
                }],
            };
            vector(map_values(ev, v, |x| date_part(name, x)))
        }
        "absent_over_time" => {
            let r = ev.range_arg(arg(0)?, t)?;
            vector(if r.series.is_empty() {
                vec![absent_element(arg(0)?)]
            } else {
                Vec::new()
            })
        }
        "quantile_over_time" => {
            let q = ev.scalar(arg(0)?, t)?;
            let r = ev.range_arg(arg(1)?, t)?;
            vector(over_range(ev, r, false, |pts, _| {
                let mut v: Vec<f64> = pts.iter().map(|s| s.value).collect();
                Some(quantile(q, &mut v))
            }))
        }
        "predict_linear" => {
            let d = ev.scalar(arg(1)?, t)?;
            let r = ev.range_arg(arg(0)?, t)?;
            vector(over_range(ev, r, false, |pts, _| {
                window::predict_linear(pts, t, d)
            }))
        }
        "holt_winters" | "double_exponential_smoothing" => {
            let sf = ev.scalar(arg(1)?, t)?;
            let tf = ev.scalar(arg(2)?, t)?;
            if sf <= 0.0 || sf >= 1.0 {
                return Err(Error::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(Error::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
                )));
            }
            let r = ev.range_arg(arg(0)?, t)?;
            vector(over_range(ev, r, false, |pts, _| {
                window::holt_winters(pts, sf, tf)
            }))
        }
        _ => {
            if let Some(f) = range_fn(name) {
                let r = ev.range_arg(arg(0)?, t)?;
                return vector(over_range(ev, r, name == "last_over_time", f));
            }
            if let Some(f) = math_fn(name) {
                let v = ev.vector(arg(0)?, t)?;
                return vector(map_values(ev, v, f));
            }
            Err(Error::BadData(format!(
                "function \"{name}\" is not supported"
            )))
        }
    }
}

fn string_arg(ev: &Ev<'_>, e: &Expr, t: i64) -> Result<String> {
    match ev.eval(e, t)? {
        Value::String(s) => Ok(s),
        other => Err(Error::BadData(format!(
            "expected string, got {}",
            other.type_name()
        ))),
    }
}

fn set_or_remove(l: &mut Labels, name: &str, value: String) {
    if value.is_empty() {
        l.remove(name);
    } else {
        l.set(name, value);
    }
}

/// Applies `f` to each value; the metric name goes (the value no longer is that metric).
fn map_values(ev: &Ev<'_>, v: Vec<Element>, f: impl Fn(f64) -> f64) -> Vec<Element> {
    v.into_iter()
        .map(|e| Element {
            labels: ev.drop_name(&e.labels),
            value: f(e.value),
        })
        .collect()
}

/// `absent()`'s answer: the labels its selector fixes by equality, once each.
fn absent_element(e: &Expr) -> Element {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut l = Labels::new();
    if let Some(vs) = vs {
        let mut empty = Vec::new();
        for m in &vs.matchers.matchers {
            if m.name == METRIC_NAME {
                continue;
            }
            if matches!(m.op, MatchOp::Equal) && l.get(&m.name).is_none() {
                l.set(m.name.clone(), m.value.clone());
            } else {
                empty.push(m.name.clone());
            }
        }
        for n in empty {
            l.remove(&n);
        }
    }
    Element {
        labels: Arc::new(l),
        value: 1.0,
    }
}

type RangeFn = fn(&[Sample], &RangeCtx) -> Option<f64>;

/// What a range function knows besides the points: the window it was asked for.
pub(crate) struct RangeCtx {
    pub range_ms: i64,
    pub end_ms: i64,
}

fn over_range(
    ev: &Ev<'_>,
    r: RangeArg<'_>,
    keep_name: bool,
    f: impl Fn(&[Sample], &RangeCtx) -> Option<f64>,
) -> Vec<Element> {
    let ctx = RangeCtx {
        range_ms: r.range_ms,
        end_ms: r.end_ms,
    };
    r.series
        .into_iter()
        .filter_map(|(labels, pts): (Arc<Labels>, Cow<'_, [Sample]>)| {
            let value = f(&pts, &ctx)?;
            Some(Element {
                labels: if keep_name {
                    labels
                } else {
                    ev.drop_name(&labels)
                },
                value,
            })
        })
        .collect()
}

fn range_fn(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |p, c| window::extrapolated(p, c.end_ms, c.range_ms, true, true),
        "increase" => |p, c| window::extrapolated(p, c.end_ms, c.range_ms, true, false),
        "delta" => |p, c| window::extrapolated(p, c.end_ms, c.range_ms, false, false),
        "irate" => |p, _| instant_value(p, true),
        "idelta" => |p, _| instant_value(p, false),
        "deriv" => |p, _| window::deriv(p),
        "resets" => |p, _| Some(window::resets(p)),
        "changes" => |p, _| Some(window::changes(p)),
        "avg_over_time" => |p, _| Some(avg(p.iter().map(|s| s.value))),
        "sum_over_time" => |p, _| Some(p.iter().map(|s| s.value).sum()),
        "count_over_time" => |p, _| Some(p.len() as f64),
        "min_over_time" => |p, _| {
            Some(
                p.iter()
                    .map(|s| s.value)
                    .fold(f64::NAN, |m, v| if m > v || m.is_nan() { v } else { m }),
            )
        },
        "max_over_time" => |p, _| {
            Some(
                p.iter()
                    .map(|s| s.value)
                    .fold(f64::NAN, |m, v| if m < v || m.is_nan() { v } else { m }),
            )
        },
        "stddev_over_time" => |p, _| Some(stdvar(p.iter().map(|s| s.value)).sqrt()),
        "stdvar_over_time" => |p, _| Some(stdvar(p.iter().map(|s| s.value))),
        "last_over_time" => |p, _| p.last().map(|s| s.value),
        "present_over_time" => |_, _| Some(1.0),
        _ => return None,
    })
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |x: f64| {
            if x < 0.0 {
                -1.0
            } else if x > 0.0 {
                1.0
            } else {
                x
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
        "rad" => |x: f64| x * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(p: &[Sample], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut v = if rate && last.value < prev.value {
        last.value
    } else {
        last.value - prev.value
    };
    let dt = last.timestamp_ms - prev.timestamp_ms;
    if dt == 0 {
        return None;
    }
    if rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

fn date_part(name: &str, secs: f64) -> f64 {
    let Some(d) = Utc.timestamp_opt(secs as i64, 0).single() else {
        return f64::NAN;
    };
    f64::from(match name {
        "day_of_month" => d.day(),
        "day_of_week" => d.weekday().num_days_from_sunday(),
        "day_of_year" => d.ordinal(),
        "hour" => d.hour(),
        "minute" => d.minute(),
        "month" => d.month(),
        "year" => return f64::from(d.year()),
        _ => {
            // days_in_month
            let (y, m) = (d.year(), d.month());
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let next = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single();
            let this = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single();
            match (this, next) {
                (Some(a), Some(b)) => (b - a).num_days() as u32,
                _ => return f64::NAN,
            }
        }
    })
}

/// `histogram_quantile` over classic buckets (`le` labels), grouped by the other labels.
fn histogram_quantile(q: f64, v: Vec<Element>) -> Vec<Element> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for e in v {
        let Some(le) = e.labels.get("le").and_then(parse_bound) else {
            continue;
        };
        let mut g = e.labels.without_name();
        g.remove("le");
        let i = *index.entry(g.clone()).or_insert_with(|| {
            groups.push((g, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((le, e.value));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| Element {
            labels: Arc::new(labels),
            value: bucket_quantile(q, buckets),
        })
        .collect()
}

fn parse_bound(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Equal bounds merge; counts are made monotonic.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (le, c) in b {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for x in &mut merged {
        if x.1 > max {
            max = x.1;
        } else if x.1 < max {
            x.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let total = merged[merged.len() - 1].1;
    if total == 0.0 || total.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * total;
    let n = merged.len();
    let i = merged[..n - 1].partition_point(|x| x.1 < rank);
    if i == n - 1 {
        return merged[n - 2].0;
    }
    if i == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[i].0, merged[i].1);
    if i > 0 {
        start = merged[i - 1].0;
        count -= merged[i - 1].1;
        rank -= merged[i - 1].1;
    }
    start + (end - start) * (rank / count)
}
