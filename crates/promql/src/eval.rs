//! The evaluator: reads every selector's samples once, then evaluates the expression at each
//! step. Subquery results are memoised by (subquery, time), so a range query does not redo
//! the inner evaluation for each outer step.

use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use tocsin_model::{Labels, Sample, TimestampMs};

use crate::{aggregate, binary, functions, is_stale, Element, Error, Result, Selector, Series};
use crate::{Storage, Value};

/// Bounds on one query; reaching one fails the query with an `execution` error naming it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Samples read from storage for one query (Prometheus: `--query.max-samples`, 50 M).
    pub max_samples: usize,
    /// Series one selector may match.
    pub max_series: usize,
    /// Points per series of a range query (Prometheus answers more than 11,000 with an error).
    pub max_points: usize,
    /// Wall time one query may take.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_samples: 50_000_000,
            max_series: 100_000,
            max_points: 11_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Evaluation settings: Prometheus' defaults.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// How far back an instant selector looks for a series' latest sample.
    pub lookback_ms: i64,
    /// The step of a subquery that names none (Prometheus: the global evaluation interval).
    pub subquery_step_ms: i64,
    pub limits: Limits,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            lookback_ms: 5 * 60 * 1000,
            subquery_step_ms: 60 * 1000,
            limits: Limits::default(),
        }
    }
}

impl Engine {
    /// Evaluates `expr` at `t`.
    pub fn instant(&self, st: &mut dyn Storage, expr: &Expr, t: TimestampMs) -> Result<Value> {
        let ev = Ev::load(self, st, expr, t, t)?;
        let v = ev.eval(expr, t)?;
        if let Value::Vector(v) = &v {
            check_unique(v)?;
        }
        Ok(v)
    }

    /// Evaluates `expr` at `start`, `start + step`, ... up to `end`: a matrix of the series
    /// present at any step.
    pub fn range(
        &self,
        st: &mut dyn Storage,
        expr: &Expr,
        start: TimestampMs,
        end: TimestampMs,
        step: i64,
    ) -> Result<Vec<Series>> {
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            t => {
                return Err(Error::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                range_type_name(t)
            )))
            }
        }
        if step <= 0 {
            return Err(Error::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(Error::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step >= self.limits.max_points as i64 {
            return Err(Error::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                self.limits.max_points
            )));
        }
        let ev = Ev::load(self, st, expr, start, end)?;
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::default();
        let mut t = start;
        while t <= end {
            ev.check_deadline()?;
            let elems = match ev.eval(expr, t)? {
                Value::Scalar(v) => vec![Element {
                    labels: Arc::new(Labels::new()),
                    value: v,
                }],
                Value::Vector(v) => v,
                other => {
                    return Err(Error::Execution(format!(
                        "range query gave {} at a step",
                        other.type_name()
                    )))
                }
            };
            for e in elems {
                let i = *index.entry(e.labels.clone()).or_insert_with(|| {
                    out.push(Series {
                        labels: e.labels.clone(),
                        points: Vec::new(),
                    });
                    out.len() - 1
                });
                let pts = &mut out[i].points;
                if pts.last().is_some_and(|p| p.timestamp_ms == t) {
                    return Err(duplicate_labelset());
                }
                pts.push(Sample::new(t, e.value));
            }
            t += step;
        }
        Ok(out)
    }
}

fn range_type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
        ValueType::Scalar => "scalar",
        ValueType::Vector => "instant vector",
    }
}

pub(crate) fn duplicate_labelset() -> Error {
    Error::Execution("vector cannot contain metrics with the same labelset".into())
}

fn checked(v: Value) -> Result<Value> {
    if let Value::Vector(e) = &v {
        check_unique(e)?;
    }
    Ok(v)
}

fn check_unique(v: &[Element]) -> Result<()> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = FxHashSet::default();
    for e in v {
        if !seen.insert(&*e.labels) {
            return Err(duplicate_labelset());
        }
    }
    Ok(())
}

/// One series as read from storage.
pub(crate) struct Loaded {
    pub labels: Arc<Labels>,
    pub samples: Vec<Sample>,
    /// Whether `samples` holds staleness markers (then range functions read a filtered copy).
    pub has_stale: bool,
}

