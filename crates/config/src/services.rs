//! Services with their levels (`services:`) and the response deadlines per severity
//! (`deadlines:`) of the collector's configuration.

use std::time::Duration;

use tocsin_model::Level;
use tocsin_slo::Objective;

use crate::{parse_duration, Problems};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// The value of the `service` label its probes carry.
    pub name: String,
    /// The team that answers for it (shown in incidents and reports).
    pub owner: Option<String>,
    /// Availability objective: `99.9%` or `0.999`, the share of time its probes succeed.
    pub objective: Option<serde_yaml_ng::Value>,
    /// The rolling period of the objective (default 30d).
    pub window: Option<String>,
    /// Recovery time objective: an incident of the service open longer is a breach.
    pub rto: Option<String>,
    /// Recovery point objective: the most data the service may lose, for its backup probes.
    pub rpo: Option<String>,
    /// Who is affected when it is down (users, regions), for incidents and reports.
    pub impact: Option<String>,
    /// A latency objective: `{ threshold: 500ms, objective: 99% }`, the share of time its
    /// probes answer successfully within the threshold (over the same window).
    pub latency: Option<RawLatency>,
    /// The hosts whose probes may count toward it (`web-*`: `*` stands for any run of
    /// characters). Without: every host's probes that carry its `service` label.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    pub threshold: String,
    pub objective: serde_yaml_ng::Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyObjective {
    /// Seconds.
    pub threshold: f64,
    pub objective: Objective,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub owner: Option<String>,
    pub objective: Option<Objective>,
    pub latency: Option<LatencyObjective>,
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
    pub impact: Option<String>,
    /// Host patterns whose probes count toward it (`*` any run of characters); empty: any.
    pub hosts: Vec<String>,
}

impl ServiceConfig {
    /// Whether a probe of `host` may count toward this service.
    pub fn admits(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| glob(p, h)))
    }
}

