//! The collector's command line (this file also makes `cargo test` build the real binary that
//! the end-to-end tests start).

use std::process::Command;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin-collector"))
}

#[test]
fn version_and_help() {
    let out = collector().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tocsin-collector "));
    let help = String::from_utf8(collector().arg("--help").output().unwrap().stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--rules",
        "check-rules",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn check_rules_accepts_shipped_rules() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let out = collector().args(["check-rules", rules]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn check_rules_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(
        &f,
        "rules:\n  - name: A\n    expr: up\n    levels: { warning: \"> 1\" }\n  - name: B\n    expr: up[\n    levels: { bad: \"> 1\" }\n",
    )
    .unwrap();
    let out = collector()
        .args(["check-rules", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = f.display();
    assert!(err.contains(&format!("{p}:6: rule \"B\": expr: column 3: a range selector needs a function around it, e.g. rate(metric[5m])")), "{err}");
    assert!(
        err.contains(&format!("{p}:7: rule \"B\": levels: unknown level \"bad\"")),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
}

#[test]
fn invalid_config_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "listen: nowhere\nretention: 5m\n").unwrap();
    let out = collector()
        .args(["--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen: invalid socket address syntax"),
        "{err}"
    );
    assert!(err.contains("retention: must be at least 1h"), "{err}");

    std::fs::write(&f, "listen: 127.0.0.1:0\nretension: 5d\n").unwrap();
    let out = collector()
        .args(["--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.yaml:2:1: unknown field `retension`"),
        "{err}"
    );
}
