//! The routing tree: which receivers an alert goes to, by its labels and level.

use std::collections::BTreeMap;

use tocsin_model::{Labels, Level};

use crate::Problems;

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
}

#[derive(Debug, Clone)]
pub struct Route {
    pub matchers: Vec<(String, String)>,
    pub match_re: Vec<(String, regex::Regex)>,
    pub level: Option<Level>,
    pub receivers: Vec<String>,
    pub continue_: bool,
    pub routes: Vec<Route>,
}

impl Route {
    fn matches(&self, labels: &Labels, level: Level) -> bool {
        self.level.is_none_or(|l| level >= l)
            && self
                .matchers
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v.as_str()))
            && self
                .match_re
                .iter()
                .all(|(k, re)| re.is_match(labels.get(k).unwrap_or("")))
    }

    /// Receivers for an alert, Alertmanager-style: descend into the first matching child (and
    /// into later ones while `continue` is set); a node none of whose children match delivers to
    /// its own receivers. Duplicates are removed, order kept.
    pub fn receivers_for(&self, labels: &Labels, level: Level) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(labels, level, &mut out);
        let mut seen = std::collections::HashSet::new();
        out.retain(|r| seen.insert(r.clone()));
        out
    }

    fn walk(&self, labels: &Labels, level: Level, out: &mut Vec<String>) {
        let mut matched = false;
        for child in &self.routes {
            if child.matches(labels, level) {
                matched = true;
                child.walk(labels, level, out);
                if !child.continue_ {
                    break;
                }
            }
        }
        if !matched {
            out.extend(self.receivers.iter().cloned());
        }
    }
}

pub(crate) fn validate(p: &mut Problems, raw: RawRoute, at: &str, known: &[String]) -> Route {
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
        if !known.contains(r) {
            p.push(format!("{at}.receivers: no receiver named {r:?}"));
        }
    }
    let routes = raw
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, c)| validate(p, c, &format!("{at}.routes[{i}]"), known))
        .collect();
    Route {
        matchers: raw.matchers.into_iter().collect(),
        match_re,
        level,
        receivers: raw.receivers,
        continue_: raw.continue_,
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str, known: &[&str]) -> Route {
        let raw: RawRoute = crate::parse_yaml(yaml).unwrap();
        let known: Vec<String> = known.iter().map(|s| s.to_string()).collect();
        let mut p = Problems::default();
        let r = validate(&mut p, raw, "route", &known);
        p.finish(|| r).unwrap()
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
    receivers: [dba]
",
            &["chat", "mail", "sms", "dba"],
        );
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        assert_eq!(r.receivers_for(&l(&[]), Level::Warning), vec!["chat"]);
        assert_eq!(
            r.receivers_for(&l(&[]), Level::Critical),
            vec!["chat", "mail"]
        );
        assert_eq!(
            r.receivers_for(&l(&[]), Level::Emergency),
            vec!["sms", "chat", "mail"]
        );
        assert_eq!(
            r.receivers_for(&l(&[("team", "db"), ("host", "db-1")]), Level::Warning),
            vec!["dba"]
        );
        assert_eq!(
            r.receivers_for(&l(&[("team", "db"), ("host", "web-1")]), Level::Warning),
            vec!["chat"]
        );
    }

    #[test]
    fn unknown_receivers_and_bad_regexes_are_reported() {
        let raw: RawRoute = crate::parse_yaml(
            "receivers: [nope]\nroutes:\n  - { match_re: { a: \"(\" }, level: fatal }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        validate(&mut p, raw, "route", &[]);
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
    }
}
