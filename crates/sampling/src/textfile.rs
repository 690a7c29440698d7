//! The textfile source: every `*.prom` file of a directory, in Prometheus' text format, read each
//! cycle and shipped like any other series (node_exporter's textfile collector). A malformed
//! file is skipped whole and reported with `path:line`.

use std::collections::BTreeMap;
use std::path::Path;

use tocsin_model::{is_valid_label_name, is_valid_metric_name, Labels};

use crate::family::{Family, MetricKind};

/// The families read, and one message per file that could not be used.
#[derive(Debug, Default)]
pub struct TextfileOutput {
    pub families: Vec<Family>,
    pub errors: Vec<String>,
}

/// The most a textfile may hold; node_exporter's own files are a few KiB.
pub const MAX_TEXTFILE_BYTES: u64 = 4 << 20;

/// A textfile's text and modification time. Only a regular file is read, never through a
/// symbolic link (which could point anywhere), opened without blocking (a FIFO named `*.prom`
/// would hold the sampler forever) and at most `MAX_TEXTFILE_BYTES` of it.
fn read_regular(p: &Path) -> Result<(String, std::time::SystemTime), String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let fd = rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => "a symbolic link; not followed".to_string(),
        e => std::io::Error::from(e).to_string(),
    })?;
    let f = std::fs::File::from(fd);
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file; skipped".into());
    }
    if meta.len() > MAX_TEXTFILE_BYTES {
        return Err(format!(
            "{} bytes, over the limit of {MAX_TEXTFILE_BYTES}",
            meta.len()
        ));
    }
    let mut text = String::new();
    // Bounded even if the file grows while it is read.
    f.take(MAX_TEXTFILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let modified = meta.modified().map_err(|e| e.to_string())?;
    Ok((text, modified))
}

pub fn read_dir(dir: &Path) -> TextfileOutput {
    let mut out = TextfileOutput::default();
    let mut mtimes = Family::gauge(
        "node_textfile_mtime_seconds",
        "Unixtime mtime of textfiles successfully read.",
    );
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(format!("{}: {e}", dir.display()));
            out.families.push(scrape_error(1.0));
            return out;
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "prom"))
        .collect();
    paths.sort();
    let mut merged: BTreeMap<String, Family> = BTreeMap::new();
    for p in paths {
        let shown = p.display().to_string();
        let (text, modified) = match read_regular(&p) {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        match parse(&shown, &text) {
            Ok(fams) => {
                for f in fams {
                    match merged.get_mut(&f.name) {
                        Some(m) => m.samples.extend(f.samples),
                        None => {
                            merged.insert(f.name.clone(), f);
                        }
                    }
                }
                if let Ok(t) = modified.duration_since(std::time::UNIX_EPOCH) {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    mtimes.push([("file", name.as_str())], t.as_secs_f64());
                }
            }
            Err(e) => out.errors.push(e),
        }
    }
    out.families.extend(merged.into_values());
    out.families.push(mtimes);
    out.families
        .push(scrape_error(if out.errors.is_empty() { 0.0 } else { 1.0 }));
    out
}

fn scrape_error(v: f64) -> Family {
    Family::gauge(
        "node_textfile_scrape_error",
        "1 if there was an error opening or reading a file, 0 otherwise",
    )
    .with([], v)
}

/// Parses one file; `path` is used in messages.
pub fn parse(path: &str, text: &str) -> Result<Vec<Family>, String> {
    let mut fams: Vec<Family> = Vec::new();
    let mut meta: BTreeMap<String, (Option<String>, Option<MetricKind>)> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let err = |m: String| format!("{path}:{}: {m}", i + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut it = c.trim_start().splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("HELP"), Some(name), help) => {
                    meta.entry(name.to_string()).or_default().0 = Some(
                        help.unwrap_or("")
                            .replace("\\n", "\n")
                            .replace("\\\\", "\\"),
                    );
                }
                (Some("TYPE"), Some(name), Some(t)) => {
                    let kind = match t.trim() {
                        "counter" => MetricKind::Counter,
                        "gauge" => MetricKind::Gauge,
                        "untyped" => MetricKind::Untyped,
                        other => {
                            return Err(err(format!(
                                "type {other:?} is not supported here (counter, gauge, untyped)"
                            )))
                        }
                    };
                    meta.entry(name.to_string()).or_default().1 = Some(kind);
                }
                _ => {}
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line).map_err(err)?;
        match fams.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                if f.samples.iter().any(|(l, _)| *l == labels) {
                    return Err(err(format!("duplicate series {name}{labels}")));
                }
                f.samples.push((labels, value));
            }
            None => {
                let mut f = Family::new(name, "", MetricKind::Untyped);
                f.samples.push((labels, value));
                fams.push(f);
            }
        }
    }
    for f in &mut fams {
        let (help, kind) = meta.remove(&f.name).unwrap_or_default();
        f.help = help.unwrap_or_else(|| format!("Metric read from {path}"));
        f.kind = kind.unwrap_or(MetricKind::Untyped);
    }
    Ok(fams)
}