/// `pattern` with `*` standing for any run of characters, matched against the whole of `s`.
fn glob(pattern: &str, s: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How soon an incident of a severity must be acknowledged and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub ack: Duration,
    pub resolve: Duration,
    /// Counted only inside the business hours (`hours: business`), else around the clock.
    pub hours: Option<tocsin_clock::BusinessHours>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadline {
    pub ack: Option<String>,
    pub resolve: Option<String>,
    /// `always` (default) or `business`: count only `deadlines.business_hours`.
    pub hours: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadlines {
    #[serde(default)]
    pub warning: RawDeadline,
    #[serde(default)]
    pub critical: RawDeadline,
    #[serde(default)]
    pub emergency: RawDeadline,
    /// The hours a deadline with `hours: business` counts: on `days` (default every day),
    /// `from` to `to` (HH:MM) at `utc_offset` or in `timezone` (default UTC).
    pub business_hours: Option<RawHours>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    #[serde(default)]
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
    pub utc_offset: Option<String>,
    /// e.g. `Europe/Berlin`: the hours keep their local time across daylight saving changes.
    pub timezone: Option<String>,
    /// Dates (YYYY-MM-DD, local) closed though their weekday is open…
    #[serde(default)]
    pub holidays: Vec<String>,
    /// …and open though their weekday is not (a weekend worked in a holiday's place).
    #[serde(default)]
    pub workdays: Vec<String>,
}

/// Deadlines per severity, warning first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines(pub [(Level, Deadline); 3]);

impl Deadlines {
    pub fn of(&self, level: Level) -> Deadline {
        self.0
            .iter()
            .find(|(l, _)| *l == level)
            .map_or_else(|| self.0[0].1.clone(), |(_, d)| d.clone())
    }
}

/// The defaults: emergency acknowledged within 5 minutes and resolved within 4 hours,
/// critical 15 minutes and 24 hours, warning a day and three days.
pub const DEFAULT_DEADLINES: [(Level, &str, &str); 3] = [
    (Level::Warning, "24h", "72h"),
    (Level::Critical, "15m", "24h"),
    (Level::Emergency, "5m", "4h"),
];

/// The default rolling period of an objective.
pub const DEFAULT_WINDOW: &str = "30d";

pub fn validate_deadlines(p: &mut Problems, raw: RawDeadlines) -> Deadlines {
    let business = raw.business_hours.and_then(|h| {
        let window = p.take(
            "deadlines.business_hours",
            tocsin_clock::Window::new(
                &h.days,
                &h.from,
                &h.to,
                h.utc_offset.as_deref(),
                h.timezone.as_deref(),
            ),
        );
        let mut dates = |field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    p.take(
                        &format!("deadlines.business_hours.{field}[{i}]"),
                        tocsin_model::weekly::Weekly::local_day(d),
                    )
                })
                .collect::<std::collections::BTreeSet<i64>>()
        };
        let holidays = dates("holidays", &h.holidays);
        let workdays = dates("workdays", &h.workdays);
        if let Some(both) = h.holidays.iter().find(|d| h.workdays.contains(d)) {
            p.push(format!(
                "deadlines.business_hours: {both} is both a holiday and a workday"
            ));
        }
        window.map(|window| tocsin_clock::BusinessHours {
            window,
            holidays,
            workdays,
        })
    });
    let mut raws = [raw.warning, raw.critical, raw.emergency].into_iter();
    Deadlines(DEFAULT_DEADLINES.map(|(level, ack, resolve)| {
        let r = raws.next().unwrap_or_default();
        let field = |f: &str| format!("deadlines.{level}.{f}");
        let hours = match r.hours.as_deref() {
            None | Some("always") => None,
            Some("business") => {
                if business.is_none() {
                    p.push(format!(
                        "{}: business needs deadlines.business_hours (days, from, to, utc_offset)",
                        field("hours")
                    ));
                }
                business.clone()
            }
            Some(o) => {
                p.push(format!(
                    "{}: {o:?} is not always or business",
                    field("hours")
                ));
                None
            }
        };
        let d = Deadline {
            ack: p.duration(&field("ack"), r.ack.as_deref(), ack),
            resolve: p.duration(&field("resolve"), r.resolve.as_deref(), resolve),
            hours,
        };
        if d.ack.is_zero() || d.resolve.is_zero() {
            p.push(format!(
                "deadlines.{level}: ack and resolve must be above 0"
            ));
        } else if d.resolve < d.ack {
            p.push(format!(
                "deadlines.{level}: resolve ({}) is sooner than ack ({})",
                crate::format_duration(d.resolve),
                crate::format_duration(d.ack)
            ));
        }
        (level, d)
    }))
}

/// `99.9%`, `99.9 %` or `0.999`.
fn objective_share(v: &serde_yaml_ng::Value) -> Result<f64, String> {
    let share = match v {
        serde_yaml_ng::Value::Number(n) => n.as_f64().ok_or("not a number")?,
        serde_yaml_ng::Value::String(s) => {
            let t = s.trim();
            match t.strip_suffix('%') {
                Some(pct) => {
                    pct.trim()
                        .parse::<f64>()
                        .map_err(|_| format!("{s:?} is not a percentage such as 99.9%"))?
                        / 100.0
                }
                None => t
                    .parse::<f64>()
                    .map_err(|_| format!("{s:?} is not a share such as 0.999 or 99.9%"))?,
            }
        }
        _ => return Err("expected a percentage such as 99.9% or a share such as 0.999".into()),
    };
    // 99.9 / 100 is 0.9990000000000001 in binary: the share as written.
    Ok((share * 1e12).round() / 1e12)
}

