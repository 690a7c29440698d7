//! Remediation actions: the allowlist an agent (or the collector) will run. Each action is a
//! fixed argv (never a shell, the program an absolute path) whose elements may hold `{param}`
//! placeholders; every parameter has an explicit list of values, or a declared pattern its
//! value must match in full, and every value must also pass a fixed safe alphabet. A unit to
//! restart is never a `.target` (`poweroff.target`, `rescue.target`). The side that runs an
//! action checks the request against its own list, so a collector can never make an agent run
//! anything else.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{parse_duration, parse_size, Problems};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// Restart a systemd unit: `systemctl restart UNIT` (UNIT may be a `{param}`).
    pub restart_service: Option<String>,
    /// Run a local program: argv, no shell.
    pub run: Option<Vec<String>>,
    /// A failover script: argv; the parameters `primary` and `standby` are appended.
    pub failover: Option<Vec<String>>,
    /// Restart a container: `docker` or `podman restart CONTAINER` (CONTAINER a `{param}`
    /// whose values are listed: only those containers).
    pub restart_container: Option<RawContainer>,
    /// Scale out: argv holding `{replicas}`, the count the collector asks for (one step above
    /// the last, never above the rule's maximum); `params.replicas` lists the counts this side
    /// accepts.
    pub scale: Option<Vec<String>>,
    /// Parameter name → the values it may take: a list (`[nginx.service, php-fpm.service]`,
    /// the safe choice) or a pattern (a regex the whole value must match).
    #[serde(default)]
    pub params: BTreeMap<String, RawAllowed>,
    /// Kill the action's process group after this long (default 30s).
    pub timeout: Option<String>,
    /// Output kept (the tail), default 4KiB.
    pub max_output: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainer {
    /// docker (default) or podman.
    pub runtime: Option<String>,
    pub container: String,
}

/// Container runtimes, by their absolute paths.
pub const RUNTIMES: [(&str, &str); 2] =
    [("docker", "/usr/bin/docker"), ("podman", "/usr/bin/podman")];

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum RawAllowed {
    Pattern(String),
    Values(Vec<String>),
}

/// The values a parameter may take.
#[derive(Debug, Clone)]
pub enum Allowed {
    Pattern(regex::Regex),
    Values(Vec<String>),
}

impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allowed::Pattern(re) => write!(f, "the allowed pattern {:?}", re.as_str()),
            Allowed::Values(list) => write!(f, "the allowed values {list:?}"),
        }
    }
}

/// Characters any parameter value may hold, whatever its pattern says: no shell or option
/// syntax, bounded length.
pub fn safe_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && !v.starts_with('-')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@/=+,-".contains(c))
}

/// systemctl, by its absolute path: an action never depends on a search path.
pub const SYSTEMCTL: &str = "/usr/bin/systemctl";

#[derive(Debug, Clone)]
pub struct ActionSpec {
    pub name: String,
    pub kind: ActionKind,
    pub argv: Vec<String>,
    pub params: Vec<(String, Allowed)>,
    pub timeout: Duration,
    pub max_output: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    RestartService,
    Run,
    Failover,
    RestartContainer,
    Scale,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::RestartService => "restart_service",
            ActionKind::Run => "run",
            ActionKind::Failover => "failover",
            ActionKind::RestartContainer => "restart_container",
            ActionKind::Scale => "scale",
        }
    }
}

