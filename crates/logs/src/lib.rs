//! Log signals: follows the files of each configured source from one poll to the next, and
//! counts lines, pattern matches and severities into counters.
//!
//! - **Rotation**: a file is known by its device and inode, and kept open between polls, so a
//!   file renamed away (`app.log` → `app.log.1`) is read to its end before it is let go, and a
//!   new file at the old name is read from its start.
//! - **Truncation** (`copytruncate`, `> app.log`): a file shorter than what was read of it is
//!   read again from its start.
//! - **Restarts**: offsets and totals are checkpointed together (one JSON file, replaced
//!   atomically), so after a restart nothing is read twice and nothing written meanwhile is
//!   skipped; counters continue from their totals. A source the checkpoint does not know
//!   starts at the end of its files (or the beginning, by configuration).
//! - **Bounded**: at most `MAX_READ_PER_POLL` bytes per source per poll (the rest waits for the
//!   next poll and shows as lag), lines longer than `MAX_LINE` are cut, at most `MAX_OPEN`
//!   files per source. Patterns are matched within a line; a line is counted once per pattern.
//!
//! Only what the configuration names becomes a label; a line's text never does (severities
//! are mapped onto a fixed set).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tocsin_config::logs::LogSource;
use tocsin_sampling::Family;

/// Bytes read per source and poll at most.
pub const MAX_READ_PER_POLL: u64 = 64 << 20;
/// Longest line; a longer one is counted as lines of this length.
pub const MAX_LINE: usize = 64 << 10;
/// Files followed per source at most.
pub const MAX_OPEN: usize = 64;
const CHUNK: usize = 1 << 20;

/// The severities a line can be counted under.
const SEVERITIES: [&str; 9] = [
    "trace", "debug", "info", "notice", "warning", "error", "critical", "fatal", "other",
];

fn severity_of(s: &[u8]) -> &'static str {
    let s = String::from_utf8_lossy(s).to_ascii_lowercase();
    match s.as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "information" | "inf" => "info",
        "notice" => "notice",
        "warn" | "warning" | "wrn" => "warning",
        "error" | "err" | "erro" => "error",
        "crit" | "critical" => "critical",
        "fatal" | "panic" | "emerg" | "emergency" | "alert" => "fatal",
        _ => "other",
    }
}

