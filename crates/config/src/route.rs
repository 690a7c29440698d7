//! The routing tree: which receivers an alert goes to, by its labels and level.

use std::collections::BTreeMap;
use std::time::Duration;

pub use tocsin_clock::Window;
use tocsin_model::{Level, TimestampMs};

use crate::{parse_duration, Problems};

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Labels that must equal these values.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Labels that must match these regexes (anchored).
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Least level, e.g. `critical` (the alert's level must be at least this).
    pub level: Option<String>,
    /// Receivers of alerts that stop at this node.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Keep looking at the following siblings after this node matched (default false).
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Labels whose values form a group; `[...]` (the default) groups nothing: every alert is
    /// its own group. Inherited by child routes, like the timing settings below.
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more alerts before its first notification (default 0s).
    pub group_wait: Option<String>,
    /// Least time between two notifications of a group that changed (default 0s).
    pub group_interval: Option<String>,
    /// An unchanged group still firing is notified again after this long (default 4h; `0s`
    /// never repeats).
    pub repeat_interval: Option<String>,
    /// Most repeats of one unchanged group (default 0: no limit).
    pub max_repeats: Option<u32>,
    /// Each repeat waits this many times longer than the previous one (default 1).
    pub repeat_backoff: Option<f64>,
    /// Escalation policy that takes the alerts stopping at this node, step by step until
    /// acknowledged.
    pub escalation: Option<String>,
    /// Names of `time_intervals` outside which this node sends nothing (none: always). Not
    /// inherited, as in Alertmanager.
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    /// Names of `time_intervals` during which this node sends nothing. Not inherited.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
}

/// A named set of weekly times (`time_intervals`), referred to by routes.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeInterval {
    pub name: String,
    pub times: Vec<RawTimes>,
}

/// Some days of the week between two times of day, at a fixed UTC offset or in a time zone.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimes {
    /// `mon` … `sun` (default: every day).
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, and `to` up to `24:00`; a `to` before `from` runs past midnight.
    pub from: String,
    pub to: String,
    /// e.g. `+08:00` (default UTC)…
    pub utc_offset: Option<String>,
    /// …or a time zone with its daylight saving rules, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
}

/// When a route node's notifications go out: inside one of its active intervals' times (any
/// time, when it has none) and inside none of its mute intervals' — mute wins, as in
/// Alertmanager. While closed, its groups keep their changes and its escalation steps wait;
/// they go out when it opens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeGate {
    pub active: Vec<Window>,
    pub mute: Vec<Window>,
}

impl TimeGate {
    pub fn open(&self, now: TimestampMs) -> bool {
        !self.mute.iter().any(|w| w.contains(now))
            && (self.active.is_empty() || self.active.iter().any(|w| w.contains(now)))
    }

    pub fn always(&self) -> bool {
        self.active.is_empty() && self.mute.is_empty()
    }
}

/// The validated `time_intervals`, by name.
pub type TimeIntervals = BTreeMap<String, Vec<Window>>;

pub(crate) fn validate_time_intervals(
    p: &mut Problems,
    raw: Vec<RawTimeInterval>,
) -> TimeIntervals {
    let mut out = TimeIntervals::new();
    for (i, t) in raw.into_iter().enumerate() {
        let at = format!("time_intervals[{i}]");
        if t.times.is_empty() {
            p.push(format!(
                "{at} ({:?}): times: at least one is required",
                t.name
            ));
        }
        let times: Vec<Window> = t
            .times
            .iter()
            .enumerate()
            .filter_map(|(j, w)| {
                let at = format!("{at}.times[{j}]");
                p.take(
                    &at,
                    Window::new(
                        &w.days,
                        &w.from,
                        &w.to,
                        w.utc_offset.as_deref(),
                        w.timezone.as_deref(),
                    ),
                )
            })
            .collect();
        if out.insert(t.name.clone(), times).is_some() {
            p.push(format!("{at} ({:?}): duplicate name", t.name));
        }
    }
    out
}

/// How the alerts stopping at one route node are grouped and repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOpts {
    /// `None`: every label (each alert its own group).
    pub group_by: Option<Vec<String>>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    /// `None`: never repeat.
    pub repeat_interval: Option<Duration>,
    /// 0: no limit.
    pub max_repeats: u32,
    pub repeat_backoff: f64,
}

