//! Reports people read on a schedule: the daily inspection (what needs looking at today) and
//! the weekly and monthly service reports (service levels against their objectives,
//! incidents and how fast they were answered, trends, the rules to review, changes and what
//! followed them, capacity). Each comes as Markdown, HTML and a few lines for a chat robot,
//! in zh-CN or en, with times in the configured zone.
//!
//! Pure: the caller gathers the inputs (incidents, changes, feedback, measured levels) and
//! the time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tocsin_incidents::{Change, Feedback, Incident};
use tocsin_model::{Level, Locale, TimestampMs};

pub mod doc;

use doc::Doc;
pub use tocsin_clock::{duration, Every, Schedule, Zone};

/// A report ready to send: what the outbox holds for it (`{"tocsinReport": …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// daily, weekly or monthly.
    pub kind: String,
    pub title: String,
    /// The lines a chat message carries.
    pub summary: Vec<String>,
    pub markdown: String,
    pub html: String,
}

impl Report {
    /// What the outbox holds for it.
    pub fn to_outbox(&self) -> String {
        serde_json::json!({ "tocsinReport": self }).to_string()
    }

    /// Whether an outbox row holds a report.
    pub fn is_outbox(raw: &str) -> bool {
        raw.starts_with("{\"tocsinReport\"")
    }

    /// The report an outbox row holds, if it holds one (else it is an alert notification).
    pub fn from_outbox(raw: &str) -> Option<Report> {
        if !Report::is_outbox(raw) {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        serde_json::from_value(v.get("tocsinReport")?.clone()).ok()
    }

    /// A short message to people (an incident assigned to them), sent as reports are.
    pub fn notice(title: String, lines: Vec<String>) -> Report {
        let mut d = Doc::default();
        d.list(lines.clone());
        Report::new("notice", title, lines, &d)
    }

    fn new(kind: &str, title: String, summary: Vec<String>, doc: &Doc) -> Report {
        Report {
            kind: kind.into(),
            markdown: format!("# {title}\n\n{}", doc.markdown()),
            html: doc.html(&title),
            title,
            summary,
        }
    }
}

/// One service's levels over the period, as measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceLine {
    pub name: String,
    pub owner: Option<String>,
    /// The objective (0.999).
    pub objective: Option<f64>,
    /// Share of the period its probes succeeded.
    pub availability: Option<f64>,
    /// Share of its error budget left at the end of the period.
    pub budget_remaining: Option<f64>,
    pub rto_ms: Option<i64>,
    /// A latency objective: its threshold (seconds), objective, and the share of the period
    /// the service's probes answered within it.
    pub latency: Option<(f64, f64, Option<f64>)>,
}

/// A filesystem's growth over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityLine {
    pub host: String,
    pub mount: String,
    /// Share used at the end, and the change over the period (points of share).
    pub used: f64,
    pub growth: f64,
    /// Days until full at the period's growth rate, if it grows.
    pub days_to_full: Option<f64>,
}

pub struct PeriodInput<'a> {
    /// weekly or monthly.
    pub kind: &'a str,
    pub from: TimestampMs,
    pub to: TimestampMs,
    pub zone: &'a Zone,
    pub locale: Locale,
    pub services: Vec<ServiceLine>,
    /// Incidents opened in the period (others are left out).
    pub incidents: &'a [Incident],
    pub changes: &'a [Change],
    pub feedback: &'a [Feedback],
    /// How long after a change an incident on its service or hosts counts as following it.
    pub changes_before_ms: i64,
    pub capacity: Vec<CapacityLine>,
}

/// A share as a percentage with up to three decimals: `99.9 %`, `99.95 %`, `-50 %`.
fn pct(x: f64) -> String {
    let s = format!("{:.3}", x * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} %")
}

fn mean_ms(v: impl Iterator<Item = i64>) -> Option<i64> {
    let v: Vec<i64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<i64>() / v.len() as i64)
}

fn level_name(l: Level, loc: Locale) -> &'static str {
    match l {
        Level::Warning => loc.pick("警告", "warning"),
        Level::Critical => loc.pick("严重", "critical"),
        Level::Emergency => loc.pick("紧急", "emergency"),
    }
}

