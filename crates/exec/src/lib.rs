//! Runs a program (argv, never a shell) in a process group of its own, with a deadline. On
//! timeout the whole group is killed. Output (stdout then stderr) is captured up to a bound and
//! its tail kept. A program that exits while something it started still holds its output open
//! (a daemon it restarted) is not waited for beyond a short grace, and that something is left
//! alone.

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use tocsin_config::actions::{safe_value, ActionKind, ActionSpec, Allowed};
use tocsin_model::ActionStatus;
use tokio::io::AsyncReadExt;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Exited with this code (-1 when killed by a signal).
    Exited(i32),
    /// Still running at the deadline; its process group was killed.
    TimedOut,
    /// Could not be started.
    SpawnFailed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// The last `max_output` bytes of stdout followed by stderr, lossily decoded, trimmed.
    pub output: String,
    pub duration: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status == Status::Exited(0)
    }

    /// One line for messages: `exit 0`, `exit 3: <output>`, `timed out after 5s; killed`.
    pub fn summary(&self) -> String {
        let tail = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!(": {s}")
            }
        };
        match &self.status {
            Status::Exited(c) => format!("exit {c}{}", tail(&self.output)),
            Status::TimedOut => format!("timed out after {:?}; killed", self.duration),
            Status::SpawnFailed(e) => format!("cannot start: {e}"),
        }
    }
}

/// How long output is still read after the program exited.
const GRACE: Duration = Duration::from_millis(200);

fn keep_tail(buf: &mut Vec<u8>, max: usize) {
    if buf.len() > max {
        buf.drain(..buf.len() - max);
    }
}

async fn read_bounded(mut r: impl tokio::io::AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                keep_tail(&mut out, max);
            }
        }
    }
}

/// The whole environment of a remediation action: nothing inherited from the agent or the
/// collector (their tokens, proxies, library paths), only a fixed search path and locale.
pub const ACTION_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
];

/// Runs `argv` with `env` added, for at most `timeout`, keeping at most `max_output` bytes.
pub async fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    max_output: usize,
) -> Outcome {
    spawn_and_wait(argv, env, false, timeout, max_output).await
}

/// Runs `argv` with `env` as its whole environment.
pub async fn run_clean(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    max_output: usize,
) -> Outcome {
    spawn_and_wait(argv, env, true, timeout, max_output).await
}

async fn spawn_and_wait(
    argv: &[String],
    env: &[(String, String)],
    clear_env: bool,
    timeout: Duration,
    max_output: usize,
) -> Outcome {
    let started = Instant::now();
    let Some(program) = argv.first() else {
        return Outcome {
            status: Status::SpawnFailed("empty argv".into()),
            output: String::new(),
            duration: Duration::ZERO,
        };
    };
    let mut cmd = tokio::process::Command::new(program);
    if clear_env {
        cmd.env_clear();
    }
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                status: Status::SpawnFailed(format!("{program:?}: {e}")),
                output: String::new(),
                duration: started.elapsed(),
            }
        }
    };
    let pid = child.id();
    let out = tokio::spawn(read_bounded(
        child.stdout.take().expect("piped"),
        max_output,
    ));
    let err = tokio::spawn(read_bounded(
        child.stderr.take().expect("piped"),
        max_output,
    ));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) => Status::Exited(s.code().unwrap_or(-1)),
        Ok(Err(e)) => Status::SpawnFailed(format!("wait: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait().await;
            Status::TimedOut
        }
    };
    let duration = started.elapsed();
    let collect = |h: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(GRACE, h).await {
            Ok(Ok(b)) => b,
            // Something the program started still holds the pipe: what was read is lost with
            // the reader, which is fine for a tail.
            _ => Vec::new(),
        }
    };
    let (mut o, e) = tokio::join!(collect(out), collect(err));
    o.extend_from_slice(&e);
    keep_tail(&mut o, max_output);
    Outcome {
        status,
        output: String::from_utf8_lossy(&o).trim().to_string(),
        duration,
    }
}

/// The end of one allowlisted action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub status: ActionStatus,
    pub summary: String,
    pub output: String,
}

