//! Escalation policies: who hears of an unacknowledged alert, and when.

use std::time::Duration;

use crate::{parse_duration, Problems};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    /// In order; each step's `after` counts from when the alert fired (or rose a level).
    pub steps: Vec<RawStep>,
    /// Keep notifying the last step's receivers until somebody acknowledges.
    pub repeat_last: Option<RawRepeat>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// e.g. `0s`, `10m`.
    pub after: String,
    pub receivers: Vec<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepeat {
    pub every: String,
    /// Most repeats (default 0: until acknowledged or resolved).
    #[serde(default)]
    pub times: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub after: Duration,
    pub receivers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub steps: Vec<Step>,
    /// (every, times; 0 = no limit).
    pub repeat_last: Option<(Duration, u32)>,
}

pub(crate) fn validate(p: &mut Problems, raw: Vec<RawPolicy>, known: &[String]) -> Vec<Policy> {
    let mut out: Vec<Policy> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("escalation_policies[{i}] ({:?})", r.name);
        if out.iter().any(|o| o.name == r.name) {
            p.push(format!("{at}: duplicate policy name"));
        }
        if r.steps.is_empty() {
            p.push(format!("{at}: needs at least one step"));
        }
        let mut steps = Vec::new();
        let mut last = Duration::ZERO;
        for (j, s) in r.steps.into_iter().enumerate() {
            let field = format!("{at}.steps[{j}]");
            let after = p
                .take(&format!("{field}.after"), parse_duration(&s.after))
                .unwrap_or_default();
            if after < last {
                p.push(format!(
                    "{field}.after: steps must come in order, {} is before the previous step",
                    s.after
                ));
            }
            last = after;
            if s.receivers.is_empty() {
                p.push(format!("{field}.receivers: name at least one receiver"));
            }
            for name in &s.receivers {
                if !known.contains(name) {
                    p.push(format!("{field}.receivers: no receiver named {name:?}"));
                }
            }
            steps.push(Step {
                after,
                receivers: s.receivers,
            });
        }
        let repeat_last = r.repeat_last.and_then(|rep| {
            let every = p.take(
                &format!("{at}.repeat_last.every"),
                parse_duration(&rep.every),
            )?;
            if every < Duration::from_secs(1) {
                p.push(format!("{at}.repeat_last.every: must be at least 1s"));
                return None;
            }
            Some((every, rep.times))
        });
        out.push(Policy {
            name: r.name,
            steps,
            repeat_last,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked() {
        let raw: Vec<RawPolicy> = crate::parse_yaml(
            "- name: oncall
  steps:
    - { after: 0s, receivers: [chat] }
    - { after: 10m, receivers: [lead] }
    - { after: 5m, receivers: [boss] }
  repeat_last: { every: 0s }
- name: oncall
  steps: []
",
        )
        .unwrap();
        let mut p = Problems::default();
        validate(&mut p, raw, &["chat".into(), "lead".into()]);
        let e = p.finish(|| ()).unwrap_err().to_string();
        for want in [
            "escalation_policies[0] (\"oncall\").steps[2].after: steps must come in order",
            "steps[2].receivers: no receiver named \"boss\"",
            "repeat_last.every: must be at least 1s",
            "escalation_policies[1] (\"oncall\"): duplicate policy name",
            "escalation_policies[1] (\"oncall\"): needs at least one step",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }
}