/// The weekly or monthly service report.
pub fn period_report(inp: &PeriodInput<'_>) -> Report {
    let l = inp.locale;
    let z = inp.zone;
    let dash = || "—".to_string();
    let opened: Vec<&Incident> = inp
        .incidents
        .iter()
        .filter(|i| (inp.from..inp.to).contains(&i.opened_at))
        .collect();
    let kind_name = if inp.kind == "monthly" {
        l.pick("月报", "monthly report")
    } else {
        l.pick("周报", "weekly report")
    };
    let title = match l {
        Locale::ZhCn => format!(
            "服务{kind_name} {} – {}",
            z.date(inp.from),
            z.date(inp.to - 1)
        ),
        Locale::En => format!(
            "Service {kind_name} {} – {}",
            z.date(inp.from),
            z.date(inp.to - 1)
        ),
    };
    let mut d = Doc::default();
    d.p(format!(
        "{} {} – {} ({})",
        l.pick("统计时段", "Period"),
        z.format_minute(inp.from),
        z.format_minute(inp.to),
        z.offset_label(inp.to)
    ));

    // Summary.
    let by_level = |lv: Level| opened.iter().filter(|i| i.severity == lv).count();
    let mtta = mean_ms(opened.iter().filter_map(|i| i.time_to_ack_ms()));
    let mttr = mean_ms(opened.iter().filter_map(|i| i.time_to_resolve_ms()));
    let fmt_d = |m: Option<i64>| m.map(|m| duration(m, l)).unwrap_or_else(dash);
    let mut summary = vec![match l {
        Locale::ZhCn => format!(
            "事件 {} 起（紧急 {}，严重 {}，警告 {}），平均响应 {}，平均恢复 {}",
            opened.len(),
            by_level(Level::Emergency),
            by_level(Level::Critical),
            by_level(Level::Warning),
            fmt_d(mtta),
            fmt_d(mttr)
        ),
        Locale::En => format!(
            "{} incidents ({} emergency, {} critical, {} warning), MTTA {}, MTTR {}",
            opened.len(),
            by_level(Level::Emergency),
            by_level(Level::Critical),
            by_level(Level::Warning),
            fmt_d(mtta),
            fmt_d(mttr)
        ),
    }];
    d.h(2, l.pick("概览", "Summary"));
    d.p(summary[0].clone());

    // Service levels.
    d.h(2, l.pick("服务等级", "Service levels"));
    let mut rows = Vec::new();
    for s in &inp.services {
        let mine: Vec<&&Incident> = opened
            .iter()
            .filter(|i| i.services.contains(&s.name))
            .collect();
        let mttr = mean_ms(mine.iter().filter_map(|i| i.time_to_resolve_ms()));
        let breaches = mine
            .iter()
            .filter(|i| i.breaches.contains(&format!("rto:{}", s.name)))
            .count();
        let met = match (s.availability, s.objective) {
            (Some(a), Some(o)) if a >= o => l.pick("达标", "met"),
            (Some(_), Some(_)) => l.pick("未达标", "missed"),
            _ => "—",
        };
        rows.push(vec![
            s.name.clone(),
            s.owner.clone().unwrap_or_else(dash),
            s.objective.map(pct).unwrap_or_else(dash),
            s.availability.map(pct).unwrap_or_else(dash),
            met.to_string(),
            s.budget_remaining.map(pct).unwrap_or_else(dash),
            mine.len().to_string(),
            fmt_d(mttr),
            s.rto_ms.map(|r| duration(r, l)).unwrap_or_else(dash),
            breaches.to_string(),
        ]);
        if let Some((th, o, Some(a))) = s.latency {
            let met = if a >= o {
                l.pick("达标", "met")
            } else {
                l.pick("未达标", "missed")
            };
            summary.push(match l {
                Locale::ZhCn => format!(
                    "{}：{} 毫秒内响应 {}（目标 {}，{met}）",
                    s.name,
                    (th * 1000.0).round(),
                    pct(a),
                    pct(o)
                ),
                Locale::En => format!(
                    "{}: answered within {} ms {} (objective {}, {met})",
                    s.name,
                    (th * 1000.0).round(),
                    pct(a),
                    pct(o)
                ),
            });
        }
        if let (Some(a), Some(o)) = (s.availability, s.objective) {
            summary.push(match l {
                Locale::ZhCn => format!("{}：可用性 {}（目标 {}，{met}）", s.name, pct(a), pct(o)),
                Locale::En => format!(
                    "{}: availability {} (objective {}, {met})",
                    s.name,
                    pct(a),
                    pct(o)
                ),
            });
        }
    }
    d.table_or(
        &[
            l.pick("服务", "Service"),
            l.pick("负责团队", "Owner"),
            l.pick("目标", "Objective"),
            l.pick("可用性", "Availability"),
            l.pick("结论", "Result"),
            l.pick("剩余错误预算", "Budget left"),
            l.pick("事件", "Incidents"),
            "MTTR",
            "RTO",
            l.pick("超出 RTO", "Past RTO"),
        ],
        rows,
        l.pick(
            "未配置服务目标（services）。",
            "No service has an objective (services:).",
        ),
    );

    // Incidents.
    d.h(2, l.pick("事件", "Incidents"));
    let count_by = |key: &dyn Fn(&Incident) -> String| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for i in &opened {
            *m.entry(key(i)).or_default() += 1;
        }
        joined_or_dash(
            &m.into_iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>(),
        )
    };
    d.list(vec![
        format!(
            "{}: {}",
            l.pick("按级别", "By severity"),
            count_by(&|i| level_name(i.severity, l).to_string())
        ),
        format!(
            "{}: {}",
            l.pick("按类别", "By category"),
            count_by(&|i| i.category.clone())
        ),
        format!(
            "{}: {}",
            l.pick("按中断类型", "By outage kind"),
            count_by(&|i| i.outage.clone())
        ),
    ]);
    let rows: Vec<Vec<String>> = opened
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.title.clone(),
                level_name(i.severity, l).to_string(),
                z.format_minute(i.opened_at),
                fmt_d(i.time_to_ack_ms()),
                fmt_d(i.time_to_resolve_ms()),
                i.owner.clone().unwrap_or_else(dash),
                if i.breaches.is_empty() {
                    l.pick("无", "none").to_string()
                } else {
                    i.breaches.iter().cloned().collect::<Vec<_>>().join(", ")
                },
                i.root_cause
                    .as_ref()
                    .map(|c| format!("{}: {}", c.category, c.text))
                    .unwrap_or_else(dash),
                if i.follow_ups.is_empty() {
                    dash()
                } else {
                    format!(
                        "{}/{}",
                        i.follow_ups.iter().filter(|f| f.state == "done").count(),
                        i.follow_ups.len()
                    )
                },
            ]
        })
        .collect();
    d.table_or(
        &[
            "ID",
            l.pick("标题", "Title"),
            l.pick("级别", "Severity"),
            l.pick("发生时间", "Opened"),
            l.pick("响应用时", "To acknowledge"),
            l.pick("恢复用时", "To resolve"),
            l.pick("负责人", "Owner"),
            l.pick("超时", "Deadlines missed"),
            l.pick("根因", "Root cause"),
            l.pick("改进项（完成/总数）", "Follow-ups (done/all)"),
        ],
        rows,
        l.pick("本期无事件。", "No incident in the period."),
    );

    // Deadlines per severity.
    let stats = tocsin_incidents::stats(inp.incidents, inp.from, inp.to, inp.to);
    d.h(2, l.pick("响应时限达成率", "Response deadlines"));
    let rows: Vec<Vec<String>> = Level::ALL
        .iter()
        .rev()
        .filter_map(|lv| {
            let s = stats.deadlines.get(lv.as_str())?;
            Some(vec![
                level_name(*lv, l).to_string(),
                s.incidents.to_string(),
                s.response_rate.map(pct).unwrap_or_else(dash),
                s.resolution_rate.map(pct).unwrap_or_else(dash),
            ])
        })
        .collect();
    d.table_or(
        &[
            l.pick("级别", "Severity"),
            l.pick("事件", "Incidents"),
            l.pick("按时响应", "Acknowledged in time"),
            l.pick("按时恢复", "Resolved in time"),
        ],
        rows,
        l.pick("本期无事件。", "No incident in the period."),
    );

    // Trends.
    d.h(2, l.pick("趋势", "Trends"));
    let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
    let mut t = inp.from;
    while t < inp.to {
        per_day.entry(z.date(t)).or_default();
        t += 86_400_000;
    }
    per_day.entry(z.date(inp.to - 1)).or_default();
    let mut per_hour = [0usize; 24];
    for i in &opened {
        *per_day.entry(z.date(i.opened_at)).or_default() += 1;
        per_hour[z.hour(i.opened_at) as usize] += 1;
    }
    d.table(
        &[l.pick("日期", "Day"), l.pick("事件", "Incidents")],
        per_day
            .into_iter()
            .map(|(k, v)| vec![k, v.to_string()])
            .collect(),
    );
    let busy: Vec<String> = per_hour
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| format!("{h:02}:00 {n}"))
        .collect();
    d.p(format!(
        "{}: {}",
        l.pick("按小时分布", "By hour of day"),
        joined_or_dash(&busy)
    ));
    let causes: Vec<String> = stats
        .noisy_rules
        .iter()
        .take(5)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    d.p(format!(
        "{}: {}",
        l.pick(
            "主要原因（触发最多的规则）",
            "Top causes (rules that fired most)"
        ),
        joined_or_dash(&causes)
    ));

    // Rules to review.
    d.h(2, l.pick("待评估规则", "Rules to review"));
    let review = tocsin_incidents::rule_review(inp.incidents, inp.feedback, inp.from, inp.to);
    let rows: Vec<Vec<String>> = review
        .iter()
        .filter(|r| r.review.is_some())
        .map(|r| {
            vec![
                r.rule.clone(),
                r.fired.to_string(),
                r.mean_firing_seconds
                    .map(|s| duration((s * 1000.0) as i64, l))
                    .unwrap_or_else(dash),
                r.feedback
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.review.clone().unwrap_or_default(),
            ]
        })
        .collect();
    summary.push(match l {
        Locale::ZhCn => format!("待评估规则 {} 条", rows.len()),
        Locale::En => format!("{} rules to review", rows.len()),
    });
    d.table_or(
        &[
            l.pick("规则", "Rule"),
            l.pick("触发次数", "Fired"),
            l.pick("平均持续", "Mean firing"),
            l.pick("反馈", "Feedback"),
            l.pick("原因", "Why"),
        ],
        rows,
        l.pick("无。", "None."),
    );

    // Changes and what followed them.
    d.h(2, l.pick("变更", "Changes"));
    let changes: Vec<&Change> = inp
        .changes
        .iter()
        .filter(|c| (inp.from..inp.to).contains(&c.start_ms))
        .collect();
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            let followed: Vec<String> = opened
                .iter()
                .filter(|i| {
                    i.opened_at >= c.start_ms && c.concerns(i, inp.changes_before_ms, inp.to)
                })
                .map(|i| i.id.clone())
                .collect();
            vec![
                z.format_minute(c.start_ms),
                c.service.clone(),
                c.kind.clone(),
                c.by.clone(),
                c.summary.clone(),
                joined_or_dash(&followed),
            ]
        })
        .collect();
    let after = rows.iter().filter(|r| r[5] != "—").count();
    summary.push(match l {
        Locale::ZhCn => format!("变更 {} 次，其后发生事件的 {} 次", changes.len(), after),
        Locale::En => format!(
            "{} changes, {} followed by an incident",
            changes.len(),
            after
        ),
    });
    d.table_or(
        &[
            l.pick("时间", "Time"),
            l.pick("服务", "Service"),
            l.pick("类型", "Kind"),
            l.pick("执行人", "By"),
            l.pick("内容", "Summary"),
            l.pick("其后的事件", "Incidents after"),
        ],
        rows,
        l.pick("本期无变更记录。", "No change recorded in the period."),
    );

    // Capacity.
    d.h(2, l.pick("容量趋势", "Capacity"));
    if inp.capacity.is_empty() {
        d.p(l.pick("无数据。", "No data."));
    } else {
        d.table(
            &[
                l.pick("主机", "Host"),
                l.pick("挂载点", "Mount"),
                l.pick("已用", "Used"),
                l.pick("本期增长", "Growth"),
                l.pick("预计写满（天）", "Days to full"),
            ],
            inp.capacity
                .iter()
                .map(|c| {
                    vec![
                        c.host.clone(),
                        c.mount.clone(),
                        pct(c.used),
                        format!("{:+.1} %", c.growth * 100.0),
                        c.days_to_full
                            .map(|d| format!("{d:.0}"))
                            .unwrap_or_else(dash),
                    ]
                })
                .collect(),
        );
    }
    Report::new(inp.kind, title, summary, &d)
}

