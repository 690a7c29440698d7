//! File probe: the files matching a pattern, judged by the newest one's age and size (backup
//! freshness against a recovery point objective). Reads directory entries and metadata only,
//! never contents.

use std::time::SystemTime;

use tocsin_config::probes::FileProbe;
use tocsin_sampling::Family;

use crate::{gauge, Failure, Reason};

/// What the directory holds that matches: (count, newest (age s, size), oldest age s, total).
#[derive(Debug, Default, PartialEq)]
struct Found {
    count: u32,
    newest: Option<(f64, u64)>,
    oldest_age: Option<f64>,
    total: u64,
}

fn scan(spec: &FileProbe, now: SystemTime) -> std::io::Result<Found> {
    let mut f = Found::default();
    for e in std::fs::read_dir(&spec.dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !spec.pattern.is_match(&name) {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        if !md.is_file() {
            continue;
        }
        let age = md
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        f.count += 1;
        f.total += md.len();
        if f.newest.is_none_or(|(a, _)| age < a) {
            f.newest = Some((age, md.len()));
        }
        f.oldest_age = Some(f.oldest_age.map_or(age, |o: f64| o.max(age)));
    }
    Ok(f)
}

fn judge(spec: &FileProbe, f: &Found, out: &mut Vec<Family>) -> Result<(), Failure> {
    out.push(gauge(
        "probe_file_count",
        "Files matching the probe's pattern.",
        f64::from(f.count),
    ));
    out.push(gauge(
        "probe_file_total_size_bytes",
        "Total size of the matching files.",
        f.total as f64,
    ));
    if let Some((age, size)) = f.newest {
        out.push(gauge(
            "probe_file_newest_age_seconds",
            "Seconds since the newest matching file was modified.",
            age,
        ));
        out.push(gauge(
            "probe_file_newest_size_bytes",
            "Size of the newest matching file.",
            size as f64,
        ));
    }
    if let Some(o) = f.oldest_age {
        out.push(gauge(
            "probe_file_oldest_age_seconds",
            "Seconds since the oldest matching file was modified.",
            o,
        ));
    }
    let what = format!("{}/{}", spec.dir.display(), spec.pattern.as_str());
    if f.count < spec.min_count {
        return Err(Failure::new(
            Reason::Missing,
            format!(
                "{} file(s) match {what}, expected at least {}",
                f.count, spec.min_count
            ),
        ));
    }
    if let (Some((age, _)), Some(max)) = (f.newest, spec.max_age) {
        if age > max.as_secs_f64() {
            return Err(Failure::new(
                Reason::Expect,
                format!(
                    "newest file is {age:.0} s old, more than {} s",
                    max.as_secs()
                ),
            ));
        }
    }
    if let (Some((_, size)), Some(min)) = (f.newest, spec.min_size) {
        if size < min {
            return Err(Failure::new(
                Reason::Expect,
                format!("newest file is {size} bytes, less than {min}"),
            ));
        }
    }
    Ok(())
}

pub(crate) async fn run(spec: &FileProbe, out: &mut Vec<Family>) -> Result<(), Failure> {
    let s = spec.clone();
    let found = tokio::task::spawn_blocking(move || scan(&s, SystemTime::now()))
        .await
        .map_err(|e| Failure::new(Reason::Error, format!("file scan failed: {e}")))?;
    match found {
        Ok(f) => judge(spec, &f, out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            Reason::Missing,
            format!("directory {} does not exist", spec.dir.display()),
        )),
        Err(e) => Err(Failure::new(
            Reason::Error,
            format!("cannot read {}: {e}", spec.dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(dir: &std::path::Path, pattern: &str) -> FileProbe {
        let (dir, pattern) =
            tocsin_config::probes::parse_glob(&format!("{}/{pattern}", dir.display())).unwrap();
        FileProbe {
            dir,
            pattern,
            max_age: Some(Duration::from_secs(26 * 3600)),
            min_size: Some(10),
            min_count: 1,
        }
    }

    #[test]
    fn the_newest_backup_is_judged_by_age_and_size() {
        let d = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let put = |name: &str, bytes: usize, age_h: u64| {
            let p = d.path().join(name);
            std::fs::write(&p, vec![0u8; bytes]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(now - Duration::from_secs(age_h * 3600))
                .unwrap();
        };
        let s = spec(d.path(), "db-*.dump");
        let f = scan(&s, now).unwrap();
        assert_eq!(f.count, 0);
        let mut out = Vec::new();
        assert_eq!(judge(&s, &f, &mut out).unwrap_err().reason, Reason::Missing);
        put("db-1.dump", 100, 50);
        put("db-2.dump", 100, 30);
        put("other.txt", 5, 1);
        let f = scan(&s, now).unwrap();
        assert_eq!((f.count, f.total), (2, 200));
        let (age, size) = f.newest.unwrap();
        assert!((age - 30.0 * 3600.0).abs() < 2.0 && size == 100, "{age}");
        let e = judge(&s, &f, &mut out).unwrap_err();
        assert_eq!(e.reason, Reason::Expect);
        assert!(e.message.contains("old"), "{}", e.message);
        put("db-3.dump", 5, 1);
        let e = judge(&s, &scan(&s, now).unwrap(), &mut Vec::new()).unwrap_err();
        assert!(e.message.contains("5 bytes"), "{}", e.message);
        put("db-4.dump", 500, 0);
        let mut out = Vec::new();
        judge(&s, &scan(&s, now).unwrap(), &mut out).unwrap();
        let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "probe_file_count",
                "probe_file_total_size_bytes",
                "probe_file_newest_age_seconds",
                "probe_file_newest_size_bytes",
                "probe_file_oldest_age_seconds"
            ]
        );
    }

    #[test]
    fn wildcards_only_in_the_file_name() {
        assert!(tocsin_config::probes::parse_glob("/backup/*/x.dump").is_err());
        assert!(tocsin_config::probes::parse_glob("backup/x.dump").is_err());
        let (dir, re) = tocsin_config::probes::parse_glob("/backup/db/full-?.tar.gz").unwrap();
        assert_eq!(dir, std::path::Path::new("/backup/db"));
        assert!(re.is_match("full-1.tar.gz") && !re.is_match("full-12.tar.gz"));
        assert!(!re.is_match("full-1xtarxgz"), "dots are literal");
    }
}
