//! The files operators write: YAML read with `path:line:col` errors, and the value types
//! configuration and rule files share — durations (`5m`), sizes (`256MiB`), secrets (given
//! inline, from the environment or a file; never printed). Small on purpose: the rule engine
//! uses it without the configuration schema.

mod units;

pub use units::{format_duration, parse_duration, parse_size, RawSecret, Secret};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every problem found in one configuration, each a full sentence; `path` when from a file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self
            .path
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{prefix}{p}")?;
        }
        Ok(())
    }
}

/// Reads and deserializes a YAML file; syntax and unknown-field errors carry `path:line:col`.
pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: Some(path.to_path_buf()),
        problems: vec![format!("cannot read: {e}")],
    })?;
    parse_yaml(&text).map_err(|problem| ConfigError {
        path: None,
        problems: vec![format!("{}:{problem}", path.display())],
    })
}

/// Reads `path` when given, else the defaults of `T`.
pub fn read_yaml_or_default<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigError> {
    path.map(read_yaml).unwrap_or_else(|| Ok(T::default()))
}

/// Deserializes YAML text; the error starts with `line:col: ` when the parser knows the place.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    // An empty file means "all defaults", as an empty mapping would.
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_yaml_ng::from_str(text).map_err(|e| yaml_error_message(&e))
}

/// `line:col: message` with the location suffix serde_yaml adds removed.
pub fn yaml_error_message(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) => format!("{}:{}: {}", loc.line(), loc.column(), strip_location(&msg)),
        None => msg,
    }
}

/// Removes every ` at line N column M` the YAML parser writes into its messages.
fn strip_location(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let tail = tail.trim_start_matches(|c: char| c.is_ascii_digit());
        rest = match tail.strip_prefix(" column ") {
            Some(t) => t.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => tail,
        };
    }
    out.push_str(rest);
    out
}

/// Collects problems while validating, then yields the value or every problem at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, p: impl Into<String>) {
        self.0.push(p.into());
    }

    /// Records an error of `r` under `field` and returns its value if any.
    pub fn take<T, E: std::fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(format!("{field}: {e}"));
                None
            }
        }
    }

    /// The duration in `v` (or `default`), with an error recorded under `field` if invalid.
    pub fn duration(&mut self, field: &str, v: Option<&str>, default: &str) -> Duration {
        self.take(field, parse_duration(v.unwrap_or(default)))
            .unwrap_or_default()
    }

    /// The size in `v` (e.g. `"256MiB"`, or `default`), with an error recorded if invalid.
    pub fn size(&mut self, field: &str, v: Option<&str>, default: &str) -> u64 {
        self.take(field, parse_size(v.unwrap_or(default)))
            .unwrap_or_default()
    }

    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ConfigError {
                path: None,
                problems: self.0,
            })
        }
    }
}
