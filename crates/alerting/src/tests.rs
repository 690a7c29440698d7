//! Table tests of the pipeline, in the manner of `promtool test rules`: a configuration, what
//! rule evaluation decided at which second, and what the pipeline makes of it (notifications,
//! timeline entries, audit rows, action requests), second by second.
//!
//! A script line is `TIME VERB ARGS`, TIME in seconds or with a unit (`90s`, `10m`, `4h`):
//!
//! | verb | meaning |
//! |---|---|
//! | `fire RULE k=v,… LEVEL` | fires (or changes level when already firing) |
//! | `resolve RULE k=v,…` | resolves |
//! | `flap RULE k=v,… LEVEL` / `calm RULE k=v,… firing\|resolved` | flapping starts / ends |
//! | `silence ID k=v,…\|k=~re,… UNTIL` | a silence from now until UNTIL |
//! | `expire ID` | the silence ends now |
//! | `ack RULE k=v,… BY [LEVEL]` | acknowledgement (LEVEL: the signed link's) |
//! | `poll HOST` | the agent of HOST asks for its action requests |
//! | `result HOST STATUS` | the result of the request HOST took last |
//! | `incident ack\|resolve\|note BY` | a person's change to the newest incident |
//! | `restart` | the collector restarts from what was made durable |
//! | `end` | nothing: time passes until then |
//!
//! Between two lines the pipeline is ticked every second, as the collector does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tocsin_dispatch::{alert_id, Why};
use tocsin_model::{Labels, Level, TimestampMs};
use tocsin_remedy::ResultStatus;
use tocsin_rules::{Remediation, Transition, TransitionKind};

use super::*;

/// 2023-11-14 22:13:20 UTC: a realistic epoch for the second-precise texts.
const T0: TimestampMs = 1_700_000_000_000;

#[derive(Default)]
struct FakeAlerts {
    /// By alert id: (rule, labels, level, flapping, starts_at).
    firing: BTreeMap<String, (String, Labels, Level, bool, TimestampMs)>,
    remediation: BTreeMap<String, Remediation>,
    /// How many firing alerts the pipeline has walked for inhibition sources (those of the
    /// names it asked for, as if looked up by name; all, when it named none).
    walked: std::cell::Cell<usize>,
}

impl Alerts for FakeAlerts {
    fn firing_labels(
        &self,
        names: Option<&BTreeSet<&str>>,
        keep: &dyn Fn(&Labels) -> bool,
    ) -> Vec<Labels> {
        let named: Vec<_> = self
            .firing
            .values()
            .filter(|f| names.is_none_or(|n| n.contains(f.0.as_str())))
            .collect();
        self.walked.set(self.walked.get() + named.len());
        named
            .into_iter()
            .filter(|f| keep(&f.1))
            .map(|f| f.1.clone())
            .collect()
    }

    fn firing_now(
        &self,
        now: TimestampMs,
        keep: &dyn Fn(&Labels, Level) -> bool,
    ) -> Vec<Transition> {
        self.firing
            .values()
            .filter(|f| !f.3 && keep(&f.1, f.2))
            .map(|(rule, labels, level, _, starts)| {
                transition(TransitionKind::Firing, rule, labels, *level, *starts, now)
            })
            .collect()
    }

    fn level_of(&self, id: &str) -> Option<Level> {
        self.firing.get(id).map(|f| f.2)
    }

    fn remediation(&self, t: &Transition) -> Option<Remediation> {
        self.remediation.get(&t.rule).cloned()
    }
}

fn transition(
    kind: TransitionKind,
    rule: &str,
    labels: &Labels,
    level: Level,
    starts_at: TimestampMs,
    now: TimestampMs,
) -> Transition {
    Transition {
        kind,
        rule: rule.into(),
        labels: labels.clone(),
        annotations: BTreeMap::new(),
        level,
        value: 1.0,
        threshold: "> 0".into(),
        starts_at,
        ends_at: (!kind.firing()).then_some(now),
        at: now,
        reason: None,
        external: false,
        generator_url: None,
    }
}

/// The stored rows, as the collector's database would hold them.
#[derive(Default)]
struct Rows {
    dispatch: BTreeMap<String, String>,
    incidents: BTreeMap<String, String>,
    /// Each alert's part in an incident: (incident id, alert id) → JSON.
    incident_alerts: BTreeMap<(String, String), String>,
    /// The hosts, services and probes an incident touches: (incident id, set, member).
    incident_members: BTreeSet<(String, &'static str, String)>,
    remedy: BTreeMap<String, String>,
}

impl Rows {
    fn apply(&mut self, fx: &Effects) {
        for (map, rows) in [
            (&mut self.dispatch, &fx.dispatch_rows),
            (&mut self.remedy, &fx.remedy_rows),
        ] {
            for (k, v) in rows {
                match v {
                    Some(v) => map.insert(k.clone(), v.clone()),
                    None => map.remove(k),
                };
            }
        }
        for r in &fx.incident_rows {
            self.incidents.insert(r.id.clone(), r.json.clone());
            for (a, json) in &r.alerts {
                self.incident_alerts
                    .insert((r.id.clone(), a.clone()), json.clone());
            }
            for (set, m) in &r.members {
                self.incident_members.insert((r.id.clone(), set, m.clone()));
            }
        }
    }

    /// The incidents as read back: each row with its alerts' parts.
    fn incidents(&self) -> Vec<(String, String)> {
        self.incidents
            .iter()
            .map(|(id, json)| {
                if id == "#seq" {
                    return (id.clone(), json.clone());
                }
                let parts = self
                    .incident_alerts
                    .iter()
                    .filter(|((i, _), _)| i == id)
                    .map(|((_, a), v)| (a.as_str(), v.as_str()));
                let members = self
                    .incident_members
                    .iter()
                    .filter(|(i, _, _)| i == id)
                    .map(|(_, set, m)| (*set, m.as_str()));
                let json = tocsin_incidents::Row::assemble(json, parts, members).expect("readable");
                (id.clone(), json)
            })
            .collect()
    }
}

struct Sim {
    settings: Settings,
    p: Pipeline,
    alerts: FakeAlerts,
    rows: Rows,
    /// Silences: id → (matchers json, from, until).
    silences: BTreeMap<i64, (String, TimestampMs, TimestampMs)>,
    now: TimestampMs,
    recheck: bool,
    /// Per host, the last request handed out.
    polled: BTreeMap<String, String>,
    out: Vec<String>,
}

fn config(yaml: &str) -> Settings {
    let raw: tocsin_config::collector::RawCollectorConfig =
        tocsin_config::parse_yaml(yaml).expect("test config parses");
    let cfg = raw.validate().expect("test config is valid");
    Settings::from_config(&cfg, Arc::new(b"k".to_vec()))
}

fn secs(s: &str) -> i64 {
    if let Ok(n) = s.parse::<i64>() {
        return n;
    }
    humantime::parse_duration(s)
        .unwrap_or_else(|e| panic!("time {s}: {e}"))
        .as_secs() as i64
}

fn labels(rule: &str, spec: &str) -> Labels {
    let mut pairs = vec![("alertname".to_string(), rule.to_string())];
    pairs.extend(
        spec.split(',')
            .filter(|s| !s.is_empty() && *s != "-")
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                (k.to_string(), v.to_string())
            }),
    );
    Labels::from_pairs(pairs)
}