/// Totals of one source, as checkpointed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub lines: u64,
    pub bytes: u64,
    pub matches: BTreeMap<String, u64>,
    pub severity: BTreeMap<String, u64>,
    pub truncations: u64,
    pub rotations: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Saved {
    id: FileId,
    offset: u64,
    path: PathBuf,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SavedSource {
    files: Vec<Saved>,
    totals: Totals,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    sources: BTreeMap<String, SavedSource>,
}

struct Followed {
    path: PathBuf,
    file: File,
    offset: u64,
}

struct Source {
    cfg: LogSource,
    files: HashMap<FileId, Followed>,
    /// Offsets restored from the checkpoint, claimed as their files are seen again.
    restored: HashMap<FileId, u64>,
    /// Whether this source has been read before (in this run or one checkpointed): a file it
    /// has not seen is then new, and read from its start.
    known: bool,
    totals: Totals,
    lag: u64,
    errors: u64,
    buf: Vec<u8>,
}

/// Every source's state, and where it is checkpointed.
pub struct Tailer {
    sources: Vec<Source>,
    state: PathBuf,
}

impl Tailer {
    /// Sources from the configuration, offsets and totals from `state` (if it exists; an
    /// unreadable checkpoint is logged and ignored: each source then starts afresh).
    pub fn new(cfg: Vec<LogSource>, state: PathBuf) -> Tailer {
        let mut saved: Checkpoint = match std::fs::read(&state) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %state.display(), error = %e, "log checkpoint unreadable; sources start afresh");
                Checkpoint::default()
            }),
            Err(_) => Checkpoint::default(),
        };
        let sources = cfg
            .into_iter()
            .map(|c| {
                let s = saved.sources.remove(&c.name);
                Source {
                    known: s.is_some(),
                    restored: s
                        .as_ref()
                        .map(|s| s.files.iter().map(|f| (f.id, f.offset)).collect())
                        .unwrap_or_default(),
                    totals: s.map(|s| s.totals).unwrap_or_default(),
                    cfg: c,
                    files: HashMap::new(),
                    lag: 0,
                    errors: 0,
                    buf: Vec::new(),
                }
            })
            .collect();
        Tailer { sources, state }
    }

    /// Reads what was appended since the last poll, then checkpoints.
    pub fn poll(&mut self) {
        for s in &mut self.sources {
            if let Err(e) = s.poll() {
                s.errors += 1;
                tracing::warn!(source = %s.cfg.name, error = %e, "log source unreadable");
            }
        }
        if self.sources.is_empty() {
            return;
        }
        if let Err(e) = self.save() {
            tracing::warn!(path = %self.state.display(), error = %e, "cannot checkpoint log offsets");
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let cp = Checkpoint {
            sources: self
                .sources
                .iter()
                .map(|s| {
                    let files = s
                        .files
                        .iter()
                        .map(|(id, f)| Saved {
                            id: *id,
                            offset: f.offset,
                            path: f.path.clone(),
                        })
                        .collect();
                    (
                        s.cfg.name.clone(),
                        SavedSource {
                            files,
                            totals: s.totals.clone(),
                        },
                    )
                })
                .collect(),
        };
        let tmp = self.state.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&cp).expect("serializes"))?;
        std::fs::rename(&tmp, &self.state)
    }

    /// The totals of source `name`.
    pub fn totals(&self, name: &str) -> Option<&Totals> {
        self.sources
            .iter()
            .find(|s| s.cfg.name == name)
            .map(|s| &s.totals)
    }

    /// The counters and gauges of every source, labelled `source` (and `pattern`, `severity`).
    pub fn families(&self) -> Vec<Family> {
        if self.sources.is_empty() {
            return Vec::new();
        }
        type Value = fn(&Source) -> f64;
        let per_source: [(Family, Value); 7] = [
            (
                Family::counter("tocsin_log_lines_total", "Lines read, per log source."),
                |s| s.totals.lines as f64,
            ),
            (
                Family::counter("tocsin_log_bytes_total", "Bytes read, per log source."),
                |s| s.totals.bytes as f64,
            ),
            (
                Family::gauge("tocsin_log_files", "Files followed, per log source."),
                |s| s.files.len() as f64,
            ),
            (
                Family::gauge(
                    "tocsin_log_lag_bytes",
                    "Bytes written but not read yet (beyond one poll's bound), per log source.",
                ),
                |s| s.lag as f64,
            ),
            (
                Family::counter(
                    "tocsin_log_truncations_total",
                    "Files found shorter than what was read of them (truncated), per log source.",
                ),
                |s| s.totals.truncations as f64,
            ),
            (
                Family::counter(
                    "tocsin_log_rotations_total",
                    "Files renamed away or deleted, read to their end and let go, per log source.",
                ),
                |s| s.totals.rotations as f64,
            ),
            (
                Family::counter(
                    "tocsin_log_read_errors_total",
                    "Polls of a log source that failed (directory or file unreadable).",
                ),
                |s| s.errors as f64,
            ),
        ];
        let mut out: Vec<Family> = per_source
            .into_iter()
            .map(|(mut f, value)| {
                for s in &self.sources {
                    f.push([("source", s.cfg.name.as_str())], value(s));
                }
                f
            })
            .collect();
        let mut matches = Family::counter(
            "tocsin_log_matches_total",
            "Lines matching each configured pattern, per log source.",
        );
        let mut sev = Family::counter(
            "tocsin_log_lines_by_severity_total",
            "Lines per severity parsed from them (fixed set; unknown ones as other).",
        );
        for s in &self.sources {
            let n = s.cfg.name.as_str();
            for (p, _) in &s.cfg.patterns {
                let v = s.totals.matches.get(p).copied().unwrap_or(0);
                matches.push([("source", n), ("pattern", p.as_str())], v as f64);
            }
            if s.cfg.severity.is_some() {
                for level in SEVERITIES {
                    let v = s.totals.severity.get(level).copied().unwrap_or(0);
                    sev.push([("source", n), ("severity", level)], v as f64);
                }
            }
        }
        out.push(matches);
        if !sev.samples.is_empty() {
            out.push(sev);
        }
        out
    }
}

impl Source {
    fn poll(&mut self) -> std::io::Result<()> {
        let mut seen: Vec<(FileId, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&self.cfg.dir)? {
            let e = e?;
            let ok = e
                .file_name()
                .to_str()
                .is_some_and(|n| self.cfg.file_pattern.is_match(n));
            if !ok {
                continue;
            }
            let Ok(md) = std::fs::metadata(e.path()) else {
                continue;
            };
            if md.is_file() {
                seen.push((
                    FileId {
                        dev: md.dev(),
                        ino: md.ino(),
                    },
                    e.path(),
                ));
            }
        }
        // Oldest name first is not knowable in general; files are read in name order, and a
        // file known before is read before new ones (its lines came first).
        seen.sort_by(|a, b| {
            let new = |id: &FileId| !self.files.contains_key(id);
            new(&a.0).cmp(&new(&b.0)).then(a.1.cmp(&b.1))
        });
        let mut budget = MAX_READ_PER_POLL;
        self.lag = 0;
        // Files gone from the listing (renamed away, deleted): read to their end, let go.
        let gone: Vec<FileId> = self
            .files
            .keys()
            .filter(|id| !seen.iter().any(|(s, _)| s == *id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut f) = self.files.remove(&id) {
                self.read(&mut f, &mut budget, true)?;
                self.totals.rotations += 1;
            }
        }
        for (id, path) in seen {
            if !self.files.contains_key(&id) {
                if self.files.len() >= MAX_OPEN {
                    tracing::warn!(source = %self.cfg.name, path = %path.display(), "too many files to follow; skipped");
                    continue;
                }
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let len = file.metadata()?.len();
                let offset = match self.restored.remove(&id) {
                    Some(o) => o,
                    None if !self.known && self.cfg.start_at_end => len,
                    None => 0,
                };
                self.files.insert(
                    id,
                    Followed {
                        path: path.clone(),
                        file,
                        offset,
                    },
                );
            }
            let mut f = self.files.remove(&id).expect("inserted");
            f.path = path;
            let r = self.read(&mut f, &mut budget, false);
            self.files.insert(id, f);
            r?;
        }
        self.restored.clear();
        self.known = true;
        Ok(())
    }

