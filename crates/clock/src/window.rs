//! Weekly times on a wall clock ("Sundays 02:00–04:00 in Europe/Berlin"): at a fixed UTC offset,
//! or in a time zone whose offset changes with the seasons, so a maintenance window, a change
//! freeze or an office's hours stay at the same local time across daylight saving changes.
//! Routes' time intervals, silences' maintenance windows, change freezes, business hours and
//! dynamic rules' exclusions all read their times here.

use std::collections::BTreeSet;

use tocsin_model::weekly::Weekly;
use tocsin_model::TimestampMs;

use crate::Zone;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The days and times; counted at offset 0 on the zone's wall clock when there is a zone.
    pub weekly: Weekly,
    pub zone: Option<Zone>,
}

impl Window {
    /// On `days` (mon … sun; none: every day), `from` to `to` (HH:MM), at `utc_offset` (e.g.
    /// `+08:00`) or in `timezone` (e.g. `Europe/Berlin`, with its daylight saving rules), not
    /// both; UTC without either.
    pub fn new(
        days: &[String],
        from: &str,
        to: &str,
        utc_offset: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<Window, String> {
        if utc_offset.is_some() && timezone.is_some() {
            return Err("utc_offset or timezone, not both".into());
        }
        let zone = timezone
            .map(|z| Zone::parse(z).map_err(|e| format!("timezone: {e}")))
            .transpose()?;
        let weekly = Weekly::new(days, from, to, utc_offset).map_err(|e| e.to_string())?;
        Ok(Window { weekly, zone })
    }

    /// Always in UTC or at a fixed offset: the window as `Weekly` alone reads it.
    pub fn fixed(weekly: Weekly) -> Window {
        Window { weekly, zone: None }
    }

    fn offset_ms(&self, t: TimestampMs) -> i64 {
        self.zone.as_ref().map_or(0, |z| z.offset_ms(t))
    }

    pub fn contains(&self, now: TimestampMs) -> bool {
        self.weekly.contains(now + self.offset_ms(now))
    }

    /// The first minute at or after `now` outside the window (at most a week on).
    pub fn end_after(&self, now: TimestampMs) -> TimestampMs {
        let mut t = now.div_euclid(60_000) * 60_000;
        for _ in 0..=7 * 1440 {
            if !self.contains(t) {
                return t;
            }
            t += 60_000;
        }
        t
    }

    /// How much of [`from`, `to`) lies inside the window, in ms.
    pub fn overlap_ms(&self, from: TimestampMs, to: TimestampMs) -> i64 {
        self.overlap_ms_on(from, to, |_, on| on)
    }

    /// The same, with `on(day, weekly)` deciding whether the window opens on a local day (days
    /// since 1970-01-01 on the window's wall clock; `weekly`: whether its days say so). The
    /// span is cut where the zone's offset changes, each piece read on its own wall clock: a
    /// night that loses an hour to summer time counts an hour less.
    pub fn overlap_ms_on(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        on: impl Fn(i64, bool) -> bool,
    ) -> i64 {
        if self.zone.is_none() {
            return self.weekly.overlap_ms_on(from, to, on);
        }
        const DAY: i64 = 86_400_000;
        let mut total = 0;
        let mut a = from;
        while a < to {
            // Offsets change at most a few times a year: a day holds at most one change,
            // found to the minute by halving.
            let mut b = (a + DAY).min(to);
            let off = self.offset_ms(a);
            if self.offset_ms(b - 1) != off {
                let (mut lo, mut hi) = (a, b - 1);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if self.offset_ms(mid) == off {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                b = hi;
            }
            total += self.weekly.overlap_ms_on(a + off, b + off, &on);
            a = b;
        }
        total
    }
}

/// Business hours: a weekly window, closed on `holidays` and open on `workdays` (days moved
/// to a weekend, as China's make-up working days), each a local day of the window
/// (`Weekly::local_day`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    pub window: Window,
    pub holidays: BTreeSet<i64>,
    pub workdays: BTreeSet<i64>,
}

impl BusinessHours {
    /// How much of [`from`, `to`) falls in business hours, in ms.
    pub fn overlap_ms(&self, from: TimestampMs, to: TimestampMs) -> i64 {
        self.window.overlap_ms_on(from, to, |day, weekly| {
            self.workdays.contains(&day) || (weekly && !self.holidays.contains(&day))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn ms(s: &str) -> TimestampMs {
        tocsin_model::parse_timestamp(s).unwrap()
    }

    /// Sundays 02:00–04:00 in Berlin: 01:00–03:00 UTC in winter, 00:00–02:00 UTC in summer.
    #[test]
    fn a_window_in_a_zone_keeps_its_local_time_across_daylight_saving() {
        let w = Window::new(
            &["sun".into()],
            "02:00",
            "04:00",
            None,
            Some("Europe/Berlin"),
        )
        .unwrap();
        // 2026-12-06 and 2026-07-05 are Sundays.
        assert!(!w.contains(ms("2026-12-06 00:59:00")));
        assert_eq!(
            w.end_after(ms("2026-12-06 01:00:00")),
            ms("2026-12-06 03:00:00")
        );
        assert!(w.contains(ms("2026-12-06 01:00:00")));
        assert!(w.contains(ms("2026-12-06 02:59:00")));
        assert!(!w.contains(ms("2026-12-06 03:00:00")));
        assert!(w.contains(ms("2026-07-05 00:00:00")));
        assert!(!w.contains(ms("2026-07-05 02:00:00")));
        assert_eq!(
            w.end_after(ms("2026-07-05 00:30:00")),
            ms("2026-07-05 02:00:00")
        );
        // The same window at the offset of the day it was written (+01:00) is an hour late
        // all summer.
        let fixed = Window::new(&["sun".into()], "02:00", "04:00", Some("+01:00"), None).unwrap();
        assert!(!fixed.contains(ms("2026-07-05 00:30:00")));
        assert!(fixed.contains(ms("2026-07-05 02:30:00")));
        assert_eq!(
            Window::new(&[], "02:00", "04:00", Some("+01:00"), Some("Europe/Berlin")),
            Err("utc_offset or timezone, not both".into())
        );
        assert!(
            Window::new(&[], "02:00", "04:00", None, Some("Mars/Olympus"))
                .unwrap_err()
                .contains("unknown time zone")
        );
    }

    /// Summer time began in Berlin on Sunday 2026-03-29 at 02:00 local (01:00 UTC): the night
    /// 00:00–06:00 lasted five hours, and 2026-10-25's seven.
    #[test]
    fn overlap_counts_the_hours_a_change_of_offset_takes_or_gives() {
        let night = Window::new(&[], "00:00", "06:00", None, Some("Europe/Berlin")).unwrap();
        let day = |d: &str| {
            night.overlap_ms(
                ms(&format!("{d} 12:00:00")) - DAY,
                ms(&format!("{d} 12:00:00")),
            )
        };
        const DAY: i64 = 86_400_000;
        assert_eq!(day("2026-03-28"), 6 * H);
        assert_eq!(day("2026-03-29"), 5 * H);
        assert_eq!(day("2026-10-25"), 7 * H);
        assert_eq!(day("2026-12-06"), 6 * H);
        // Against `contains`, minute by minute, over spans across both changes.
        for (from, to) in [
            ("2026-03-27 13:17:00", "2026-03-30 02:41:00"),
            ("2026-10-24 22:05:00", "2026-10-26 07:00:00"),
        ] {
            let (a, b) = (ms(from), ms(to));
            let counted = (a..b)
                .step_by(60_000)
                .filter(|&t| night.contains(t))
                .count() as i64
                * 60_000;
            assert_eq!(night.overlap_ms(a, b), counted, "{from} .. {to}");
        }
    }

    /// The week of 2026-09-28 (Monday) to 2026-10-04 at +08:00: the national day holiday from
    /// Thursday 1 October, and Sunday 27 September worked in its place.
    #[test]
    fn holidays_close_a_day_and_workdays_open_one() {
        let office = Window::new(
            &["mon", "tue", "wed", "thu", "fri"].map(String::from),
            "09:00",
            "18:00",
            Some("+08:00"),
            None,
        )
        .unwrap();
        let hours = BusinessHours {
            window: office.clone(),
            holidays: ["2026-10-01", "2026-10-02"]
                .map(|d| Weekly::local_day(d).unwrap())
                .into(),
            workdays: [Weekly::local_day("2026-09-27").unwrap()].into(),
        };
        let sun_27 = Weekly::local_day("2026-09-27").unwrap() * 86_400_000 - 8 * H;
        let week = 8 * 86_400_000;
        // Sunday, Monday to Wednesday: four days of nine hours; Thursday and Friday closed.
        assert_eq!(hours.overlap_ms(sun_27, sun_27 + week), 4 * 9 * H);
        assert_eq!(office.overlap_ms(sun_27, sun_27 + week), 5 * 9 * H);
    }

    /// An office 09:00–18:00 on weekdays in New York, a holiday on Friday 2026-11-27: its local
    /// day, not UTC's.
    #[test]
    fn business_hours_in_a_zone_close_on_local_holidays() {
        let office = Window::new(
            &["mon", "tue", "wed", "thu", "fri"].map(String::from),
            "09:00",
            "18:00",
            None,
            Some("America/New_York"),
        )
        .unwrap();
        let hours = BusinessHours {
            window: office,
            holidays: [Weekly::local_day("2026-11-27").unwrap()].into(),
            workdays: BTreeSet::new(),
        };
        // Thursday 2026-11-26 14:00 UTC (09:00 EST) to Saturday: Thursday and no Friday.
        let thu = ms("2026-11-26 14:00:00");
        assert_eq!(hours.overlap_ms(thu, thu + 2 * 86_400_000), 9 * H);
        assert_eq!(hours.window.overlap_ms(thu, thu + 2 * 86_400_000), 18 * H);
    }
}
