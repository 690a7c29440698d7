//! Silences: label matchers that mute notifications between two times, optionally only within
//! a recurring window ("Sundays 02:00–04:00"): a maintenance window. Alerts keep being
//! evaluated and recorded while silenced; only delivery is skipped.

use serde::{Deserialize, Serialize};
use tocsin_clock::{Window, Zone};
use tocsin_model::weekly::{Weekly, WeeklyError};
use tocsin_model::{Labels, TimestampMs};

/// One matcher as the API takes it (Alertmanager's shape): `isEqual: false` negates it
/// (`!=`, `!~`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatcherSpec {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "isRegex")]
    pub is_regex: bool,
    #[serde(default = "yes", rename = "isEqual", skip_serializing_if = "is_true")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl MatcherSpec {
    /// `name=value`, `name!=value`, `name=~regex` or `name!~regex` (a value may be quoted).
    pub fn parse(m: &str) -> Option<MatcherSpec> {
        let at = m.find(['=', '!'])?;
        let (name, rest) = m.split_at(at);
        let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
            (true, true, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (false, true, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (false, false, v)
        } else {
            (true, false, rest.strip_prefix('=')?)
        };
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            // Quoted as Alertmanager writes a matcher: \", \\ and \n escaped.
            Some(q) => {
                let mut out = String::with_capacity(q.len());
                let mut chars = q.chars();
                while let Some(c) = chars.next() {
                    out.push(match c {
                        '\\' => match chars.next()? {
                            'n' => '\n',
                            e => e,
                        },
                        c => c,
                    });
                }
                out
            }
            None => value.to_string(),
        };
        Some(MatcherSpec {
            name: name.trim().to_string(),
            value,
            is_regex,
            is_equal,
        })
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Eq(String, String),
    Re(String, regex::Regex),
    /// The same, negated.
    Not(Box<Matcher>),
}

impl Matcher {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Matcher::Eq(n, v) => labels.get(n).unwrap_or("") == v,
            Matcher::Re(n, re) => re.is_match(labels.get(n).unwrap_or("")),
            Matcher::Not(m) => !m.matches(labels),
        }
    }
}

/// A recurring window as the API takes it: on `days` (mon … sun; empty: every day), from
/// `start` to `end` (HH:MM, local to `utcOffset`, e.g. +08:00, or to `timezone`, e.g.
/// Europe/Berlin, whose daylight saving rules it follows; default UTC). An `end` before
/// `start` runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleSpec {
    #[serde(default)]
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub utc_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Why a silence or its window is not valid. The texts are what API clients read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher")]
    NoMatcher,
    #[error("invalid label name {0:?}")]
    LabelName(String),
    #[error("matcher {name}: invalid regex: {error}")]
    Regex { name: String, error: String },
    #[error("invalid time of day {0:?}, expected HH:MM")]
    TimeOfDay(String),
    #[error("unknown day {0:?}, expected mon … sun")]
    Day(String),
    #[error("invalid utcOffset {0:?}, expected e.g. +08:00")]
    UtcOffset(String),
    #[error("the window's start and end are the same time")]
    EmptyWindow,
    #[error("{0}")]
    TimeZone(String),
    #[error("utcOffset or timezone, not both")]
    OffsetAndZone,
    /// A stored silence that does not read back (it was valid when stored).
    #[error("{0}")]
    Stored(String),
}

impl From<WeeklyError> for SilenceError {
    fn from(e: WeeklyError) -> Self {
        match e {
            WeeklyError::TimeOfDay(s) => SilenceError::TimeOfDay(s),
            WeeklyError::Day(s) => SilenceError::Day(s),
            WeeklyError::UtcOffset(s) => SilenceError::UtcOffset(s),
            WeeklyError::Empty => SilenceError::EmptyWindow,
        }
    }
}

fn compile_schedule(spec: &ScheduleSpec) -> Result<Window, SilenceError> {
    let zone = match (&spec.utc_offset, &spec.timezone) {
        (Some(_), Some(_)) => return Err(SilenceError::OffsetAndZone),
        (_, Some(z)) => Some(Zone::parse(z).map_err(SilenceError::TimeZone)?),
        _ => None,
    };
    let weekly = Weekly::new(
        &spec.days,
        &spec.start,
        &spec.end,
        spec.utc_offset.as_deref(),
    )?;
    Ok(Window { weekly, zone })
}

/// Checks a schedule as the API receives it.
pub fn validate_schedule(spec: &ScheduleSpec) -> Result<(), SilenceError> {
    compile_schedule(spec).map(drop)
}

#[derive(Debug, Clone)]
pub struct Silence {
    pub id: i64,
    pub starts_ms: TimestampMs,
    pub ends_ms: TimestampMs,
    matchers: Vec<Matcher>,
    schedule: Option<Window>,
}