fn level(s: &str) -> Level {
    s.parse().unwrap_or_else(|_| panic!("level {s}"))
}

fn show_time(at: TimestampMs) -> String {
    let s = (at - T0) / 1000;
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("h", s / 3600), ("m", s / 60 % 60), ("s", s % 60)] {
        if n > 0 {
            out += &format!("{n}{unit}");
        }
    }
    out
}

impl Sim {
    fn new(yaml: &str) -> Sim {
        let settings = config(yaml);
        Sim {
            p: Pipeline::new(settings.clone()),
            settings,
            alerts: FakeAlerts::default(),
            rows: Rows::default(),
            silences: BTreeMap::new(),
            now: T0,
            recheck: false,
            polled: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    fn line(&mut self, what: String) {
        let t = show_time(self.now);
        self.out.push(format!("{t} {what}"));
    }

    /// Takes and writes down what the pipeline decided, as the writer commits it.
    fn commit(&mut self) {
        let fx = self.p.take_effects();
        self.rows.apply(&fx);
        for o in &fx.outgoing {
            let n = &o.notification;
            let why = match &n.why {
                Why::Changed => "changed".to_string(),
                Why::Repeat { n } => format!("repeat{n}"),
                Why::Escalation { policy, step, .. } => format!("{policy}:{step}"),
            };
            let alerts: Vec<String> = n
                .alerts
                .iter()
                .map(|a| {
                    let host = a.labels.get("host").unwrap_or("-");
                    let state = if a.firing {
                        a.level.as_str()
                    } else {
                        "resolved"
                    };
                    format!("{}/{host}:{state}", a.rule)
                })
                .collect();
            // The body is the webhook payload: it must parse and carry the same alerts.
            let body: serde_json::Value = serde_json::from_str(&o.body).expect("json body");
            assert_eq!(
                body["alerts"].as_array().map(Vec::len),
                Some(n.alerts.len())
            );
            self.line(format!("notify {} {why} {}", n.receiver, alerts.join(",")));
        }
        for e in &fx.timeline {
            self.line(format!("timeline {}: {}", e.kind, e.text));
        }
        for a in &fx.audit {
            self.line(format!("audit {}", a.action));
        }
        for r in &fx.to_run {
            self.line(format!("run {}", r.action));
        }
        if fx.silenced > 0 {
            self.line(format!("silenced {}", fx.silenced));
        }
        if fx.inhibited > 0 {
            self.line(format!("inhibited {}", fx.inhibited));
        }
    }

    fn tick(&mut self) {
        self.p.due(self.now);
        self.commit();
    }

    fn advance(&mut self, to: TimestampMs) {
        while self.now + 1000 <= to {
            self.now += 1000;
            if self.p.silence_ended(self.now) {
                self.recheck = true;
            }
            if self.recheck {
                self.recheck = false;
                self.p.transitions(&self.alerts, &[], true, self.now);
            }
            self.tick();
        }
    }

    /// The lines of one kind so far (`notify`, `timeline`, …: the first word after the time).
    fn lines(&self, kind: &str) -> Vec<&str> {
        self.out
            .iter()
            .map(String::as_str)
            .filter(|l| l.split_whitespace().nth(1) == Some(kind))
            .collect()
    }

    /// A configuration reload, as the writer makes it: the pipeline takes the new settings from
    /// the stored rows, and the next batch looks at every firing alert again.
    fn reload(&mut self, yaml: &str) -> Reconfigured {
        let settings = config(yaml);
        let mut receivers: BTreeSet<String> = BTreeSet::new();
        let raw: tocsin_config::collector::RawCollectorConfig =
            tocsin_config::parse_yaml(yaml).expect("test config parses");
        for r in raw.validate().expect("valid").receivers {
            receivers.insert(r.name);
        }
        let rows = |m: &BTreeMap<String, String>| -> Vec<(String, String)> {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let r = self.p.reconfigure(
            settings.clone(),
            &receivers,
            rows(&self.rows.dispatch),
            self.rows.incidents(),
            rows(&self.rows.remedy),
            self.now,
        );
        self.settings = settings;
        self.p.transitions(&self.alerts, &[], true, self.now);
        self.tick();
        r
    }

    fn load_silences(&mut self) {
        let s = self
            .silences
            .iter()
            .map(|(id, (m, from, until))| {
                silence::Silence::new(*id, m, None, *from, *until).expect("silence")
            })
            .collect();
        self.p.set_silences(s);
    }

    fn transition(&mut self, kind: TransitionKind, rule: &str, l: Labels, lv: Level) {
        let id = alert_id(&l);
        let starts = match self.alerts.firing.get(&id) {
            Some(f) => f.4,
            None => self.now,
        };
        if kind.firing() {
            let flapping = matches!(kind, TransitionKind::Flapping);
            self.alerts
                .firing
                .insert(id, (rule.into(), l.clone(), lv, flapping, starts));
        } else {
            self.alerts.firing.remove(&id);
        }
        let t = transition(kind, rule, &l, lv, starts, self.now);
        self.p.transitions(&self.alerts, &[t], false, self.now);
        self.tick();
    }

    fn step(&mut self, line: &str) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let at = T0 + secs(w[0]) * 1000;
        assert!(at >= self.now, "script goes back in time at {line}");
        self.advance(at);
        self.now = at;
        match w[1..] {
            ["fire", rule, l, lv] => {
                let l = labels(rule, l);
                let lv = level(lv);
                let kind = match self.alerts.firing.get(&alert_id(&l)) {
                    Some(f) if f.2 != lv => TransitionKind::LevelChanged { from: f.2 },
                    _ => TransitionKind::Firing,
                };
                self.transition(kind, rule, l, lv);
            }
            ["resolve", rule, l] => {
                let l = labels(rule, l);
                let lv = self.alerts.firing.get(&alert_id(&l)).map(|f| f.2);
                let lv = lv.expect("resolving an alert that fires");
                self.transition(TransitionKind::Resolved, rule, l, lv);
            }
            ["flap", rule, l, lv] => {
                self.transition(TransitionKind::Flapping, rule, labels(rule, l), level(lv))
            }
            ["calm", rule, l, state] => {
                let l = labels(rule, l);
                let lv = self.alerts.firing.get(&alert_id(&l)).map(|f| f.2);
                let firing = state == "firing";
                let kind = TransitionKind::FlappingEnded { firing };
                self.transition(kind, rule, l, lv.unwrap_or(Level::Warning));
                if let Some(f) = self.alerts.firing.get_mut(&alert_id(&labels(rule, w[3]))) {
                    f.3 = false;
                }
            }
            ["silence", id, m, until] => {
                let matchers: Vec<serde_json::Value> = m
                    .split(',')
                    .map(|kv| {
                        let (k, v, re) = match kv.split_once("=~") {
                            Some((k, v)) => (k, v, true),
                            None => {
                                let (k, v) = kv.split_once('=').expect("k=v");
                                (k, v, false)
                            }
                        };
                        serde_json::json!({"name": k, "value": v, "isRegex": re})
                    })
                    .collect();
                let json = serde_json::Value::Array(matchers).to_string();
                let until = T0 + secs(until) * 1000;
                self.silences
                    .insert(id.parse().unwrap(), (json, self.now, until));
                self.load_silences();
                self.p.silence_ended(self.now);
            }
            ["expire", id] => {
                let now = self.now;
                if let Some(s) = self.silences.get_mut(&id.parse().unwrap()) {
                    s.2 = now;
                }
                self.load_silences();
                if self.p.silence_ended(self.now) {
                    self.p.transitions(&self.alerts, &[], true, self.now);
                    self.tick();
                }
            }
            ["ack", rule, l, by, ref link @ ..] => {
                let id = alert_id(&labels(rule, l));
                let link = link.first().map(|s| level(s));
                let r = self.p.ack(&self.alerts, &id, link, by, "on it", self.now);
                let what = match r {
                    Ok(a) => format!("ack ok {}", a.level.as_str()),
                    Err(e) => format!("ack refused: {e}"),
                };
                self.line(what);
                self.tick();
            }
            ["poll", host] => {
                let reqs = self.p.poll_actions(host, self.now);
                let names: Vec<String> = reqs
                    .iter()
                    .map(|r| {
                        let params: Vec<String> =
                            r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!("{}({})", r.action, params.join(","))
                    })
                    .collect();
                if let Some(r) = reqs.last() {
                    self.polled.insert(host.into(), r.id.clone());
                }
                let got = if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(" ")
                };
                self.line(format!("poll {host}: {got}"));
                self.tick();
            }
            ["result", host, status] => {
                let id = self.polled.get(host).expect("polled before").clone();
                let status = match status {
                    "succeeded" => ResultStatus::Succeeded,
                    "failed" => ResultStatus::Failed,
                    "refused" => ResultStatus::Refused,
                    _ => ResultStatus::TimedOut,
                };
                let r = self
                    .p
                    .action_result(&self.alerts, &id, status, "exit 0", "", self.now);
                if let Err(e) = r {
                    self.line(format!("result refused: {e}"));
                }
                self.tick();
            }
            ["incident", op, by] => {
                let id = self
                    .p
                    .incidents(self.now)
                    .max_by_key(|i| i.opened_at)
                    .map(|i| i.id.clone())
                    .unwrap_or_default();
                let op = match op {
                    "ack" => IncidentOp::Ack {
                        by: by.into(),
                        comment: "looking".into(),
                    },
                    "resolve" => IncidentOp::Resolve { by: by.into() },
                    _ => IncidentOp::Note {
                        by: by.into(),
                        text: "a note".into(),
                    },
                };
                if let Err(e) = self.p.incident(&id, &op, self.now) {
                    self.line(format!("incident refused: {e}"));
                }
                self.tick();
            }
            ["restart"] => {
                // What was decided and not committed is gone; the rest is read back.
                let mut p = Pipeline::new(self.settings.clone());
                let rows = |m: &BTreeMap<String, String>| {
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                };
                let bad = p.restore(
                    rows(&self.rows.dispatch),
                    self.rows.incidents(),
                    rows(&self.rows.remedy),
                    self.now,
                );
                assert!(bad.is_empty(), "unreadable rows: {bad:?}");
                self.p = p;
                self.load_silences();
                self.p.silence_ended(self.now);
                self.p.transitions(&self.alerts, &[], true, self.now);
                self.tick();
            }
            ["end"] => {}
            _ => panic!("bad script line: {line}"),
        }
    }
}

/// Remediation of a rule, for the cases that need one.
fn remedy(action: &str, lv: Level, collector: bool, approval: bool) -> Remediation {
    Remediation {
        action: action.into(),
        on_collector: collector,
        params: BTreeMap::new(),
        level: lv,
        verify_within_ms: 5 * 60_000,
        cooldown_ms: 30 * 60_000,
        max_attempts: 3,
        window_ms: 3_600_000,
        breaker_after: 3,
        approval,
        dry_run: false,
    }
}

struct Case {
    name: &'static str,
    config: &'static str,
    script: &'static str,
    /// Which kinds of line the case is about: `notify`, `timeline`, `audit`, `run`, `poll`,
    /// `ack`, `silenced`, `inhibited`, … (the first word after the time).
    show: &'static [&'static str],
    expect: &'static str,
}