fn admits(allowed: &Allowed, v: &str) -> bool {
    match allowed {
        Allowed::Pattern(re) => re.is_match(v),
        Allowed::Values(list) => list.iter().any(|x| x == v),
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The argv the allowlisted action `spec` runs with these parameter values, or why not: every
/// parameter named by the action and no other, each value safe and admitted by its pattern or
/// list, and never a systemd `.target`.
pub fn argv_for(
    spec: &ActionSpec,
    values: &BTreeMap<String, String>,
) -> Result<Vec<String>, Refusal> {
    for k in values.keys() {
        if !spec.params.iter().any(|(n, _)| n == k) {
            return Err(Refusal(format!(
                "action {:?} takes no parameter {k:?}",
                spec.name
            )));
        }
    }
    for (name, allowed) in &spec.params {
        let v = values
            .get(name)
            .ok_or_else(|| Refusal(format!("action {:?} needs parameter {name:?}", spec.name)))?;
        if !safe_value(v) || !admits(allowed, v) {
            return Err(Refusal(format!(
                "parameter {name}={v:?} is not one of {allowed}"
            )));
        }
    }
    let argv: Vec<String> = spec
        .argv
        .iter()
        .map(|a| {
            let mut out = a.clone();
            for (k, v) in values {
                out = out.replace(&format!("{{{k}}}"), v);
            }
            out
        })
        .collect();
    if spec.kind == ActionKind::RestartService
        && argv.iter().skip(2).any(|u| u.ends_with(".target"))
    {
        return Err(Refusal(format!(
            "action {:?}: a .target is never restarted (poweroff, reboot, rescue)",
            spec.name
        )));
    }
    Ok(argv)
}

/// Runs `action` with `params` if `allowlist` defines it and the values pass its patterns;
/// refuses otherwise. Never runs anything the allowlist does not name.
pub async fn run_action(
    allowlist: &[tocsin_config::actions::ActionSpec],
    action: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> ActionResult {
    let refused = |summary: String| ActionResult {
        status: ActionStatus::Refused,
        summary,
        output: String::new(),
    };
    let Some(spec) = allowlist.iter().find(|a| a.name == action) else {
        return refused(format!("action {action:?} is not in this host's allowlist"));
    };
    let argv = match argv_for(spec, params) {
        Ok(a) => a,
        Err(e) => return refused(e.0),
    };
    let env: Vec<(String, String)> = ACTION_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let o = run_clean(&argv, &env, spec.timeout, spec.max_output).await;
    let status = match o.status {
        Status::Exited(0) => ActionStatus::Succeeded,
        Status::TimedOut => ActionStatus::TimedOut,
        _ => ActionStatus::Failed,
    };
    ActionResult {
        status,
        summary: o.summary().lines().next().unwrap_or("").to_string(),
        output: o.output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(yaml: &str) -> Result<Vec<ActionSpec>, String> {
        let raw: BTreeMap<String, tocsin_config::actions::RawAction> =
            tocsin_config::parse_yaml(yaml).unwrap();
        tocsin_config::actions::validate_all(raw).map_err(|e| e.to_string())
    }

    #[test]
    fn argv_from_checked_parameters() {
        let s = specs(
            "restart_web:
  run: [/usr/local/bin/restart.sh, \"--unit={unit}\"]
  params: { unit: \"[a-z0-9-]+\" }
  timeout: 5s
db_failover:
  failover: [/opt/failover.sh]
  params: { primary: \"db-[0-9]+\", standby: \"db-[0-9]+\" }
restart_svc:
  restart_service: \"{unit}\"
  params: { unit: [nginx.service, php-fpm.service] }
restart_any:
  restart_service: \"{unit}\"
  params: { unit: \"[a-z.-]+\" }
",
        )
        .unwrap();
        let web = s.iter().find(|a| a.name == "restart_web").unwrap();
        let v = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            argv_for(web, &v(&[("unit", "web-1")])).unwrap(),
            vec!["/usr/local/bin/restart.sh", "--unit=web-1"]
        );
        for bad in ["web;rm -rf /", "$(reboot)", "web 1", "-rf", "`id`", ""] {
            assert!(
                argv_for(web, &v(&[("unit", bad)])).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert!(argv_for(web, &v(&[])).is_err(), "missing parameter");
        assert!(argv_for(web, &v(&[("unit", "web"), ("extra", "x")])).is_err());
        let svc = s.iter().find(|a| a.name == "restart_svc").unwrap();
        assert_eq!(
            argv_for(svc, &v(&[("unit", "nginx.service")])).unwrap(),
            vec!["/usr/bin/systemctl", "restart", "nginx.service"]
        );
        assert!(
            argv_for(svc, &v(&[("unit", "sshd.service")])).is_err(),
            "not listed"
        );
        let any = s.iter().find(|a| a.name == "restart_any").unwrap();
        let e = argv_for(any, &v(&[("unit", "poweroff.target")])).unwrap_err();
        assert!(e.0.contains("a .target is never restarted"), "{e}");
        let fo = s.iter().find(|a| a.name == "db_failover").unwrap();
        assert_eq!(
            argv_for(fo, &v(&[("primary", "db-1"), ("standby", "db-2")])).unwrap(),
            vec!["/opt/failover.sh", "db-1", "db-2"]
        );
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_codes_output_and_env() {
        let o = run(
            &argv(&["sh", "-c", "echo out; echo err >&2; echo $X; exit 3"]),
            &[("X".into(), "y".into())],
            Duration::from_secs(5),
            1024,
        )
        .await;
        assert_eq!(o.status, Status::Exited(3));
        assert_eq!(o.output, "out\ny\nerr");
        assert_eq!(o.summary(), "exit 3: out\ny\nerr");
    }

    #[tokio::test]
    async fn output_is_bounded_to_its_tail() {
        let o = run(
            &argv(&["seq", "1", "10000"]),
            &[],
            Duration::from_secs(5),
            11,
        )
        .await;
        assert!(o.success());
        assert_eq!(o.output, "9999\n10000");
    }

    #[tokio::test]
    async fn a_hanging_group_is_killed_at_the_deadline() {
        let t = Instant::now();
        let o = run(
            &argv(&["sh", "-c", "sleep 30 & sleep 30"]),
            &[],
            Duration::from_millis(300),
            100,
        )
        .await;
        assert_eq!(o.status, Status::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(o.summary().starts_with("timed out after"));
    }

    #[tokio::test]
    async fn a_daemon_left_running_does_not_hold_the_run() {
        let t = Instant::now();
        let o = run(
            &argv(&["sh", "-c", "sleep 5 & echo started"]),
            &[],
            Duration::from_secs(3),
            100,
        )
        .await;
        assert!(o.success());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn only_allowlisted_actions_with_matching_parameters_run() {
        let raw: std::collections::BTreeMap<String, tocsin_config::actions::RawAction> =
            tocsin_config::parse_yaml(
                "echo_unit: { run: [/bin/echo, \"{unit}\"], params: { unit: \"[a-z]+\" }, timeout: 2s }
hang: { run: [/bin/sleep, \"30\"], timeout: 200ms }",
            )
            .unwrap();
        let specs = tocsin_config::actions::validate_all(raw).unwrap();
        let p = |v: &str| std::collections::BTreeMap::from([("unit".to_string(), v.to_string())]);
        let ok = run_action(&specs, "echo_unit", &p("web")).await;
        assert_eq!(
            (ok.status, ok.output.as_str()),
            (ActionStatus::Succeeded, "web")
        );
        let r = run_action(&specs, "rm_rf", &p("web")).await;
        assert_eq!(r.status, ActionStatus::Refused);
        assert!(r.summary.contains("not in this host's allowlist"));
        let r = run_action(&specs, "echo_unit", &p("web;reboot")).await;
        assert_eq!(r.status, ActionStatus::Refused);
        let r = run_action(&specs, "hang", &Default::default()).await;
        assert_eq!(r.status, ActionStatus::TimedOut);
    }

    #[tokio::test]
    async fn actions_inherit_no_environment() {
        // A secret in the runner's environment (its token, a proxy with a password).
        std::env::set_var("TOCSIN_TEST_SECRET", "s3cret");
        let raw: std::collections::BTreeMap<String, tocsin_config::actions::RawAction> =
            tocsin_config::parse_yaml("env: { run: [/usr/bin/env], timeout: 2s }").unwrap();
        let specs = tocsin_config::actions::validate_all(raw).unwrap();
        let r = run_action(&specs, "env", &Default::default()).await;
        assert_eq!(r.status, ActionStatus::Succeeded, "{r:?}");
        let mut vars: Vec<&str> = r.output.lines().collect();
        vars.sort();
        assert_eq!(
            vars,
            vec![
                "LANG=C.UTF-8",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ]
        );
    }

    #[tokio::test]
    async fn missing_programs_are_reported() {
        let o = run(&argv(&["/nonexistent/x"]), &[], Duration::from_secs(1), 10).await;
        assert!(matches!(o.status, Status::SpawnFailed(_)), "{o:?}");
        assert!(!o.success());
    }
}