fn parse_sample(line: &str) -> Result<(String, Labels, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or_else(|| format!("expected `name value`, found {line:?}"))?;
    let name = &line[..name_end];
    if !is_valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    // The agent's and the collector's own series: a file must not stand in for them.
    if name.starts_with("tocsin_") {
        return Err(format!(
            "metric name {name:?} is reserved: tocsin_* series are tocsin's own"
        ));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("expected label=\"value\"")?;
            let lname = rest[..eq].trim();
            if !is_valid_label_name(lname) {
                return Err(format!("invalid label name {lname:?}"));
            }
            if lname.starts_with("__") {
                return Err(format!(
                    "label name {lname:?} is reserved: names starting with __ are internal"
                ));
            }
            rest = rest[eq + 1..].trim_start();
            rest = rest
                .strip_prefix('"')
                .ok_or_else(|| format!("label {lname}: value must be quoted"))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    // The format's three escapes, no others (as Prometheus reads it).
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, e @ ('"' | '\\'))) => value.push(e),
                        Some((_, e)) => {
                            return Err(format!("label {lname}: invalid escape sequence \\{e}"))
                        }
                        None => break,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("label {lname}: unterminated value"))?;
            rest = rest[end + 1..].trim_start();
            labels.push(tocsin_model::Label {
                name: lname.to_string(),
                value,
            });
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let v = fields.next().ok_or("missing value")?;
    let value = match v {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v.parse().map_err(|_| format!("invalid value {v:?}"))?,
    };
    if let Some(extra) = fields.nth(1) {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    // Empty label values mean "no label" in Prometheus.
    labels.retain(|l| !l.value.is_empty());
    let labels = Labels::from_vec(labels).map_err(|d| format!("duplicate label {d:?}"))?;
    Ok((name.to_string(), labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_format() {
        let t = "# HELP app_temp Temperature.\n# TYPE app_temp gauge\napp_temp{room=\"a b\",x=\"q\\\"\"} 21.5\napp_temp{room=\"c\"} -Inf 1700000000\nplain 3\n";
        let f = parse("t.prom", t).unwrap();
        assert_eq!(f[0].name, "app_temp");
        assert_eq!(f[0].kind, MetricKind::Gauge);
        assert_eq!(f[0].help, "Temperature.");
        assert_eq!(f[0].samples[0].0.get("x"), Some("q\""));
        assert_eq!(f[0].samples[1].1, f64::NEG_INFINITY);
        assert_eq!(f[1].help, "Metric read from t.prom");
    }

    #[test]
    fn only_regular_files_are_read_and_never_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.prom"), "ok_metric 1\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.prom"), "leaked 1\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.prom"), d.join("link.prom"))
            .unwrap();
        // A FIFO: opening it for reading used to block until a writer came.
        let status = std::process::Command::new("mkfifo")
            .arg(d.join("fifo.prom"))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(
            d.join("huge.prom"),
            "x 1\n".repeat((MAX_TEXTFILE_BYTES / 4 + 1) as usize),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let out = read_dir(d);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let names: Vec<&str> = out.families.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"ok_metric"), "{names:?}");
        assert!(
            !names.contains(&"leaked") && !names.contains(&"x"),
            "{names:?}"
        );
        let errors = out.errors.join("\n");
        for want in [
            "link.prom: a symbolic link; not followed",
            "fifo.prom: not a regular file; skipped",
            "huge.prom: 4194308 bytes, over the limit of 4194304",
        ] {
            assert!(errors.contains(want), "{want} not in {errors}");
        }
    }

    #[test]
    fn errors_have_lines() {
        let cases = [
            (
                "ok 1\nbad-name 2\n",
                "t.prom:2: invalid metric name \"bad-name\"",
            ),
            ("m{a=b} 1\n", "t.prom:1: label a: value must be quoted"),
            ("m{a=\"b\"}\n", "t.prom:1: missing value"),
            ("m 1\nm 2\n", "t.prom:2: duplicate series m{}"),
            ("m one\n", "t.prom:1: invalid value \"one\""),
            (
                "tocsin_slo_burn_condition{service=\"pay\"} 1\n",
                "t.prom:1: metric name \"tocsin_slo_burn_condition\" is reserved: tocsin_* series are tocsin's own",
            ),
            (
                "m{__meta=\"x\"} 1\n",
                "t.prom:1: label name \"__meta\" is reserved: names starting with __ are internal",
            ),
            (
                "m{a=\"\\xff\"} 1\n",
                "t.prom:1: label a: invalid escape sequence \\x",
            ),
            (
                "# TYPE m histogram\n",
                "t.prom:1: type \"histogram\" is not supported here (counter, gauge, untyped)",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse("t.prom", t).unwrap_err(), want, "{t}");
        }
    }

    #[test]
    fn dir_skips_bad_files_and_reports() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.prom"), "good 1\n").unwrap();
        std::fs::write(d.path().join("b.prom"), "bad{\n").unwrap();
        std::fs::write(d.path().join("c.txt"), "ignored 1\n").unwrap();
        let out = read_dir(d.path());
        assert_eq!(out.errors.len(), 1);
        assert!(out.families.iter().any(|f| f.name == "good"));
        assert!(!out.families.iter().any(|f| f.name == "ignored"));
        let err = out
            .families
            .iter()
            .find(|f| f.name == "node_textfile_scrape_error")
            .unwrap();
        assert_eq!(err.samples[0].1, 1.0);
    }
}