/// Runs a case; the difference from what it expects, if any.
fn check(c: &Case, setup: impl FnOnce(&mut FakeAlerts)) -> Result<(), String> {
    let mut sim = Sim::new(c.config);
    setup(&mut sim.alerts);
    for line in c.script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        sim.step(line);
    }
    let got: Vec<&str> = sim
        .out
        .iter()
        .map(String::as_str)
        .filter(|l| {
            let kind = l.split_whitespace().nth(1).unwrap_or("");
            c.show.contains(&kind)
        })
        .collect();
    let want: Vec<&str> = c
        .expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if got == want {
        return Ok(());
    }
    Err(format!(
        "case `{}`\n got:\n  {}\n want:\n  {}",
        c.name,
        got.join("\n  "),
        want.join("\n  ")
    ))
}

fn run_case(c: &Case, setup: impl FnOnce(&mut FakeAlerts)) {
    if let Err(e) = check(c, setup) {
        panic!("{e}");
    }
}

fn run_table(cases: &[Case], setup: impl Fn(&mut FakeAlerts)) {
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c, &setup).err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

const TWO_TIERS: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
  - { name: sms, webhook: { url: "http://127.0.0.1:1/sms" } }
route:
  receivers: [ops]
  repeat_interval: 0s
  routes:
    - { level: critical, receivers: [ops, sms] }
