//! The expression language of rules: a small, streaming-friendly subset of PromQL.
//!
//! ```text
//! expr     := term (('+' | '-') term)*
//! term     := unary (('*' | '/') unary)*
//! unary    := '-' unary | primary
//! primary  := NUMBER | '(' expr ')' | FUNC '(' selector '[' DURATION ']' ')' | selector
//!           | 'predict_linear' '(' selector '[' DURATION ']' ',' CONST ')'
//!           | 'quantile_over_time' '(' CONST ',' selector '[' DURATION ']' ')'
//!           | 'holt_winters' '(' selector '[' DURATION ']' ',' CONST ',' CONST ')'
//!           | ('clamp_min' | 'clamp_max') '(' expr ',' CONST ')' | 'abs' '(' expr ')'
//!           | 'time' '(' ')'
//!           | AGG grouping? '(' expr filter? ')' grouping?
//! filter   := ('>' | '>=' | '<' | '<=' | '==' | '!=') 'bool'? CONST   (keeps the series for
//!             which it holds; with `bool`, every series, at 1 where it holds and 0 elsewhere)
//! AGG      := 'sum' | 'avg' | 'min' | 'max' | 'count' | 'stddev' | 'stdvar'
//!           | 'quantile' grouping? '(' CONST ',' expr filter? ')' grouping?
//! grouping := ('by' | 'without') '(' LABEL (',' LABEL)* ','? ')'
//! CONST    := an expr of numbers only (e.g. 4 * 3600)
//! absent   := 'absent_over_time' '(' selector '[' DURATION ']' ')'   (only as the whole expression)
//! selector := METRIC ('{' matcher (',' matcher)* ','? '}')?
//! matcher  := LABEL ('=' | '!=' | '=~' | '!~') STRING
//! ```
//! Two series meet in a binary operation when their labels, less `__name__`, are equal
//! (PromQL's one-to-one matching). An aggregation combines the series of the expression inside
//! it into one per group (its `by` labels, or all but its `without` labels and `__name__`);
//! where the expression aggregates, every selector is inside an aggregation, aggregations do
//! not nest, and all of them group alike, so that their groups meet by their labels.

use std::fmt;

use regex::Regex;

use crate::rule::{CmpOp, Condition};
use tocsin_model::window;
use tocsin_model::{is_valid_label_name, is_valid_metric_name, Labels};

#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64),
    /// `time()`: the evaluation time in Unix seconds.
    Time,
    /// Index into the rule's leaves.
    Leaf(usize),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `clamp_min(x, n)`, `clamp_max(x, n)`, `abs(x)` (PromQL's, on one value).
    Clamp(ClampFn, Box<Expr>, f64),
    /// Index into the rule's aggregations: the value of the group being evaluated.
    Agg(usize),
    /// `x > 90` inside an aggregation: `x` where the condition holds, no value elsewhere (the
    /// series is left out); with `bool`, 1 where it holds and 0 elsewhere.
    Filter(Condition, bool, Box<Expr>),
}

/// How an aggregation combines the values of a group's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    /// Population standard deviation and variance, as PromQL's.
    Stddev,
    Stdvar,
    /// `quantile(φ, ...)`: the φ-quantile of the group's values, interpolated as PromQL does.
    Quantile(f64),
}

impl AggOp {
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Quantile(_) => "quantile",
        }
    }

    /// The aggregation of that name; a quantile's φ is filled in by the parser.
    fn from_name(s: &str) -> Option<AggOp> {
        [
            AggOp::Sum,
            AggOp::Avg,
            AggOp::Min,
            AggOp::Max,
            AggOp::Count,
            AggOp::Stddev,
            AggOp::Stdvar,
            AggOp::Quantile(0.0),
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }

    /// Whether the group's values themselves are needed, not only running sums.
    pub fn keeps_values(self) -> bool {
        matches!(self, AggOp::Quantile(_))
    }
}

/// Which labels make a group: the `by` labels, or all but the `without` ones (and
/// `__name__`, which the series' keys never hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

impl Grouping {
    /// Whether a group keeps label `name` of its series.
    pub fn keeps(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l == name) != self.without
    }

    /// The group's labels for a series' labels (less `__name__`).
    pub fn group(&self, series: &Labels) -> Labels {
        if self.without {
            let mut g = series.clone();
            for l in &self.labels {
                g.remove(l);
            }
            g
        } else {
            Labels::from_pairs(
                self.labels
                    .iter()
                    .filter_map(|l| Some((l.as_str(), series.get(l)?))),
            )
        }
    }
}

/// `AGG by (...) (inner)`: `inner` is evaluated per series (over the rule's leaves), then
/// combined per group.
#[derive(Debug, Clone)]
pub struct Aggregation {
    pub op: AggOp,
    pub grouping: Grouping,
    pub inner: Expr,
    /// The leaves `inner` reads.
    pub leaves: Vec<usize>,
}

/// A group's running combination of its series' values.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    count: u32,
    sum: f64,
    min: f64,
    max: f64,
    /// Welford's running mean and sum of squared distances from it (PromQL's stddev).
    mean: f64,
    m2: f64,
    /// The values, for a quantile only.
    values: Vec<f64>,
}

