//! The expression language of rules: a small, streaming-friendly subset of PromQL.
//!
//! ```text
//! expr     := term (('+' | '-') term)*
//! term     := unary (('*' | '/') unary)*
//! unary    := '-' unary | primary
//! primary  := NUMBER | '(' expr ')' | FUNC '(' selector '[' DURATION ']' ')' | selector
//! selector := METRIC ('{' matcher (',' matcher)* ','? '}')?
//! matcher  := LABEL ('=' | '!=' | '=~' | '!~') STRING
//! ```
//! Two series meet in a binary operation when their labels, less `__name__`, are equal
//! (PromQL's one-to-one matching).

use std::fmt;

use regex::Regex;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunc {
    Rate,
    Irate,
    Increase,
    Delta,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
}

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
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "rate" => RangeFunc::Rate,
            "irate" => RangeFunc::Irate,
            "increase" => RangeFunc::Increase,
            "delta" => RangeFunc::Delta,
            "avg_over_time" => RangeFunc::AvgOverTime,
            "min_over_time" => RangeFunc::MinOverTime,
            "max_over_time" => RangeFunc::MaxOverTime,
            _ => return None,
        })
    }

    /// Applies the function to the samples of a window, oldest first.
    pub fn apply(self, w: &[(i64, f64)]) -> Option<f64> {
        let (first, last) = (w.first()?, w.last()?);
        let secs = |a: i64, b: i64| (b - a) as f64 / 1000.0;
        match self {
            RangeFunc::Rate | RangeFunc::Increase => {
                if w.len() < 2 || last.0 <= first.0 {
                    return None;
                }
                // Counter resets: a drop means the counter restarted from zero.
                let mut inc = 0.0;
                for p in w.windows(2) {
                    let d = p[1].1 - p[0].1;
                    inc += if d < 0.0 { p[1].1 } else { d };
                }
                Some(if self == RangeFunc::Rate {
                    inc / secs(first.0, last.0)
                } else {
                    inc
                })
            }
            RangeFunc::Irate => {
                let [.., a, b] = w else { return None };
                let d = if b.1 < a.1 { b.1 } else { b.1 - a.1 };
                (b.0 > a.0).then(|| d / secs(a.0, b.0))
            }
            RangeFunc::Delta => (w.len() >= 2).then_some(last.1 - first.1),
            RangeFunc::AvgOverTime => Some(w.iter().map(|x| x.1).sum::<f64>() / w.len() as f64),
            RangeFunc::MinOverTime => w.iter().map(|x| x.1).reduce(f64::min),
            RangeFunc::MaxOverTime => w.iter().map(|x| x.1).reduce(f64::max),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

impl Selector {
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
}

impl Compiled {
    /// Evaluates with `leaf(i)` giving each leaf's value; `None` when any input is missing or
    /// the result is not a finite number.
    pub fn eval(&self, time: f64, leaf: &mut dyn FnMut(usize) -> Option<f64>) -> Option<f64> {
        eval(&self.root, time, leaf).filter(|v| v.is_finite())
    }

    /// PromQL text of the expression (every construct here is valid PromQL).
    pub fn to_promql(&self) -> String {
        let mut s = String::new();
        self.write(&self.root, &mut s, 0);
        s
    }

    fn write(&self, e: &Expr, out: &mut String, parent_prec: u8) {
        match e {
            Expr::Number(n) => out.push_str(&n.to_string()),
            Expr::Time => out.push_str("time()"),
            Expr::Leaf(i) => out.push_str(&self.leaves[*i].to_string()),
            Expr::Neg(x) => {
                out.push('-');
                self.write(x, out, 3);
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
        if let Some((_, range)) = self.func {
            write!(f, "[{}s])", range / 1000)?;
        }
        Ok(())
    }
}

fn eval(e: &Expr, time: f64, leaf: &mut dyn FnMut(usize) -> Option<f64>) -> Option<f64> {
    Some(match e {
        Expr::Number(n) => *n,
        Expr::Time => time,
        Expr::Leaf(i) => leaf(*i)?,
        Expr::Neg(x) => -eval(x, time, leaf)?,
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
    };
    p.skip_ws();
    if p.pos == src.len() {
        return Err(p.err("empty expression"));
    }
    let root = p.expr()?;
    p.skip_ws();
    if p.pos < src.len() {
        return Err(p.err(&format!("unexpected {:?}", p.rest_token())));
    }
    if p.leaves.is_empty() {
        return Err(ExprError {
            col: 1,
            msg: "expression selects no series".into(),
        });
    }
    Ok(Compiled {
        root,
        leaves: p.leaves,
    })
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    leaves: Vec<Leaf>,
}

impl<'a> Parser<'a> {
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
                if self.peek() == Some('(') {
                    let Some(func) = RangeFunc::from_name(name) else {
                        self.pos = start;
                        return Err(self.err(&format!(
                            "unknown function {name:?}; known: rate, irate, increase, delta, avg_over_time, min_over_time, max_over_time"
                        )));
                    };
                    self.expect('(')?;
                    self.skip_ws();
                    let sel_name = self.ident();
                    let selector = self.selector(sel_name)?;
                    self.expect('[')?;
                    let range = self.duration()?;
                    self.expect(']')?;
                    self.expect(')')?;
                    Ok(self.leaf(Leaf {
                        selector,
                        func: Some((func, range)),
                    }))
                } else {
                    let selector = self.selector(name)?;
                    self.skip_ws();
                    if self.peek() == Some('[') {
                        return Err(self.err(
                            "a range selector needs a function around it, e.g. rate(metric[5m])",
                        ));
                    }
                    Ok(self.leaf(Leaf {
                        selector,
                        func: None,
                    }))
                }
            }
            Some(_) => Err(self.err(&format!("unexpected {:?}", self.rest_token()))),
            None => Err(self.err("unexpected end of expression")),
        }
    }

    fn leaf(&mut self, l: Leaf) -> Expr {
        self.leaves.push(l);
        Expr::Leaf(self.leaves.len() - 1)
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
            ("up >", "column 4: unexpected \">\""),
            ("foo(up[5m])", "column 1: unknown function \"foo\"; known: rate, irate, increase, delta, avg_over_time, min_over_time, max_over_time"),
            ("up[5m]", "column 3: a range selector needs a function around it, e.g. rate(metric[5m])"),
            ("rate(up[five])", "column 9: invalid range \"five\", expected e.g. 5m"),
            ("up{a=\"x}", "column 6: unterminated string"),
            ("up{a~\"x\"}", "column 5: expected one of =, !=, =~, !~"),
            ("1 + 2", "column 1: expression selects no series"),
            ("(up", "column 4: expected ')', found end of expression"),
            ("up{a=~\"(\"}", "column 7: invalid regex \"(\": unclosed group"),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).unwrap_err().to_string(), want, "{src}");
        }
    }

    #[test]
    fn rate_handles_resets() {
        let w = [(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)];
        // 10 + 5 (reset: counted from zero) + 10 = 25 over 30 s.
        assert_eq!(RangeFunc::Increase.apply(&w), Some(25.0));
        assert!((RangeFunc::Rate.apply(&w).unwrap() - 25.0 / 30.0).abs() < 1e-12);
        assert_eq!(RangeFunc::Irate.apply(&w), Some(1.0));
        assert_eq!(RangeFunc::Rate.apply(&w[..1]), None);
        assert_eq!(RangeFunc::MaxOverTime.apply(&w), Some(20.0));
    }
}
