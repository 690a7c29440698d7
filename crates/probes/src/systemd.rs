//! systemd unit probe: active/sub state and restart count from `systemctl show`.

use std::collections::HashMap;
use std::process::Stdio;

use tocsin_config::probes::SystemdProbe;
use tocsin_sampling::Family;

use crate::{gauge, Failure, Reason};

const PROPERTIES: &str = "LoadState,ActiveState,SubState,NRestarts,MainPID";

/// Parses `KEY=value` lines.
fn parse_show(text: &str) -> HashMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once('=')).collect()
}

/// Judges a unit from its properties.
fn judge(unit: &str, p: &HashMap<&str, &str>, out: &mut Vec<Family>) -> Result<(), Failure> {
    let load = p.get("LoadState").copied().unwrap_or("");
    if load == "not-found" {
        return Err(Failure::new(
            Reason::Missing,
            format!("unit {unit} does not exist"),
        ));
    }
    let active = p.get("ActiveState").copied().unwrap_or("unknown");
    let sub = p.get("SubState").copied().unwrap_or("unknown");
    out.push(gauge(
        "probe_systemd_unit_active",
        "1 when the unit's ActiveState is active.",
        if active == "active" { 1.0 } else { 0.0 },
    ));
    let mut info = Family::gauge(
        "probe_systemd_unit_state_info",
        "The unit's active and sub state, as labels.",
    );
    info.push([("active_state", active), ("sub_state", sub)], 1.0);
    out.push(info);
    if let Some(n) = p.get("NRestarts").and_then(|v| v.parse::<f64>().ok()) {
        out.push(
            Family::counter(
                "probe_systemd_unit_restarts_total",
                "Restarts systemd has made of the unit (NRestarts).",
            )
            .with([], n),
        );
    }
    if active == "active" {
        Ok(())
    } else {
        Err(Failure::new(
            Reason::Status,
            format!("unit {unit} is {active} ({sub})"),
        ))
    }
}

pub(crate) async fn run(spec: &SystemdProbe, out: &mut Vec<Family>) -> Result<(), Failure> {
    let output = tokio::process::Command::new(tocsin_config::probes::SYSTEMCTL)
        .args([
            "show",
            "--no-pager",
            &format!("--property={PROPERTIES}"),
            "--",
            &spec.unit,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Failure::new(Reason::Error, format!("cannot run systemctl: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let props = parse_show(&text);
    if !output.status.success() || !props.contains_key("ActiveState") {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(Failure::new(
            Reason::Error,
            format!(
                "systemctl show {} failed: {}",
                spec.unit,
                err.lines().next().unwrap_or("no output")
            ),
        ));
    }
    judge(&spec.unit, &props, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(text: &str) -> (Result<(), Failure>, Vec<Family>) {
        let mut out = Vec::new();
        let r = judge("web.service", &parse_show(text), &mut out);
        (r, out)
    }

    #[test]
    fn states() {
        let (r, out) =
            j("LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=2\nMainPID=42\n");
        assert!(r.is_ok());
        assert_eq!(
            out.iter()
                .find(|f| f.name == "probe_systemd_unit_restarts_total")
                .unwrap()
                .samples[0]
                .1,
            2.0
        );
        let (r, _) = j("LoadState=loaded\nActiveState=failed\nSubState=failed\nNRestarts=5\n");
        let f = r.unwrap_err();
        assert_eq!(
            (f.reason, f.message.as_str()),
            (Reason::Status, "unit web.service is failed (failed)")
        );
        let (r, _) = j("LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(r.unwrap_err().reason, Reason::Missing);
    }
}
