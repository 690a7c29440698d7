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
