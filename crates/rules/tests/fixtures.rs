//! Rule-file fixtures: every `*.good.yaml` must load; every `*.bad.yaml` must fail with exactly
//! the messages in the table below. The shipped `rules/` must load too.

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(path: &Path) -> Result<Vec<tocsin_rules::Rule>, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = format!("fixtures/{}", path.file_name().unwrap().to_string_lossy());
    tocsin_rules::parse_file(&name, &text)
}

const BAD: &[(&str, &[&str])] = &[
    (
        "syntax.bad.yaml",
        &["fixtures/syntax.bad.yaml:5:1: did not find expected ',' or '}', while parsing a flow mapping"],
    ),
    (
        "unknown_field.bad.yaml",
        &["fixtures/unknown_field.bad.yaml:4:5: rules[0]: unknown field `levles`, expected one of `name`, `expr`, `for`, `for_runs`, `flapping`, `dynamic`, `levels`, `labels`, `annotations`, `remediation`"],
    ),
    (
        "dynamic.bad.yaml",
        &[
            "fixtures/dynamic.bad.yaml:4: rule \"Bad\": dynamic.sensitivity \"extreme\" must be low, medium or high",
            "fixtures/dynamic.bad.yaml:8: rule \"Bad2\": dynamic.direction \"sideways\" must be up, down or both",
        ],
    ),
    (
        "remediation.bad.yaml",
        &[
            "fixtures/remediation.bad.yaml:5: rule \"LabelOnly\": remediation.params.unit: a value from a label needs the values it may take, `{label: service, values: [...]}`, or a value fixed here, `{value: ...}`: labels are what agents send",
            "fixtures/remediation.bad.yaml:11: rule \"LabelWithoutValues\": remediation.params.unit: `label` needs `values`, the list the label's value must be in",
            "fixtures/remediation.bad.yaml:17: rule \"Both\": remediation.params.unit: give either `value`, `label` with `values`, or `scale`",
        ],
    ),
    (
        "nolevels.bad.yaml",
        &["fixtures/nolevels.bad.yaml:4: rule \"NoLevels\": levels: at least one of warning, critical, emergency is required"],
    ),
    (
        "semantic.bad.yaml",
        &[
            "fixtures/semantic.bad.yaml:8: rule \"BadExpr\": expr: column 8: expected '[', found \")\"",
            "fixtures/semantic.bad.yaml:14: rule \"BadLevels\": for: invalid duration \"soon\" (expected number at 0), expected e.g. \"30s\", \"5m\", \"1h30m\"",
            "fixtures/semantic.bad.yaml:18: rule \"BadLevels\": levels: unknown level \"fatal\", expected one of warning, critical, emergency",
            "fixtures/semantic.bad.yaml:15: rule \"BadLevels\": levels: critical (> 80) must be beyond warning (> 90)",
            "fixtures/semantic.bad.yaml:24: rule \"BadRecovery\": levels.critical: expected a condition such as \"> 90\", found a bare number",
            "fixtures/semantic.bad.yaml:23: rule \"BadRecovery\": levels.warning: recover \"< 85\" must be on the safe side of when \"> 80\" (e.g. when \"> 90\", recover \"< 85\")",
            "fixtures/semantic.bad.yaml:26: rule \"Ok\": duplicate rule name (first defined as rule 1)",
            "fixtures/semantic.bad.yaml:31: rule \"Ok\": labels: \"alertname\" is set by tocsin and cannot be overridden",
            "fixtures/semantic.bad.yaml:33: rule \"Ok\": annotations.summary: invalid template: unexpected end of input, expected end of variable block",
        ],
    ),
];

#[test]
fn good_fixtures_load() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".good.yaml") {
            load(&p).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn bad_fixtures_fail_with_exact_messages() {
    let mut covered = 0;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".bad.yaml") {
            continue;
        }
        let want = BAD
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} has no expected messages in the table"))
            .1;
        let got = load(&p).expect_err(&name);
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{name}: got\n{}", got.join("\n"));
        covered += 1;
    }
    assert_eq!(covered, BAD.len());
}

#[test]
fn shipped_rules_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut all = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let rules = tocsin_rules::parse_file(&p.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{}", e.join("\n")));
            all.extend(rules);
        }
    }
    assert!(all.len() >= 8);
    tocsin_rules::check_unique(&all).unwrap();
}

/// `HostFilesystemReadOnly` is for a disk filesystem the kernel remounted read-only (I/O
/// errors, a journal abort). Memory-backed and image filesystems mounted read-only by design
/// (a read-only tmpfs bind, a squashfs snap) are not it.
#[test]
fn shipped_read_only_rule_leaves_filesystems_read_only_by_design_alone() {
    use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
    use tocsin_rules::{Engine, EngineOptions, TransitionKind};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/host.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules: Vec<_> = tocsin_rules::parse_file("host.yaml", &text)
        .unwrap()
        .into_iter()
        .filter(|r| r.name == "HostFilesystemReadOnly")
        .collect();
    assert_eq!(rules.len(), 1);
    let mut e = Engine::new(rules, EngineOptions::default());
    let fs = |fstype: &str, t: i64| SeriesSamples {
        labels: Labels::from_pairs([
            (METRIC_NAME, "node_filesystem_readonly"),
            ("host", "web1"),
            ("fstype", fstype),
            ("mountpoint", &format!("/mnt/{fstype}")),
        ]),
        samples: vec![Sample::new(t, 1.0)],
    };
    let kinds = ["ext4", "xfs", "tmpfs", "ramfs", "squashfs", "overlay"];
    let t0 = 1_700_000_000_000;
    let mut fired = Vec::new();
    for i in 0..20 {
        let t = t0 + i * 10_000;
        let batch: Vec<_> = kinds.iter().map(|k| fs(k, t)).collect();
        for tr in e.ingest(&batch, t) {
            if tr.kind == TransitionKind::Firing {
                fired.push(tr.labels.get("fstype").unwrap().to_string());
            }
        }
    }
    fired.sort();
    assert_eq!(fired, ["ext4", "xfs"]);
}