impl Default for GroupOpts {
    fn default() -> Self {
        GroupOpts {
            group_by: None,
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            repeat_interval: Some(Duration::from_secs(4 * 3600)),
            max_repeats: 0,
            repeat_backoff: 1.0,
        }
    }
}

/// Where an alert goes: one matched route node.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The node's position in the tree, e.g. `route.routes[1]`: part of group keys.
    pub node: String,
    pub receivers: Vec<String>,
    pub opts: GroupOpts,
    pub escalation: Option<String>,
    pub times: TimeGate,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub matchers: Vec<(String, String)>,
    pub match_re: Vec<(String, regex::Regex)>,
    pub level: Option<Level>,
    pub receivers: Vec<String>,
    pub continue_: bool,
    pub routes: Vec<Route>,
    pub node: String,
    pub opts: GroupOpts,
    pub escalation: Option<String>,
    pub times: TimeGate,
}

impl Route {
    /// A route that sends every alert to `receivers`, with default grouping.
    pub fn to_all(receivers: Vec<String>) -> Route {
        Route {
            matchers: Vec::new(),
            match_re: Vec::new(),
            level: None,
            receivers,
            continue_: false,
            routes: Vec::new(),
            node: "route".into(),
            opts: GroupOpts::default(),
            escalation: None,
            times: TimeGate::default(),
        }
    }
}

/// What is said of each node `Route::resent_on_every_change` names.
pub const RESENT_ON_EVERY_CHANGE: &str = "grouped by labels with group_interval 0s: each change of a burst sends the whole group again (a mass outage: a message per alert, each longer than the last); leave group_interval out (5m, as Alertmanager) or set one";

impl Route {
    /// The nodes (this one and those below) that group alerts by some labels and send a
    /// group's message again at each change (`group_interval: 0s`): in a mass outage each
    /// commit of a burst sends the whole group so far — a message per alert, each longer than
    /// the last. Alertmanager refuses a zero `group_interval`; here it must be given (a
    /// grouping node's default is 5m), and is the default only where each alert is its own
    /// group.
    pub fn resent_on_every_change(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if self.opts.group_by.is_some() && self.opts.group_interval.is_zero() {
            out.push(self.node.as_str());
        }
        for r in &self.routes {
            out.extend(r.resent_on_every_change());
        }
        out
    }
}

/// Names the route may refer to.
pub(crate) struct Known<'a> {
    pub receivers: &'a [String],
    pub policies: &'a [String],
    pub intervals: &'a TimeIntervals,
}

/// `group_wait` and `group_interval` where no node on the way down gives them and the node
/// groups by labels: Alertmanager's defaults (a burst gathered for 30 s, then its changes at
/// most every 5 m). Where each alert is its own group (`[...]`) both stay 0s: its changes are
/// told as they happen.
pub const GROUPED_WAIT: Duration = Duration::from_secs(30);
pub const GROUPED_INTERVAL: Duration = Duration::from_secs(300);

/// The `group_wait` and `group_interval` a node or one of its ancestors gives.
#[derive(Debug, Clone, Copy, Default)]
struct Given {
    wait: Option<Duration>,
    interval: Option<Duration>,
}

