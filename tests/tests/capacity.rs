//! Filesystems as the agent sees them, in mount namespaces of the test's own: the disk-full
//! forecast on a real filesystem filling up (a tmpfs mounted in a namespace with its own PID 1,
//! as a container is, seen by an agent running in it, filled by the test through
//! /proc/PID/root while the shipped `HostDiskFillingUp` rule, its `for` shortened, watches),
//! and an agent sandboxed as the packaged unit runs it (every mount read-only for it alone).

use std::process::Command;
use std::time::Duration;

use tocsin_e2e::{binary, serial, shipped_rules_without_for, wait_for, Killed, Proc, Stack};

/// Whether this machine lets the test make mount namespaces (root, util-linux); in CI it must.
fn can_unshare() -> bool {
    if Command::new("unshare")
        .args(["-m", "-p", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must be able to make mount and PID namespaces (root, util-linux)"
    );
    eprintln!("SKIPPED: cannot create a mount namespace");
    false
}

/// The agent (sampling every second, shipping to `c`) in a mount namespace of its own, made by
/// `unshare -m` with `unshare_args` more, after the shell command `setup` ran in it.
fn agent_unshared(s: &Stack, c: &Proc, unshare_args: &[&str], setup: &str, args: &str) -> Killed {
    let log = std::fs::File::create(s.p("agent.log")).unwrap();
    Killed(
        Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .args(unshare_args)
            .args(["sh", "-c"])
            .arg(format!(
                "{setup} && exec {} {args} --interval 1s --collector {} --state-dir {}",
                binary("tocsin-agent").display(),
                c.url("/api/v1/write"),
                s.p("agent-state"),
            ))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_filesystem_filling_up_is_forecast_full_before_it_is() {
    let _g = serial();
    if !can_unshare() {
        return;
    }
    let s = Stack::new("");
    shipped_rules_without_for(&s.dir.path().join("rules"), &["host.yaml"]);
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let mnt = s.dir.path().join("fill");
    std::fs::create_dir(&mnt).unwrap();
    // The agent in its own mount and PID namespaces (a container: its PID 1's mount table is
    // its own), where a 64 MiB tmpfs is mounted at `fill`.
    let agent = agent_unshared(
        &s,
        &c,
        &["-p", "--fork", "--mount-proc", "--kill-child"],
        &format!("mount -t tmpfs -o size=64m tocsin-fill {}", mnt.display()),
        "--host fill-host --listen 127.0.0.1:0",
    );
    // Its view of the mount, from outside the namespace.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root{}", agent.0.id(), mnt.display()));
    wait_for("the tmpfs mounted", Duration::from_secs(10), || {
        let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", agent.0.id())).ok()?;
        mounts.contains("tocsin-fill").then_some(())
    });
    // 2 MiB every 200 ms: full in about six seconds.
    let mut n = 0;
    let mut full = false;
    let fired = wait_for(
        "HostDiskFillingUp on the filling mount",
        Duration::from_secs(30),
        || {
            if !full {
                full =
                    std::fs::write(inside.join(format!("chunk-{n}")), vec![0u8; 2 << 20]).is_err();
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
            s.hook
                .all()
                .into_iter()
                .map(|(_, v)| v)
                .find(|v| {
                    v["alerts"][0]["labels"]["alertname"] == "HostDiskFillingUp"
                        && v["alerts"][0]["labels"]["mountpoint"] == mnt.display().to_string()
                })
                .map(|v| (v, full, n))
        },
    );
    let (fired, full_then, written) = fired;
    assert!(
        !full_then,
        "forecast before the filesystem was full ({written} chunks of 2 MiB written)"
    );
    let a = &fired["alerts"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(
        a["labels"]["level"], "critical",
        "hours, not days, left: {a}"
    );
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("full in"), "{summary}");
}

/// systemd's `ProtectSystem=strict`, which the packaged unit sets, mounts every filesystem
/// read-only in the agent's own mount namespace. The agent reads the host's mount table (PID
/// 1's, as node_exporter does), so a host whose root filesystem is writable is not reported
/// read-only — which would fire the shipped `HostFilesystemReadOnly` (critical) on every host.
#[test]
fn a_sandboxed_agent_reports_filesystems_as_the_host_mounts_them() {
    let _g = serial();
    if !can_unshare() {
        return;
    }
    let host = std::fs::read_to_string("/proc/1/mounts").unwrap();
    assert_eq!(
        root_mode(&host),
        Some("rw"),
        "the test needs a writable root: {host}"
    );
    let s = Stack::new("");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let dir = s.dir.path().display().to_string();
    let port = tocsin_e2e::servers::free_port();
    // The test's directory stays writable (a mount of its own); everything else is read-only
    // for the agent alone.
    let agent = agent_unshared(
        &s,
        &c,
        &[],
        &format!("mount --bind {dir} {dir} && mount -o remount,bind,ro /"),
        &format!("--host sandboxed --listen 127.0.0.1:{port}"),
    );
    let metrics = wait_for(
        "the agent's filesystem samples",
        Duration::from_secs(20),
        || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
                .ok()?
                .text()
                .ok()
                .filter(|t| t.contains("node_filesystem_readonly{"))
        },
    );
    // The sandbox is real: in the agent's namespace the root is read-only.
    let inside = std::fs::read_to_string(format!("/proc/{}/mounts", agent.0.id())).unwrap();
    assert_eq!(root_mode(&inside), Some("ro"), "{inside}");
    let root: Vec<f64> = tocsin_e2e::exposition_lines(&metrics)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "node_filesystem_readonly" && l.get("mountpoint").map(String::as_str) == Some("/")
        })
        .map(|x| x.2)
        .collect();
    assert_eq!(root, [0.0], "{metrics}");
}

/// `rw` or `ro` for the root filesystem in a mount table (its last mount at `/`).
fn root_mode(mounts: &str) -> Option<&str> {
    let line = mounts
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(1) == Some("/"))?;
    line.split(' ')
        .nth(3)?
        .split(',')
        .find(|o| *o == "rw" || *o == "ro")
}