    /// Reads `f` from its offset to its end (or the budget), counting complete lines; `last`:
    /// the file is being let go, so an unterminated last line counts too.
    fn read(&mut self, f: &mut Followed, budget: &mut u64, last: bool) -> std::io::Result<()> {
        let len = f.file.metadata()?.len();
        if len < f.offset {
            self.totals.truncations += 1;
            f.offset = 0;
        }
        let mut remaining = len - f.offset;
        f.file.seek(SeekFrom::Start(f.offset))?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        while remaining > 0 && *budget > 0 {
            let want = (CHUNK as u64).min(remaining).min(*budget) as usize;
            let start = buf.len();
            buf.resize(start + want, 0);
            let n = f.file.read(&mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                break;
            }
            remaining -= n as u64;
            *budget -= n as u64;
            // Count the complete lines; keep an unterminated tail for the next chunk.
            let end = match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                None if buf.len() >= MAX_LINE => buf.len(),
                None => continue,
            };
            self.count(&buf[..end]);
            f.offset += end as u64;
            buf.drain(..end);
        }
        if last && !buf.is_empty() && remaining == 0 {
            f.offset += buf.len() as u64;
            buf.push(b'\n');
            self.count(&buf);
        }
        self.lag += len.saturating_sub(f.offset);
        buf.clear();
        self.buf = buf;
        Ok(())
    }

    /// Counts the complete lines of `chunk` (it ends with a newline, or is one long line).
    fn count(&mut self, chunk: &[u8]) {
        let t = &mut self.totals;
        t.bytes += chunk.len() as u64;
        let newlines = memchr::memchr_iter(b'\n', chunk).count() as u64;
        t.lines += newlines.max(1);
        for (name, re) in &self.cfg.patterns {
            let n = count_lines_matching(re, chunk);
            if n > 0 {
                *t.matches.entry(name.clone()).or_default() += n;
            }
        }
        if let Some(re) = &self.cfg.severity {
            let mut pos = 0;
            while pos < chunk.len() {
                let Some(c) = re.captures_at(chunk, pos) else {
                    break;
                };
                let whole = c.get(0).expect("group 0");
                let line_end = line_end(chunk, whole.start());
                let g = c.name("severity").or_else(|| c.get(1));
                if let Some(g) = g.filter(|g| !chunk[whole.start()..g.end()].contains(&b'\n')) {
                    *t.severity
                        .entry(severity_of(g.as_bytes()).to_string())
                        .or_default() += 1;
                }
                pos = line_end;
            }
        }
    }
}

/// The index just past the newline ending the line that holds `at` (or the chunk's end).
fn line_end(chunk: &[u8], at: usize) -> usize {
    memchr::memchr(b'\n', &chunk[at..]).map_or(chunk.len(), |i| at + i + 1)
}

/// Lines of `chunk` holding a match of `re`, each counted once. The search runs over the
/// whole chunk (fast where matches are rare); a match reaching across a newline is checked
/// again within its own line.
pub fn count_lines_matching(re: &regex::bytes::Regex, chunk: &[u8]) -> u64 {
    let mut n = 0;
    let mut pos = 0;
    while pos < chunk.len() {
        let Some(m) = re.find_at(chunk, pos) else {
            break;
        };
        let end = line_end(chunk, m.start());
        let spans = chunk[m.start()..m.end()].contains(&b'\n');
        if !spans || {
            let start = memchr::memrchr(b'\n', &chunk[..m.start()]).map_or(0, |i| i + 1);
            re.is_match(&chunk[start..end.saturating_sub(1).max(start)])
        } {
            n += 1;
        }
        pos = end;
    }
    n
}

/// Where the agent keeps the checkpoint.
pub fn checkpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join("log-offsets.json")
}

#[cfg(test)]
mod tests;
