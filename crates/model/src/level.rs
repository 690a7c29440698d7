use std::fmt;
use std::str::FromStr;

/// Severity tiers of an alert, ordered: `Warning < Critical < Emergency`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Critical,
    Emergency,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Warning, Level::Critical, Level::Emergency];

    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::Emergency => "emergency",
        }
    }

    /// Position in `ALL`, handy for per-level arrays.
    pub const fn index(self) -> usize {
        match self {
            Level::Warning => 0,
            Level::Critical => 1,
            Level::Emergency => 2,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLevelError(pub String);

impl fmt::Display for ParseLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown level {:?}, expected one of warning, critical, emergency",
            self.0
        )
    }
}

impl std::error::Error for ParseLevelError {}

impl FromStr for Level {
    type Err = ParseLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "warning" => Ok(Level::Warning),
            "critical" => Ok(Level::Critical),
            "emergency" => Ok(Level::Emergency),
            other => Err(ParseLevelError(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_and_round_trips() {
        assert!(Level::Warning < Level::Critical && Level::Critical < Level::Emergency);
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>().unwrap(), l);
            assert_eq!(Level::ALL[l.index()], l);
        }
        assert!("fatal".parse::<Level>().is_err());
    }
}
