//! Log sources of the agent's configuration: which files to follow and what to count in them.

use std::path::PathBuf;

use crate::Problems;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogSource {
    /// The `source` label.
    pub name: String,
    /// Files to follow: an absolute path whose file name may hold `*` and `?`
    /// (e.g. /var/log/app/*.log). Rotated files that still match are read to their end.
    pub path: String,
    /// Patterns counted per line into `tocsin_log_matches_total{source,pattern}`.
    #[serde(default)]
    pub patterns: Vec<RawLogPattern>,
    /// A regex whose `severity` group (or first group) takes a line's severity; counted into
    /// `tocsin_log_lines_by_severity_total` (known levels only, others as `other`).
    pub severity: Option<String>,
    /// Where a file is first read from when the agent has no record of the source: `end`
    /// (default: what was there before is not counted) or `beginning`.
    pub start_at: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogPattern {
    pub name: String,
    pub regex: String,
}

#[derive(Debug, Clone)]
pub struct LogSource {
    pub name: String,
    pub dir: PathBuf,
    pub file_pattern: regex::Regex,
    pub patterns: Vec<(String, regex::bytes::Regex)>,
    pub severity: Option<regex::bytes::Regex>,
    pub start_at_end: bool,
}

/// Log sources at most, and patterns per source: each is a series, and costs CPU per line.
pub const MAX_SOURCES: usize = 64;
pub const MAX_PATTERNS: usize = 32;

fn bytes_regex(s: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(s)
        .multi_line(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

pub(crate) fn validate(p: &mut Problems, raw: Vec<RawLogSource>) -> Vec<LogSource> {
    if raw.len() > MAX_SOURCES {
        p.push(format!(
            "logs: {} sources, at most {MAX_SOURCES}",
            raw.len()
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("logs[{i}] ({:?})", r.name);
        if !tocsin_model::is_valid_label_name(&r.name.replace('-', "_")) || r.name.is_empty() {
            p.push(format!("{at}: name must be letters, digits, _ or -"));
        }
        if !names.insert(r.name.clone()) {
            p.push(format!("{at}: duplicate source name"));
        }
        let glob = crate::probes::parse_glob(&r.path).map_err(|e| format!("{at}: path: {e}"));
        if r.patterns.is_empty() && r.severity.is_none() {
            p.push(format!("{at}: give patterns, severity or both"));
        }
        if r.patterns.len() > MAX_PATTERNS {
            p.push(format!(
                "{at}: {} patterns, at most {MAX_PATTERNS}",
                r.patterns.len()
            ));
        }
        let mut pnames = std::collections::BTreeSet::new();
        let mut patterns = Vec::new();
        for (j, pt) in r.patterns.iter().enumerate() {
            if pt.name.is_empty() || !pnames.insert(pt.name.clone()) {
                p.push(format!("{at}: patterns[{j}]: name missing or repeated"));
            }
            match bytes_regex(&pt.regex) {
                Ok(re) => patterns.push((pt.name.clone(), re)),
                Err(e) => p.push(format!(
                    "{at}: patterns[{j}] ({:?}): invalid regex: {e}",
                    pt.name
                )),
            }
        }
        let severity = r.severity.as_deref().and_then(|s| match bytes_regex(s) {
            Ok(re) if re.captures_len() > 1 => Some(re),
            Ok(_) => {
                p.push(format!(
                    "{at}: severity: the regex needs a group (e.g. (?P<severity>[A-Z]+))"
                ));
                None
            }
            Err(e) => {
                p.push(format!("{at}: severity: invalid regex: {e}"));
                None
            }
        });
        let start_at_end = match r.start_at.as_deref() {
            None | Some("end") => true,
            Some("beginning") => false,
            Some(o) => {
                p.push(format!("{at}: start_at {o:?} must be end or beginning"));
                true
            }
        };
        match glob {
            Ok((dir, file_pattern)) => out.push(LogSource {
                name: r.name,
                dir,
                file_pattern,
                patterns,
                severity,
                start_at_end,
            }),
            Err(e) => p.push(e),
        }
    }
    out
}
