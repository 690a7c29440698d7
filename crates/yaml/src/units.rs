use std::path::PathBuf;
use std::time::Duration;

/// Parses `"30s"`, `"1h30m"`, `"500ms"`, `"7d"`, `"2w"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration, expected e.g. \"30s\"".into());
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration {s:?} ({e}), expected e.g. \"30s\", \"5m\", \"1h30m\"")
    })
}

pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses `"256MiB"`, `"10MB"`, `"512KiB"`, `"1GiB"` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}, expected e.g. \"256MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {s:?}, expected B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    Ok((n * mult as f64) as u64)
}

/// A secret as written in a file: a literal, `{env: NAME}` or `{file: PATH}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum RawSecret {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

impl RawSecret {
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            RawSecret::Literal(s) => Ok(Secret(s.clone())),
            RawSecret::Env { env } => std::env::var(env)
                .map(Secret)
                .map_err(|_| format!("environment variable {env} is not set")),
            RawSecret::File { file } => std::fs::read_to_string(file)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| format!("cannot read secret file {}: {e}", file.display())),
        }
    }
}

/// A resolved secret; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("ten")
            .unwrap_err()
            .contains("invalid duration \"ten\""));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1 parsec").is_err());
    }

    #[test]
    fn secrets_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(RawSecret::Env {
            env: "TOCSIN_SURELY_UNSET_VAR".into()
        }
        .resolve()
        .is_err());
    }
}
