//! The agent's command line (this file also makes `cargo test` build the real binary that the
//! end-to-end tests start).

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin-agent"))
}

#[test]
fn version_and_help() {
    let out = agent().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tocsin-agent "));
    let help = String::from_utf8(agent().arg("--help").output().unwrap().stdout).unwrap();
    for flag in [
        "--config",
        "--collector",
        "--listen",
        "--interval",
        "--textfile-dir",
        "--host",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn invalid_flags_are_refused_with_every_problem() {
    let out = agent()
        .args([
            "--interval",
            "100ms",
            "--collector",
            "ftp://x",
            "--listen",
            "nowhere",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interval: 100ms is below the minimum of 1s"),
        "{err}"
    );
    assert!(
        err.contains("collector.url: \"ftp://x\" must be http(s)"),
        "{err}"
    );
    assert!(
        err.contains("listen: invalid socket address syntax"),
        "{err}"
    );
}

/// `check-config` finds every problem a start would stop on, with its line, and passes a
/// valid configuration with what it found — starting nothing.
#[test]
fn check_config_reports_every_problem_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("agent.yaml");
    std::fs::write(
        &bad,
        "interval: 0s\nprobes:\n  - { name: web, kind: http, target: \"ftp://x\" }\n",
    )
    .unwrap();
    let out = agent()
        .args(["check-config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.yaml:1: interval: 0s is below the minimum of 1s")
            && err.contains("agent.yaml:3: probes[0] (\"web\"): target \"ftp://x\""),
        "{err}"
    );
    let state = dir.path().join("state");
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "host: web-1\ninterval: 15s\nstate_dir: {}\nprobes:\n  - {{ name: web, kind: http, target: \"http://127.0.0.1:9/\" }}\n",
            state.display()
        ),
    )
    .unwrap();
    // Flags before or after the subcommand, as at a start.
    let out = agent()
        .args([
            "--collector",
            "http://10.0.0.1:9760/api/v1/write",
            "check-config",
        ])
        .args(["-c", good.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("good.yaml: valid — host web-1, every 15s, shipping to http://10.0.0.1:9760/api/v1/write, 1 probes"),
        "{said}"
    );
    assert!(!state.exists(), "no state directory made");
}