/// A node's grouping options: its own where given, else its parent's; `given` holds the
/// timings the node or an ancestor gives (updated here): a node without them takes them only
/// if some node set them, else the defaults for how the node groups.
fn inherit(
    p: &mut Problems,
    raw: &RawRoute,
    at: &str,
    parent: &GroupOpts,
    given: &mut Given,
) -> GroupOpts {
    let mut o = parent.clone();
    let mut dur = |field: &str, v: &Option<String>| {
        v.as_deref()
            .and_then(|s| p.take(&format!("{at}.{field}"), parse_duration(s)))
    };
    if let Some(d) = dur("group_wait", &raw.group_wait) {
        given.wait = Some(d);
    }
    if let Some(d) = dur("group_interval", &raw.group_interval) {
        given.interval = Some(d);
    }
    if let Some(d) = dur("repeat_interval", &raw.repeat_interval) {
        o.repeat_interval = (!d.is_zero()).then_some(d);
    }
    if let Some(g) = &raw.group_by {
        o.group_by = if g.iter().any(|l| l == "...") {
            if g.len() > 1 {
                p.push(format!("{at}.group_by: \"...\" stands alone"));
            }
            None
        } else {
            Some(g.clone())
        };
    }
    let grouped = |d: Duration| {
        if o.group_by.is_some() {
            d
        } else {
            Duration::ZERO
        }
    };
    o.group_wait = given.wait.unwrap_or(grouped(GROUPED_WAIT));
    o.group_interval = given.interval.unwrap_or(grouped(GROUPED_INTERVAL));
    if let Some(m) = raw.max_repeats {
        o.max_repeats = m;
    }
    if let Some(b) = raw.repeat_backoff {
        if !(1.0..=10.0).contains(&b) {
            p.push(format!(
                "{at}.repeat_backoff: must be between 1 and 10, got {b}"
            ));
        } else {
            o.repeat_backoff = b;
        }
    }
    o
}

pub(crate) fn validate(p: &mut Problems, raw: RawRoute, known: &Known<'_>) -> Route {
    node(
        p,
        raw,
        "route",
        known,
        &GroupOpts::default(),
        Given::default(),
    )
}

