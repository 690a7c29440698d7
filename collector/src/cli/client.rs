//! Subcommands that call a running collector's API: silences, incidents, tokens, acks.

//! Command line: `tocsin-collector [FLAGS]` runs the collector; subcommands do one-off jobs.

use std::process::ExitCode;

use super::*;
use crate::api::{ChangeBody, FeedbackBody, IncidentBody, NewSilence};
use tocsin_alerting::silence::{MatcherSpec, ScheduleSpec};

pub(super) fn print_answer(text: &str) -> Result<(), String> {
    println!("{text}");
    Ok(())
}

/// The request of one silence command.
pub(super) fn silence_request(
    client: &reqwest::Client,
    base: &str,
    action: SilenceCmd,
) -> Result<reqwest::RequestBuilder, String> {
    Ok(match action {
        SilenceCmd::Add {
            matchers,
            duration,
            author,
            comment,
            window,
            days,
            utc_offset,
            timezone,
        } => {
            let mut specs = Vec::new();
            for m in &matchers {
                specs.push(MatcherSpec::parse(m).ok_or_else(|| {
                    format!(
                        "matcher {m:?} must be name=value, name!=value, name=~regex or name!~regex"
                    )
                })?);
            }
            let schedule = match window {
                Some(w) => {
                    let (start, end) = w
                        .split_once('-')
                        .ok_or_else(|| format!("--window {w:?} must be HH:MM-HH:MM"))?;
                    Some(ScheduleSpec {
                        days,
                        start: start.into(),
                        end: end.into(),
                        utc_offset,
                        timezone,
                    })
                }
                None => None,
            };
            let body = NewSilence {
                matchers: specs,
                starts_at: None,
                ends_at: None,
                // A recurring window runs until expired; a plain silence for an hour.
                duration: duration.or_else(|| schedule.is_none().then(|| "1h".to_string())),
                created_by: author,
                comment,
                schedule,
            };
            client.post(format!("{base}/api/v1/silences")).json(&body)
        }
        SilenceCmd::List => client.get(format!("{base}/api/v1/silences")),
        SilenceCmd::Expire { id } => client.delete(format!("{base}/api/v1/silences/{id}")),
    })
}