/// What the daily inspection looks at, as found at `at`.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub at: TimestampMs,
    /// Hosts judged down, with since when.
    pub hosts_down: Vec<(String, Option<TimestampMs>)>,
    /// Filesystems forecast full within the inspection's horizon: host, mount, days left.
    pub disks: Vec<(String, String, f64)>,
    /// Certificates expiring soon: target, days left.
    pub certs: Vec<(String, f64)>,
    /// Probes failing now: probe, host, service.
    pub failing_probes: Vec<(String, String, String)>,
    /// Silences ending within a day: id, comment, end.
    pub silences_ending: Vec<(i64, String, TimestampMs)>,
    /// Notifications given up on (dead letters) in the last day, and in all.
    pub dead_letters: u64,
    /// Incidents open now.
    pub open_incidents: Vec<Incident>,
    /// Incidents opened in the last day.
    pub incidents_last_day: usize,
}

/// The daily inspection.
pub fn inspection(i: &Inspection, zone: &Zone, locale: Locale) -> Report {
    let l = locale;
    let title = match l {
        Locale::ZhCn => format!("每日巡检 {}", zone.date(i.at)),
        Locale::En => format!("Daily inspection {}", zone.date(i.at)),
    };
    let mut d = Doc::default();
    d.p(format!(
        "{} {}",
        l.pick("巡检时间", "As of"),
        zone.format(i.at)
    ));
    let mut summary = Vec::new();
    let mut section = |d: &mut Doc, zh: &str, en: &str, items: Vec<String>| {
        let name = l.pick(zh, en);
        summary.push(format!("{name}: {}", items.len()));
        d.h(2, name);
        if items.is_empty() {
            d.p(l.pick("正常。", "All clear."));
        } else {
            d.list(items);
        }
    };
    section(
        &mut d,
        "主机宕机或失联",
        "Hosts down or silent",
        i.hosts_down
            .iter()
            .map(|(h, since)| match since {
                Some(t) => format!("{h} ({} {})", l.pick("自", "since"), zone.format_minute(*t)),
                None => h.clone(),
            })
            .collect(),
    );
    section(
        &mut d,
        "磁盘即将写满",
        "Disks filling up",
        i.disks
            .iter()
            .map(|(h, m, days)| match l {
                Locale::ZhCn => format!("{h} {m}：约 {days:.1} 天后写满"),
                Locale::En => format!("{h} {m}: full in about {days:.1} days"),
            })
            .collect(),
    );
    section(
        &mut d,
        "证书即将过期",
        "Certificates expiring",
        i.certs
            .iter()
            .map(|(t, days)| match l {
                Locale::ZhCn => format!("{t}：{days:.0} 天后过期"),
                Locale::En => format!("{t}: expires in {days:.0} days"),
            })
            .collect(),
    );
    section(
        &mut d,
        "探测失败",
        "Failing probes",
        i.failing_probes
            .iter()
            .map(|(p, h, s)| {
                if s.is_empty() {
                    format!("{p} @ {h}")
                } else {
                    format!("{p} @ {h} ({s})")
                }
            })
            .collect(),
    );
    section(
        &mut d,
        "今日到期的静默",
        "Silences ending today",
        i.silences_ending
            .iter()
            .map(|(id, c, end)| format!("#{id} {c} → {}", zone.format_minute(*end)))
            .collect(),
    );
    section(
        &mut d,
        "未处理事件",
        "Open incidents",
        i.open_incidents
            .iter()
            .map(|x| {
                format!(
                    "{} {} ({}, {} {})",
                    x.id,
                    x.title,
                    level_name(x.severity, l),
                    l.pick("已持续", "open for"),
                    duration(i.at - x.opened_at, l)
                )
            })
            .collect(),
    );
    d.h(2, l.pick("通知投递", "Delivery"));
    let dl = match l {
        Locale::ZhCn => format!(
            "投递失败（死信）通知 {} 条；过去 24 小时新事件 {} 起",
            i.dead_letters, i.incidents_last_day
        ),
        Locale::En => format!(
            "{} notifications dead-lettered; {} incidents opened in the last 24 hours",
            i.dead_letters, i.incidents_last_day
        ),
    };
    d.p(dl.clone());
    summary.push(dl);
    Report::new("daily", title, summary, &d)
}

/// Items joined with commas, or a dash when there are none.
fn joined_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "—".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests;
