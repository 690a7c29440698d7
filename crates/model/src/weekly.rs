//! A recurring weekly window ("Fridays 18:00–24:00 at +08:00"): on some days of the week,
//! between two times of day, in a fixed UTC offset. An end before the start runs past
//! midnight into the next day. `tocsin_clock::Window` reads it in a time zone as well.

use std::fmt;

use crate::TimestampMs;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weekly {
    /// Bit i: weekday i (0 = Monday).
    days: u8,
    start_min: i64,
    end_min: i64,
    offset_min: i64,
}

/// Why a window is not valid; the texts are what users read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeeklyError {
    TimeOfDay(String),
    Day(String),
    UtcOffset(String),
    Empty,
}

impl fmt::Display for WeeklyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeeklyError::TimeOfDay(s) => write!(f, "invalid time of day {s:?}, expected HH:MM"),
            WeeklyError::Day(s) => write!(f, "unknown day {s:?}, expected mon … sun"),
            WeeklyError::UtcOffset(s) => write!(f, "invalid utcOffset {s:?}, expected e.g. +08:00"),
            WeeklyError::Empty => f.write_str("the window's start and end are the same time"),
        }
    }
}

impl std::error::Error for WeeklyError {}

fn hhmm(s: &str) -> Result<i64, WeeklyError> {
    let bad = || WeeklyError::TimeOfDay(s.to_string());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..=24).contains(&h) || !(0..60).contains(&m) || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `+08:00`, `-05:30`, `Z` or `UTC` in minutes east of UTC.
pub fn parse_utc_offset(o: &str) -> Result<i64, WeeklyError> {
    match o {
        "Z" | "UTC" => Ok(0),
        _ => {
            let (sign, rest) = match o.as_bytes().first() {
                Some(b'+') => (1, &o[1..]),
                Some(b'-') => (-1, &o[1..]),
                _ => return Err(WeeklyError::UtcOffset(o.to_string())),
            };
            Ok(sign * hhmm(rest).map_err(|_| WeeklyError::UtcOffset(o.to_string()))?)
        }
    }
}

impl Weekly {
    /// On `days` (mon … sun, any prefix of three letters or more; none: every day), from
    /// `start` to `end` (HH:MM) at `utc_offset` (default UTC).
    pub fn new(
        days: &[String],
        start: &str,
        end: &str,
        utc_offset: Option<&str>,
    ) -> Result<Weekly, WeeklyError> {
        let mut mask = 0u8;
        for d in days {
            let lower = d.to_ascii_lowercase();
            let i = DAYS
                .iter()
                .position(|x| lower.starts_with(x))
                .ok_or_else(|| WeeklyError::Day(d.clone()))?;
            mask |= 1 << i;
        }
        let offset_min = utc_offset.map(parse_utc_offset).transpose()?.unwrap_or(0);
        let (start_min, end_min) = (hhmm(start)?, hhmm(end)?);
        if start_min == end_min {
            return Err(WeeklyError::Empty);
        }
        Ok(Weekly {
            days: if mask == 0 { 0x7f } else { mask },
            start_min,
            end_min,
            offset_min,
        })
    }

    /// Whether the window opens on a local day (days since 1970-01-01 at its offset).
    fn on(&self, day: i64) -> bool {
        // 1970-01-01 was a Thursday (index 3).
        self.days & (1 << (day + 3).rem_euclid(7)) != 0
    }

    pub fn contains(&self, now: TimestampMs) -> bool {
        let local_min = now.div_euclid(60_000) + self.offset_min;
        let day = local_min.div_euclid(1440);
        let minute = local_min.rem_euclid(1440);
        let on = |d: i64| self.on(d);
        if self.start_min < self.end_min {
            on(day) && (self.start_min..self.end_min).contains(&minute)
        } else {
            (on(day) && minute >= self.start_min) || (on(day - 1) && minute < self.end_min)
        }
    }

    /// How much of [`from`, `to`) lies inside the window, in ms, with `on(day, weekly)`
    /// deciding whether the window opens on a local day (days since 1970-01-01 at the
    /// window's offset; `weekly`: whether its days say so). One step per day of the span.
    pub fn overlap_ms_on(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        on: impl Fn(i64, bool) -> bool,
    ) -> i64 {
        if to <= from {
            return 0;
        }
        let offset = self.offset_min * 60_000;
        let (from_l, to_l) = (from + offset, to + offset);
        // A window that starts on the day before `from` can run into it.
        let first = from_l.div_euclid(DAY_MS) - 1;
        let last = to_l.div_euclid(DAY_MS);
        let mut total = 0;
        for day in first..=last {
            if !on(day, self.on(day)) {
                continue;
            }
            let start = day * DAY_MS + self.start_min * 60_000;
            let end = if self.start_min < self.end_min {
                day * DAY_MS + self.end_min * 60_000
            } else {
                (day + 1) * DAY_MS + self.end_min * 60_000
            };
            total += (end.min(to_l) - start.max(from_l)).max(0);
        }
        total
    }

