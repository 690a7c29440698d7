//! Who an alert goes to: the route nodes it stops at, and the firing alerts that hold it back.
//! The tree and the rules are configuration (`tocsin_config::route`, `::inhibit`); walking
//! and matching them is the pipeline's.

use std::collections::HashSet;

use tocsin_config::inhibit::InhibitRule;
use tocsin_config::route::{GroupOpts, Route, Target, TimeGate};
use tocsin_model::{Labels, Level};

fn matches(node: &Route, labels: &Labels, level: Level) -> bool {
    node.level.is_none_or(|l| level >= l)
        && node
            .matchers
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v.as_str()))
        && node
            .match_re
            .iter()
            .all(|(k, re)| re.is_match(labels.get(k).unwrap_or("")))
}

/// The nodes an alert stops at, Alertmanager-style: descend into the first matching child
/// (and into later ones while `continue` is set); a node none of whose children match is where
/// the alert stops.
pub fn targets(route: &Route, labels: &Labels, level: Level) -> Vec<Target> {
    let mut out = Vec::new();
    walk(route, labels, level, &mut out);
    out
}

fn walk(node: &Route, labels: &Labels, level: Level, out: &mut Vec<Target>) {
    let mut matched = false;
    for child in &node.routes {
        if matches(child, labels, level) {
            matched = true;
            walk(child, labels, level, out);
            if !child.continue_ {
                break;
            }
        }
    }
    if !matched {
        out.push(Target {
            node: node.node.clone(),
            receivers: node.receivers.clone(),
            opts: node.opts.clone(),
            escalation: node.escalation.clone(),
            times: node.times.clone(),
        });
    }
}

/// The nodes of the tree that send only at some times, with their times.
pub fn gates(route: &Route) -> std::collections::BTreeMap<String, TimeGate> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![route];
    while let Some(n) = stack.pop() {
        if !n.times.always() {
            out.insert(n.node.clone(), n.times.clone());
        }
        stack.extend(n.routes.iter());
    }
    out
}

/// Every route node's grouping options, by node.
pub fn node_opts(route: &Route) -> std::collections::BTreeMap<String, GroupOpts> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![route];
    while let Some(n) = stack.pop() {
        out.insert(n.node.clone(), n.opts.clone());
        stack.extend(n.routes.iter());
    }
    out
}

/// Receivers for an alert over all its targets, duplicates removed, order kept.
pub fn receivers_for(route: &Route, labels: &Labels, level: Level) -> Vec<String> {
    let mut seen = HashSet::new();
    targets(route, labels, level)
        .into_iter()
        .flat_map(|t| t.receivers)
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

/// Whether a firing alert with these labels can inhibit others under `rule`.
pub fn is_source(rule: &InhibitRule, source: &Labels) -> bool {
    rule.source_match
        .iter()
        .all(|(k, v)| source.get(k) == Some(v.as_str()))
}

/// Whether firing `source` inhibits `target` under `rule`.
pub fn inhibits(rule: &InhibitRule, source: &Labels, target: &Labels) -> bool {
    source != target
        && is_source(rule, source)
        && rule
            .target_match
            .iter()
            .all(|(k, v)| target.get(k) == Some(v.as_str()))
        && rule
            .target_match_re
            .iter()
            .all(|(k, re)| re.is_match(target.get(k).unwrap_or("")))
        && rule
            .equal
            .iter()
            .all(|k| source.get(k).is_some() && source.get(k) == target.get(k))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn route(yaml: &str) -> Route {
        let yaml = format!(
            "receivers:
  - {{ name: chat, log: {{ path: a }} }}
  - {{ name: mail, log: {{ path: b }} }}
  - {{ name: sms, log: {{ path: c }} }}
  - {{ name: dba, log: {{ path: d }} }}
escalation_policies:
  - {{ name: oncall, steps: [{{ after: 0s, receivers: [sms] }}] }}
route:
{}",
            yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let raw: tocsin_config::collector::RawCollectorConfig =
            tocsin_config::parse_yaml(&yaml).unwrap();
        raw.validate().unwrap().route
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn tiers_by_level_with_continue() {
        let r = route(
            "receivers: [chat]
routes:
  - level: emergency
    receivers: [sms]
    continue: true
  - level: critical
    receivers: [chat, mail]
  - match: { team: db }
    match_re: { host: \"db-.*\" }
    receivers: [dba]",
        );
        let to = |labels: &[(&str, &str)], level| receivers_for(&r, &l(labels), level);
        assert_eq!(to(&[], Level::Warning), vec!["chat"]);
        assert_eq!(to(&[], Level::Critical), vec!["chat", "mail"]);
        assert_eq!(to(&[], Level::Emergency), vec!["sms", "chat", "mail"]);
        let db = [("team", "db"), ("host", "db-1")];
        assert_eq!(to(&db, Level::Warning), vec!["dba"]);
        let web = [("team", "db"), ("host", "web-1")];
        assert_eq!(to(&web, Level::Warning), vec!["chat"]);
    }

    #[test]
    fn group_settings_are_inherited() {
        let r = route(
            "receivers: [chat]
group_by: [alertname]
group_wait: 30s
repeat_interval: 1h
max_repeats: 3
routes:
  - level: critical
    receivers: [sms]
    group_by: [...]
    repeat_interval: 0s
    escalation: oncall",
        );
        let a = l(&[("alertname", "A")]);
        let t = targets(&r, &a, Level::Warning);
        assert_eq!(t[0].node, "route");
        assert_eq!(t[0].opts.group_by, Some(vec!["alertname".to_string()]));
        assert_eq!(t[0].opts.group_wait, Duration::from_secs(30));
        assert_eq!(t[0].opts.repeat_interval, Some(Duration::from_secs(3600)));
        let t = targets(&r, &a, Level::Critical);
        assert_eq!(t[0].node, "route.routes[0]");
        assert_eq!(t[0].opts.group_by, None);
        assert_eq!(t[0].opts.group_wait, Duration::from_secs(30));
        assert_eq!(t[0].opts.repeat_interval, None);
        assert_eq!(t[0].opts.max_repeats, 3);
        assert_eq!(t[0].escalation.as_deref(), Some("oncall"));
    }

    #[test]
    fn host_down_inhibits_the_same_host_only() {
        let r = InhibitRule::host_down();
        let down = l(&[("alertname", "HostDown"), ("host", "a")]);
        assert!(inhibits(
            &r,
            &down,
            &l(&[("alertname", "DiskFull"), ("host", "a")])
        ));
        assert!(!inhibits(
            &r,
            &down,
            &l(&[("alertname", "DiskFull"), ("host", "b")])
        ));
        assert!(!inhibits(&r, &down, &down), "never itself");
        assert!(!is_source(
            &r,
            &l(&[("alertname", "DiskFull"), ("host", "a")])
        ));
    }
}