impl Silence {
    /// Builds from the stored JSON matchers and schedule; an error names the bad part.
    pub fn new(
        id: i64,
        matchers_json: &str,
        schedule_json: Option<&str>,
        starts_ms: TimestampMs,
        ends_ms: TimestampMs,
    ) -> Result<Self, SilenceError> {
        let specs: Vec<MatcherSpec> = serde_json::from_str(matchers_json)
            .map_err(|e| SilenceError::Stored(format!("matchers: {e}")))?;
        let schedule = schedule_json
            .map(|j| {
                let spec: ScheduleSpec = serde_json::from_str(j)
                    .map_err(|e| SilenceError::Stored(format!("schedule: {e}")))?;
                compile_schedule(&spec)
            })
            .transpose()?;
        Ok(Silence {
            id,
            starts_ms,
            ends_ms,
            matchers: compile(&specs)?,
            schedule,
        })
    }

    /// Matchers alone, in force at any time: to select alerts (a preview, an API filter).
    pub fn matching(specs: &[MatcherSpec]) -> Result<Self, SilenceError> {
        Ok(Silence {
            id: 0,
            starts_ms: i64::MIN,
            ends_ms: i64::MAX,
            matchers: compile(specs)?,
            schedule: None,
        })
    }

    /// Whether it mutes at `now`: between start and end, and inside its window if recurring.
    pub fn active(&self, now: TimestampMs) -> bool {
        (self.starts_ms..self.ends_ms).contains(&now)
            && self.schedule.as_ref().is_none_or(|s| s.contains(now))
    }