    /// The window's local day (days since 1970-01-01 at its offset) of `YYYY-MM-DD`.
    pub fn local_day(date: &str) -> Result<i64, String> {
        let bad = || format!("{date:?} is not a date like 2026-10-01");
        let mut it = date.split('-');
        let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let (y, m, d): (i64, i64, i64) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if !(1..=9999).contains(&y)
            || !(1..=12).contains(&m)
            || d < 1
            || d > days_in[m as usize - 1]
        {
            return Err(bad());
        }
        Ok(crate::days_from_civil(y, m, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weekly {
        fn overlap_ms(&self, from: TimestampMs, to: TimestampMs) -> i64 {
            self.overlap_ms_on(from, to, |_, on| on)
        }
    }

    /// Weekdays 09:00-18:00 at +08:00.
    fn office() -> Weekly {
        Weekly::new(
            &["mon", "tue", "wed", "thu", "fri"].map(String::from),
            "09:00",
            "18:00",
            Some("+08:00"),
        )
        .unwrap()
    }

    #[test]
    fn dates_are_local_days() {
        assert_eq!(Weekly::local_day("1970-01-01"), Ok(0));
        assert_eq!(Weekly::local_day("2000-03-01"), Ok(11_017));
        assert_eq!(Weekly::local_day("2026-12-04"), Ok(20_791));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1",
            "26-01-01x",
            "2024-02-30",
        ] {
            assert!(Weekly::local_day(bad).is_err(), "{bad}");
        }
        assert!(Weekly::local_day("2024-02-29").is_ok());
    }

    #[test]
    fn overlap_is_the_time_inside_counted_minute_by_minute() {
        let fri_10utc = 1_796_378_400_000;
        let office = office();
        // Friday 17:00 at +08:00 to Monday 12:00: an hour on Friday, three on Monday.
        let fri_17 = fri_10utc - 3_600_000;
        let mon_12 = fri_17 + 2 * 86_400_000 + 19 * 3_600_000;
        assert_eq!(office.overlap_ms(fri_17, mon_12), 4 * 3_600_000);
        assert_eq!(office.overlap_ms(mon_12, fri_17), 0);
        // Against the window's own `contains`, minute by minute, over spans of up to nine days
        // starting anywhere (a window past midnight, an offset west of UTC, seconds in both).
        let windows = [
            office,
            Weekly::new(
                &["sat".into(), "sun".into()],
                "22:00",
                "02:30",
                Some("-05:30"),
            )
            .unwrap(),
            Weekly::new(&[], "00:00", "24:00", None).unwrap(),
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as i64
        };
        for w in windows {
            for _ in 0..60 {
                let from = fri_10utc + next(14 * 1440) * 60_000;
                let to = from + next(9 * 1440) * 60_000;
                let counted = (from / 60_000..to / 60_000)
                    .filter(|m| w.contains(m * 60_000))
                    .count() as i64
                    * 60_000;
                assert_eq!(w.overlap_ms(from, to), counted, "{w:?} {from} {to}");
                // Inside a minute, the seconds count too.
                let (f, t) = (from + 17_000, to + 17_000);
                let inside = |ms: i64| i64::from(w.contains(ms));
                let exact = counted - inside(from) * 17_000 + inside(to) * 17_000;
                assert_eq!(w.overlap_ms(f, t), exact.max(0), "{w:?} {f} {t}");
            }
        }
    }

    #[test]
    fn windows_in_a_zone_and_past_midnight() {
        // 2026-12-04 was a Friday; 10:00 UTC is 18:00 at +08:00.
        let fri_10utc = 1_796_378_400_000;
        let w = Weekly::new(&["fri".into()], "18:00", "24:00", Some("+08:00")).unwrap();
        assert!(w.contains(fri_10utc));
        assert!(!w.contains(fri_10utc - 60_000));
        let night = Weekly::new(&[], "22:00", "02:00", None).unwrap();
        assert!(night.contains(fri_10utc + 13 * 3_600_000));
        assert!(!night.contains(fri_10utc + 7 * 3_600_000));
        assert_eq!(
            Weekly::new(&["fry".into()], "1:00", "2:00", None),
            Err(WeeklyError::Day("fry".into()))
        );
        assert_eq!(
            Weekly::new(&[], "25:00", "2:00", None),
            Err(WeeklyError::TimeOfDay("25:00".into()))
        );
        assert_eq!(
            Weekly::new(&[], "1:00", "1:00", None),
            Err(WeeklyError::Empty)
        );
    }
}