"#;

const GROUPED: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
route:
  receivers: [ops]
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 0s
"#;

/// Grouped by labels with no timing given: Alertmanager's (`group_wait` 30s, `group_interval`
/// 5m).
const GROUPED_BY_DEFAULT: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
route: { receivers: [ops], group_by: [alertname], repeat_interval: 0s }
"#;

const REPEATING: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
route:
  receivers: [ops]
  repeat_interval: 1h
  max_repeats: 3
  repeat_backoff: 2
"#;

const INHIBITING: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
route: { receivers: [ops], repeat_interval: 0s }
inhibit_rules:
  - { source_match: { alertname: HostDown }, equal: [host] }
"#;

const ESCALATING: &str = r#"
receivers:
  - { name: oncall, webhook: { url: "http://127.0.0.1:1/oncall" } }
  - { name: lead, webhook: { url: "http://127.0.0.1:1/lead" } }
escalation_policies:
  - name: page
    steps:
      - { after: 0s, receivers: [oncall] }
      - { after: 10m, receivers: [lead] }
    repeat_last: { every: 30m, times: 2 }
route:
  receivers: [oncall]
  repeat_interval: 0s
  routes:
    - { level: critical, escalation: page }
"#;

const RESEND: &str = r#"
receivers:
  - { name: am, alertmanager: { url: "http://127.0.0.1:1/", resend_interval: 1m } }
route: { receivers: [am], repeat_interval: 0s }
"#;

