//! Silences: label matchers that mute notifications between two times. Alerts keep being
//! evaluated and recorded while silenced; only delivery is skipped.

use serde::{Deserialize, Serialize};
use tocsin_model::{Labels, TimestampMs};

/// One matcher as the API takes it (Alertmanager's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatcherSpec {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "isRegex")]
    pub is_regex: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    Eq(String, String),
    Re(String, regex::Regex),
}

#[derive(Debug, Clone)]
pub struct Silence {
    pub id: i64,
    pub starts_ms: TimestampMs,
    pub ends_ms: TimestampMs,
    matchers: Vec<Matcher>,
}

impl Silence {
    /// Builds from the stored JSON matchers; an error names the bad matcher.
    pub fn new(
        id: i64,
        matchers_json: &str,
        starts_ms: TimestampMs,
        ends_ms: TimestampMs,
    ) -> Result<Self, String> {
        let specs: Vec<MatcherSpec> =
            serde_json::from_str(matchers_json).map_err(|e| format!("matchers: {e}"))?;
        Ok(Silence {
            id,
            starts_ms,
            ends_ms,
            matchers: compile(&specs)?,
        })
    }

    pub fn active(&self, now: TimestampMs) -> bool {
        (self.starts_ms..self.ends_ms).contains(&now)
    }

    pub fn matches(&self, labels: &Labels, now: TimestampMs) -> bool {
        self.active(now)
            && self.matchers.iter().all(|m| match m {
                Matcher::Eq(n, v) => labels.get(n) == Some(v.as_str()),
                Matcher::Re(n, re) => re.is_match(labels.get(n).unwrap_or("")),
            })
    }
}

/// Checks matchers as the API receives them.
pub fn validate(specs: &[MatcherSpec]) -> Result<(), String> {
    compile(specs).map(drop)
}

/// At least one matcher, valid names, anchored regexes.
fn compile(specs: &[MatcherSpec]) -> Result<Vec<Matcher>, String> {
    if specs.is_empty() {
        return Err("a silence needs at least one matcher".into());
    }
    specs
        .iter()
        .map(|m| {
            if !tocsin_model::is_valid_label_name(&m.name) {
                return Err(format!("invalid label name {:?}", m.name));
            }
            if m.is_regex {
                regex::Regex::new(&format!("^(?:{})$", m.value))
                    .map(|re| Matcher::Re(m.name.clone(), re))
                    .map_err(|e| format!("matcher {}: invalid regex: {e}", m.name))
            } else {
                Ok(Matcher::Eq(m.name.clone(), m.value.clone()))
            }
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
        assert!(Silence::new(2, "[]", 0, 1).is_err());
        assert!(
            Silence::new(3, r#"[{"name":"a","value":"(","isRegex":true}]"#, 0, 1)
                .unwrap_err()
                .contains("invalid regex")
        );
    }
}