impl Accumulator {
    /// Takes a series' value; `keep` when the aggregation needs the values themselves.
    pub fn add(&mut self, v: f64, keep: bool) {
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        let delta = v - self.mean;
        self.mean += delta / f64::from(self.count);
        self.m2 += delta * (v - self.mean);
        if keep {
            self.values.push(v);
        }
    }

    /// The aggregation's value; none for a group without a series.
    pub fn value(&mut self, op: AggOp) -> Option<f64> {
        let n = f64::from(self.count);
        (self.count > 0).then(|| match op {
            AggOp::Sum => self.sum,
            AggOp::Avg => self.sum / n,
            AggOp::Min => self.min,
            AggOp::Max => self.max,
            AggOp::Count => n,
            AggOp::Stddev => (self.m2 / n).sqrt(),
            AggOp::Stdvar => self.m2 / n,
            AggOp::Quantile(q) => window::quantile(q, &mut self.values),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClampFn {
    Min,
    Max,
    Abs,
}

impl ClampFn {
    fn name(self) -> &'static str {
        match self {
            ClampFn::Min => "clamp_min",
            ClampFn::Max => "clamp_max",
            ClampFn::Abs => "abs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

/// A series reference, either the latest value or a function over a range.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub selector: Selector,
    pub func: Option<(RangeFunc, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeFunc {
    Rate,
    Irate,
    Increase,
    Delta,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    StddevOverTime,
    /// Per-second slope of the least-squares line through the window.
    Deriv,
    /// The value that line reaches this many seconds after the newest sample.
    PredictLinear(f64),
    /// How often the value changed in the window.
    Changes,
    /// How often it went down (a counter reset).
    Resets,
    /// The φ-quantile of the window's values (linear interpolation, as PromQL).
    QuantileOverTime(f64),
    /// Double exponential smoothing with smoothing and trend factors in (0, 1).
    HoltWinters(f64, f64),
}

/// The range functions, for error messages.
const KNOWN: &str = "rate, irate, increase, delta, deriv, predict_linear, changes, resets, \
                     avg_over_time, min_over_time, max_over_time, sum_over_time, \
                     count_over_time, last_over_time, stddev_over_time, quantile_over_time, \
                     holt_winters, absent_over_time (alone), and clamp_min, clamp_max, abs \
                     over expressions";

impl RangeFunc {
    pub fn name(self) -> &'static str {
        match self {
            RangeFunc::Rate => "rate",
            RangeFunc::Irate => "irate",
            RangeFunc::Increase => "increase",
            RangeFunc::Delta => "delta",
            RangeFunc::AvgOverTime => "avg_over_time",
            RangeFunc::MinOverTime => "min_over_time",
            RangeFunc::MaxOverTime => "max_over_time",
            RangeFunc::SumOverTime => "sum_over_time",
            RangeFunc::CountOverTime => "count_over_time",
            RangeFunc::LastOverTime => "last_over_time",
            RangeFunc::StddevOverTime => "stddev_over_time",
            RangeFunc::Deriv => "deriv",
            RangeFunc::PredictLinear(_) => "predict_linear",
            RangeFunc::Changes => "changes",
            RangeFunc::Resets => "resets",
            RangeFunc::QuantileOverTime(_) => "quantile_over_time",
            RangeFunc::HoltWinters(..) => "holt_winters",
        }
    }

    /// The function of that name; its constant parameters are filled in by the parser.
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "rate" => RangeFunc::Rate,
            "irate" => RangeFunc::Irate,
            "increase" => RangeFunc::Increase,
            "delta" => RangeFunc::Delta,
            "avg_over_time" => RangeFunc::AvgOverTime,
            "min_over_time" => RangeFunc::MinOverTime,
            "max_over_time" => RangeFunc::MaxOverTime,
            "sum_over_time" => RangeFunc::SumOverTime,
            "count_over_time" => RangeFunc::CountOverTime,
            "last_over_time" => RangeFunc::LastOverTime,
            "stddev_over_time" => RangeFunc::StddevOverTime,
            "deriv" => RangeFunc::Deriv,
            "predict_linear" => RangeFunc::PredictLinear(0.0),
            "changes" => RangeFunc::Changes,
            "resets" => RangeFunc::Resets,
            "quantile_over_time" => RangeFunc::QuantileOverTime(0.0),
            "holt_winters" => RangeFunc::HoltWinters(0.0, 0.0),
            _ => return None,
        })
    }

    /// Applies the function to the samples of a window, oldest first, for a range of
    /// `range_ms` ending at `end_ms` (the evaluation's time: a rule over one series is
    /// evaluated at its newest sample).
    pub fn apply(self, w: &[(i64, f64)], end_ms: i64, range_ms: i64) -> Option<f64> {
        let last = w.last()?;
        let secs = |a: i64, b: i64| (b - a) as f64 / 1000.0;
        let values = || w.iter().map(|x| x.1);
        match self {
            // Extrapolated towards the range's edges, as PromQL's; counter resets handled.
            RangeFunc::Rate => window::extrapolated(w, end_ms, range_ms, true, true),
            RangeFunc::Increase => window::extrapolated(w, end_ms, range_ms, true, false),
            RangeFunc::Delta => window::extrapolated(w, end_ms, range_ms, false, false),
            RangeFunc::Irate => {
                let [.., a, b] = w else { return None };
                let d = if b.1 < a.1 { b.1 } else { b.1 - a.1 };
                (b.0 > a.0).then(|| d / secs(a.0, b.0))
            }
            RangeFunc::AvgOverTime => Some(values().sum::<f64>() / w.len() as f64),
            RangeFunc::MinOverTime => values().reduce(f64::min),
            RangeFunc::MaxOverTime => values().reduce(f64::max),
            RangeFunc::SumOverTime => Some(values().sum()),
            RangeFunc::CountOverTime => Some(w.len() as f64),
            RangeFunc::LastOverTime => Some(last.1),
            RangeFunc::StddevOverTime => Some(window::stdvar(values()).sqrt()),
            RangeFunc::Deriv => window::deriv(w),
            // The rule is evaluated as its newest sample arrives: the horizon counts from it.
            RangeFunc::PredictLinear(ahead) => window::predict_linear(w, last.0, ahead),
            RangeFunc::Changes => Some(window::changes(w)),
            RangeFunc::Resets => Some(window::resets(w)),
            RangeFunc::QuantileOverTime(q) => {
                Some(window::quantile(q, &mut values().collect::<Vec<_>>()))
            }
            RangeFunc::HoltWinters(sf, tf) => window::holt_winters(w, sf, tf),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// The labels PromQL's `absent` gives its result: those the selector fixes with `=`.
    pub fn fixed_labels(&self) -> Labels {
        let mut l = Labels::new();
        for m in self.matchers.iter().filter(|m| m.op == MatchOp::Eq) {
            l.set(m.name.clone(), m.value.clone());
        }
        l
    }

    /// Whether a series (labels including `__name__`) is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        labels.metric_name() == Some(self.metric.as_str())
            && self.matchers.iter().all(|m| m.matches(labels.get(&m.name)))
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Matcher {
    /// A missing label matches as the empty string, as in PromQL.
    pub fn matches(&self, v: Option<&str>) -> bool {
        let v = v.unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    fn op_str(&self) -> &'static str {
        match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// A parsed expression with its leaves.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub root: Expr,
    pub leaves: Vec<Leaf>,
    /// `absent_over_time(selector[range])`: the range in ms. The expression's one leaf is the
    /// selector; the rule's value is 1 while no selected series has had a sample for the
    /// range, and it has none while one has.
    pub absent: Option<i64>,
    /// The aggregations `root` combines (`Expr::Agg`); empty when it reads series directly.
    pub aggs: Vec<Aggregation>,
}

impl Compiled {
    /// Evaluates with `leaf(i)` giving each leaf's value (for an expression that aggregates,
    /// each aggregation's value for the group: its root reads no leaf); `None` when any input
    /// is missing or the result is not a finite number.
    pub fn eval(&self, time: f64, leaf: &mut dyn FnMut(usize) -> Option<f64>) -> Option<f64> {
        eval(&self.root, time, leaf).filter(|v| v.is_finite())
    }

    /// Evaluates aggregation `i`'s inner expression for one series, with `leaf(i)` giving
    /// each leaf's value for it; `None` as for `eval`.
    pub fn eval_inner(
        &self,
        i: usize,
        time: f64,
        leaf: &mut dyn FnMut(usize) -> Option<f64>,
    ) -> Option<f64> {
        eval(&self.aggs[i].inner, time, leaf).filter(|v| v.is_finite())
    }

    /// Whether the expression combines series into groups (evaluated on the clock).
    pub fn aggregates(&self) -> bool {
        !self.aggs.is_empty()
    }

    /// PromQL text of the expression (every construct here is valid PromQL).
    pub fn to_promql(&self) -> String {
        if let Some(range) = self.absent {
            return format!("absent_over_time({}[{}s])", self.leaves[0], range / 1000);
        }
        let mut s = String::new();
        self.write(&self.root, &mut s, 0);
        s
    }

    fn write(&self, e: &Expr, out: &mut String, parent_prec: u8) {
        match e {
            Expr::Number(n) => out.push_str(&n.to_string()),
            Expr::Time => out.push_str("time()"),
            Expr::Leaf(i) => out.push_str(&self.leaves[*i].to_string()),
            Expr::Agg(i) => {
                let a = &self.aggs[*i];
                out.push_str(a.op.name());
                if a.grouping.without || !a.grouping.labels.is_empty() {
                    let kind = if a.grouping.without { "without" } else { "by" };
                    out.push_str(&format!(" {kind} ({}) ", a.grouping.labels.join(", ")));
                }
                out.push('(');
                if let AggOp::Quantile(q) = a.op {
                    out.push_str(&format!("{q}, "));
                }
                self.write(&a.inner, out, 0);
                out.push(')');
            }
            Expr::Neg(x) => {
                out.push('-');
                self.write(x, out, 3);
            }
            Expr::Filter(c, b, x) => {
                self.write(x, out, 0);
                let b = if *b { "bool " } else { "" };
                out.push_str(&format!(" {} {b}{}", c.op.as_str(), c.threshold));
            }
            Expr::Clamp(f, x, n) => {
                out.push_str(f.name());
                out.push('(');
                self.write(x, out, 0);
                if *f != ClampFn::Abs {
                    out.push_str(&format!(", {n}"));
                }
                out.push(')');
            }
            Expr::Binary(op, a, b) => {
                let prec = if matches!(op, BinOp::Add | BinOp::Sub) {
                    1
                } else {
                    2
                };
                if prec < parent_prec {
                    out.push('(');
                }
                self.write(a, out, prec);
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                self.write(b, out, prec + 1);
                if prec < parent_prec {
                    out.push(')');
                }
            }
        }
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((func, _)) = self.func {
            write!(f, "{}(", func.name())?;
            if let RangeFunc::QuantileOverTime(q) = func {
                write!(f, "{q}, ")?;
            }
        }
        f.write_str(&self.selector.metric)?;
        if !self.selector.matchers.is_empty() {
            f.write_str("{")?;
            for (i, m) in self.selector.matchers.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}{}{:?}", m.name, m.op_str(), m.value)?;
            }
            f.write_str("}")?;
        }
        if let Some((func, range)) = self.func {
            write!(f, "[{}s]", range / 1000)?;
            match func {
                RangeFunc::PredictLinear(t) => write!(f, ", {t}")?,
                RangeFunc::HoltWinters(sf, tf) => write!(f, ", {sf}, {tf}")?,
                _ => {}
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Whether `e` depends on the evaluation time.
fn reads_time(e: &Expr) -> bool {
    match e {
        Expr::Time => true,
        Expr::Number(_) | Expr::Leaf(_) => false,
        Expr::Agg(_) => false,
        Expr::Neg(x) | Expr::Clamp(_, x, _) | Expr::Filter(_, _, x) => reads_time(x),
        Expr::Binary(_, a, b) => reads_time(a) || reads_time(b),
    }
}

fn eval(e: &Expr, time: f64, leaf: &mut dyn FnMut(usize) -> Option<f64>) -> Option<f64> {
    Some(match e {
        Expr::Number(n) => *n,
        Expr::Time => time,
        Expr::Leaf(i) | Expr::Agg(i) => leaf(*i)?,
        Expr::Neg(x) => -eval(x, time, leaf)?,
        Expr::Filter(c, as_bool, x) => {
            let v = eval(x, time, leaf)?;
            match (c.holds(v), as_bool) {
                (true, false) => v,
                (false, false) => return None,
                (holds, true) => f64::from(u8::from(holds)),
            }
        }
        Expr::Clamp(f, x, n) => {
            let v = eval(x, time, leaf)?;
            match f {
                ClampFn::Min => v.max(*n),
                ClampFn::Max => v.min(*n),
                ClampFn::Abs => v.abs(),
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, time, leaf)?, eval(b, time, leaf)?);
            match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
            }
        }
    })
}

/// A parse error at a 1-based column of the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.col, self.msg)
    }
}

pub fn parse(src: &str) -> Result<Compiled, ExprError> {
    let mut p = Parser {
        src,
        pos: 0,
        leaves: Vec::new(),
        aggs: Vec::new(),
        inside: None,
        outside: None,
    };
    p.skip_ws();
    if p.pos == src.len() {
        return Err(p.err("empty expression"));
    }
    if let Some(c) = p.absent()? {
        return Ok(c);
    }
    let root = p.expr()?;
    p.skip_ws();
    let at = p.pos;
    if p.comparison().is_some() {
        p.pos = at;
        return Err(p.err(
            "a rule's thresholds are its levels; a comparison here filters the series inside an aggregation, e.g. count(x > 90)",
        ));
    }
    if p.pos < src.len() {
        return Err(p.err(&format!("unexpected {:?}", p.rest_token())));
    }
    if p.leaves.is_empty() {
        return Err(ExprError {
            col: 1,
            msg: "expression selects no series".into(),
        });
    }
    if let (Some(first), Some(col)) = (p.aggs.first(), p.outside) {
        return Err(ExprError {
            col,
            msg: format!(
                "a selector outside the aggregation: where {} combines series into groups, every series is read inside an aggregation",
                first.op.name()
            ),
        });
    }
    Ok(Compiled {
        root,
        leaves: p.leaves,
        absent: None,
        aggs: p.aggs,
    })
}

const ABSENT: &str = "absent_over_time";
const ABSENT_ALONE: &str = "absent_over_time(selector[range]) must be the whole expression: \
                            it has a value only while nothing is there to compute with";

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    leaves: Vec<Leaf>,
    aggs: Vec<Aggregation>,
    /// The leaves of the aggregation being parsed.
    inside: Option<Vec<usize>>,
    /// Where the first selector outside any aggregation is (1-based column).
    outside: Option<usize>,
}

impl<'a> Parser<'a> {
    /// The whole expression when it is `absent_over_time(selector[range])`; the parser is left
    /// where it was when it is not.
    fn absent(&mut self) -> Result<Option<Compiled>, ExprError> {
        let start = self.pos;
        if self.ident() != ABSENT || {
            self.skip_ws();
            self.peek() != Some('(')
        } {
            self.pos = start;
            return Ok(None);
        }
        self.expect('(')?;
        let (selector, range) = self.range_selector()?;
        self.expect(')')?;
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(self.err(ABSENT_ALONE));
        }
        Ok(Some(Compiled {
            root: Expr::Leaf(0),
            leaves: vec![Leaf {
                selector,
                func: None,
            }],
            absent: Some(range),
            aggs: Vec::new(),
        }))
    }

    /// A constant argument: an expression of numbers only.
    fn constant(&mut self) -> Result<f64, ExprError> {
        self.skip_ws();
        let at = self.pos;
        let leaves = self.leaves.len();
        let v = self
            .expr()
            .ok()
            .filter(|e| !reads_time(e))
            .and_then(|e| eval(&e, 0.0, &mut |_| None));
        match v {
            Some(v) if self.leaves.len() == leaves && v.is_finite() => Ok(v),
            _ => {
                self.pos = at;
                self.leaves.truncate(leaves);
                Err(self.err("expected a number here (e.g. 4 * 3600)"))
            }
        }
    }

    fn err(&self, msg: &str) -> ExprError {
        ExprError {
            col: self.src[..self.pos].chars().count() + 1,
            msg: msg.to_string(),
        }
    }

    fn rest_token(&self) -> String {
        self.src[self.pos..].chars().take(12).collect()
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ExprError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(&match self.peek() {
                Some(_) => format!("expected {c:?}, found {:?}", self.rest_token()),
                None => format!("expected {c:?}, found end of expression"),
            }))
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.term()?;
        loop {
            let op = if self.eat('+') {
                BinOp::Add
            } else if self.eat('-') {
                BinOp::Sub
            } else {
                return Ok(lhs);
            };
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.unary()?;
        loop {
            let op = if self.eat('*') {
                BinOp::Mul
            } else if self.eat('/') {
                BinOp::Div
            } else {
                return Ok(lhs);
            };
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.eat('-') {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        self.skip_ws();
        if self.eat('(') {
            let e = self.expr()?;
            self.expect(')')?;
            return Ok(e);
        }
        match self.peek() {
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = self.pos;
                let name = self.ident();
                self.skip_ws();
                if name == "time" && self.peek() == Some('(') {
                    self.expect('(')?;
                    self.expect(')')?;
                    return Ok(Expr::Time);
                }
                if let Some(op) = AggOp::from_name(name) {
                    let next = self.src[self.pos..].trim_start();
                    if next.starts_with('(')
                        || next.starts_with("by")
                        || next.starts_with("without")
                    {
                        return self.aggregation(op, start);
                    }
                }
                if self.peek() == Some('(') {
                    if let Some(f) = [ClampFn::Min, ClampFn::Max, ClampFn::Abs]
                        .into_iter()
                        .find(|f| f.name() == name)
                    {
                        self.expect('(')?;
                        let x = self.expr()?;
                        let n = if f == ClampFn::Abs {
                            0.0
                        } else {
                            self.expect(',')?;
                            self.constant()?
                        };
                        self.expect(')')?;
                        return Ok(Expr::Clamp(f, Box::new(x), n));
                    }
                    if name == ABSENT {
                        self.pos = start;
                        return Err(self.err(ABSENT_ALONE));
                    }
                    let Some(mut func) = RangeFunc::from_name(name) else {
                        self.pos = start;
                        return Err(self.err(&format!("unknown function {name:?}; known: {KNOWN}")));
                    };
                    self.expect('(')?;
                    if let RangeFunc::QuantileOverTime(_) = func {
                        let q = self.constant()?;
                        self.expect(',')?;
                        func = RangeFunc::QuantileOverTime(q);
                    }
                    let (selector, range) = self.range_selector()?;
                    match func {
                        RangeFunc::PredictLinear(_) => {
                            self.expect(',')?;
                            func = RangeFunc::PredictLinear(self.constant()?);
                        }
                        RangeFunc::HoltWinters(..) => {
                            self.expect(',')?;
                            self.skip_ws();
                            let at = self.pos;
                            let sf = self.constant()?;
                            self.expect(',')?;
                            let tf = self.constant()?;
                            if !(sf > 0.0 && sf < 1.0 && tf > 0.0 && tf < 1.0) {
                                self.pos = at;
                                return Err(self.err(
                                    "holt_winters' smoothing and trend factors must lie between 0 and 1",
                                ));
                            }
                            func = RangeFunc::HoltWinters(sf, tf);
                        }
                        _ => {}
                    }
                    self.expect(')')?;
                    Ok(self.leaf(
                        Leaf {
                            selector,
                            func: Some((func, range)),
                        },
                        start,
                    ))
                } else {
                    let selector = self.selector(name)?;
                    self.skip_ws();
                    if self.peek() == Some('[') {
                        return Err(self.err(
                            "a range selector needs a function around it, e.g. rate(metric[5m])",
                        ));
                    }
                    Ok(self.leaf(
                        Leaf {
                            selector,
                            func: None,
                        },
                        start,
                    ))
                }
            }
            Some(_) => Err(self.err(&format!("unexpected {:?}", self.rest_token()))),
            None => Err(self.err("unexpected end of expression")),
        }
    }

    /// `selector '[' DURATION ']'`: the selector and the range in ms.
    fn range_selector(&mut self) -> Result<(Selector, i64), ExprError> {
        self.skip_ws();
        let name = self.ident();
        let selector = self.selector(name)?;
        self.expect('[')?;
        let range = self.duration()?;
        self.expect(']')?;
        Ok((selector, range))
    }

    /// A leaf read from `start` on.
    fn leaf(&mut self, l: Leaf, start: usize) -> Expr {
        self.leaves.push(l);
        let i = self.leaves.len() - 1;
        match &mut self.inside {
            Some(inner) => inner.push(i),
            None => {
                let col = self.src[..start].chars().count() + 1;
                self.outside.get_or_insert(col);
            }
        }
        Expr::Leaf(i)
    }

    /// `AGG grouping? '(' expr ')' grouping?`, the name read; `start` where it began.
    fn aggregation(&mut self, op: AggOp, start: usize) -> Result<Expr, ExprError> {
        if self.inside.is_some() {
            self.pos = start;
            return Err(self.err("aggregations do not nest here"));
        }
        let mut grouping = self.grouping()?;
        self.expect('(')?;
        let op = match op {
            AggOp::Quantile(_) => {
                let q = self.constant()?;
                self.expect(',')?;
                AggOp::Quantile(q)
            }
            op => op,
        };
        self.inside = Some(Vec::new());
        let inner = self.filtered();
        let leaves = self.inside.take().unwrap_or_default();
        let inner = inner?;
        self.expect(')')?;
        self.skip_ws();
        let at = self.pos;
        if let Some(g) = self.grouping()? {
            if grouping.is_some() {
                self.pos = at;
                return Err(self.err("a grouping is given twice"));
            }
            grouping = Some(g);
        }
        let grouping = grouping.unwrap_or(Grouping::default());
        if let Some(first) = self.aggs.first() {
            if first.grouping != grouping {
                self.pos = start;
                return Err(self.err(
                    "aggregations of one expression must group alike (the same by or without labels), so that their groups meet",
                ));
            }
        }
        self.aggs.push(Aggregation {
            op,
            grouping,
            inner,
            leaves,
        });
        Ok(Expr::Agg(self.aggs.len() - 1))
    }

    /// `expr filter?`: an aggregation's inner expression.
    fn filtered(&mut self) -> Result<Expr, ExprError> {
        let x = self.expr()?;
        let Some(op) = self.comparison() else {
            return Ok(x);
        };
        self.skip_ws();
        let at = self.pos;
        let as_bool = self.ident() == "bool";
        if !as_bool {
            self.pos = at;
        }
        let threshold = self.constant()?;
        Ok(Expr::Filter(
            Condition { op, threshold },
            as_bool,
            Box::new(x),
        ))
    }

    /// A comparison operator, read if there.
    fn comparison(&mut self) -> Option<CmpOp> {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        let (op, len) = [
            (CmpOp::Ge, ">="),
            (CmpOp::Le, "<="),
            (CmpOp::Eq, "=="),
            (CmpOp::Ne, "!="),
            (CmpOp::Gt, ">"),
            (CmpOp::Lt, "<"),
        ]
        .into_iter()
        .find(|(_, s)| rest.starts_with(s))
        .map(|(op, s)| (op, s.len()))?;
        self.pos += len;
        Some(op)
    }

    /// `('by' | 'without') '(' LABEL (',' LABEL)* ','? ')'`, if there.
    fn grouping(&mut self) -> Result<Option<Grouping>, ExprError> {
        self.skip_ws();
        let at = self.pos;
        let without = match self.ident() {
            "by" => false,
            "without" => true,
            _ => {
                self.pos = at;
                return Ok(None);
            }
        };
        self.expect('(')?;
        let mut labels = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(')') {
                break;
            }
            let at = self.pos;
            let l = self.ident();
            if !is_valid_label_name(l) {
                self.pos = at;
                return Err(self.err("expected a label name"));
            }
            labels.push(l.to_string());
            if !self.eat(',') {
                self.expect(')')?;
                break;
            }
        }
        Ok(Some(Grouping { without, labels }))
    }

    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            self.pos += 1;
        }
        let s: &'a str = self.src;
        &s[start..self.pos]
    }

    fn number(&mut self) -> Result<Expr, ExprError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric()
                || c == '.'
                || ((c == '+' || c == '-') && self.src[..self.pos].ends_with(['e', 'E']))
        }) {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        text.parse::<f64>().map(Expr::Number).map_err(|_| {
            self.pos = start;
            self.err(&format!("invalid number {text:?}"))
        })
    }

    fn selector(&mut self, name: &str) -> Result<Selector, ExprError> {
        let name = name.to_string();
        if name.is_empty() || !is_valid_metric_name(&name) {
            return Err(self.err("expected a metric name"));
        }
        let mut matchers = Vec::new();
        if self.eat('{') {
            loop {
                if self.eat('}') {
                    break;
                }
                self.skip_ws();
                let lname = self.ident().to_string();
                if !is_valid_label_name(&lname) {
                    return Err(self.err("expected a label name"));
                }
                self.skip_ws();
                let op = if self.src[self.pos..].starts_with("=~") {
                    MatchOp::Re
                } else if self.src[self.pos..].starts_with("!~") {
                    MatchOp::NotRe
                } else if self.src[self.pos..].starts_with("!=") {
                    MatchOp::Ne
                } else if self.src[self.pos..].starts_with('=') {
                    MatchOp::Eq
                } else {
                    return Err(self.err("expected one of =, !=, =~, !~"));
                };
                self.pos += if op == MatchOp::Eq { 1 } else { 2 };
                self.skip_ws();
                let vstart = self.pos;
                let value = self.string()?;
                let re = match op {
                    MatchOp::Re | MatchOp::NotRe => {
                        Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                            self.pos = vstart;
                            let e = e.to_string();
                            let why = e.rsplit("error: ").next().unwrap_or(&e).trim();
                            self.err(&format!("invalid regex {value:?}: {why}"))
                        })?)
                    }
                    _ => None,
                };
                matchers.push(Matcher {
                    name: lname,
                    op,
                    value,
                    re,
                });
                if !self.eat(',') {
                    self.expect('}')?;
                    break;
                }
            }
        }
        Ok(Selector {
            metric: name,
            matchers,
        })
    }

    fn string(&mut self) -> Result<String, ExprError> {
        self.skip_ws();
        let q = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    }),
                    None => break,
                },
                c if c == q => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        self.pos = start;
        Err(self.err("unterminated string"))
    }

    fn duration(&mut self) -> Result<i64, ExprError> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        match tocsin_yaml::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d.as_millis() as i64),
            _ => {
                self.pos = start;
                Err(self.err(&format!("invalid range {text:?}, expected e.g. 5m")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Compiled {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn trend_and_window_functions_parse_and_export() {
        for (src, promql) in [
            (
                "predict_linear(node_filesystem_avail_bytes[6h], 4 * 3600)",
                "predict_linear(node_filesystem_avail_bytes[21600s], 14400)",
            ),
            ("deriv(x[1h])", "deriv(x[3600s])"),
            ("quantile_over_time(0.9, x[10m])", "quantile_over_time(0.9, x[600s])"),
            ("holt_winters(x[1h], 0.3, 0.1)", "holt_winters(x[3600s], 0.3, 0.1)"),
            (
                "changes(x[1h]) + resets(x[1h])",
                "changes(x[3600s]) + resets(x[3600s])",
            ),
            (
                "x / clamp_min(0 - deriv(x[6h]), 1e-9) / 3600",
                "x / clamp_min(0 - deriv(x[21600s]), 0.000000001) / 3600",
            ),
            ("abs(x - 3)", "abs(x - 3)"),
            (
                "stddev_over_time(x[5m]) + count_over_time(x[5m]) + last_over_time(x[5m]) + sum_over_time(x[5m])",
                "stddev_over_time(x[300s]) + count_over_time(x[300s]) + last_over_time(x[300s]) + sum_over_time(x[300s])",
            ),
        ] {
            let c = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(c.to_promql(), promql, "{src}");
            // What it exports parses back to the same.
            assert_eq!(parse(promql).unwrap().to_promql(), promql);
        }
        for (src, want) in [
            (
                "predict_linear(x[1h], y)",
                "column 23: expected a number here (e.g. 4 * 3600)",
            ),
            (
                "predict_linear(x[1h], time())",
                "column 23: expected a number here (e.g. 4 * 3600)",
            ),
            (
                "holt_winters(x[1h], 1.5, 0.1)",
                "column 21: holt_winters' smoothing and trend factors must lie between 0 and 1",
            ),
            (
                "quantile_over_time(x[5m])",
                "column 20: expected a number here (e.g. 4 * 3600)",
            ),
            ("clamp_min(x)", "column 12: expected ',', found \")\""),
        ] {
            assert_eq!(parse(src).unwrap_err().to_string(), want, "{src}");
        }
    }

    #[test]
    fn a_disk_filling_at_a_steady_rate_is_forecast() {
        // 100 GB free, losing 1 GB an hour, sampled every 5 minutes for 6 hours.
        let w: Vec<(i64, f64)> = (0..=72)
            .map(|i| (i * 300_000, 100e9 - 1e9 * (i as f64 / 12.0)))
            .collect();
        let c = parse("x / clamp_min(0 - deriv(x[6h]), 1e-9) / 3600").unwrap();
        let f = c.leaves[1].func.unwrap().0;
        let hours = c.eval(0.0, &mut |li| {
            if li == 0 {
                Some(w.last().unwrap().1)
            } else {
                f.apply(&w, 6 * 3_600_000, 6 * 3_600_000)
            }
        });
        assert!((hours.unwrap() - 94.0).abs() < 1e-6, "{hours:?}");
        let p = RangeFunc::PredictLinear(24.0 * 3600.0)
            .apply(&w, 6 * 3_600_000, 6 * 3_600_000)
            .unwrap();
        assert!((p - 70e9).abs() < 1.0, "{p}");
        // Freeing space: no end in sight (the clamp keeps the hours huge and positive).
        let freeing: Vec<(i64, f64)> = w.iter().map(|&(t, v)| (t, 200e9 - v)).collect();
        let hours = c
            .eval(0.0, &mut |li| {
                if li == 0 {
                    Some(freeing.last().unwrap().1)
                } else {
                    f.apply(&freeing, 6 * 3_600_000, 6 * 3_600_000)
                }
            })
            .unwrap();
        assert!(hours > 1e6, "{hours}");
    }

    #[test]
    fn precedence_and_promql() {
        let c = p("100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)");
        assert_eq!(c.leaves.len(), 2);
        assert_eq!(
            c.to_promql(),
            "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)"
        );
        let vals = [25.0, 100.0];
        assert_eq!(c.eval(0.0, &mut |i| Some(vals[i])), Some(75.0));
        let c = p("a - 3 - -b");
        assert_eq!(c.eval(0.0, &mut |i| Some([10.0, 2.0][i])), Some(9.0));
        assert_eq!(
            c.eval(0.0, &mut |i| [Some(1.0), None][i]),
            None,
            "missing input: no value"
        );
        assert_eq!(
            p("a / b").eval(0.0, &mut |_| Some(0.0)),
            None,
            "NaN is no value"
        );
        let c = p("(expiry - time()) / 86400");
        assert_eq!(c.eval(86400.0, &mut |_| Some(3.0 * 86400.0)), Some(2.0));
        assert_eq!(c.to_promql(), "(expiry - time()) / 86400");
    }

    #[test]
    fn selectors_and_functions() {
        let c = p(
            r#"rate(http_errors_total{code=~"5..", job!="x"}[5m]) / rate(http_requests_total[5m])"#,
        );
        assert_eq!(c.leaves[0].func, Some((RangeFunc::Rate, 300_000)));
        let l = Labels::from_pairs([("__name__", "http_errors_total"), ("code", "503")]);
        assert!(c.leaves[0].selector.matches(&l));
        let l = Labels::from_pairs([("__name__", "http_errors_total"), ("code", "404")]);
        assert!(!c.leaves[0].selector.matches(&l));
        assert_eq!(
            c.to_promql(),
            r#"rate(http_errors_total{code=~"5..", job!="x"}[300s]) / rate(http_requests_total[300s])"#
        );
    }

    #[test]
    fn errors_have_columns() {
        let cases = [
            ("", "column 1: empty expression"),
            ("up >", "column 4: a rule's thresholds are its levels; a comparison here filters the series inside an aggregation, e.g. count(x > 90)"),
            (
                "foo(up[5m])",
                &format!("column 1: unknown function \"foo\"; known: {KNOWN}"),
            ),
            (
                "up[5m]",
                "column 3: a range selector needs a function around it, e.g. rate(metric[5m])",
            ),
            (
                "rate(up[five])",
                "column 9: invalid range \"five\", expected e.g. 5m",
            ),
            ("up{a=\"x}", "column 6: unterminated string"),
            ("up{a~\"x\"}", "column 5: expected one of =, !=, =~, !~"),
            ("1 + 2", "column 1: expression selects no series"),
            ("(up", "column 4: expected ')', found end of expression"),
            (
                "up{a=~\"(\"}",
                "column 7: invalid regex \"(\": unclosed group",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).unwrap_err().to_string(), want, "{src}");
        }
    }

    #[test]
    fn rate_handles_resets() {
        let w = [(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)];
        // 10 + 5 (reset: counted from zero) + 10 = 25 over 30 s, a range of 30 s ending at the
        // newest sample: nothing to extrapolate.
        let apply = |f: RangeFunc, w: &[(i64, f64)]| f.apply(w, 30_000, 30_000);
        assert_eq!(apply(RangeFunc::Increase, &w), Some(25.0));
        assert!((apply(RangeFunc::Rate, &w).unwrap() - 25.0 / 30.0).abs() < 1e-12);
        assert_eq!(apply(RangeFunc::Irate, &w), Some(1.0));
        assert_eq!(apply(RangeFunc::Rate, &w[..1]), None);
        assert_eq!(apply(RangeFunc::MaxOverTime, &w), Some(20.0));
        // A range of 35 s: as PromQL, the increase is extrapolated half a step towards its
        // start (the first sample is 5 s in, under 1.1 steps: to the start), 25 · 35 / 30; a
        // counter's start no further back than where it would have been zero (10 / (25/30)
        // = 12 s back: not reached here).
        assert!(
            (RangeFunc::Increase.apply(&w, 30_000, 35_000).unwrap() - 25.0 * 35.0 / 30.0).abs()
                < 1e-9
        );
        // delta: not a counter, the reset is a fall.
        assert!((RangeFunc::Delta.apply(&w, 30_000, 30_000).unwrap() - 5.0).abs() < 1e-12);
    }
}