/// The placeholders `{name}` in `s`.
fn placeholders(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        let tail = &rest[i + 1..];
        match tail.find('}') {
            Some(j) => {
                out.push(tail[..j].to_string());
                rest = &tail[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Validates an allowlist on its own (e.g. in tests).
pub fn validate_all(
    raw: BTreeMap<String, RawAction>,
) -> Result<Vec<ActionSpec>, crate::ConfigError> {
    let mut p = Problems::default();
    let s = validate(&mut p, raw, "actions");
    p.finish(|| s)
}

pub(crate) fn validate(
    p: &mut Problems,
    raw: BTreeMap<String, RawAction>,
    at: &str,
) -> Vec<ActionSpec> {
    let mut out = Vec::new();
    for (name, r) in raw {
        let at = format!("{at}.{name}");
        let given = [
            r.restart_service.is_some(),
            r.run.is_some(),
            r.failover.is_some(),
            r.restart_container.is_some(),
            r.scale.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            p.push(format!(
                "{at}: set exactly one of `restart_service`, `run`, `failover`, `restart_container` or `scale`"
            ));
            continue;
        }
        let (kind, mut argv) = if let Some(unit) = r.restart_service {
            (
                ActionKind::RestartService,
                vec![SYSTEMCTL.into(), "restart".into(), unit],
            )
        } else if let Some(argv) = r.run {
            (ActionKind::Run, argv)
        } else if let Some(mut argv) = r.failover {
            argv.push("{primary}".into());
            argv.push("{standby}".into());
            (ActionKind::Failover, argv)
        } else if let Some(c) = r.restart_container {
            let runtime = c.runtime.as_deref().unwrap_or("docker");
            let Some((_, path)) = RUNTIMES.iter().find(|(n, _)| *n == runtime) else {
                p.push(format!(
                    "{at}.restart_container.runtime: {runtime:?} must be docker or podman"
                ));
                continue;
            };
            let ph = placeholders(&c.container);
            let listed = ph.len() == 1
                && c.container == format!("{{{}}}", ph[0])
                && matches!(r.params.get(&ph[0]), Some(RawAllowed::Values(_)));
            if ph.len() == 1 && !listed {
                p.push(format!(
                    "{at}.params.{}: list the containers that may be restarted (a pattern is not enough)",
                    ph[0]
                ));
            } else if !listed && !safe_value(&c.container) {
                p.push(format!(
                    "{at}.restart_container.container: a container name, or one `{{param}}` whose values are listed under params"
                ));
            }
            (
                ActionKind::RestartContainer,
                vec![(*path).into(), "restart".into(), c.container],
            )
        } else {
            let argv = r.scale.unwrap_or_default();
            if !argv.iter().any(|a| a.contains("{replicas}")) {
                p.push(format!(
                    "{at}.scale: the command must take the count as {{replicas}}"
                ));
            }
            match r.params.get("replicas") {
                Some(RawAllowed::Values(v))
                    if v.iter().all(|x| x.parse::<u32>().is_ok_and(|n| n > 0)) => {}
                _ => p.push(format!(
                    "{at}.params.replicas: list the counts this host accepts (e.g. [\"2\", \"3\", \"4\"])"
                )),
            }
            (ActionKind::Scale, argv)
        };
        if argv.is_empty() || argv[0].is_empty() {
            p.push(format!("{at}: the command is empty"));
        } else if !argv[0].starts_with('/') {
            p.push(format!(
                "{at}: {}[0] {:?} must be an absolute path",
                kind.as_str(),
                argv[0]
            ));
        }
        if !placeholders(argv.first().map(String::as_str).unwrap_or("")).is_empty() {
            p.push(format!("{at}: the program itself cannot be a parameter"));
        }
        let mut params = Vec::new();
        for (k, allowed) in &r.params {
            match allowed {
                RawAllowed::Pattern(pat) => {
                    if let Some(re) = p.take(
                        &format!("{at}.params.{k}"),
                        regex::Regex::new(&format!("^(?:{pat})$")),
                    ) {
                        params.push((k.clone(), Allowed::Pattern(re)));
                    }
                }
                RawAllowed::Values(list) => {
                    if list.is_empty() {
                        p.push(format!("{at}.params.{k}: the list of values is empty"));
                    }
                    for v in list.iter().filter(|v| !safe_value(v)) {
                        p.push(format!(
                            "{at}.params.{k}: {v:?} is not a safe value ([A-Za-z0-9._:@/=+,-], not starting with -)"
                        ));
                    }
                    if kind == ActionKind::RestartService {
                        for v in list.iter().filter(|v| v.ends_with(".target")) {
                            p.push(format!(
                                "{at}.params.{k}: {v:?}: a .target is never restarted"
                            ));
                        }
                    }
                    params.push((k.clone(), Allowed::Values(list.clone())));
                }
            }
        }
        if kind == ActionKind::Failover {
            for need in ["primary", "standby"] {
                if !r.params.contains_key(need) {
                    p.push(format!(
                        "{at}.params: a failover needs a pattern for {need:?}"
                    ));
                }
            }
        }
        for a in &argv {
            for ph in placeholders(a) {
                if !r.params.contains_key(&ph) {
                    p.push(format!(
                        "{at}: {{{ph}}} is used but not declared under params"
                    ));
                }
            }
        }
        argv.shrink_to_fit();
        let timeout = p
            .take(
                &format!("{at}.timeout"),
                parse_duration(r.timeout.as_deref().unwrap_or("30s")),
            )
            .unwrap_or(Duration::from_secs(30));
        let max_output = p
            .take(
                &format!("{at}.max_output"),
                parse_size(r.max_output.as_deref().unwrap_or("4KiB")),
            )
            .unwrap_or(4096) as usize;
        out.push(ActionSpec {
            name,
            kind,
            argv,
            params,
            timeout,
            max_output,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(yaml: &str) -> Result<Vec<ActionSpec>, String> {
        let raw: BTreeMap<String, RawAction> = crate::parse_yaml(yaml).unwrap();
        let mut p = Problems::default();
        let s = validate(&mut p, raw, "actions");
        p.finish(|| s).map_err(|e| e.to_string())
    }

    #[test]
    fn containers_and_scaling_are_bounded_by_their_lists() {
        let ok = specs(
            "web: { restart_container: { container: \"{c}\" }, params: { c: [shop-web, shop-api] } }
pod: { restart_container: { runtime: podman, container: cache } }
out: { scale: [/usr/local/bin/scale-shop, \"--replicas={replicas}\"], params: { replicas: [\"2\", \"3\", \"4\"] } }
",
        )
        .unwrap();
        let argv = |n: &str| ok.iter().find(|a| a.name == n).unwrap().argv.clone();
        assert_eq!(argv("web"), ["/usr/bin/docker", "restart", "{c}"]);
        assert_eq!(argv("pod"), ["/usr/bin/podman", "restart", "cache"]);
        assert_eq!(
            ok.iter().find(|a| a.name == "out").unwrap().kind,
            ActionKind::Scale
        );
        let e = specs(
            "a: { restart_container: { runtime: lxc, container: x } }
b: { restart_container: { container: \"{c}\" }, params: { c: \"shop-.*\" } }
c: { scale: [/bin/scale], params: { replicas: [\"2\"] } }
d: { scale: [/bin/scale, \"{replicas}\"], params: { replicas: \"[0-9]+\" } }
",
        )
        .unwrap_err();
        for want in [
            "actions.a.restart_container.runtime: \"lxc\" must be docker or podman",
            "actions.b.params.c: list the containers that may be restarted",
            "actions.c.scale: the command must take the count as {replicas}",
            "actions.d.params.replicas: list the counts",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }

    #[test]
    fn problems_are_reported() {
        let e = specs(
            "a: { run: [relative.sh, \"{x}\"] }
b: { run: [/bin/true], restart_service: x }
c: { failover: [/bin/f], params: { primary: \"(\" } }
d: { restart_service: \"{u}\", params: { u: [rescue.target, \"-x\"] } }
",
        )
        .unwrap_err();
        for want in [
            "actions.a: run[0] \"relative.sh\" must be an absolute path",
            "actions.a: {x} is used but not declared under params",
            "actions.b: set exactly one of",
            "actions.c.params.primary:",
            "actions.c.params: a failover needs a pattern for \"standby\"",
            "actions.d.params.u: \"rescue.target\": a .target is never restarted",
            "actions.d.params.u: \"-x\" is not a safe value",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }
}
