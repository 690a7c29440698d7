use std::io::Write;

use super::*;

fn source(dir: &Path, glob: &str, start_at: &str) -> LogSource {
    let raw: tocsin_config::agent::RawAgentConfig = tocsin_config::parse_yaml(&format!(
        "logs:\n  - name: app\n    path: {}/{glob}\n    start_at: {start_at}\n    patterns:\n      - {{ name: error, regex: 'ERROR' }}\n      - {{ name: timeout, regex: 'timed out|timeout' }}\n    severity: '^\\S+ (?P<severity>[A-Za-z]+) '\n",
        dir.display()
    ))
    .unwrap();
    raw.validate().unwrap().logs.remove(0)
}

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn errors(t: &Tailer) -> u64 {
    t.totals("app")
        .unwrap()
        .matches
        .get("error")
        .copied()
        .unwrap_or(0)
}

#[test]
fn appended_lines_are_counted_once_across_rotation_truncation_and_restart() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("offsets.json");
    let logs = d.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let app = logs.join("app.log");
    append(&app, &["t1 ERROR before the agent started"]);
    let mut t = Tailer::new(vec![source(&logs, "app.log*", "end")], state.clone());
    t.poll();
    assert_eq!(errors(&t), 0, "what was there before is not counted");
    append(
        &app,
        &[
            "t2 ERROR one",
            "t3 INFO fine",
            "t4 WARN timed out, ERROR too",
        ],
    );
    t.poll();
    assert_eq!(errors(&t), 2);
    assert_eq!(t.totals("app").unwrap().matches["timeout"], 1);
    assert_eq!(t.totals("app").unwrap().lines, 3);
    // A line being written is not counted half.
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
        write!(f, "t5 ERROR half").unwrap();
    }
    t.poll();
    assert_eq!(errors(&t), 2);
    append(&app, &[" a line"]);
    t.poll();
    assert_eq!(errors(&t), 3);
    // Rotation by rename, more lines in the old file before the writer reopens, then the new.
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    append(&logs.join("app.log.1"), &["t6 ERROR late in the old file"]);
    append(&app, &["t7 ERROR first in the new file"]);
    t.poll();
    assert_eq!(errors(&t), 5);
    // The rotated file leaves the pattern (compressed away): its last lines still count.
    append(&logs.join("app.log.1"), &["t8 ERROR very last"]);
    std::fs::rename(logs.join("app.log.1"), d.path().join("app.log.1.gz")).unwrap();
    t.poll();
    assert_eq!(errors(&t), 6);
    assert_eq!(t.totals("app").unwrap().rotations, 1);
    // Truncation (copytruncate): read again from the start.
    std::fs::write(&app, "").unwrap();
    append(&app, &["t9 ERROR after truncation"]);
    t.poll();
    assert_eq!(errors(&t), 7);
    assert_eq!(t.totals("app").unwrap().truncations, 1);
    // A restart: lines written meanwhile are read, none twice.
    drop(t);
    append(&app, &["t10 ERROR while the agent was down"]);
    let mut t = Tailer::new(vec![source(&logs, "app.log*", "end")], state.clone());
    t.poll();
    assert_eq!(errors(&t), 8);
    t.poll();
    assert_eq!(errors(&t), 8);
    let sev = &t.totals("app").unwrap().severity;
    assert_eq!(sev["error"], 7, "{sev:?}"); // t4 is a warning that mentions ERROR
    assert_eq!(sev["info"], 1);
    assert_eq!(sev["warning"], 1);
}

#[test]
fn a_new_source_can_start_at_the_beginning_and_families_carry_only_configured_labels() {
    let d = tempfile::tempdir().unwrap();
    append(
        &d.path().join("x.log"),
        &["a FATAL boom", "b ERROR x", "c zzz ERROR"],
    );
    let mut t = Tailer::new(
        vec![source(d.path(), "*.log", "beginning")],
        d.path().join("o.json"),
    );
    t.poll();
    assert_eq!(errors(&t), 2);
    let fams = t.families();
    let sev = fams
        .iter()
        .find(|f| f.name == "tocsin_log_lines_by_severity_total")
        .unwrap();
    // A fixed set of severities, whatever the lines say.
    assert_eq!(sev.samples.len(), SEVERITIES.len());
    let fatal = sev
        .samples
        .iter()
        .find(|(l, _)| l.get("severity") == Some("fatal"))
        .unwrap();
    assert_eq!(fatal.1, 1.0);
    let other = sev
        .samples
        .iter()
        .find(|(l, _)| l.get("severity") == Some("other"))
        .unwrap();
    assert_eq!(other.1, 1.0, "zzz is no severity");
}

#[test]
fn matches_are_counted_per_line() {
    let re = regex::bytes::RegexBuilder::new("ERROR")
        .multi_line(true)
        .build()
        .unwrap();
    assert_eq!(count_lines_matching(&re, b"ERROR ERROR\nok\nERROR\n"), 2);
    let spanning = regex::bytes::RegexBuilder::new(r"a\s+b")
        .multi_line(true)
        .build()
        .unwrap();
    assert_eq!(
        count_lines_matching(&spanning, b"xa\nb\na b\n"),
        1,
        "within a line only"
    );
    let anchored = regex::bytes::RegexBuilder::new("^E")
        .multi_line(true)
        .build()
        .unwrap();
    assert_eq!(count_lines_matching(&anchored, b"E1\nxE\nE2\n"), 2);
}
