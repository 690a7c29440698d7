//! The disk-full forecast on a real filesystem filling up: a tmpfs mounted in a mount
//! namespace of the test's own, seen by an agent running in it, filled by the test through
//! /proc/PID/root while the shipped `HostDiskFillingUp` rule (its `for` shortened) watches.

use std::process::{Child, Command};
use std::time::Duration;

use tocsin_e2e::{binary, serial, shipped_rules_without_for, wait_for, Stack};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_filesystem_filling_up_is_forecast_full_before_it_is() {
    let _g = serial();
    if !Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must be able to make a mount namespace (root, util-linux)"
        );
        eprintln!("SKIPPED: cannot create a mount namespace");
        return;
    }
    let s = Stack::new("");
    shipped_rules_without_for(&s.dir.path().join("rules"), &["host.yaml"]);
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let mnt = s.dir.path().join("fill");
    std::fs::create_dir(&mnt).unwrap();
    let agent_log = std::fs::File::create(s.p("agent.log")).unwrap();
    // The agent in its own mount namespace, where a 64 MiB tmpfs is mounted at `fill`.
    let agent = Killed(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size=64m tocsin-fill {} && exec {} --host fill-host --interval 1s --collector {} --listen 127.0.0.1:0 --state-dir {}",
                mnt.display(),
                binary("tocsin-agent").display(),
                c.url("/api/v1/write"),
                s.p("agent-state"),
            ))
            .stdout(agent_log.try_clone().unwrap())
            .stderr(agent_log)
            .spawn()
            .unwrap(),
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
