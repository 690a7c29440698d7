//! Rule files: YAML → checked `Rule`s, with every problem reported as `path:line: …`.

use std::collections::{BTreeMap, HashMap};

use serde_yaml_ng::Value;
use tocsin_model::{is_valid_label_name, Labels, Level};

use tocsin_yaml::{Locator, Seg};

use crate::expr;
use crate::rule::{
    Condition, Direction, Dynamic, Exclusion, Flapping, LevelSpec, ParamSource, Remediation, Rule,
};

/// The names an annotation template can use: what the engine renders it with, then the
/// template language's own functions.
const TEMPLATE_NAMES: &[&str] = &[
    "host",
    "value",
    "level",
    "threshold",
    "rule",
    "score",
    "expected",
    "lower",
    "upper",
    "cause",
    "labels",
    "range",
    "dict",
    "namespace",
    "debug",
];
/// How many of `TEMPLATE_NAMES` are the alert's.
const ALERT_NAMES: usize = 11;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// The alert's name (`alertname` label); unique across all loaded files.
    #[serde(default)]
    name: String,
    /// A recording rule instead: the metric name its values are stored under.
    record: Option<String>,
    /// What to compute: see `expr.rs` for the language.
    expr: String,
    /// How long a level's condition must hold before the alert fires at it (default 0s).
    #[serde(rename = "for")]
    for_: Option<String>,
    /// Consecutive evaluations a level's condition must hold before it fires (default 1): with
    /// probes, "failing for N runs".
    for_runs: Option<u32>,
    /// Flapping detection: `{changes: 6, window: 10m}` (the default); `changes: 0` switches it off.
    flapping: Option<RawFlapping>,
    /// Dynamic thresholds learned from each series' own history (docs/DYNAMIC.md).
    dynamic: Option<RawDynamic>,
    /// `warning`, `critical`, `emergency`: a condition such as `"> 90"`, or
    /// `{when: "> 90", recover: "< 85", for: 1m}`.
    #[serde(default)]
    levels: BTreeMap<String, Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Templates: `{{ host }}`, `{{ value }}`, `{{ level }}`, `{{ threshold }}`, `{{ labels.x }}`.
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    /// An allowlisted action to run when the alert fires (docs/REMEDIATION.md).
    remediation: Option<RawRemediation>,
    /// How often a rule that aggregates (`sum by (...) (...)`) is evaluated (default 15s).
    interval: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemediation {
    /// The action's name in the allowlist of the agent (or of the collector).
    action: String,
    /// `agent` (default: the agent of the alert's `host`) or `collector`.
    on: Option<String>,
    /// Action parameter → `{value: V}` (fixed here) or `{label: L, values: [...]}` (the alert's
    /// label `L`, only if it is one of `values`).
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
    /// Least level that triggers it (default critical).
    level: Option<String>,
    /// How long the alert has to resolve after the action before it counts as failed (default 1m).
    verify_within: Option<String>,
    /// Least time between two attempts for the same alert (default 5m).
    cooldown: Option<String>,
    /// Most attempts per alert in `window` (default 3 in 1h).
    max_attempts: Option<u32>,
    window: Option<String>,
    /// Consecutive failures that open the circuit breaker: no more attempts for `window`, and
    /// the alert escalates (default 3).
    breaker_after: Option<u32>,
    /// Run only after somebody acknowledges the alert (default false).
    #[serde(default)]
    approval: bool,
    /// Record what would run, run nothing (default false).
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum RawParam {
    /// The old form, a bare label name: refused, with what to write instead.
    Label(String),
    Source(RawParamSource),
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamSource {
    value: Option<String>,
    label: Option<String>,
    values: Option<Vec<String>>,
    /// A replica count for a scale-out: `{ start, max, step }`.
    scale: Option<RawScale>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScale {
    start: u32,
    max: u32,
    #[serde(default = "one")]
    step: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDynamic {
    /// low, medium (default) or high.
    sensitivity: Option<String>,
    /// up, down or both (default).
    direction: Option<String>,
    #[serde(default)]
    min_abs_deviation: f64,
    #[serde(default)]
    min_rel_deviation: f64,
    /// Samples learned before anything fires (default 30); until then the rule stays quiet.
    min_history: Option<u32>,
    /// Levels judged dynamically (default warning and critical); a level also given under
    /// `levels` is judged statically.
    levels: Option<Vec<String>>,
    /// Static stand-ins for dynamic levels while a series' baseline has fewer than
    /// `min_history` samples (`warning: "> 80"`); a dynamic level without one stays quiet.
    #[serde(default)]
    cold_start: BTreeMap<String, Value>,
    /// Times the baseline ignores: `{days: [sun], from: "02:00", to: "04:00"}` (weekly, UTC)
    /// or `{start: "2026-11-23 10:00:00", end: "2026-11-23 11:00:00"}` (once).
    #[serde(default)]
    exclude: Vec<RawExclusion>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclusion {
    days: Option<Vec<String>>,
    from: Option<String>,
    to: Option<String>,
    utc_offset: Option<String>,
    timezone: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

fn parse_exclusion(e: &RawExclusion) -> Result<Exclusion, String> {
    match e {
        RawExclusion {
            start: Some(a),
            end: Some(b),
            days: None,
            from: None,
            to: None,
            utc_offset: None,
            timezone: None,
        } => {
            let t = |s: &str| {
                tocsin_model::parse_timestamp(s)
                    .ok_or_else(|| format!("{s:?} is not a time like 2026-11-23 10:00:00"))
            };
            let (start_ms, end_ms) = (t(a)?, t(b)?);
            if end_ms <= start_ms {
                return Err("end must be after start".into());
            }
            Ok(Exclusion::Once { start_ms, end_ms })
        }
        RawExclusion {
            from: Some(f),
            to: Some(t),
            start: None,
            end: None,
            days,
            utc_offset,
            timezone,
        } => tocsin_clock::Window::new(
            days.as_deref().unwrap_or_default(),
            f,
            t,
            utc_offset.as_deref(),
            timezone.as_deref(),
        )
        .map(Exclusion::Weekly),
        _ => Err(
            "give either `from` and `to` (with optional `days`, and `utc_offset` or `timezone`) or `start` and `end`"
                .into(),
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlapping {
    changes: Option<u32>,
    window: Option<String>,
}

/// Parses one file's text. `path` is used only in messages.
pub fn parse_file(path: &str, text: &str) -> Result<Vec<Rule>, Vec<String>> {
    let raw: RawFile = match tocsin_yaml::parse_yaml(text) {
        Ok(r) => r,
        Err(e) => return Err(vec![format!("{path}:{e}")]),
    };
    let loc = Locator::new(text);
    // The line of `field` inside rule `i`, else of the rule, else 1.
    let line_of = |i: usize, field: &[&str]| {
        let mut path = vec![Seg::Key("rules"), Seg::Index(i)];
        path.extend(field.iter().map(|&f| Seg::Key(f)));
        loc.line(&path).unwrap_or(1)
    };
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, mut r) in raw.rules.into_iter().enumerate() {
        let record = r.record.is_some();
        let named = !r.name.is_empty();
        if let Some(rec) = r.record.take() {
            r.name = rec;
        }
        let at = |field: &[&str]| {
            let line = line_of(i, field);
            format!("{path}:{line}: rule {:?}", r.name)
        };
        let before = problems.len();
        if record {
            if named {
                problems.push(format!(
                    "{}: give name (an alerting rule) or record (a recording rule), not both",
                    at(&["record"])
                ));
            }
            if !tocsin_model::is_valid_metric_name(&r.name) {
                problems.push(format!(
                    "{}: record must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                    at(&["record"])
                ));
            }
            // What makes an alert has no place in a rule that stores values.
            for (field, given) in [
                ("levels", !r.levels.is_empty()),
                ("dynamic", r.dynamic.is_some()),
                ("annotations", !r.annotations.is_empty()),
                ("remediation", r.remediation.is_some()),
                ("for", r.for_.is_some()),
                ("for_runs", r.for_runs.is_some()),
                ("flapping", r.flapping.is_some()),
            ] {
                if given {
                    problems.push(format!(
                        "{}: {field}: a recording rule stores values and raises no alert",
                        at(&[field])
                    ));
                }
            }
        } else if r.name.is_empty() || !is_valid_label_name(&r.name) {
            problems.push(format!(
                "{}: name must match [a-zA-Z_][a-zA-Z0-9_]* (or give record, for a recording rule)",
                at(&["name"])
            ));
        }
        if let Some(first) = seen.insert(r.name.clone(), i) {
            problems.push(format!(
                "{}: duplicate rule name (first defined as rule {})",
                at(&["name"]),
                first + 1
            ));
        }
        let compiled = expr::parse(&r.expr)
            .map_err(|e| problems.push(format!("{}: expr: {e}", at(&["expr"]))))
            .ok();
        let for_ms = parse_for(r.for_.as_deref())
            .map_err(|e| problems.push(format!("{}: for: {e}", at(&["for"]))))
            .unwrap_or(0);
        let aggregates = compiled.as_ref().is_some_and(|c| c.aggregates());
        // A rule over a fleet whose groups have no `host` label: its alerts have none.
        let hostless = compiled
            .as_ref()
            .and_then(|c| c.aggs.first())
            .is_some_and(|a| !a.grouping.keeps("host"));
        let interval_ms = match r.interval.as_deref().map(|i| parse_for(Some(i))) {
            None => crate::rule::AGGREGATE_INTERVAL_MS,
            Some(Err(e)) => {
                problems.push(format!("{}: interval: {e}", at(&["interval"])));
                0
            }
            Some(Ok(_)) if compiled.is_some() && !aggregates => {
                problems.push(format!(
                    "{}: interval: only a rule that aggregates runs on the clock; this one runs on each sample of its series",
                    at(&["interval"])
                ));
                0
            }
            Some(Ok(ms)) if ms < 1000 => {
                problems.push(format!(
                    "{}: interval: must be at least 1s",
                    at(&["interval"])
                ));
                0
            }
            Some(Ok(ms)) => ms,
        };

        let flapping = match &r.flapping {
            None => Some(Flapping::default()),
            Some(f) => {
                let d = Flapping::default();
                let window_ms = match &f.window {
                    Some(w) => parse_for(Some(w))
                        .map_err(|e| {
                            problems.push(format!("{}: flapping.window: {e}", at(&["flapping"])))
                        })
                        .unwrap_or(d.window_ms),
                    None => d.window_ms,
                };
                match f.changes.unwrap_or(d.changes) {
                    0 => None,
                    1 => {
                        problems.push(format!(
                            "{}: flapping.changes must be 0 (off) or at least 2",
                            at(&["flapping"])
                        ));
                        None
                    }
                    _ if window_ms <= 0 => {
                        problems.push(format!(
                            "{}: flapping.window must be above 0 (changes: 0 switches detection off)",
                            at(&["flapping", "window"])
                        ));
                        None
                    }
                    changes => Some(Flapping { changes, window_ms }),
                }
            }
        };
        let mut levels: [Option<LevelSpec>; 3] = [None, None, None];
        if r.levels.is_empty() && r.dynamic.is_none() && !record {
            problems.push(format!(
                "{}: levels: at least one of warning, critical, emergency is required",
                at(&["levels"])
            ));
        }
        for (name, v) in &r.levels {
            let here = || at(&["levels", name]);
            match name.parse::<Level>() {
                Err(e) => problems.push(format!("{}: levels: {e}", here())),
                Ok(l) => match parse_level(v) {
                    Ok(spec) => levels[l.index()] = Some(spec),
                    Err(e) => problems.push(format!("{}: levels.{name}: {e}", here())),
                },
            }
        }
        if let Err(e) = check_levels(&levels) {
            problems.push(format!("{}: levels: {e}", at(&["levels"])));
        }
        if r.dynamic.is_some() && compiled.as_ref().is_some_and(|c| c.absent.is_some()) {
            problems.push(format!(
                "{}: dynamic: absent_over_time has no series to learn from",
                at(&["dynamic"])
            ));
        }
        let dynamic = r.dynamic.as_ref().and_then(|d| {
            let here = || at(&["dynamic"]);
            let sens = d.sensitivity.as_deref().unwrap_or("medium");
            let Some(cutoffs) = crate::rule::score_cutoffs(sens) else {
                problems.push(format!(
                    "{}: dynamic.sensitivity {sens:?} must be low, medium or high",
                    here()
                ));
                return None;
            };
            let direction = match d.direction.as_deref().unwrap_or("both") {
                "up" => Direction::Up,
                "down" => Direction::Down,
                "both" => Direction::Both,
                o => {
                    problems.push(format!(
                        "{}: dynamic.direction {o:?} must be up, down or both",
                        here()
                    ));
                    return None;
                }
            };
            let names = d
                .levels
                .clone()
                .unwrap_or_else(|| vec!["warning".into(), "critical".into()]);
            for n in &names {
                match n.parse::<Level>() {
                    Ok(l) if levels[l.index()].is_none() => {
                        let cut = cutoffs[l.index()];
                        levels[l.index()] = Some(LevelSpec {
                            when: Condition {
                                op: crate::rule::CmpOp::Ge,
                                threshold: cut,
                            },
                            // Hysteresis on the score, so one borderline sample does not resolve.
                            recover: Some(Condition {
                                op: crate::rule::CmpOp::Lt,
                                threshold: cut * 0.7,
                            }),
                            for_ms: None,
                            for_runs: None,
                            on_score: true,
                            cold_start: None,
                        });
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{}: dynamic.levels: {e}", here())),
                }
            }
            for (name, v) in &d.cold_start {
                let spec = name
                    .parse::<Level>()
                    .map_err(|e| e.to_string())
                    .and_then(|l| match &mut levels[l.index()] {
                        Some(dl) if dl.on_score => Ok(dl),
                        _ => Err(format!(
                            "{name} is not a dynamic level of this rule (dynamic.levels)"
                        )),
                    })
                    .and_then(|dl| {
                        let c = parse_level(v)?;
                        if c.for_ms.is_some() || c.for_runs.is_some() {
                            return Err("for and for_runs are the dynamic level's".to_string());
                        }
                        dl.cold_start = Some(Box::new(c));
                        Ok(())
                    });
                if let Err(e) = spec {
                    problems.push(format!(
                        "{}: dynamic.cold_start.{name}: {e}",
                        at(&["dynamic", "cold_start", name])
                    ));
                }
            }
            if d.min_abs_deviation < 0.0 || d.min_rel_deviation < 0.0 {
                problems.push(format!(
                    "{}: dynamic: minimum deviations must not be negative",
                    here()
                ));
            }
            let mut detector = tocsin_baseline::DetectorConfig::default();
            if let Some(h) = d.min_history {
                detector.min_history = h;
            }
            let mut exclude = Vec::new();
            for (i, e) in d.exclude.iter().enumerate() {
                match parse_exclusion(e) {
                    Ok(x) => exclude.push(x),
                    Err(msg) => problems.push(format!("{}: dynamic.exclude[{i}]: {msg}", here())),
                }
            }
            Some(Dynamic {
                detector,
                direction,
                min_abs_deviation: d.min_abs_deviation,
                min_rel_deviation: d.min_rel_deviation,
                exclude,
            })
        });

        let mut labels = Labels::new();
        for (k, v) in &r.labels {
            if !is_valid_label_name(k) || k.starts_with("__") {
                problems.push(format!(
                    "{}: labels: invalid label name {k:?}",
                    at(&["labels", k])
                ));
            } else if matches!(k.as_str(), "alertname" | "level") {
                problems.push(format!(
                    "{}: labels: {k:?} is set by tocsin and cannot be overridden",
                    at(&["labels", k])
                ));
            } else {
                labels.set(k.clone(), v.clone());
            }
        }
        let remediation = r.remediation.as_ref().and_then(|m| {
            let here = || at(&["remediation"]);
            let mut ok = true;
            let mut dur = |field: &str, v: &Option<String>, d: i64| match v {
                None => d,
                Some(s) => parse_for(Some(s)).unwrap_or_else(|e| {
                    problems.push(format!("{}: remediation.{field}: {e}", here()));
                    ok = false;
                    d
                }),
            };
            let verify_within_ms = dur("verify_within", &m.verify_within, 60_000);
            let cooldown_ms = dur("cooldown", &m.cooldown, 300_000);
            let window_ms = dur("window", &m.window, 3_600_000);
            let on_collector = match m.on.as_deref() {
                None | Some("agent") => false,
                Some("collector") => true,
                Some(o) => {
                    problems.push(format!(
                        "{}: remediation.on {o:?} must be agent or collector",
                        here()
                    ));
                    ok = false;
                    false
                }
            };
            // An agent's action runs on the alert's `host`: a group without one has no agent.
            if !on_collector && hostless {
                problems.push(format!(
                    "{}: remediation: runs on the agent of the alert's host, and this rule's groups have no host label (group by host, or run it on: collector)",
                    here()
                ));
                ok = false;
            }
            let level = match m.level.as_deref().unwrap_or("critical").parse::<Level>() {
                Ok(l) => l,
                Err(e) => {
                    problems.push(format!("{}: remediation.level: {e}", here()));
                    ok = false;
                    Level::Critical
                }
            };
            if m.action.is_empty() || !is_valid_label_name(&m.action) {
                problems.push(format!(
                    "{}: remediation.action must name an action ([a-zA-Z_][a-zA-Z0-9_]*)",
                    here()
                ));
                ok = false;
            }
            let mut params = BTreeMap::new();
            for (name, raw) in &m.params {
                let here = format!("{}: remediation.params.{name}", here());
                let source = match raw {
                    RawParam::Label(l) => Err(format!(
                        "{here}: a value from a label needs the values it may take, `{{label: {l}, values: [...]}}`, or a value fixed here, `{{value: ...}}`: labels are what agents send"
                    )),
                    RawParam::Source(RawParamSource { value: Some(v), label: None, values: None, scale: None }) => {
                        Ok(ParamSource::Value(v.clone()))
                    }
                    RawParam::Source(RawParamSource { value: None, label: Some(l), values: Some(vs), scale: None }) if !vs.is_empty() => {
                        Ok(ParamSource::Label { label: l.clone(), values: vs.clone() })
                    }
                    RawParam::Source(RawParamSource { value: None, label: Some(_), scale: None, .. }) => Err(format!(
                        "{here}: `label` needs `values`, the list the label's value must be in"
                    )),
                    RawParam::Source(RawParamSource { value: None, label: None, values: None, scale: Some(sc) }) => {
                        if sc.start == 0 || sc.step == 0 || sc.start > sc.max {
                            Err(format!("{here}: scale needs 1 <= start <= max and step >= 1"))
                        } else {
                            Ok(ParamSource::Scale { start: sc.start, max: sc.max, step: sc.step })
                        }
                    }
                    RawParam::Source(_) => Err(format!(
                        "{here}: give either `value`, `label` with `values`, or `scale`"
                    )),
                };
                match source {
                    Ok(s) => {
                        params.insert(name.clone(), s);
                    }
                    Err(e) => {
                        problems.push(e);
                        ok = false;
                    }
                }
            }
            ok.then(|| Remediation {
                action: m.action.clone(),
                on_collector,
                params,
                level,
                verify_within_ms,
                cooldown_ms,
                max_attempts: m.max_attempts.unwrap_or(3).max(1),
                window_ms,
                breaker_after: m.breaker_after.unwrap_or(3).max(1),
                approval: m.approval,
                dry_run: m.dry_run,
            })
        });
        let env = minijinja::Environment::new();
        for (k, t) in &r.annotations {
            match env.template_from_str(t) {
                Err(e) => problems.push(format!(
                    "{}: annotations.{k}: invalid template: {}",
                    at(&["annotations", k]),
                    e.detail().unwrap_or("syntax error")
                )),
                Ok(tmpl) => {
                    // A name the alert does not have renders as nothing: a label written
                    // as `{{ receiver }}` instead of `{{ labels.receiver }}` would vanish
                    // from every message.
                    let names = tmpl.undeclared_variables(false);
                    if hostless && names.contains("host") {
                        problems.push(format!(
                            "{}: annotations.{k}: host: this rule's groups have no host label, so `host` renders as nothing (labels.NAME for the group's labels)",
                            at(&["annotations", k])
                        ));
                    }
                    let mut unknown: Vec<String> = names
                        .into_iter()
                        .filter(|v| !TEMPLATE_NAMES.contains(&v.as_str()))
                        .collect();
                    unknown.sort();
                    for v in unknown {
                        problems.push(format!(
                            "{}: annotations.{k}: unknown name {v:?} (an alert has {}; a label is labels.{v})",
                            at(&["annotations", k]),
                            TEMPLATE_NAMES[..ALERT_NAMES].join(", ")
                        ));
                    }
                }
            }
        }
        if problems.len() == before {
            rules.push(Rule {
                name: r.name,
                source: format!("{path}:{}", line_of(i, &[])),
                expr_text: r.expr,
                expr: compiled.expect("no problems means the expression parsed"),
                levels,
                for_ms,
                for_runs: r.for_runs.unwrap_or(1).max(1),
                flapping,
                dynamic,
                labels,
                annotations: r.annotations,
                remediation,
                interval_ms,
                record,
            });
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

fn parse_for(s: Option<&str>) -> Result<i64, String> {
    s.map(tocsin_yaml::parse_duration)
        .transpose()
        .map(|d| d.map(|d| d.as_millis() as i64).unwrap_or(0))
}

fn parse_level(v: &Value) -> Result<LevelSpec, String> {
    match v {
        Value::String(s) => Ok(LevelSpec {
            when: Condition::parse(s)?,
            recover: None,
            for_ms: None,
            for_runs: None,
            on_score: false,
            cold_start: None,
        }),
        Value::Mapping(m) => {
            let mut when = None;
            let mut recover = None;
            let mut for_ms = None;
            let mut for_runs = None;
            for (k, v) in m {
                let key = k.as_str().unwrap_or("");
                if key == "for_runs" {
                    let n = v
                        .as_u64()
                        .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
                        .ok_or("for_runs: expected a whole number of at least 1")?;
                    for_runs = Some(n as u32);
                    continue;
                }
                let text = v
                    .as_str()
                    .ok_or_else(|| format!("{key}: expected a quoted string"))?;
                match key {
                    "when" => when = Some(Condition::parse(text)?),
                    "recover" => recover = Some(Condition::parse(text)?),
                    "for" => for_ms = Some(parse_for(Some(text))?),
                    other => {
                        return Err(format!(
                            "unknown field `{other}`, expected one of `when`, `recover`, `for`, `for_runs`"
                        ))
                    }
                }
            }
            let when = when.ok_or("missing field `when`")?;
            if let Some(r) = recover {
                let bad = match when.op.direction() {
                    1 => r.op.direction() != -1 || r.threshold > when.threshold,
                    -1 => r.op.direction() != 1 || r.threshold < when.threshold,
                    _ => false,
                };
                if bad {
                    return Err(format!(
                        "recover {:?} must be on the safe side of when {:?} (e.g. when \"> 90\", recover \"< 85\")",
                        r.to_string(),
                        when.to_string()
                    ));
                }
            }
            Ok(LevelSpec {
                when,
                recover,
                for_ms,
                for_runs,
                on_score: false,
                cold_start: None,
            })
        }
        Value::Number(n) => Err(format!(
            "expected a condition such as \"> {n}\", found a bare number"
        )),
        _ => Err("expected a condition string or a mapping with `when`".to_string()),
    }
}

/// Levels of one rule must point the same way and grow more severe in order.
fn check_levels(levels: &[Option<LevelSpec>; 3]) -> Result<(), String> {
    let defined: Vec<(Level, &LevelSpec)> = Level::ALL
        .into_iter()
        .filter_map(|l| levels[l.index()].as_ref().map(|s| (l, s)))
        .filter(|(_, s)| !s.on_score)
        .collect();
    let dirs: Vec<i8> = defined.iter().map(|(_, s)| s.when.op.direction()).collect();
    if dirs.windows(2).any(|w| w[0] != w[1]) {
        return Err("all levels must compare in the same direction".to_string());
    }
    for w in defined.windows(2) {
        let ((la, a), (lb, b)) = (w[0], w[1]);
        let ok = match a.when.op.direction() {
            1 => b.when.threshold > a.when.threshold,
            -1 => b.when.threshold < a.when.threshold,
            _ => true,
        };
        if !ok {
            return Err(format!(
                "{lb} ({}) must be beyond {la} ({})",
                b.when, a.when
            ));
        }
    }
    Ok(())
}