pub(super) fn incidents(api: &ApiArgs, action: IncidentCmd) -> ExitCode {
    let q = |pairs: &[(&str, &Option<String>)]| {
        let p: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_ref()
                    .map(|v| format!("{k}={}", urlencoding::encode(v)))
            })
            .collect();
        if p.is_empty() {
            String::new()
        } else {
            format!("?{}", p.join("&"))
        }
    };
    let out_file = match &action {
        IncidentCmd::Report { out, .. } => out.clone(),
        _ => None,
    };
    call_api(
        "incidents",
        api,
        |c, base| {
            let b = format!("{base}/api/v1/incidents");
            Ok(match action {
                IncidentCmd::List {
                    state,
                    severity,
                    host,
                    from,
                    to,
                } => c.get(format!(
                    "{b}{}",
                    q(&[
                        ("state", &state),
                        ("severity", &severity),
                        ("host", &host),
                        ("from", &from),
                        ("to", &to)
                    ])
                )),
                IncidentCmd::Show { id } => c.get(format!("{b}/{id}")),
                IncidentCmd::Ack { id, by, comment } => {
                    c.post(format!("{b}/{id}/ack")).json(&IncidentBody {
                        by,
                        comment,
                        ..IncidentBody::default()
                    })
                }
                IncidentCmd::Resolve { id, by } => {
                    c.post(format!("{b}/{id}/resolve")).json(&IncidentBody {
                        by,
                        ..IncidentBody::default()
                    })
                }
                IncidentCmd::Note { id, by, text } => {
                    c.post(format!("{b}/{id}/notes")).json(&IncidentBody {
                        by,
                        text,
                        ..IncidentBody::default()
                    })
                }
                IncidentCmd::Assign { id, by, owner } => {
                    c.post(format!("{b}/{id}/assign")).json(&IncidentBody {
                        by,
                        owner: Some(owner),
                        ..IncidentBody::default()
                    })
                }
                IncidentCmd::Cause {
                    id,
                    by,
                    category,
                    text,
                } => c.post(format!("{b}/{id}/cause")).json(&IncidentBody {
                    by,
                    category: Some(category),
                    text,
                    ..IncidentBody::default()
                }),
                IncidentCmd::Impact { id, by, text } => {
                    c.post(format!("{b}/{id}/impact")).json(&IncidentBody {
                        by,
                        text,
                        ..IncidentBody::default()
                    })
                }
                IncidentCmd::FollowUp {
                    id,
                    by,
                    owner,
                    text,
                } => c.post(format!("{b}/{id}/follow-ups")).json(&IncidentBody {
                    by,
                    owner,
                    text,
                    ..IncidentBody::default()
                }),
                IncidentCmd::FollowUpState { id, n, by, state } => c
                    .post(format!("{b}/{id}/follow-ups/{n}"))
                    .json(&IncidentBody {
                        by,
                        state: Some(state),
                        ..IncidentBody::default()
                    }),
                IncidentCmd::Feedback {
                    id,
                    by,
                    verdict,
                    rule,
                    comment,
                } => c.post(format!("{b}/{id}/feedback")).json(&FeedbackBody {
                    by,
                    verdict,
                    rule,
                    comment,
                }),
                IncidentCmd::Report { id, .. } => c.get(format!("{b}/{id}/report")),
                IncidentCmd::Stats { from, to } => {
                    c.get(format!("{b}/stats{}", q(&[("from", &from), ("to", &to)])))
                }
            })
        },
        |text| match &out_file {
            Some(path) => std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
            None => {
                println!("{text}");
                Ok(())
            }
        },
    )
}

/// `change add|list`: a change's warnings (a freeze it was made in) also go to standard error.
pub(super) fn changes(api: &ApiArgs, action: ChangeCmd) -> ExitCode {
    call_api(
        "change",
        api,
        |c, base| {
            let b = format!("{base}/api/v1/changes");
            Ok(match action {
                ChangeCmd::Add {
                    service,
                    summary,
                    by,
                    kind,
                    hosts,
                    link,
                    start,
                    end,
                    override_reason,
                } => c.post(b).json(&ChangeBody {
                    service,
                    summary,
                    by,
                    kind: Some(kind),
                    hosts,
                    link,
                    start,
                    end,
                    override_reason,
                }),
                ChangeCmd::List { service, from, to } => {
                    let q: Vec<(&str, String)> = [("service", service), ("from", from), ("to", to)]
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v?)))
                        .collect();
                    c.get(b).query(&q)
                }
            })
        },
        |text| {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                for w in v["data"]["warnings"].as_array().into_iter().flatten() {
                    eprintln!("warning: {}", w.as_str().unwrap_or_default());
                }
            }
            print_answer(text)
        },
    )
}

/// Sends one request to a running collector's API; prints the answer's JSON.
pub(super) fn call_api(
    what: &str,
    api: &ApiArgs,
    request: impl FnOnce(&reqwest::Client, &str) -> Result<reqwest::RequestBuilder, String>,
    output: impl FnOnce(&str) -> Result<(), String>,
) -> ExitCode {
    let base = api.url.trim_end_matches('/');
    let run = async {
        let client = reqwest::Client::new();
        let mut req = request(&client, base)?;
        if let Some(t) = &api.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("{base}: {e}"))?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if ok {
            Ok(text)
        } else {
            // The API's error message, not its JSON envelope.
            Err(serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text))
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tocsin-collector {what}: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run).and_then(|text| output(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tocsin-collector {what}: {e}");
            ExitCode::from(1)
        }
    }
}
