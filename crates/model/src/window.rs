//! Arithmetic over a window of samples, with PromQL's semantics (Prometheus 2.42): shared by
//! the query engine and the rule language, so `deriv` or `quantile_over_time` mean the same
//! in a rule as in a dashboard.

use crate::{Sample, TimestampMs};

/// A timestamped value: a [`Sample`], or the rule engine's `(ms, value)` pairs.
pub trait Point {
    fn t_ms(&self) -> TimestampMs;
    fn v(&self) -> f64;
}

impl Point for Sample {
    fn t_ms(&self) -> TimestampMs {
        self.timestamp_ms
    }
    fn v(&self) -> f64 {
        self.value
    }
}

impl Point for (TimestampMs, f64) {
    fn t_ms(&self) -> TimestampMs {
        self.0
    }
    fn v(&self) -> f64 {
        self.1
    }
}

/// Neumaier's compensated sum step: (sum, compensation).
pub fn kahan(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards its
/// edges as Prometheus 2.x does (no further than half a sample interval past the first and
/// last samples, and not below zero for a counter), for a range of `range_ms` ending at
/// `end_ms`. At least two points.
pub fn extrapolated<P: Point>(
    p: &[P],
    end_ms: TimestampMs,
    range_ms: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (&p[0], &p[p.len() - 1]);
    let mut result = last.v() - first.v();
    if counter {
        let mut prev = first.v();
        for s in &p[1..] {
            if s.v() < prev {
                result += prev;
            }
            prev = s.v();
        }
    }
    let range_start = end_ms - range_ms;
    let mut to_start = (first.t_ms() - range_start) as f64 / 1000.0;
    let to_end = (end_ms - last.t_ms()) as f64 / 1000.0;
    let sampled = (last.t_ms() - first.t_ms()) as f64 / 1000.0;
    let avg_step = sampled / (p.len() - 1) as f64;
    if counter && result > 0.0 && first.v() >= 0.0 {
        let to_zero = sampled * (first.v() / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    let mut factor = interval / sampled;
    if rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Least-squares slope (per second) and intercept (the value at `intercept_ms`) of the points,
/// times in seconds. At least one point.
pub fn linear_regression<P: Point>(p: &[P], intercept_ms: TimestampMs) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init = p[0].v();
    let mut const_y = true;
    for (i, s) in p.iter().enumerate() {
        if const_y && i > 0 && s.v() != init {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t_ms() - intercept_ms) as f64 / 1000.0;
        (sx, cx) = kahan(x, sx, cx);
        (sy, cy) = kahan(s.v(), sy, cy);
        (sxy, cxy) = kahan(x * s.v(), sxy, cxy);
        (sx2, cx2) = kahan(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// `deriv`: the per-second slope; none with fewer than two points.
pub fn deriv<P: Point>(p: &[P]) -> Option<f64> {
    (p.len() >= 2).then(|| linear_regression(p, p[0].t_ms()).0)
}

/// `predict_linear`: the value the fitted line reaches `ahead_s` seconds after `at_ms`.
pub fn predict_linear<P: Point>(p: &[P], at_ms: TimestampMs, ahead_s: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(p, at_ms);
    Some(intercept + slope * ahead_s)
}

/// `holt_winters` (double exponential smoothing); factors in (0, 1), checked by the caller.
pub fn holt_winters<P: Point>(p: &[P], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].v());
    let mut b = p[1].v() - p[0].v();
    for (i, s) in p.iter().enumerate().skip(1) {
        let x = sf * s.v();
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

/// `changes`: how often the value changed (NaN to NaN is no change).
pub fn changes<P: Point>(p: &[P]) -> f64 {
    p.windows(2)
        .filter(|w| w[1].v() != w[0].v() && !(w[1].v().is_nan() && w[0].v().is_nan()))
        .count() as f64
}

/// `resets`: how often the value went down.
pub fn resets<P: Point>(p: &[P]) -> f64 {
    p.windows(2).filter(|w| w[1].v() < w[0].v()).count() as f64
}

/// Population variance by Welford's method.
pub fn stdvar(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for v in vals {
        n += 1.0;
        let delta = v - mean;
        mean += delta / n;
        m2 += delta * (v - mean);
    }
    m2 / n
}

/// The q-quantile of `vals` by linear interpolation between closest ranks (NaN sorts first);
/// ±∞ for q outside [0, 1].
pub fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    vals[lower as usize] * (1.0 - w) + vals[upper as usize] * w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_found_and_extended() {
        // 10 per minute: 1/6 per second.
        let p: Vec<(i64, f64)> = (0..6)
            .map(|i| (i * 60_000, 100.0 + 10.0 * i as f64))
            .collect();
        assert!((deriv(&p).unwrap() - 1.0 / 6.0).abs() < 1e-12);
        // An hour after the newest point (5 min, 150): 150 + 600.
        let at = p[5].0;
        assert!((predict_linear(&p, at, 3600.0).unwrap() - 750.0).abs() < 1e-9);
        assert_eq!(deriv(&p[..1]), None);
    }

    #[test]
    fn counts_quantiles_and_smoothing() {
        let p: Vec<(i64, f64)> = [1.0, 1.0, 3.0, 2.0, 2.0, 5.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000, v))
            .collect();
        assert_eq!(changes(&p), 3.0);
        assert_eq!(resets(&p), 1.0);
        let mut v: Vec<f64> = p.iter().map(|x| x.1).collect();
        assert_eq!(quantile(0.5, &mut v), 2.0);
        assert_eq!(quantile(0.9, &mut v), 4.0);
        assert_eq!(quantile(1.5, &mut v), f64::INFINITY);
        assert!((stdvar([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].into_iter()) - 4.0).abs() < 1e-12);
        let hw = holt_winters(&p, 0.5, 0.5).unwrap();
        assert!(hw > 2.0 && hw < 6.0, "{hw}");
    }
}
