//! Inhibition: while a source alert fires, notifications of target alerts that share the
//! `equal` labels are not sent (e.g. a host that is down does not also page for its disks).

use std::collections::BTreeMap;

use crate::Problems;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInhibitRule {
    /// Labels the firing source alert must have.
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    /// Labels the target alert must have (default: any alert).
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    /// Regexes on the target's labels.
    #[serde(default)]
    pub target_match_re: BTreeMap<String, String>,
    /// Labels source and target must share, e.g. [host].
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub source_match: Vec<(String, String)>,
    pub target_match: Vec<(String, String)>,
    pub target_match_re: Vec<(String, regex::Regex)>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The `alertname` its source must have, if it names one: sources are then looked up by
    /// name rather than among every firing alert.
    pub fn source_name(&self) -> Option<&str> {
        self.source_match
            .iter()
            .find(|(k, _)| k == "alertname")
            .map(|(_, v)| v.as_str())
    }

    /// The shipped default: `HostDown` inhibits every other alert of the same host.
    pub fn host_down() -> Self {
        InhibitRule {
            source_match: vec![("alertname".into(), "HostDown".into())],
            target_match: Vec::new(),
            target_match_re: Vec::new(),
            equal: vec!["host".into()],
        }
    }
}

pub(crate) fn validate(p: &mut Problems, raw: Option<Vec<RawInhibitRule>>) -> Vec<InhibitRule> {
    let Some(raw) = raw else {
        return vec![InhibitRule::host_down()];
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            if r.source_match.is_empty() {
                p.push(format!(
                    "inhibit_rules[{i}]: source_match must name at least one label"
                ));
            }
            let mut target_match_re = Vec::new();
            for (k, v) in r.target_match_re {
                if let Some(re) = p.take(
                    &format!("inhibit_rules[{i}].target_match_re.{k}"),
                    regex::Regex::new(&format!("^(?:{v})$")),
                ) {
                    target_match_re.push((k, re));
                }
            }
            InhibitRule {
                source_match: r.source_match.into_iter().collect(),
                target_match: r.target_match.into_iter().collect(),
                target_match_re,
                equal: r.equal,
            }
        })
        .collect()
}
