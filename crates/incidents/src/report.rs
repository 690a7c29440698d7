//! The post-incident report, in Markdown.

use std::fmt::Write;

use crate::{format_time, Change, Feedback, Incident, TimelineEvent};

const REMEDIATION: [&str; 13] = [
    "requested",
    "dry_run",
    "awaiting_approval",
    "approved",
    "dispatched",
    "succeeded",
    "failed",
    "refused",
    "verified",
    "verify_failed",
    "breaker_open",
    "lost",
    "skipped",
];

fn secs(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) => {
            let s = ms / 1000;
            if s >= 3600 {
                format!("{}h {}m {}s ({s} s)", s / 3600, s % 3600 / 60, s % 60)
            } else if s >= 60 {
                format!("{}m {}s ({s} s)", s / 60, s % 60)
            } else {
                format!("{s} s")
            }
        }
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report of one incident: its timeline, the changes made to what it affects
/// before it, and what people said of its alerts.
pub fn report(
    i: &Incident,
    timeline: &[TimelineEvent],
    changes: &[Change],
    feedback: &[Feedback],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}: {}\n", i.id, i.title);
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let rows = [
        ("State", i.state.as_str().to_string()),
        ("Severity", i.severity.as_str().to_string()),
        ("Category", format!("{} ({} outage)", i.category, i.outage)),
        ("Opened", format_time(i.opened_at)),
        (
            "Acknowledged",
            match (&i.acked_at, &i.acked_by) {
                (Some(t), Some(by)) => format!("{} by {by}", format_time(*t)),
                _ => "never".into(),
            },
        ),
        (
            "Resolved",
            match (&i.resolved_at, &i.resolved_by) {
                (Some(t), Some(by)) => format!("{} ({by})", format_time(*t)),
                _ => "not yet".into(),
            },
        ),
        ("Time to acknowledge", secs(i.time_to_ack_ms())),
        ("Time to resolve (MTTR)", secs(i.time_to_resolve_ms())),
        ("Time to remediate", secs(i.time_to_remediate_ms())),
        ("Reopened", i.reopened.to_string()),
        ("Owner", i.owner.clone().unwrap_or_else(|| "—".into())),
        (
            "Root cause",
            i.root_cause
                .as_ref()
                .map(|c| format!("{}: {}", c.category, c.text))
                .unwrap_or_else(|| "not recorded yet".into()),
        ),
        ("Impact", i.impact.clone().unwrap_or_else(|| "—".into())),
        (
            "Deadlines missed",
            if i.breaches.is_empty() {
                "none".into()
            } else {
                i.breaches.iter().cloned().collect::<Vec<_>>().join(", ")
            },
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "| {k} | {} |", cell(&v));
    }
    let _ = writeln!(o, "\n## Impact\n");
    let list = |s: &std::collections::BTreeSet<String>| {
        if s.is_empty() {
            "—".to_string()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(o, "- Hosts: {}", list(&i.hosts));
    let _ = writeln!(o, "- Services: {}", list(&i.services));
    let _ = writeln!(o, "- Probes: {}", list(&i.probes));
    let _ = writeln!(o, "- Alerts:");
    for a in i.alerts.values() {
        let spans: Vec<String> = a
            .spans
            .iter()
            .map(|(f, t)| {
                format!(
                    "{} – {}",
                    format_time(*f),
                    t.map(format_time).unwrap_or_else(|| "ongoing".into())
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  - {} ({}{}): {}",
            a.rule,
            a.level,
            a.host
                .as_deref()
                .map(|h| format!(", {h}"))
                .unwrap_or_default(),
            spans.join("; ")
        );
    }
    let _ = writeln!(o, "\n## Changes before it\n");
    if changes.is_empty() {
        let _ = writeln!(o, "No change recorded on its services or hosts.");
    }
    for c in changes {
        let _ = writeln!(
            o,
            "- {} {} of {} by {}: {}{}{}",
            format_time(c.start_ms),
            c.kind,
            c.service,
            c.by,
            c.summary,
            c.link
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default(),
            c.freeze
                .as_deref()
                .map(|f| format!(" — during a freeze: {f}"))
                .unwrap_or_default(),
        );
    }
    let _ = writeln!(o, "\n## Timeline\n");
    let _ = writeln!(o, "| Time (UTC) | Event | Detail |\n|---|---|---|");
    for e in timeline {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            format_time(e.at),
            e.kind,
            cell(&e.text)
        );
    }
    let _ = writeln!(o, "\n## Remediation\n");
    let rem: Vec<&TimelineEvent> = timeline
        .iter()
        .filter(|e| REMEDIATION.contains(&e.kind.as_str()))
        .collect();
    if rem.is_empty() {
        let _ = writeln!(o, "No automatic remediation ran.");
    }
    for e in &rem {
        let _ = writeln!(o, "- {} {}: {}", format_time(e.at), e.kind, e.text);
    }
    let _ = writeln!(o, "\n## Notes\n");
    let notes: Vec<&TimelineEvent> = timeline.iter().filter(|e| e.kind == "note").collect();
    if notes.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for e in notes {
        let _ = writeln!(o, "- {} {}", format_time(e.at), e.text);
    }
    let _ = writeln!(o, "\n## Feedback on its alerts\n");
    if feedback.is_empty() {
        let _ = writeln!(o, "None given.");
    }
    for f in feedback {
        let c = if f.comment.is_empty() {
            String::new()
        } else {
            format!(": {}", f.comment)
        };
        let _ = writeln!(
            o,
            "- {} {} said {} of {}{c}",
            format_time(f.at),
            f.by,
            f.verdict.as_str(),
            f.rule
        );
    }
    let _ = writeln!(o, "\n## Follow-ups\n");
    for f in &i.follow_ups {
        let mark = match f.state.as_str() {
            "done" => "x",
            _ => " ",
        };
        let owner = f
            .owner
            .as_deref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default();
        let dropped = if f.state == "dropped" {
            " — dropped"
        } else {
            ""
        };
        let _ = writeln!(o, "- [{mark}] #{} {}{owner}{dropped}", f.id, f.text);
    }
    if i.root_cause.is_none() {
        let _ = writeln!(o, "- [ ] Root cause: what broke, and why.");
    }
    if i.acked_at.is_none() && i.resolved_by.as_deref() != Some("remediation") {
        let _ = writeln!(o, "- [ ] Nobody acknowledged: check routing and on-call.");
    }
    if rem.iter().any(|e| {
        matches!(
            e.kind.as_str(),
            "failed" | "verify_failed" | "breaker_open" | "lost"
        )
    }) {
        let _ = writeln!(
            o,
            "- [ ] A remediation failed: fix the action or its trigger."
        );
    }
    if i.reopened > 0 || i.flapping {
        let _ = writeln!(o, "- [ ] It recurred: look for an intermittent cause.");
    }
    let _ = writeln!(o, "- [ ] Would an earlier or better alert have helped?");
    o
}