const CASES: &[Case] = &[
    Case {
        name: "a firing and its resolve go to the route's receivers at once",
        config: TWO_TIERS,
        script: "
            10s fire DiskFull host=a warning
            70s resolve DiskFull host=a",
        show: &["notify"],
        expect: "
            10s notify ops changed DiskFull/a:warning
            1m10s notify ops changed DiskFull/a:resolved",
    },
    Case {
        name: "the level picks the tier",
        config: TWO_TIERS,
        script: "
            0s fire DiskFull host=a critical",
        show: &["notify"],
        expect: "
            0s notify ops changed DiskFull/a:critical
            0s notify sms changed DiskFull/a:critical",
    },
    Case {
        name: "a rise in level is told to the new tier, a fall to the tier of the new level",
        config: TWO_TIERS,
        script: "
            0s fire Load host=a warning
            1m fire Load host=a critical
            2m fire Load host=a warning
            3m resolve Load host=a",
        show: &["notify"],
        expect: "
            0s notify ops changed Load/a:warning
            1m notify ops changed Load/a:critical
            1m notify sms changed Load/a:critical
            2m notify ops changed Load/a:warning
            3m notify ops changed Load/a:resolved",
    },
    Case {
        name: "a group waits for more alerts, then changes no more often than its interval",
        config: GROUPED,
        script: "
            0s fire Load host=a warning
            10s fire Load host=b warning
            1m fire Load host=c warning
            2m resolve Load host=a
            10m end",
        show: &["notify"],
        expect: "
            30s notify ops changed Load/a:warning,Load/b:warning
            5m30s notify ops changed Load/b:warning,Load/c:warning,Load/a:resolved",
    },
    Case {
        name: "a burst grouped by labels with no timing given is gathered for 30s, then told every 5m, not once per alert",
        config: GROUPED_BY_DEFAULT,
        script: "
            0s fire NodeDown host=a critical
            5s fire NodeDown host=b critical
            20s fire NodeDown host=c critical
            1m fire NodeDown host=d critical
            6m resolve NodeDown host=a
            20m end",
        show: &["notify"],
        expect: "
            30s notify ops changed NodeDown/a:critical,NodeDown/b:critical,NodeDown/c:critical
            5m30s notify ops changed NodeDown/a:critical,NodeDown/b:critical,NodeDown/c:critical,NodeDown/d:critical
            10m30s notify ops changed NodeDown/b:critical,NodeDown/c:critical,NodeDown/d:critical,NodeDown/a:resolved",
    },
    Case {
        name: "groups are by alertname: another rule is another group",
        config: GROUPED,
        script: "
            0s fire Load host=a warning
            5s fire DiskFull host=a warning
            1m end",
        show: &["notify"],
        expect: "
            30s notify ops changed Load/a:warning
            35s notify ops changed DiskFull/a:warning",
    },
    Case {
        name: "an unchanged firing group repeats with backoff, at most max_repeats times",
        config: REPEATING,
        script: "
            0s fire Load host=a warning
            20h end",
        show: &["notify"],
        expect: "
            0s notify ops changed Load/a:warning
            1h notify ops repeat1 Load/a:warning
            3h notify ops repeat2 Load/a:warning
            7h notify ops repeat3 Load/a:warning",
    },
    Case {
        name: "a resolve stops the repeats",
        config: REPEATING,
        script: "
            0s fire Load host=a warning
            30m resolve Load host=a
            5h end",
        show: &["notify"],
        expect: "
            0s notify ops changed Load/a:warning
            30m notify ops changed Load/a:resolved",
    },
    Case {
        name: "a silence mutes a new firing; it is told when the silence expires",
        config: TWO_TIERS,
        script: "
            0s silence 1 host=a 1h
            10s fire DiskFull host=a warning
            20m expire 1",
        show: &["notify", "silenced"],
        expect: "
            10s silenced 1
            20m notify ops changed DiskFull/a:warning",
    },
    Case {
        name: "a silence that runs out releases what it held",
        config: TWO_TIERS,
        script: "
            0s silence 1 host=a 10m
            10s fire DiskFull host=a warning
            15m end",
        show: &["notify"],
        expect: "
            10m notify ops changed DiskFull/a:warning",
    },
    Case {
        name: "a rise in level a silence held back is told when the silence ends",
        config: TWO_TIERS,
        script: "
            0s fire DiskFull host=a warning
            1m silence 1 host=a 1h
            2m fire DiskFull host=a critical
            20m expire 1",
        show: &["notify", "silenced"],
        expect: "
            0s notify ops changed DiskFull/a:warning
            2m silenced 1
            20m notify ops changed DiskFull/a:critical
            20m notify sms changed DiskFull/a:critical",
    },
    Case {
        name: "a silenced firing that resolves under the silence is never told",
        config: TWO_TIERS,
        script: "
            0s silence 1 host=a 1h
            10s fire DiskFull host=a warning
            5m resolve DiskFull host=a
            2h end",
        show: &["notify", "silenced"],
        expect: "
            10s silenced 1",
    },
    Case {
        name: "matchers with regexes mute only what they match",
        config: TWO_TIERS,
        script: "
            0s silence 1 host=~db-.* 1h
            10s fire DiskFull host=db-1 warning
            10s fire DiskFull host=web-1 warning",
        show: &["notify", "silenced"],
        expect: "
            10s silenced 1
            10s notify ops changed DiskFull/web-1:warning",
    },
    // Before the pipeline, a resolve under a silence never reached the dispatcher, which went on
    // repeating the resolved alert once the silence ended (3h and 7h here).
    Case {
        name: "a silence made while firing keeps the repeats quiet, not the resolve",
        config: REPEATING,
        script: "
            0s fire Load host=a warning
            30m silence 1 host=a 3h
            2h resolve Load host=a
            9h end",
        show: &["notify", "silenced"],
        expect: "
            0s notify ops changed Load/a:warning
            1h silenced 1
            2h notify ops changed Load/a:resolved",
    },
    Case {
        name: "a host down inhibits the other alerts of its host, not of other hosts",
        config: INHIBITING,
        script: "
            0s fire HostDown host=a critical
            10s fire Load host=a warning
            10s fire Load host=b warning",
        show: &["notify", "inhibited"],
        expect: "
            0s notify ops changed HostDown/a:critical
            10s inhibited 1
            10s notify ops changed Load/b:warning",
    },
    Case {
        name: "when the inhibiting alert resolves, what it held and still fires is told",
        config: INHIBITING,
        script: "
            0s fire HostDown host=a critical
            10s fire Load host=a warning
            10s fire DiskFull host=a warning
            1m resolve DiskFull host=a
            5m resolve HostDown host=a",
        show: &["notify"],
        expect: "
            0s notify ops changed HostDown/a:critical
            5m notify ops changed HostDown/a:resolved
            5m notify ops changed Load/a:warning",
    },
    Case {
        name: "an alert that fired before the inhibiting one stays told; its resolve is told",
        config: INHIBITING,
        script: "
            0s fire Load host=a warning
            10s fire HostDown host=a critical
            1m resolve Load host=a",
        show: &["notify"],
        expect: "
            0s notify ops changed Load/a:warning
            10s notify ops changed HostDown/a:critical
            1m notify ops changed Load/a:resolved",
    },
    Case {
        name: "an escalation goes step by step until acknowledged",
        config: ESCALATING,
        script: "
            0s fire Db host=a critical
            2h end",
        show: &["notify"],
        expect: "
            0s notify oncall page:1 Db/a:critical
            10m notify lead page:2 Db/a:critical
            40m notify lead page:2 Db/a:critical
            1h10m notify lead page:2 Db/a:critical",
    },
    Case {
        name: "an acknowledgement stops the escalation; the resolve is still told",
        config: ESCALATING,
        script: "
            0s fire Db host=a critical
            5m ack Db host=a alice
            1h resolve Db host=a",
        show: &["notify", "ack"],
        expect: "
            0s notify oncall page:1 Db/a:critical
            5m ack ok critical
            1h notify oncall page:1 Db/a:resolved",
    },
    Case {
        name: "a link signed for a lower level does not acknowledge a higher one",
        config: ESCALATING,
        script: "
            0s fire Db host=a critical
            1m ack Db host=a alice warning
            2m ack Db host=b alice",
        show: &["ack"],
        expect: "
            1m ack refused: the alert has risen to critical since; acknowledge the new level
            2m ack refused: the alert is not firing",
    },
    Case {
        name: "a rise above the acknowledged level escalates again",
        config: ESCALATING,
        script: "
            0s fire Db host=a critical
            1m ack Db host=a alice
            5m fire Db host=a emergency
            20m end",
        show: &["notify"],
        expect: "
            0s notify oncall page:1 Db/a:critical
            5m notify oncall page:1 Db/a:emergency
            15m notify lead page:2 Db/a:emergency",
    },
    Case {
        name: "flapping is told once, then quiet until it settles",
        config: TWO_TIERS,
        script: "
            0s fire Load host=a warning
            1m flap Load host=a warning
            2m calm Load host=a resolved",
        show: &["notify"],
        expect: "
            0s notify ops changed Load/a:warning
            1m notify ops changed Load/a:warning
            2m notify ops changed Load/a:resolved",
    },
    Case {
        name: "a restart tells nobody twice",
        config: REPEATING,
        script: "
            0s fire Load host=a warning
            10m restart
            90m end",
        show: &["notify"],
        expect: "
            0s notify ops changed Load/a:warning
            1h notify ops repeat1 Load/a:warning",
    },
    Case {
        name: "a firing still waiting for its group when the collector stopped is told after it",
        config: GROUPED,
        script: "
            0s fire Load host=a warning
            10s restart
            2m end",
        show: &["notify"],
        expect: "
            30s notify ops changed Load/a:warning",
    },
    Case {
        name: "an incident read back after a restart resolves when the last of its alerts does",
        config: TWO_TIERS,
        script: "
            0s fire Load host=a warning
            1m fire Disk host=a warning
            2m restart
            3m resolve Load host=a
            4m resolve Disk host=a",
        show: &["timeline"],
        expect: "
            0s timeline opened: incident opened by Load
            0s timeline alert_fired: Load fired at warning on a
            0s timeline notified: Load firing sent to ops
            1m timeline alert_fired: Disk fired at warning on a
            1m timeline notified: Disk firing sent to ops
            3m timeline alert_resolved: Load resolved on a
            3m timeline notified: Load resolved sent to ops
            4m timeline alert_resolved: Disk resolved on a
            4m timeline resolved: incident resolved (auto) after 240 s
            4m timeline notified: Disk resolved sent to ops",
    },
    Case {
        name: "an escalation survives a restart",
        config: ESCALATING,
        script: "
            0s fire Db host=a critical
            5m restart
            12m end",
        show: &["notify"],
        expect: "
            0s notify oncall page:1 Db/a:critical
            10m notify lead page:2 Db/a:critical",
    },
    Case {
        name: "an Alertmanager receiver is kept in sync, off the timeline",
        config: RESEND,
        script: "
            0s fire Load host=a warning
            150s end",
        show: &["notify", "timeline"],
        expect: "
            0s notify am changed Load/a:warning
            0s timeline opened: incident opened by Load
            0s timeline alert_fired: Load fired at warning on a
            0s timeline notified: Load firing sent to am
            1m notify am repeat1 Load/a:warning
            2m notify am repeat2 Load/a:warning",
    },
    Case {
        name: "the incident timeline: opened, notified, escalated, acknowledged, resolved",
        config: ESCALATING,
        script: "
            0s fire Db host=a critical
            10m end
            11m ack Db host=a alice
            20m resolve Db host=a",
        show: &["timeline"],
        expect: "
            0s timeline opened: incident opened by Db
            0s timeline alert_fired: Db fired at critical on a
            0s timeline notified: Db firing sent to oncall, page step 1
            10m timeline escalated: Db firing sent to lead, page step 2
            11m timeline acknowledged: acknowledged by alice: on it
            20m timeline alert_resolved: Db resolved on a
            20m timeline resolved: incident resolved (auto) after 1200 s
            20m timeline notified: Db resolved sent to lead
            20m timeline notified: Db resolved sent to oncall",
    },
];

