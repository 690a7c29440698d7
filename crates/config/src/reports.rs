//! `timezone:` and `reports:` of the collector's configuration: the zone messages and reports
//! show times in, and which reports go to which receivers when.

use std::time::Duration;

use tocsin_clock::{Schedule, Zone};
use tocsin_model::Locale;

use crate::Problems;

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReports {
    /// zh-CN (default) or en.
    pub locale: Option<String>,
    pub daily: Option<RawReport>,
    pub weekly: Option<RawReport>,
    pub monthly: Option<RawReport>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Time of day, HH:MM (or HH:MM:SS), in `timezone`.
    pub at: String,
    /// weekly: mon … sun (default mon); monthly: 1–28 (default 1).
    pub day: Option<String>,
    pub receivers: Vec<String>,
    /// weekly, monthly: the services reported on (default: every one in `services:`).
    #[serde(default)]
    pub services: Vec<String>,
    /// daily: how far ahead disks are forecast full and certificates expire (default 7d and
    /// 30d).
    pub disk_horizon: Option<String>,
    pub cert_horizon: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportSchedule {
    /// daily, weekly or monthly.
    pub kind: &'static str,
    pub schedule: Schedule,
    pub receivers: Vec<String>,
    pub services: Vec<String>,
    pub disk_horizon: Duration,
    pub cert_horizon: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportsConfig {
    pub locale: Locale,
    pub schedules: Vec<ReportSchedule>,
}

/// The zone times are shown in: `local` (default), `UTC`, `+08:00` or an IANA name.
pub fn validate_zone(p: &mut Problems, raw: Option<&str>) -> Zone {
    p.take("timezone", Zone::parse(raw.unwrap_or("local")))
        .unwrap_or_else(Zone::utc)
}

/// `receivers`: (name, whether it can carry a report: not an SMS or Alertmanager receiver).
pub fn validate_reports(
    p: &mut Problems,
    raw: RawReports,
    receivers: &[(String, bool)],
    services: &[String],
) -> ReportsConfig {
    let locale = p
        .take(
            "reports.locale",
            Locale::parse(raw.locale.as_deref(), "zh-CN"),
        )
        .unwrap_or(Locale::ZhCn);
    let mut schedules = Vec::new();
    for (kind, every, r) in [
        ("daily", "day", raw.daily),
        ("weekly", "week", raw.weekly),
        ("monthly", "month", raw.monthly),
    ] {
        let Some(r) = r else { continue };
        let at = format!("reports.{kind}");
        let schedule = p.take(&at, Schedule::parse(every, r.day.as_deref(), &r.at));
        if r.receivers.is_empty() {
            p.push(format!("{at}.receivers: name at least one receiver"));
        }
        for name in &r.receivers {
            match receivers.iter().find(|(n, _)| n == name) {
                None => p.push(format!("{at}.receivers: no receiver named {name:?}")),
                Some((_, false)) => p.push(format!(
                    "{at}.receivers: {name:?} is an SMS or Alertmanager receiver, which cannot carry a report"
                )),
                Some(_) => {}
            }
        }
        for s in &r.services {
            if !services.contains(s) {
                p.push(format!("{at}.services: {s:?} is not in services:"));
            }
        }
        let disk_horizon = p.duration(
            &format!("{at}.disk_horizon"),
            r.disk_horizon.as_deref(),
            "7d",
        );
        let cert_horizon = p.duration(
            &format!("{at}.cert_horizon"),
            r.cert_horizon.as_deref(),
            "30d",
        );
        if let Some(schedule) = schedule {
            schedules.push(ReportSchedule {
                kind,
                schedule,
                receivers: r.receivers,
                services: r.services,
                disk_horizon,
                cert_horizon,
            });
        }
    }
    ReportsConfig { locale, schedules }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_known_receivers_able_to_carry_them() {
        let raw: RawReports = serde_yaml_ng::from_str(
            "weekly: { day: mon, at: \"09:00\", receivers: [mail, sms, nobody], services: [members, gone] }\n\
             monthly: { day: \"31\", at: \"09:00\", receivers: [] }\n\
             daily: { at: \"08:30\", receivers: [mail] }\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let recv = [("mail".to_string(), true), ("sms".to_string(), false)];
        let r = validate_reports(&mut p, raw, &recv, &["members".to_string()]);
        let e = p.finish(|| ()).unwrap_err().problems.join("\n");
        assert!(
            e.contains("reports.weekly.receivers: \"sms\" is an SMS or Alertmanager receiver"),
            "{e}"
        );
        assert!(
            e.contains("reports.weekly.receivers: no receiver named \"nobody\""),
            "{e}"
        );
        assert!(
            e.contains("reports.weekly.services: \"gone\" is not in services:"),
            "{e}"
        );
        assert!(
            e.contains("reports.monthly: day: a day of the month from 1 to 28"),
            "{e}"
        );
        assert!(
            e.contains("reports.monthly.receivers: name at least one receiver"),
            "{e}"
        );
        assert_eq!(
            r.schedules.iter().map(|s| s.kind).collect::<Vec<_>>(),
            ["daily", "weekly"]
        );
        let mut p = Problems::default();
        assert_eq!(
            validate_zone(&mut p, Some("Asia/Shanghai")),
            Zone::parse("Asia/Shanghai").unwrap()
        );
        validate_zone(&mut p, Some("Moon/Base"));
        assert!(p.finish(|| ()).unwrap_err().problems[0].starts_with("timezone: unknown time zone"));
    }
}