    pub fn matches(&self, labels: &Labels, now: TimestampMs) -> bool {
        self.active(now) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Checks matchers as the API receives them.
pub fn validate(specs: &[MatcherSpec]) -> Result<(), SilenceError> {
    compile(specs).map(drop)
}

/// At least one matcher, valid names, anchored regexes.
fn compile(specs: &[MatcherSpec]) -> Result<Vec<Matcher>, SilenceError> {
    if specs.is_empty() {
        return Err(SilenceError::NoMatcher);
    }
    specs
        .iter()
        .map(|m| {
            if !tocsin_model::is_valid_label_name(&m.name) {
                return Err(SilenceError::LabelName(m.name.clone()));
            }
            let matcher = if m.is_regex {
                regex::Regex::new(&format!("^(?:{})$", m.value))
                    .map(|re| Matcher::Re(m.name.clone(), re))
                    .map_err(|e| SilenceError::Regex {
                        name: m.name.clone(),
                        error: e.to_string(),
                    })?
            } else {
                Matcher::Eq(m.name.clone(), m.value.clone())
            };
            Ok(if m.is_equal {
                matcher
            } else {
                Matcher::Not(Box::new(matcher))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_time() {
        let s = Silence::new(
            1,
            r#"[{"name":"host","value":"db-.*","isRegex":true},{"name":"alertname","value":"DiskFull"}]"#,
            None,
            100,
            200,
        )
        .unwrap();
        let l = Labels::from_pairs([("host", "db-1"), ("alertname", "DiskFull")]);
        assert!(s.matches(&l, 150));
        assert!(
            !s.matches(&l, 99) && !s.matches(&l, 200),
            "only between start and end"
        );
        assert!(!s.matches(
            &Labels::from_pairs([("host", "web-1"), ("alertname", "DiskFull")]),
            150
        ));
        assert!(Silence::new(2, "[]", None, 0, 1).is_err());
        assert!(Silence::new(
            3,
            r#"[{"name":"a","value":"(","isRegex":true}]"#,
            None,
            0,
            1
        )
        .unwrap_err()
        .to_string()
        .contains("invalid regex"));
    }

    /// Unix ms of a UTC date and time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> TimestampMs {
        // Days from civil (Howard Hinnant's algorithm).
        let (y, mo) = if mo <= 2 { (y - 1, mo + 12) } else { (y, mo) };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (mo as i32 - 3) + 2) / 5 + d as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = (era * 146_097 + doe - 719_468) as i64;
        (days * 1440 + h as i64 * 60 + mi as i64) * 60_000
    }

    #[test]
    fn recurring_windows() {
        let sched = r#"{"days":["sun"],"start":"02:00","end":"04:00","utcOffset":"+08:00"}"#;
        let s = Silence::new(
            1,
            r#"[{"name":"host","value":"db-.*","isRegex":true}]"#,
            Some(sched),
            0,
            i64::MAX,
        )
        .unwrap();
        let db = Labels::from_pairs([("host", "db-1")]);
        // 2026-11-22 is a Sunday; 02:30 at +08:00 is 18:30 UTC on Saturday the 21st.
        assert!(s.matches(&db, at(2026, 11, 21, 18, 30)));
        assert!(!s.matches(&db, at(2026, 11, 21, 17, 59)), "01:59 local");
        assert!(
            !s.matches(&db, at(2026, 11, 21, 20, 0)),
            "04:00 local: ended"
        );
        assert!(
            !s.matches(&db, at(2026, 11, 28, 10, 30)),
            "Saturday 18:30 local"
        );
        assert!(s.matches(&db, at(2026, 11, 28, 18, 30)), "next Sunday");
        assert!(!s.matches(
            &Labels::from_pairs([("host", "web-1")]),
            at(2026, 11, 21, 18, 30)
        ));
        // Across midnight: Fridays 23:00–01:00 UTC covers Saturday 00:30, not Sunday 00:30.
        let night = r#"{"days":["fri"],"start":"23:00","end":"01:00"}"#;
        let n = Silence::new(
            2,
            r#"[{"name":"host","value":"x"}]"#,
            Some(night),
            0,
            i64::MAX,
        )
        .unwrap();
        let x = Labels::from_pairs([("host", "x")]);
        assert!(n.matches(&x, at(2026, 11, 27, 23, 30)));
        assert!(n.matches(&x, at(2026, 11, 28, 0, 30)));
        assert!(!n.matches(&x, at(2026, 11, 29, 0, 30)));
        for (bad, want) in [
            (
                r#"{"days":["funday"],"start":"02:00","end":"04:00"}"#,
                "unknown day",
            ),
            (r#"{"start":"25:00","end":"04:00"}"#, "invalid time of day"),
            (r#"{"start":"02:00","end":"02:00"}"#, "the same time"),
            (
                r#"{"start":"02:00","end":"03:00","utcOffset":"8"}"#,
                "invalid utcOffset",
            ),
            (
                r#"{"start":"02:00","end":"03:00","timezone":"Europe/Berlln"}"#,
                "unknown time zone",
            ),
            (
                r#"{"start":"02:00","end":"03:00","utcOffset":"+01:00","timezone":"Europe/Berlin"}"#,
                "not both",
            ),
        ] {
            let e = Silence::new(3, r#"[{"name":"a","value":"b"}]"#, Some(bad), 0, 1).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    /// A weekly backup at 02:00–04:00 Berlin time: 01:00–03:00 UTC in winter, 00:00–02:00 UTC
    /// from the last Sunday of March. At the offset of the day it was made (+01:00) the window
    /// would open an hour after the backup started, all summer.
    #[test]
    fn a_maintenance_window_in_a_time_zone_follows_daylight_saving() {
        let sched = r#"{"days":["sun"],"start":"02:00","end":"04:00","timezone":"Europe/Berlin"}"#;
        let s = Silence::new(
            1,
            r#"[{"name":"host","value":"db-1"}]"#,
            Some(sched),
            0,
            i64::MAX,
        )
        .unwrap();
        let db = Labels::from_pairs([("host", "db-1")]);
        // Sunday 2026-12-06 and Sunday 2027-04-04.
        assert!(s.matches(&db, at(2026, 12, 6, 1, 0)));
        assert!(!s.matches(&db, at(2026, 12, 6, 0, 30)));
        assert!(s.matches(&db, at(2027, 4, 4, 0, 30)));
        assert!(!s.matches(&db, at(2027, 4, 4, 2, 30)));
        // Stored and read back as the API gave it.
        let spec: ScheduleSpec = serde_json::from_str(sched).unwrap();
        assert_eq!(spec.timezone.as_deref(), Some("Europe/Berlin"));
        assert!(serde_json::to_string(&spec)
            .unwrap()
            .contains("\"timezone\":\"Europe/Berlin\""));
    }

    /// `isEqual: false` negates a matcher, as in Alertmanager: `host!=db-1` mutes every host
    /// but db-1 (it was once read as `host=db-1`, muting the one host meant to be left alone).
    #[test]
    fn negated_matchers_mute_everything_else() {
        let s = Silence::new(
            1,
            r#"[{"name":"alertname","value":"DiskFull"},
                {"name":"host","value":"db-1","isEqual":false},
                {"name":"dc","value":"eu-.*","isRegex":true,"isEqual":false}]"#,
            None,
            0,
            i64::MAX,
        )
        .unwrap();
        let l = |host: &str, dc: &str| {
            Labels::from_pairs([("alertname", "DiskFull"), ("host", host), ("dc", dc)])
        };
        assert!(s.matches(&l("db-2", "us-1"), 5));
        assert!(!s.matches(&l("db-1", "us-1"), 5), "host!=db-1");
        assert!(!s.matches(&l("db-2", "eu-2"), 5), "dc!~eu-.*");
        assert!(Silence::new(
            2,
            r#"[{"name":"a","value":"b","isNegative":true}]"#,
            None,
            0,
            1
        )
        .unwrap_err()
        .to_string()
        .contains("unknown field"));
        // As people and amtool write them.
        for (text, want) in [
            ("host=db-1", ("host", "db-1", false, true)),
            ("host!=db-1", ("host", "db-1", false, false)),
            ("host=~db-.*", ("host", "db-.*", true, true)),
            ("host!~\"db-.*\"", ("host", "db-.*", true, false)),
            (
                r#"msg="say \"hi\"\\n""#,
                ("msg", "say \"hi\"\\n", false, true),
            ),
        ] {
            let m = MatcherSpec::parse(text).unwrap();
            assert_eq!(
                (m.name.as_str(), m.value.as_str(), m.is_regex, m.is_equal),
                want,
                "{text}"
            );
        }
        assert!(MatcherSpec::parse("host").is_none());
    }
}