#[test]
fn table() {
    run_table(CASES, |_| {});
}

const REMEDY_CONFIG: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
  - { name: sms, webhook: { url: "http://127.0.0.1:1/sms" } }
escalation_policies:
  - name: page
    steps:
      - { after: 0s, receivers: [ops] }
      - { after: 1h, receivers: [sms] }
route:
  receivers: [ops]
  repeat_interval: 0s
  routes:
    - { level: critical, escalation: page }
"#;

const REMEDY_CASES: &[Case] = &[
    Case {
        name: "a remediation is requested, handed once to its host's agent, and verified",
        config: REMEDY_CONFIG,
        script: "
            0s fire ServiceDown host=a critical
            5s poll b
            6s poll a
            7s poll a
            10s result a succeeded
            1m resolve ServiceDown host=a",
        show: &["poll", "audit"],
        expect: "
            0s audit requested
            5s poll b: nothing
            6s poll a: restart()
            6s audit dispatched
            7s poll a: nothing
            10s audit succeeded
            1m audit verified",
    },
    Case {
        name: "below the remediation's level nothing is requested",
        config: REMEDY_CONFIG,
        script: "
            0s fire ServiceDown host=a warning
            5s poll a",
        show: &["poll", "audit"],
        expect: "
            5s poll a: nothing",
    },
    Case {
        name: "a failed action goes to the next tier at once",
        config: REMEDY_CONFIG,
        script: "
            0s fire ServiceDown host=a critical
            1s poll a
            2s result a failed",
        show: &["notify", "audit"],
        expect: "
            0s notify ops page:1 ServiceDown/a:critical
            0s audit requested
            1s audit dispatched
            2s notify sms page:2 ServiceDown/a:critical
            2s audit failed",
    },
    Case {
        name: "an action that does not fix it within its verification time escalates",
        config: REMEDY_CONFIG,
        script: "
            0s fire ServiceDown host=a critical
            1s poll a
            2s result a succeeded
            6m end",
        show: &["notify", "audit"],
        expect: "
            0s notify ops page:1 ServiceDown/a:critical
            0s audit requested
            1s audit dispatched
            2s audit succeeded
            5m2s notify sms page:2 ServiceDown/a:critical
            5m2s audit verify_failed",
    },
    Case {
        name: "a silence (maintenance) holds remediation back; it is asked for when the silence ends if the alert still fires",
        config: REMEDY_CONFIG,
        script: "
            0s silence 1 host=a 10m
            1s fire ServiceDown host=a critical
            5s poll a
            10m end
            10m1s poll a",
        show: &["poll", "audit"],
        expect: "
            1s audit skipped
            5s poll a: nothing
            10m audit requested
            10m1s poll a: restart()
            10m1s audit dispatched",
    },
    Case {
        name: "a restart inside the silence keeps the remediation held, asked for when it ends",
        config: REMEDY_CONFIG,
        script: "
            0s silence 1 host=a 10m
            1s fire ServiceDown host=a critical
            5m restart
            5m1s poll a
            10m end
            10m1s poll a",
        show: &["poll", "audit"],
        expect: "
            1s audit skipped
            5m1s poll a: nothing
            10m audit requested
            10m1s poll a: restart()
            10m1s audit dispatched",
    },
    Case {
        name: "an alert told before the silence and raised to the remediation's level inside it is remediated when it ends",
        config: REMEDY_CONFIG,
        script: "
            0s fire ServiceDown host=a warning
            1m silence 1 host=a 10m
            2m fire ServiceDown host=a critical
            10m end
            10m1s poll a",
        show: &["poll", "audit"],
        expect: "
            2m audit skipped
            10m audit requested
            10m1s poll a: restart()
            10m1s audit dispatched",
    },
    Case {
        name: "an alert that resolves during the silence is not remediated after it",
        config: REMEDY_CONFIG,
        script: "
            0s silence 1 host=a 10m
            1s fire ServiceDown host=a critical
            2m resolve ServiceDown host=a
            11m poll a",
        show: &["poll", "audit"],
        expect: "
            1s audit skipped
            11m poll a: nothing",
    },
    Case {
        name: "a result for a request already finished is refused",
        config: REMEDY_CONFIG,
        script: "
            0s fire ServiceDown host=a critical
            1s poll a
            2s result a succeeded
            3s result a failed",
        show: &["result"],
        expect: "
            3s result refused: no dispatched action request \"act-1700000000-1\"",
    },
];

#[test]
fn remediation_table() {
    run_table(REMEDY_CASES, |a| {
        a.remediation.insert(
            "ServiceDown".into(),
            remedy("restart", Level::Critical, false, false),
        );
    });
}

#[test]
fn an_action_the_collector_runs_is_handed_out_with_the_effects() {
    run_case(
        &Case {
            name: "collector-side action",
            config: REMEDY_CONFIG,
            script: "
                0s fire Primary host=db-1 critical",
            show: &["run", "audit"],
            expect: "
                0s audit requested
                0s audit dispatched
                0s run failover",
        },
        |a| {
            a.remediation.insert(
                "Primary".into(),
                remedy("failover", Level::Critical, true, false),
            );
        },
    );
}

