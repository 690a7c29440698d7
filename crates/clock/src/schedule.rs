//! When a report is due: every day, every week on a weekday, or every month on a day of the
//! month, at a time of day in the reports' time zone (summer time included). A report due
//! while the collector was down goes out once when it is back; one never goes out twice.

use jiff::civil::{Time, Weekday};
use jiff::ToSpan;
use tocsin_model::TimestampMs;

use crate::zone::Zone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Day,
    Week(Weekday),
    /// Day of the month, 1–28 (so that every month has it).
    Month(i8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every: Every,
    pub at: Time,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

impl Schedule {
    /// `every`: day, week or month; `day`: the weekday (mon … sun) for a week, the day of the
    /// month (1–28) for a month; `at`: HH:MM or HH:MM:SS.
    pub fn parse(every: &str, day: Option<&str>, at: &str) -> Result<Schedule, String> {
        let at: Time = at
            .parse()
            .map_err(|_| format!("at: {at:?} is not a time of day HH:MM"))?;
        let every = match (every, day) {
            ("day", None) => Every::Day,
            ("day", Some(_)) => return Err("day: not for a daily report".into()),
            ("week", d) => {
                let d = d.unwrap_or("mon").to_ascii_lowercase();
                Every::Week(
                    WEEKDAYS
                        .iter()
                        .find(|(n, _)| d.starts_with(n))
                        .map(|(_, w)| *w)
                        .ok_or_else(|| format!("day: {d:?} is not a weekday (mon … sun)"))?,
                )
            }
            ("month", d) => {
                let n: i8 = d
                    .unwrap_or("1")
                    .parse()
                    .ok()
                    .filter(|n| (1..=28).contains(n))
                    .ok_or_else(|| "day: a day of the month from 1 to 28".to_string())?;
                Every::Month(n)
            }
            (o, _) => return Err(format!("every: {o:?} is not day, week or month")),
        };
        Ok(Schedule { every, at })
    }

    /// The latest instant it was due at or before `now`.
    pub fn last_due(&self, now: TimestampMs, zone: &Zone) -> TimestampMs {
        let z = zone.zoned(now);
        let today = z.date();
        let at = |d: jiff::civil::Date| -> TimestampMs {
            zone.0
                .to_zoned(d.to_datetime(self.at))
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(i64::MIN)
        };
        match self.every {
            Every::Day => {
                let t = at(today);
                if t <= now {
                    t
                } else {
                    at(today.yesterday().unwrap_or(today))
                }
            }
            Every::Week(w) => {
                let back = (today.weekday().to_monday_zero_offset() - w.to_monday_zero_offset())
                    .rem_euclid(7);
                let d = today.checked_sub((back as i64).days()).unwrap_or(today);
                let t = at(d);
                if t <= now {
                    t
                } else {
                    at(d.checked_sub(7.days()).unwrap_or(d))
                }
            }
            Every::Month(n) => {
                let d = today.with().day(n).build().unwrap_or(today);
                let t = at(d);
                if t <= now {
                    t
                } else {
                    at(d.checked_sub(1.month()).unwrap_or(d))
                }
            }
        }
    }

    /// What a report due at `due` covers: the day, week or month before it, [from, due).
    pub fn period(&self, due: TimestampMs, zone: &Zone) -> (TimestampMs, TimestampMs) {
        let z = zone.zoned(due);
        let span = match self.every {
            Every::Day => 1.day(),
            Every::Week(_) => 7.days(),
            Every::Month(_) => 1.month(),
        };
        let from = z
            .checked_sub(span)
            .map(|f| f.timestamp().as_millisecond())
            .unwrap_or(due - 86_400_000);
        (from, due)
    }

    /// The due instant to run now, if any: the latest due instant when it is after the last
    /// run. With no run on record nothing is due: the first report is the next one.
    pub fn due(
        &self,
        last_run: Option<TimestampMs>,
        now: TimestampMs,
        zone: &Zone,
    ) -> Option<TimestampMs> {
        let due = self.last_due(now, zone);
        last_run.filter(|&l| due > l).map(|_| due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str, zone: &str) -> TimestampMs {
        let dt: jiff::civil::DateTime = s.parse().unwrap();
        jiff::tz::TimeZone::get(zone)
            .unwrap()
            .to_zoned(dt)
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn weekly_on_monday_morning_in_shanghai() {
        let z = Zone::parse("Asia/Shanghai").unwrap();
        let s = Schedule::parse("week", Some("mon"), "09:00").unwrap();
        // Saturday 2026-12-05: last due Monday 2026-11-30 09:00.
        let sat = ms("2026-12-05T12:00", "Asia/Shanghai");
        assert_eq!(s.last_due(sat, &z), ms("2026-11-30T09:00", "Asia/Shanghai"));
        // Monday 08:59 still the week before; 09:00 this one.
        let mon = ms("2026-12-07T09:00", "Asia/Shanghai");
        assert_eq!(
            s.last_due(mon - 60_000, &z),
            ms("2026-11-30T09:00", "Asia/Shanghai")
        );
        assert_eq!(s.last_due(mon, &z), mon);
        assert_eq!(
            s.period(mon, &z),
            (ms("2026-11-30T09:00", "Asia/Shanghai"), mon)
        );
        // The clock runs on: due once at 09:00 Monday, not again until the next Monday.
        let mut last = Some(sat);
        let mut sent = Vec::new();
        let mut t = sat;
        while t < ms("2026-12-15T00:00", "Asia/Shanghai") {
            if let Some(d) = s.due(last, t, &z) {
                sent.push(d);
                last = Some(t);
            }
            t += 60_000;
        }
        assert_eq!(sent, [mon, ms("2026-12-14T09:00", "Asia/Shanghai")]);
    }

    #[test]
    fn a_report_missed_while_down_goes_out_once_on_return_and_none_on_a_first_start() {
        let z = Zone::parse("UTC").unwrap();
        let s = Schedule::parse("day", None, "07:30").unwrap();
        let ran = ms("2026-12-01T07:30", "UTC");
        let back = ms("2026-12-04T12:00", "UTC");
        assert_eq!(
            s.due(Some(ran), back, &z),
            Some(ms("2026-12-04T07:30", "UTC"))
        );
        assert_eq!(s.due(Some(back), back + 60_000, &z), None);
        assert_eq!(s.due(None, back, &z), None);
    }

    #[test]
    fn months_and_summer_time() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        let s = Schedule::parse("month", Some("1"), "06:00").unwrap();
        let due = ms("2026-04-01T06:00", "Europe/Berlin");
        assert_eq!(s.last_due(due + 3_600_000, &z), due);
        // March in Berlin has a summer-time change: 31 days less one hour.
        let (from, to) = s.period(due, &z);
        assert_eq!(from, ms("2026-03-01T06:00", "Europe/Berlin"));
        assert_eq!(to - from, 31 * 86_400_000 - 3_600_000);
        // A daily report at 02:30 on the night the clocks jump: 03:30 local, once.
        let d = Schedule::parse("day", None, "02:30").unwrap();
        let after = ms("2026-03-29T12:00", "Europe/Berlin");
        assert_eq!(
            d.last_due(after, &z),
            ms("2026-03-29T03:30", "Europe/Berlin")
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(Schedule::parse("week", Some("fry"), "09:00")
            .unwrap_err()
            .contains("not a weekday"));
        assert!(Schedule::parse("month", Some("31"), "09:00")
            .unwrap_err()
            .contains("1 to 28"));
        assert!(Schedule::parse("hour", None, "09:00").is_err());
        assert!(Schedule::parse("day", None, "9am")
            .unwrap_err()
            .contains("HH:MM"));
    }
}