pub fn validate_services(p: &mut Problems, raw: Vec<RawService>) -> Vec<ServiceConfig> {
    let mut out: Vec<ServiceConfig> = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let at = format!("services[{i}] ({})", s.name);
        if s.name.trim().is_empty() || s.name.chars().any(char::is_control) {
            p.push(format!(
                "{at}.name: must be the non-empty value of a `service` label"
            ));
        }
        if out.iter().any(|o| o.name == s.name) {
            p.push(format!("{at}.name: {} is listed twice", s.name));
        }
        let window = p.duration(&format!("{at}.window"), s.window.as_deref(), DEFAULT_WINDOW);
        let objective = s.objective.as_ref().and_then(|v| {
            let share = p.take(&format!("{at}.objective"), objective_share(v))?;
            p.take(
                &format!("{at}.objective"),
                Objective::new(share, window.as_millis() as i64),
            )
        });
        if s.objective.is_none() && s.latency.is_none() && s.window.is_some() {
            p.push(format!("{at}.window: given without an objective"));
        }
        let dur = |p: &mut Problems, f: &str, v: &Option<String>| {
            v.as_ref()
                .and_then(|v| p.take(&format!("{at}.{f}"), parse_duration(v)))
                .filter(|d| {
                    let ok = !d.is_zero();
                    if !ok {
                        p.push(format!("{at}.{f}: must be above 0"));
                    }
                    ok
                })
        };
        let rto = dur(p, "rto", &s.rto);
        let rpo = dur(p, "rpo", &s.rpo);
        let latency = s.latency.as_ref().and_then(|l| {
            let field = format!("{at}.latency");
            let threshold = p
                .take(&format!("{field}.threshold"), parse_duration(&l.threshold))
                .filter(|d| !d.is_zero())?;
            let share = p.take(&format!("{field}.objective"), objective_share(&l.objective))?;
            let objective = p.take(
                &format!("{field}.objective"),
                Objective::new(share, window.as_millis() as i64),
            )?;
            Some(LatencyObjective {
                threshold: threshold.as_secs_f64(),
                objective,
            })
        });
        if s.hosts.as_ref().is_some_and(Vec::is_empty) {
            p.push(format!(
                "{at}.hosts: empty (leave it out to admit every host)"
            ));
        }
        let hosts = s.hosts.unwrap_or_default();
        for (j, h) in hosts.iter().enumerate() {
            if h.is_empty() || h.chars().any(|c| c.is_control() || c.is_whitespace()) {
                p.push(format!(
                    "{at}.hosts[{j}]: {h:?} is not a host name or pattern"
                ));
            }
        }
        out.push(ServiceConfig {
            name: s.name,
            owner: s.owner,
            objective,
            latency,
            rto,
            rpo,
            impact: s.impact,
            hosts,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(yaml: &str) -> Result<Vec<ServiceConfig>, Vec<String>> {
        let raw: Vec<RawService> = serde_yaml_ng::from_str(yaml).unwrap();
        let mut p = Problems::default();
        let v = validate_services(&mut p, raw);
        p.finish(|| v).map_err(|e| e.problems)
    }

    #[test]
    fn objectives_take_percentages_and_shares() {
        let v = services(
            "- { name: members, objective: 99.9%, rto: 30m, rpo: 15m, owner: members-team, latency: { threshold: 500ms, objective: 99% } }\n\
             - { name: search, objective: 0.99, window: 7d }\n\
             - { name: docs }\n",
        )
        .unwrap();
        let o = v[0].objective.unwrap();
        assert_eq!(o.target, 0.999);
        assert_eq!(o.period_ms, 30 * 86_400_000);
        assert_eq!(v[0].rto, Some(Duration::from_secs(1800)));
        let l = v[0].latency.unwrap();
        assert_eq!((l.threshold, l.objective.target), (0.5, 0.99));
        assert_eq!(v[1].objective.unwrap().period_ms, 7 * 86_400_000);
        assert_eq!(v[2].objective, None);
    }

    /// A service admits the hosts its patterns name (`*`: any run of characters), or every
    /// host without them; a pattern must be a host name's.
    #[test]
    fn hosts_name_who_may_report_for_a_service() {
        let v = services(
            "- { name: shop, hosts: [web-*, db-1, \"*-canary\", \"a*b*c\"] }\n- { name: docs }\n",
        )
        .unwrap();
        for (host, admitted) in [
            ("web-1", true),
            ("web-", true),
            ("db-1", true),
            ("db-10", false),
            ("x-canary", true),
            ("abc", true),
            ("aXbYc", true),
            ("acb", false),
            ("laptop", false),
        ] {
            assert_eq!(v[0].admits(Some(host)), admitted, "{host}");
        }
        assert!(!v[0].admits(None));
        assert!(v[1].admits(Some("laptop")) && v[1].admits(None));
        let e = services("- { name: a, hosts: [] }\n- { name: b, hosts: [\"web 1\", \"\"] }\n")
            .unwrap_err()
            .join("\n");
        for want in [
            "services[0] (a).hosts: empty (leave it out to admit every host)",
            "services[1] (b).hosts[0]: \"web 1\" is not a host name or pattern",
            "services[1] (b).hosts[1]: \"\" is not a host name or pattern",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = services(
            "- { name: a, objective: 100% }\n\
             - { name: a, objective: ninety }\n\
             - { name: b, objective: 0.99, window: 1h, rto: 0s }\n\
             - { name: c, window: 7d }\n",
        )
        .unwrap_err();
        let all = e.join("\n");
        assert!(
            all.contains(
                "services[0] (a).objective: objective 100 must be above 0 % and below 100 %"
            ),
            "{all}"
        );
        assert!(
            all.contains("services[1] (a).name: a is listed twice"),
            "{all}"
        );
        assert!(all.contains("\"ninety\" is not a share"), "{all}");
        assert!(
            all.contains("services[2] (b).objective: the objective's window must be at least 1d"),
            "{all}"
        );
        assert!(
            all.contains("services[2] (b).rto: must be above 0"),
            "{all}"
        );
        assert!(
            all.contains("services[3] (c).window: given without an objective"),
            "{all}"
        );
    }

    /// The problems validating `yaml` as `deadlines:` finds, one per line.
    fn problems(yaml: &str) -> String {
        let mut p = Problems::default();
        validate_deadlines(&mut p, serde_yaml_ng::from_str(yaml).unwrap());
        p.finish(|| ()).unwrap_err().problems.join("\n")
    }

    /// `yaml` as `deadlines:`, which must validate.
    fn valid(yaml: &str) -> Deadlines {
        let mut p = Problems::default();
        let d = validate_deadlines(&mut p, serde_yaml_ng::from_str(yaml).unwrap());
        assert!(p.finish(|| ()).is_ok(), "{yaml}");
        d
    }

    #[test]
    fn deadlines_default_per_severity_and_are_checked() {
        let mut p = Problems::default();
        let d = validate_deadlines(&mut p, RawDeadlines::default());
        assert_eq!(d.of(Level::Emergency).ack, Duration::from_secs(300));
        assert_eq!(d.of(Level::Critical).resolve, Duration::from_secs(86_400));
        assert_eq!(d.of(Level::Warning).ack, Duration::from_secs(86_400));
        let e = problems("critical: { ack: 2h, resolve: 1h }\nwarning: { ack: soon }");
        assert!(
            e.contains("deadlines.critical: resolve (1h) is sooner than ack (2h)"),
            "{e}"
        );
        assert!(e.contains("deadlines.warning.ack:"), "{e}");
        // Business hours: counted by the deadlines that ask for them, checked with them.
        let d = valid(
            "business_hours: { days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"18:00\", utc_offset: \"+08:00\" }\n\
             warning: { ack: 4h, resolve: 2d, hours: business }",
        );
        assert!(d.of(Level::Warning).hours.is_some());
        assert!(d.of(Level::Critical).hours.is_none());
        // Holidays and workdays moved to a weekend, as dates.
        let e = problems(
            "business_hours: { from: \"09:00\", to: \"18:00\", holidays: [2026-10-01, 2026-10-32], workdays: [2026-09-27, 2026-10-01] }\n\
             warning: { hours: business }",
        );
        assert!(
            e.contains("deadlines.business_hours.holidays[1]: \"2026-10-32\" is not a date"),
            "{e}"
        );
        assert!(
            e.contains("2026-10-01 is both a holiday and a workday"),
            "{e}"
        );
        let h = valid(
            "business_hours: { from: \"09:00\", to: \"18:00\", holidays: [2026-10-01], workdays: [2026-09-27] }\n\
             warning: { hours: business }",
        )
        .of(Level::Warning)
        .hours
        .unwrap();
        assert_eq!(h.holidays.len() + h.workdays.len(), 2);
        let e = problems(
            "warning: { hours: business }\ncritical: { hours: weekdays }\n\
             business_hours: { from: \"9\", to: \"18:00\" }",
        );
        assert!(
            e.contains("deadlines.business_hours: invalid time of day \"9\""),
            "{e}"
        );
        assert!(
            e.contains("deadlines.warning.hours: business needs deadlines.business_hours"),
            "{e}"
        );
        assert!(
            e.contains("deadlines.critical.hours: \"weekdays\" is not always or business"),
            "{e}"
        );
    }
}

/// A change freeze: while it holds, a change to its services is refused (or let through with
/// a warning).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFreeze {
    pub name: String,
    /// The services it covers (default: every service).
    #[serde(default)]
    pub services: Vec<String>,
    /// Once: from `start` to `end` (UTC, `2026-12-24 00:00:00` or RFC 3339) …
    pub start: Option<String>,
    pub end: Option<String>,
    /// … or every week: on `days` (default every day), `from` to `to` (HH:MM) at `utc_offset`
    /// or in `timezone` (e.g. `Asia/Shanghai`; default UTC).
    #[serde(default)]
    pub days: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub utc_offset: Option<String>,
    pub timezone: Option<String>,
    /// `refuse` (default): the change is refused unless it gives an override reason;
    /// `warn`: it is recorded with a warning.
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FreezeWhen {
    Once { start_ms: i64, end_ms: i64 },
    Weekly(tocsin_clock::Window),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    pub name: String,
    pub services: Vec<String>,
    pub when: FreezeWhen,
    pub refuse: bool,
}

impl Freeze {
    /// Whether it holds for a change to `service` starting at `at`.
    pub fn holds(&self, service: &str, at: i64) -> bool {
        (self.services.is_empty() || self.services.iter().any(|s| s == service))
            && match &self.when {
                FreezeWhen::Once { start_ms, end_ms } => (*start_ms..*end_ms).contains(&at),
                FreezeWhen::Weekly(w) => w.contains(at),
            }
    }

    /// When the freeze holding at `at` ends.
    pub fn ends_after(&self, at: i64) -> i64 {
        match &self.when {
            FreezeWhen::Once { end_ms, .. } => *end_ms,
            FreezeWhen::Weekly(w) => w.end_after(at),
        }
    }
}

pub fn validate_freezes(p: &mut Problems, raw: Vec<RawFreeze>) -> Vec<Freeze> {
    let mut out = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let at = format!("change_freezes[{i}] ({})", f.name);
        if f.name.trim().is_empty() {
            p.push(format!("{at}.name: required"));
        }
        let refuse = match f.policy.as_deref() {
            None | Some("refuse") => true,
            Some("warn") => false,
            Some(o) => {
                p.push(format!("{at}.policy: {o:?} is not refuse or warn"));
                true
            }
        };
        let when = match (&f.start, &f.end, &f.from, &f.to) {
            (Some(a), Some(b), None, None)
                if f.days.is_empty() && f.utc_offset.is_none() && f.timezone.is_none() =>
            {
                let t = |p: &mut Problems, field: &str, s: &str| {
                    p.take(
                        &format!("{at}.{field}"),
                        tocsin_model::parse_timestamp(s)
                            .ok_or_else(|| format!("{s:?} is not a time like 2026-12-24 00:00:00")),
                    )
                };
                match (t(p, "start", a), t(p, "end", b)) {
                    (Some(start_ms), Some(end_ms)) if end_ms > start_ms => {
                        Some(FreezeWhen::Once { start_ms, end_ms })
                    }
                    (Some(_), Some(_)) => {
                        p.push(format!("{at}.end: must be after start"));
                        None
                    }
                    _ => None,
                }
            }
            (None, None, Some(from), Some(to)) => p
                .take(
                    &at,
                    tocsin_clock::Window::new(
                        &f.days,
                        from,
                        to,
                        f.utc_offset.as_deref(),
                        f.timezone.as_deref(),
                    ),
                )
                .map(FreezeWhen::Weekly),
            _ => {
                p.push(format!(
                    "{at}: give either start and end, or from and to (with optional days, and utc_offset or timezone)"
                ));
                None
            }
        };
        if let Some(when) = when {
            out.push(Freeze {
                name: f.name,
                services: f.services,
                when,
                refuse,
            });
        }
    }
    out
}

#[cfg(test)]
mod freeze_tests {
    use super::*;

    #[test]
    fn freezes_once_and_weekly_per_service() {
        let raw: Vec<RawFreeze> = serde_yaml_ng::from_str(
            "- { name: year-end, services: [members], start: \"2026-12-24 00:00:00\", end: \"2027-01-02 00:00:00\" }\n\
             - { name: friday-evenings, days: [fri], from: \"18:00\", to: \"24:00\", utc_offset: \"+08:00\", policy: warn }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let f = validate_freezes(&mut p, raw);
        p.finish(|| ()).unwrap();
        let xmas = tocsin_model::parse_timestamp("2026-12-25 12:00:00").unwrap();
        assert!(f[0].holds("members", xmas) && f[0].refuse);
        assert!(!f[0].holds("search", xmas));
        assert_eq!(
            f[0].ends_after(xmas),
            tocsin_model::parse_timestamp("2027-01-02 00:00:00").unwrap()
        );
        let fri_19_local = tocsin_model::parse_timestamp("2026-12-04 11:00:00").unwrap();
        assert!(f[1].holds("search", fri_19_local) && !f[1].refuse);
    }

    /// Fridays from 16:00 New York time: 21:00 UTC in winter, 20:00 UTC in summer.
    #[test]
    fn a_weekly_freeze_in_a_time_zone_keeps_its_local_time() {
        let raw: Vec<RawFreeze> = serde_yaml_ng::from_str(
            "- { name: weekend, days: [fri], from: \"16:00\", to: \"24:00\", timezone: America/New_York }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let f = validate_freezes(&mut p, raw);
        p.finish(|| ()).unwrap();
        let t = |s: &str| tocsin_model::parse_timestamp(s).unwrap();
        assert!(f[0].holds("members", t("2026-12-04 21:00:00")));
        assert!(!f[0].holds("members", t("2026-12-04 20:30:00")));
        assert!(f[0].holds("members", t("2026-07-10 20:30:00")));
        assert_eq!(
            f[0].ends_after(t("2026-07-10 20:30:00")),
            t("2026-07-11 04:00:00")
        );
        let raw: Vec<RawFreeze> = serde_yaml_ng::from_str(
            "- { name: x, from: \"16:00\", to: \"24:00\", timezone: America/NewYork }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        validate_freezes(&mut p, raw);
        let e = p.finish(|| ()).unwrap_err().to_string();
        assert!(
            e.contains("change_freezes[0] (x)") && e.contains("unknown time zone"),
            "{e}"
        );
    }

    #[test]
    fn bad_freezes_are_all_reported() {
        let raw: Vec<RawFreeze> = serde_yaml_ng::from_str(
            "- { name: a, start: \"2026-12-24 00:00:00\" }\n\
             - { name: b, from: \"18:00\", to: \"18:00\" }\n\
             - { name: c, start: \"2026-12-24\", end: \"2026-12-23 00:00:00\", policy: maybe }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        validate_freezes(&mut p, raw);
        let e = p.finish(|| ()).unwrap_err().problems.join("\n");
        assert!(
            e.contains("change_freezes[0] (a): give either start and end"),
            "{e}"
        );
        assert!(
            e.contains("change_freezes[1] (b): the window's start and end are the same time"),
            "{e}"
        );
        assert!(
            e.contains("change_freezes[2] (c).policy: \"maybe\" is not refuse or warn"),
            "{e}"
        );
    }
}