#[test]
fn an_action_waiting_for_approval_goes_ahead_on_acknowledgement() {
    run_case(
        &Case {
            name: "approval",
            config: REMEDY_CONFIG,
            script: "
                0s fire ServiceDown host=a critical
                1s poll a
                1m ack ServiceDown host=a alice
                61s poll a",
            show: &["poll", "audit"],
            expect: "
                0s audit awaiting_approval
                1s poll a: nothing
                1m audit approved
                1m1s poll a: restart()
                1m1s audit dispatched",
        },
        |a| {
            a.remediation.insert(
                "ServiceDown".into(),
                remedy("restart", Level::Critical, false, true),
            );
        },
    );
}

#[test]
fn incidents_refuse_changes_that_contradict_their_state() {
    run_case(
        &Case {
            name: "incident ops",
            config: TWO_TIERS,
            script: "
                0s fire Load host=a warning
                1m incident ack alice
                2m incident note bob
                3m incident resolve alice
                4m incident ack carol",
            show: &["timeline", "incident"],
            expect: "
                0s timeline opened: incident opened by Load
                0s timeline alert_fired: Load fired at warning on a
                0s timeline notified: Load firing sent to ops
                1m timeline acknowledged: acknowledged by alice: looking
                2m timeline note: bob: a note
                3m timeline resolved: incident resolved (alice) after 180 s
                4m incident refused: the incident is resolved already",
        },
        |_| {},
    );
}

#[test]
fn a_reload_tells_the_receivers_a_route_gains_and_nobody_twice() {
    const BEFORE: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
  - { name: sms, webhook: { url: "http://127.0.0.1:1/sms" } }
  - { name: lead, webhook: { url: "http://127.0.0.1:1/lead" } }
escalation_policies:
  - name: page
    steps:
      - { after: 10m, receivers: [lead] }
route:
  receivers: [ops]
  repeat_interval: 0s
  routes:
    - { level: critical, escalation: page, continue: true }
"#;
    // sms added to the route; the escalation policy unchanged.
    let wider = BEFORE.replace(
        "receivers: [ops]\n  repeat",
        "receivers: [ops, sms]\n  repeat",
    );
    assert_ne!(wider, BEFORE);
    // ops and the escalation gone.
    const NARROWER: &str = r#"
receivers:
  - { name: sms, webhook: { url: "http://127.0.0.1:1/sms" } }
route:
  receivers: [sms]
  repeat_interval: 0s
"#;
    let mut sim = Sim::new(BEFORE);
    for line in [
        "0s fire Load host=a warning",
        "0s fire Disk host=b critical",
    ] {
        sim.step(line);
    }
    sim.advance(T0 + 60_000);
    let r = sim.reload(&wider);
    assert_eq!(r, Reconfigured::default());
    sim.advance(T0 + 120_000);
    // The same file again: nothing to tell anyone.
    assert_eq!(sim.reload(&wider), Reconfigured::default());
    sim.advance(T0 + 180_000);
    let r = sim.reload(NARROWER);
    assert_eq!(
        (r.groups_dropped, r.escalations_dropped),
        (1, 1),
        "{:#?}",
        sim.out
    );
    // The dropped rows are deleted with the next commit: a restart finds nothing of ops.
    assert!(
        !sim.rows
            .dispatch
            .keys()
            .any(|k| k.contains("ops|") || k.starts_with("e:")),
        "{:?}",
        sim.rows.dispatch.keys().collect::<Vec<_>>()
    );
    sim.step("4m resolve Load host=a");
    sim.step("30m resolve Disk host=b");
    let got = sim.lines("notify");
    assert_eq!(
        got,
        [
            "0s notify ops changed Load/a:warning",
            // The reload adds sms to the route: it hears of what fires there, ops not again
            // (the critical Disk goes to the escalation alone, whose step is 10 minutes off).
            "1m notify sms changed Load/a:warning",
            // ops and the escalation are gone: Disk now routes to sms, which is told at once;
            // only sms hears of the ends, and the lead's step never comes.
            "3m notify sms changed Disk/b:critical",
            "4m notify sms changed Load/a:resolved",
            "30m notify sms changed Disk/b:resolved",
        ],
        "{:#?}",
        sim.out
    );
}

#[test]
fn a_reload_gives_groups_in_flight_their_nodes_new_options() {
    const HOURLY: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
route: { receivers: [ops], repeat_interval: 1h }
"#;
    let mut sim = Sim::new(HOURLY);
    sim.step("0s fire Load host=a warning");
    sim.advance(T0 + 5 * 60_000);
    let r = sim.reload(&HOURLY.replace("1h", "10m"));
    assert_eq!(r, Reconfigured::default());
    sim.step("75m end");
    let got = sim.lines("notify");
    // The repeat already due at 1h comes then; the next one ten minutes after it.
    assert_eq!(
        got,
        [
            "0s notify ops changed Load/a:warning",
            "1h notify ops repeat1 Load/a:warning",
            "1h10m notify ops repeat2 Load/a:warning",
        ]
    );
}

#[test]
fn a_page_about_the_collector_goes_to_each_receiver_once_unless_silenced() {
    let mut p = Pipeline::new(config(TWO_TIERS));
    let l = labels("TocsinStorageFailing", "instance=c1");
    let a = tocsin_dispatch::AlertInfo::from_transition(&transition(
        TransitionKind::Firing,
        "TocsinStorageFailing",
        &l,
        Level::Critical,
        T0,
        T0,
    ));
    let sent = p.page(&a, T0);
    let to: Vec<&str> = sent.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(to, ["ops", "sms"]);
    let body: serde_json::Value = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!(
        body["alerts"][0]["labels"]["alertname"],
        "TocsinStorageFailing"
    );
    p.set_silences(vec![silence::Silence::new(
        1,
        r#"[{"name":"alertname","value":"TocsinStorageFailing","isRegex":false}]"#,
        None,
        T0,
        T0 + 3_600_000,
    )
    .unwrap()]);
    assert!(p.page(&a, T0 + 1000).is_empty());
    assert_eq!(p.take_effects().silenced, 1);
    // The resolve is never muted: whoever heard of the firing hears of its end.
    let mut resolved = a.clone();
    resolved.firing = false;
    assert_eq!(p.page(&resolved, T0 + 2000).len(), 2);
}