fn node(
    p: &mut Problems,
    raw: RawRoute,
    at: &str,
    known: &Known<'_>,
    parent: &GroupOpts,
    mut given: Given,
) -> Route {
    let opts = inherit(p, &raw, at, parent, &mut given);
    if let Some(e) = &raw.escalation {
        if !known.policies.contains(e) {
            p.push(format!("{at}.escalation: no escalation policy named {e:?}"));
        }
    }
    let mut match_re = Vec::new();
    for (k, v) in raw.match_re {
        if let Some(re) = p.take(
            &format!("{at}.match_re.{k}"),
            regex::Regex::new(&format!("^(?:{v})$")),
        ) {
            match_re.push((k, re));
        }
    }
    let level = raw
        .level
        .as_deref()
        .and_then(|l| p.take(&format!("{at}.level"), l.parse::<Level>()));
    for r in &raw.receivers {
        if !known.receivers.contains(r) {
            p.push(format!("{at}.receivers: no receiver named {r:?}"));
        }
    }
    let mut gate = |field: &str, names: &[String]| -> Vec<Window> {
        names
            .iter()
            .flat_map(|n| match known.intervals.get(n) {
                Some(w) => w.clone(),
                None => {
                    p.push(format!("{at}.{field}: no time interval named {n:?}"));
                    Vec::new()
                }
            })
            .collect()
    };
    let times = TimeGate {
        active: gate("active_time_intervals", &raw.active_time_intervals),
        mute: gate("mute_time_intervals", &raw.mute_time_intervals),
    };
    let routes = raw
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, c)| node(p, c, &format!("{at}.routes[{i}]"), known, &opts, given))
        .collect();
    Route {
        matchers: raw.matchers.into_iter().collect(),
        match_re,
        level,
        receivers: raw.receivers,
        continue_: raw.continue_,
        routes,
        node: at.to_string(),
        opts,
        escalation: raw.escalation,
        times,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Office hours in a zone with daylight saving time keep to its wall clock: 07:30 UTC on a
    /// Wednesday is 09:30 in Berlin in July (inside) and 08:30 in December (outside).
    #[test]
    fn times_in_a_zone_follow_its_daylight_saving_time() {
        let raw: Vec<RawTimeInterval> = crate::parse_yaml(
            "- name: office
  times: [{ days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"18:00\", timezone: Europe/Berlin }]
- name: fixed
  times: [{ days: [wed], from: \"09:00\", to: \"18:00\", utc_offset: \"+01:00\" }]
- name: both
  times: [{ from: \"09:00\", to: \"18:00\", utc_offset: \"+01:00\", timezone: Europe/Berlin }]
- name: nowhere
  times: [{ from: \"09:00\", to: \"18:00\", timezone: Mars/Olympus }]
",
        )
        .unwrap();
        let mut p = Problems::default();
        let t = validate_time_intervals(&mut p, raw);
        let e = p.finish(|| ()).unwrap_err().to_string();
        assert!(
            e.contains("time_intervals[2].times[0]: utc_offset or timezone, not both"),
            "{e}"
        );
        assert!(
            e.contains("time_intervals[3].times[0]: timezone: unknown time zone"),
            "{e}"
        );
        let inside = |name: &str, ms: TimestampMs| t[name].iter().any(|w| w.contains(ms));
        let (july_0730, july_0630) = (1_782_891_000_000, 1_782_887_400_000);
        let (dec_0730, dec_0830) = (1_796_196_600_000, 1_796_200_200_000);
        assert!(inside("office", july_0730) && !inside("office", july_0630));
        assert!(!inside("office", dec_0730) && inside("office", dec_0830));
        // A fixed offset does not move: 07:30 UTC is 08:30 at +01:00 all year.
        assert!(!inside("fixed", july_0730) && !inside("fixed", dec_0730));
    }

    #[test]
    fn unknown_receivers_and_bad_regexes_are_reported() {
        let raw: RawRoute = crate::parse_yaml(
            "receivers: [nope]\nescalation: x\nrepeat_backoff: 0.5\nroutes:\n  - { match_re: { a: \"(\" }, level: fatal, group_wait: soon }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let k = Known {
            receivers: &[],
            policies: &[],
            intervals: &TimeIntervals::new(),
        };
        validate(&mut p, raw, &k);
        let e = p.finish(|| ()).unwrap_err().to_string();
        assert!(
            e.contains("route.receivers: no receiver named \"nope\""),
            "{e}"
        );
        assert!(e.contains("route.routes[0].match_re.a:"), "{e}");
        assert!(
            e.contains("route.routes[0].level: unknown level \"fatal\""),
            "{e}"
        );
        assert!(e.contains("route.routes[0].group_wait:"), "{e}");
        assert!(
            e.contains("route.escalation: no escalation policy named \"x\""),
            "{e}"
        );
        assert!(e.contains("route.repeat_backoff: must be between"), "{e}");
    }

    /// A node grouping by labels takes Alertmanager's timing — a burst gathered for 30s, then
    /// 5m between two messages of a group — unless it or an ancestor gives its own; a node
    /// whose alerts are each their own group sends each change at once. The nodes that would send a whole group again at
    /// each change of a burst (grouped by labels, `group_interval: 0s` given) are named.
    #[test]
    fn grouped_nodes_wait_between_messages_unless_told_otherwise() {
        let raw: RawRoute = crate::parse_yaml(
            "receivers: [ops]
routes:
  - { level: critical, receivers: [ops], group_by: [alertname], routes: [{ receivers: [ops], group_by: [\"...\"] }] }
  - { receivers: [ops], group_interval: 1m, routes: [{ receivers: [ops], group_by: [host], group_wait: 10s, routes: [{ receivers: [ops] }] }, { receivers: [ops], group_by: [host], group_interval: 0s }] }
",
        )
        .unwrap();
        let mut p = Problems::default();
        let k = Known {
            receivers: &["ops".to_string()],
            policies: &[],
            intervals: &TimeIntervals::new(),
        };
        let r = validate(&mut p, raw, &k);
        p.finish(|| ()).unwrap();
        let timing = |r: &Route| (r.opts.group_wait.as_secs(), r.opts.group_interval.as_secs());
        assert_eq!(timing(&r), (0, 0), "each alert its own group");
        assert_eq!(timing(&r.routes[0]), (30, 300), "grouped, nothing given");
        assert_eq!(timing(&r.routes[0].routes[0]), (0, 0), "ungrouped again");
        assert_eq!(timing(&r.routes[1]), (0, 60), "an interval given");
        assert_eq!(timing(&r.routes[1].routes[0]), (10, 60), "a wait given");
        assert_eq!(
            timing(&r.routes[1].routes[0].routes[0]),
            (10, 60),
            "both given above"
        );
        assert_eq!(timing(&r.routes[1].routes[1]), (30, 0));
        assert_eq!(r.resent_on_every_change(), ["route.routes[1].routes[1]"]);
        // Each alert its own group (the default): nothing to say.
        assert!(Route::to_all(vec!["ops".into()])
            .resent_on_every_change()
            .is_empty());
    }
}