/// The first index of `v` where `before` no longer holds (`before` holds on a prefix), looked
/// for from `hint` on: a few steps forward when the answer moved a little since the hint, a
/// binary search otherwise.
fn seek(v: &[Sample], hint: usize, before: impl Fn(&Sample) -> bool) -> usize {
    let hint = hint.min(v.len());
    if hint > 0 && !before(&v[hint - 1]) {
        return v[..hint].partition_point(&before);
    }
    let mut i = hint;
    for _ in 0..16 {
        if i == v.len() || !before(&v[i]) {
            return i;
        }
        i += 1;
    }
    i + v[i..].partition_point(&before)
}

/// The samples a range function reads: for each series, its points in the window.
pub(crate) struct RangeArg<'a> {
    pub series: Vec<(Arc<Labels>, Cow<'a, [Sample]>)>,
    pub range_ms: i64,
    /// The window's end (evaluation time less offset, or the `@` time).
    pub end_ms: i64,
}

pub(crate) struct Ev<'q> {
    pub eng: &'q Engine,
    /// The query's first and last evaluation times (`@ start()` and `@ end()`).
    pub start: TimestampMs,
    pub end: TimestampMs,
    data: HashMap<usize, Vec<Loaded>>,
    memo: RefCell<HashMap<(usize, i64), Vec<Element>>>,
    /// Label sets derived from a series' (without the name, a group, a match signature), by
    /// operation and source address: computed once per series, not at every step.
    derived: RefCell<HashMap<(usize, usize), Arc<Labels>>>,
    /// Every derived label set once, so equal ones share an address.
    interned: RefCell<HashMap<Labels, Arc<Labels>>>,
    /// Addresses of label sets alive for the whole evaluation (read from storage, or
    /// interned): only those may key `derived`.
    stable: RefCell<FxHashSet<usize>>,
    /// Per matrix selector, each series' window at the previous evaluation: steps move
    /// forward, so the next window is found by stepping on from there, not by searching.
    cursors: RefCell<HashMap<usize, Vec<(usize, usize)>>>,
    deadline: Instant,
}

/// The `derived` operation that drops the metric name (others use their node's address).
const DROP_NAME: usize = 0;

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => -dur_ms(&e.duration()),
    }
}

pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl<'q> Ev<'q> {
    fn load(
        eng: &'q Engine,
        st: &mut dyn Storage,
        expr: &Expr,
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<Ev<'q>> {
        let mut ev = Ev {
            eng,
            start,
            end,
            data: HashMap::default(),
            memo: RefCell::new(HashMap::default()),
            derived: RefCell::new(HashMap::default()),
            interned: RefCell::new(HashMap::default()),
            stable: RefCell::new(FxHashSet::default()),
            cursors: RefCell::new(HashMap::default()),
            deadline: Instant::now() + eng.limits.timeout,
        };
        let mut plan = Vec::new();
        ev.plan(expr, start, end, &mut plan);
        let mut total = 0usize;
        for (vs, from, to) in plan {
            ev.check_deadline()?;
            let mut got = st.select(Selector(vs), from, to).map_err(Error::Storage)?;
            // In label order, as Prometheus' storage hands series out: where order decides
            // (ties in topk, the first of equal groups), the answers then agree.
            got.sort_by(|a, b| a.0.cmp(&b.0));
            if got.len() > eng.limits.max_series {
                return Err(Error::Limit(format!(
                    "query processing would select more than {} series for one selector (limit max_series)",
                    eng.limits.max_series
                )));
            }
            let mut series = Vec::with_capacity(got.len());
            for (labels, samples) in got {
                total += samples.len();
                if total > eng.limits.max_samples {
                    return Err(Error::Limit(format!(
                        "query processing would load too many samples into memory (more than {}, limit max_samples)",
                        eng.limits.max_samples
                    )));
                }
                let has_stale = samples.iter().any(|s| is_stale(s.value));
                let labels = Arc::new(labels);
                ev.stable.get_mut().insert(Arc::as_ptr(&labels) as usize);
                series.push(Loaded {
                    labels,
                    samples,
                    has_stale,
                });
            }
            ev.data.insert(key(vs), series);
        }
        Ok(ev)
    }

    /// Every selector with the time span its samples are needed over, for evaluation times in
    /// `lo..=hi`.
    fn plan<'e>(
        &self,
        e: &'e Expr,
        lo: i64,
        hi: i64,
        out: &mut Vec<(&'e VectorSelector, i64, i64)>,
    ) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.ref_span(&vs.offset, &vs.at, lo, hi);
                out.push((vs, a - self.eng.lookback_ms, b));
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.ref_span(&ms.vs.offset, &ms.vs.at, lo, hi);
                out.push((&ms.vs, a - dur_ms(&ms.range), b));
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.ref_span(&sq.offset, &sq.at, lo, hi);
                self.plan(&sq.expr, a - dur_ms(&sq.range), b, out);
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, lo, hi, out);
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi, out);
                }
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi, out),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi, out);
                self.plan(&b.rhs, lo, hi, out);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn ref_span(
        &self,
        offset: &Option<Offset>,
        at: &Option<AtModifier>,
        lo: i64,
        hi: i64,
    ) -> (i64, i64) {
        match at {
            Some(_) => {
                let r = self.ref_time(offset, at, lo);
                (r, r)
            }
            None => {
                let o = offset_ms(offset);
                (lo - o, hi - o)
            }
        }
    }

    /// The time a selector or subquery is evaluated at, for the evaluation time `t`.
    pub(crate) fn ref_time(&self, offset: &Option<Offset>, at: &Option<AtModifier>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(s)) => system_ms(s),
        };
        base - offset_ms(offset)
    }

    /// `f` of `l`, interned; remembered for `op` when `l` lives as long as the evaluation.
    pub(crate) fn derive(
        &self,
        op: usize,
        l: &Arc<Labels>,
        f: impl FnOnce(&Labels) -> Labels,
    ) -> Arc<Labels> {
        let key = (op, Arc::as_ptr(l) as usize);
        if let Some(v) = self.derived.borrow().get(&key) {
            return v.clone();
        }
        let out = self.intern(f(l));
        if self.stable.borrow().contains(&key.1) {
            self.derived.borrow_mut().insert(key, out.clone());
        }
        out
    }

    pub(crate) fn intern(&self, l: Labels) -> Arc<Labels> {
        if let Some(a) = self.interned.borrow().get(&l) {
            return a.clone();
        }
        let a = Arc::new(l.clone());
        self.stable.borrow_mut().insert(Arc::as_ptr(&a) as usize);
        self.interned.borrow_mut().insert(l, a.clone());
        a
    }

    /// A label set without its metric name.
    pub(crate) fn drop_name(&self, l: &Arc<Labels>) -> Arc<Labels> {
        if l.metric_name().is_some() {
            self.derive(DROP_NAME, l, Labels::without_name)
        } else {
            l.clone()
        }
    }

    pub(crate) fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            Err(Error::Timeout("expression evaluation"))
        } else {
            Ok(())
        }
    }

    pub(crate) fn eval(&self, e: &Expr, t: i64) -> Result<Value> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|e| Element {
                            labels: self.drop_name(&e.labels),
                            value: -e.value,
                        })
                        .collect(),
                )),
                other => Err(Error::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(
                self.instant_samples(vs, t)
                    .map(|(labels, s)| Element {
                        labels: labels.clone(),
                        value: s.value,
                    })
                    .collect(),
            )),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let arg = self.range_arg(e, t)?;
                Ok(Value::Matrix(
                    arg.series
                        .into_iter()
                        .map(|(labels, pts)| Series {
                            labels,
                            points: pts.into_owned(),
                        })
                        .collect(),
                ))
            }
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            // Prometheus checks what operators and functions give for duplicates (two series
            // that lost the only label telling them apart): not the aggregations' answers.
            Expr::Binary(b) => checked(binary::eval(self, b, t)?),
            Expr::Call(c) => checked(functions::call(self, c, t)?),
            Expr::Extension(x) => Err(Error::BadData(format!(
                "{} is not supported",
                x.expr.name()
            ))),
        }
    }

    /// The latest sample of each series a selector matches, at most the lookback old.
    pub(crate) fn instant_samples<'s>(
        &'s self,
        vs: &VectorSelector,
        t: i64,
    ) -> impl Iterator<Item = (&'s Arc<Labels>, Sample)> + 's {
        let r = self.ref_time(&vs.offset, &vs.at, t);
        let lo = r - self.eng.lookback_ms;
        self.data
            .get(&key(vs))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(move |s| {
                let i = s.samples.partition_point(|x| x.timestamp_ms <= r);
                let x = *s.samples.get(i.checked_sub(1)?)?;
                (x.timestamp_ms >= lo && !is_stale(x.value)).then_some((&s.labels, x))
            })
    }

    pub(crate) fn vector(&self, e: &Expr, t: i64) -> Result<Vec<Element>> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(Error::BadData(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn scalar(&self, e: &Expr, t: i64) -> Result<f64> {
        match self.eval(e, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(Error::BadData(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// A range vector argument: a matrix selector or a subquery, at `t`.
    pub(crate) fn range_arg(&self, e: &Expr, t: i64) -> Result<RangeArg<'_>> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                let end = self.ref_time(&ms.vs.offset, &ms.vs.at, t);
                let range = dur_ms(&ms.range);
                let lo = end - range;
                let loaded = self
                    .data
                    .get(&key(&ms.vs))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let mut series = Vec::with_capacity(loaded.len());
                let mut cursors = self.cursors.borrow_mut();
                let cur = cursors
                    .entry(key(&ms.vs))
                    .or_insert_with(|| vec![(0, 0); loaded.len()]);
                for (s, c) in loaded.iter().zip(cur.iter_mut()) {
                    let a = seek(&s.samples, c.0, |x| x.timestamp_ms < lo);
                    let b = seek(&s.samples, c.1, |x| x.timestamp_ms <= end);
                    *c = (a, b);
                    if a >= b {
                        continue;
                    }
                    let slice = &s.samples[a..b];
                    let pts = if s.has_stale {
                        let v: Vec<Sample> = slice
                            .iter()
                            .filter(|x| !is_stale(x.value))
                            .copied()
                            .collect();
                        if v.is_empty() {
                            continue;
                        }
                        Cow::Owned(v)
                    } else {
                        Cow::Borrowed(slice)
                    };
                    series.push((s.labels.clone(), pts));
                }
                Ok(RangeArg {
                    series,
                    range_ms: range,
                    end_ms: end,
                })
            }
            Expr::Subquery(sq) => {
                let end = self.ref_time(&sq.offset, &sq.at, t);
                let range = dur_ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(dur_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(self.eng.subquery_step_ms);
                let lo = end - range;
                let mut it = step * lo.div_euclid(step);
                if it < lo {
                    it += step;
                }
                let id = sq as *const _ as usize;
                let mut index: HashMap<Arc<Labels>, usize> = HashMap::default();
                let mut series: Vec<(Arc<Labels>, Vec<Sample>)> = Vec::new();
                while it <= end {
                    self.check_deadline()?;
                    let memo = self.memo.borrow().get(&(id, it)).cloned();
                    let elems = match memo {
                        Some(v) => v,
                        None => {
                            let v = self.vector(&sq.expr, it)?;
                            self.memo.borrow_mut().insert((id, it), v.clone());
                            v
                        }
                    };
                    for e in elems {
                        let i = *index.entry(e.labels.clone()).or_insert_with(|| {
                            series.push((e.labels.clone(), Vec::new()));
                            series.len() - 1
                        });
                        series[i].1.push(Sample::new(it, e.value));
                    }
                    it += step;
                }
                Ok(RangeArg {
                    series: series
                        .into_iter()
                        .map(|(l, p)| (l, Cow::Owned(p)))
                        .collect(),
                    range_ms: range,
                    end_ms: end,
                })
            }
            other => Err(Error::BadData(format!(
                "expected range vector, got {}",
                range_type_name(other.value_type())
            ))),
        }
    }
}
