//! PromQL over any sample storage. Parsing is `promql-parser`'s; evaluation follows the
//! engine of Prometheus 2.x (the version Debian ships, the one the differential tests run
//! beside): a 5-minute lookback closed at both ends, staleness markers, extrapolated
//! `rate`/`increase`/`delta`, one-to-one / many-to-one vector matching, `@` and `offset`,
//! subqueries aligned to absolute multiples of their step.
//!
//! The crate knows nothing of SQLite or HTTP: a [`Storage`] hands it the series a selector
//! matches with their samples in a time range, and it answers [`Value`]s. Everything is read
//! up front (one call per selector, over the widest range any step needs), then evaluated step
//! by step, so a query never holds the storage while it computes.

mod aggregate;
mod binary;
mod eval;
mod functions;

use std::sync::Arc;

pub use eval::{Engine, Limits};
use promql_parser::label::MatchOp;
pub use promql_parser::parser::{Expr, VectorSelector};
use tocsin_model::{Labels, Sample, TimestampMs, METRIC_NAME};

/// What a query can fail with, in Prometheus' error types.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The query or its parameters are malformed, or use something not supported.
    #[error("{0}")]
    BadData(String),
    /// Well-formed, but failed while evaluating (many-to-many matching, duplicate series).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// A limit of [`Limits`] was reached.
    #[error("{0}")]
    Limit(String),
    #[error("reading stored samples: {0}")]
    Storage(String),
}

impl Error {
    /// The `errorType` of Prometheus' HTTP API.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) | Error::Limit(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) => "internal",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Parses a query; a parse error is `bad_data` with the parser's message.
pub fn parse(query: &str) -> Result<Expr> {
    static EXTRA: std::sync::Once = std::sync::Once::new();
    EXTRA.call_once(|| {
        use promql_parser::parser::value::ValueType as T;
        // Prometheus 2.x's name of what 3.x calls double_exponential_smoothing.
        let f = promql_parser::parser::Function::new(
            "holt_winters",
            vec![T::Matrix, T::Scalar, T::Scalar],
            0,
            T::Vector,
            false,
        );
        // Fails only if the parser knows the name already, which is as good.
        let _ = promql_parser::parser::register_extra_functions(vec![f]);
    });
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::BadData(format!(
            "the query is {} bytes long, more than the {MAX_QUERY_BYTES} accepted",
            query.len()
        )));
    }
    let expr = promql_parser::parser::parse(query).map_err(Error::BadData)?;
    if depth(&expr) > MAX_DEPTH {
        return Err(Error::BadData(format!(
            "the query nests deeper than {MAX_DEPTH} expressions"
        )));
    }
    Ok(expr)
}

/// Longest query accepted: far beyond what dashboards write, short enough that the parser's
/// tree of it is dropped without exhausting a thread's stack.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// Deepest expression tree evaluated (evaluation recurses along it).
pub const MAX_DEPTH: usize = 200;

/// The depth of an expression tree, walked without recursion.
fn depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(q) => stack.push((&q.expr, d + 1)),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| (&**a, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// Parses a series selector (`match[]` of the metadata endpoints).
pub fn parse_selector(s: &str) -> Result<VectorSelector> {
    match parse(s)? {
        Expr::VectorSelector(vs) if Selector(&vs).matches_empty() => Err(Error::BadData(
            "match[] must contain at least one non-empty matcher".into(),
        )),
        Expr::VectorSelector(vs) => Ok(vs),
        other => Err(Error::BadData(format!(
            "invalid parameter \"match[]\": expected a series selector, got {}",
            other.value_type()
        ))),
    }
}

/// A vector selector's label matchers, ready to test series against.
#[derive(Clone, Copy)]
pub struct Selector<'a>(pub &'a VectorSelector);

impl Selector<'_> {
    /// The metric name an equality matcher fixes, for storages that index by name.
    pub fn metric_name(&self) -> Option<&str> {
        if let Some(n) = &self.0.name {
            return Some(n);
        }
        self.0
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.as_str())
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        if let Some(n) = &self.0.name {
            if labels.metric_name() != Some(n.as_str()) {
                return false;
            }
        }
        let m = &self.0.matchers;
        let all = |ms: &[promql_parser::label::Matcher]| {
            ms.iter()
                .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
        };
        if m.or_matchers.is_empty() {
            all(&m.matchers)
        } else {
            all(&m.matchers) && m.or_matchers.iter().any(|g| all(g))
        }
    }

    /// Whether every matcher matches the empty string (a selector that would select everything).
    fn matches_empty(&self) -> bool {
        self.0.name.is_none()
            && self.0.matchers.or_matchers.is_empty()
            && self.0.matchers.matchers.iter().all(|m| m.is_match(""))
    }
}

/// Where a query's samples come from.
pub trait Storage {
    /// The series `selector` matches that have samples with `from <= t <= to`, and those
    /// samples in time order (staleness markers included).
    fn select(
        &mut self,
        selector: Selector<'_>,
        from: TimestampMs,
        to: TimestampMs,
    ) -> std::result::Result<Vec<(Labels, Vec<Sample>)>, String>;
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub labels: Arc<Labels>,
    pub value: f64,
}

/// One series of a range vector or a range query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Arc<Labels>,
    pub points: Vec<Sample>,
}

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Element>),
    Matrix(Vec<Series>),
    String(String),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::String(_) => "string",
        }
    }
}

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A float as Prometheus prints it in JSON.
pub use tocsin_model::format_float as format_value;

#[cfg(test)]
mod tests;