#[test]
fn what_holds_a_firing_alert_back_is_told_per_alert() {
    let mut p = Pipeline::new(config(INHIBITING));
    let down = labels("HostDown", "host=a");
    let disk_a = labels("DiskFull", "host=a");
    let disk_b = labels("DiskFull", "host=b");
    let cpu_b = labels("CpuBusy", "host=b");
    p.set_silences(vec![silence::Silence::new(
        7,
        r#"[{"name":"alertname","value":"CpuBusy","isRegex":false}]"#,
        None,
        T0,
        T0 + 3_600_000,
    )
    .unwrap()]);
    let held = p.held_back(&[&down, &disk_a, &disk_b, &cpu_b], T0 + 1000);
    let none: Vec<String> = vec![];
    assert_eq!(
        held,
        vec![
            (vec![], none.clone()),          // a source does not inhibit itself
            (vec![], vec![alert_id(&down)]), // same host as HostDown: by it
            (vec![], none.clone()),          // another host
            (vec![7], none.clone()),
        ]
    );
    // Past the silence's end, nothing mutes it.
    assert_eq!(p.held_back(&[&cpu_b], T0 + 3_600_000)[0], (vec![], none));
}

/// A mass outage: firing alerts are judged against the alerts that can inhibit, looked up by
/// name (the rule names its source's), not by walking every firing alert per batch; a batch of
/// resolves is not judged at all (a resolve goes wherever its firing went). A source still
/// inhibits, and its resolve frees what it held. A rule whose source has no name walks them all.
#[test]
fn inhibition_sources_are_looked_up_not_walked() {
    let mut sim = Sim::new(INHIBITING);
    for h in 0..50 {
        let l = labels("DiskFull", &format!("host=h{h}"));
        sim.transition(TransitionKind::Firing, "DiskFull", l, Level::Warning);
        // Still firing when the disks recover.
        let l = labels("CpuBusy", &format!("host=h{h}"));
        sim.transition(TransitionKind::Firing, "CpuBusy", l, Level::Warning);
    }
    assert_eq!(
        sim.alerts.walked.get(),
        0,
        "no HostDown fires: nothing walked"
    );
    let ends: Vec<Transition> = (0..50)
        .map(|h| {
            let l = labels("DiskFull", &format!("host=h{h}"));
            sim.alerts.firing.remove(&alert_id(&l));
            transition(
                TransitionKind::Resolved,
                "DiskFull",
                &l,
                Level::Warning,
                T0,
                sim.now,
            )
        })
        .collect();
    sim.p.transitions(&sim.alerts, &ends, false, sim.now);
    sim.tick();
    assert!(
        sim.out.iter().any(|l| l.contains("DiskFull/h49:resolved")),
        "the resolves are told: {:?}",
        sim.out
    );
    // A source's firing and its resolve are judged: it inhibits, then frees.
    let down = labels("HostDown", "host=h1");
    let disk = labels("DiskFull", "host=h1");
    sim.transition(
        TransitionKind::Firing,
        "HostDown",
        down.clone(),
        Level::Critical,
    );
    sim.out.clear();
    sim.alerts.walked.set(0);
    sim.transition(TransitionKind::Firing, "DiskFull", disk, Level::Warning);
    assert!(
        sim.out.iter().any(|l| l.contains("inhibited 1")),
        "{:?}",
        sim.out
    );
    assert_eq!(
        sim.alerts.walked.get(),
        1,
        "the one HostDown, not 51 alerts"
    );
    sim.out.clear();
    sim.transition(TransitionKind::Resolved, "HostDown", down, Level::Critical);
    assert!(
        sim.out.iter().any(|l| l.contains("DiskFull/h1:warning")),
        "what it held is told: {:?}",
        sim.out
    );
    // A source matched by another label than its name: every firing alert is walked.
    let mut sim = Sim::new(
        r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
route: { receivers: [ops], repeat_interval: 0s }
inhibit_rules:
  - { source_match: { tier: core }, equal: [host] }
"#,
    );
    for h in 0..5 {
        let l = labels("CpuBusy", &format!("host=h{h}"));
        sim.transition(TransitionKind::Firing, "CpuBusy", l, Level::Warning);
    }
    assert_eq!(sim.alerts.walked.get(), 1 + 2 + 3 + 4 + 5);
}

/// 2023-11-14, the day of T0 (22:13:20 UTC), is a Tuesday.
const TIMED: &str = r#"
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/ops" } }
  - { name: sms, webhook: { url: "http://127.0.0.1:1/sms" } }
  - { name: lead, webhook: { url: "http://127.0.0.1:1/lead" } }
time_intervals:
  - name: night
    times: [{ days: [tue], from: "22:00", to: "23:00" }]
  - name: office
    times: [{ days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00", utc_offset: "+00:00" }]
escalation_policies:
  - name: page
    steps:
      - { after: 0s, receivers: [sms] }
      - { after: 10m, receivers: [lead] }
route:
  receivers: [ops]
  repeat_interval: 0s
  routes:
    - { level: critical, receivers: [sms], mute_time_intervals: [night], continue: true }
    - { level: emergency, escalation: page, mute_time_intervals: [night] }
    - { match: { team: office }, receivers: [ops], active_time_intervals: [office] }
    - { level: warning, receivers: [ops] }
"#;

const TIMED_CASES: &[Case] = &[
    Case {
        name: "a node muted at night holds its message until the interval ends; another tier is told at once",
        config: TIMED,
        script: "
            0s fire DiskFull host=a critical
            50m end",
        show: &["notify"],
        expect: "
            0s notify ops changed DiskFull/a:critical
            46m40s notify sms changed DiskFull/a:critical",
    },
    Case {
        name: "a restart inside the muted time keeps the message held until it ends",
        config: TIMED,
        script: "
            0s fire DiskFull host=a critical
            5m restart
            50m end",
        show: &["notify"],
        expect: "
            0s notify ops changed DiskFull/a:critical
            46m40s notify sms changed DiskFull/a:critical",
    },
    Case {
        name: "an alert that fires and resolves inside the muted time is not told to that tier",
        config: TIMED,
        script: "
            0s fire DiskFull host=a critical
            10m resolve DiskFull host=a
            50m end",
        show: &["notify"],
        expect: "
            0s notify ops changed DiskFull/a:critical
            10m notify ops changed DiskFull/a:resolved",
    },
    Case {
        name: "a node active in office hours only tells of a night's alert in the morning",
        config: TIMED,
        script: "
            0s fire Backlog host=a,team=office warning
            11h end",
        show: &["notify"],
        expect: "
            10h46m40s notify ops changed Backlog/a:warning",
    },
    Case {
        name: "escalation steps of a muted node wait, and keep their spacing after it opens",
        config: TIMED,
        script: "
            0s fire Down host=a emergency
            1h10m end",
        show: &["notify"],
        expect: "
            46m40s notify sms changed Down/a:emergency
            46m40s notify sms page:1 Down/a:emergency
            56m40s notify lead page:2 Down/a:emergency",
    },
];

#[test]
fn time_intervals_table() {
    run_table(TIMED_CASES, |_| {});
}
