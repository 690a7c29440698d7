//! The files operators write: YAML read with `path:line:col` errors, and the value types
//! configuration and rule files share — durations (`5m`), sizes (`256MiB`), secrets (given
//! inline, from the environment or a file; never printed). Small on purpose: the rule engine
//! uses it without the configuration schema.

mod locate;
mod units;

pub use locate::{problem_path, Locator, Seg};

pub use units::{format_duration, parse_duration, parse_size, RawSecret, Secret};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every problem found in one configuration, each a full sentence; `path` when from a file,
/// and per problem its line there when known (`ConfigError::locate`).
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub problems: Vec<String>,
    pub lines: Vec<Option<usize>>,
}

impl ConfigError {
    pub fn new(path: Option<PathBuf>, problems: Vec<String>) -> Self {
        ConfigError {
            path,
            problems,
            lines: Vec::new(),
        }
    }

    /// The problems are of the file at `path` (read again to find their lines; when it no
    /// longer reads, they are given without).
    pub fn of_file(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.locate(path, &text),
            Err(_) => self.path = Some(path.to_path_buf()),
        }
    }

    /// The problems are of the file at `path`, whose `text` it holds: each gets the line of the
    /// path it names (`receivers[0] ("hook"): webhook.url …` → the `url` of the first
    /// receiver), where the file writes it.
    pub fn locate(&mut self, path: &Path, text: &str) {
        let loc = Locator::new(text);
        self.lines = self
            .problems
            .iter()
            .map(|p| loc.line(&problem_path(p)))
            .collect();
        self.path = Some(path.to_path_buf());
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (&self.path, self.lines.get(i).copied().flatten()) {
                (Some(path), Some(line)) => write!(f, "{}:{line}: {p}", path.display())?,
                (Some(path), None) => write!(f, "{}: {p}", path.display())?,
                (None, _) => write!(f, "{p}")?,
            }
        }
        Ok(())
    }
}

/// Reads and deserializes a YAML file; syntax and unknown-field errors carry `path:line:col`.
pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(Some(path.to_path_buf()), vec![format!("cannot read: {e}")])
    })?;
    parse_yaml(&text)
        .map_err(|problem| ConfigError::new(None, vec![format!("{}:{problem}", path.display())]))
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

    /// As `duration`, and at least `min`: a zero period would spin a loop, a zero timeout or
    /// lifetime refuse or expire everything at once.
    pub fn duration_min(
        &mut self,
        field: &str,
        v: Option<&str>,
        default: &str,
        min: Duration,
    ) -> Duration {
        match self.take(field, parse_duration(v.unwrap_or(default))) {
            Some(d) if d < min => {
                self.0.push(format!(
                    "{field}: {} is below the minimum of {}",
                    format_duration(d),
                    format_duration(min)
                ));
                min
            }
            Some(d) => d,
            None => min,
        }
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
            Err(ConfigError::new(None, self.0))
        }
    }
}
