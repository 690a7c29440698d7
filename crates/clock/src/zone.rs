//! Times and durations as people read them: in the configured time zone (default: the
//! collector host's), `2026-12-05 03:22:27 (UTC+8)`, and durations in two units
//! (`6 分 12 秒`, `6 min 12 s`).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use tocsin_model::{Locale, TimestampMs};

#[derive(Debug, Clone)]
pub struct Zone(pub TimeZone);

impl Default for Zone {
    fn default() -> Self {
        Zone::system()
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.0.iana_name() == other.0.iana_name()
            && self.0.to_offset(Timestamp::UNIX_EPOCH) == other.0.to_offset(Timestamp::UNIX_EPOCH)
    }
}

impl Eq for Zone {}

impl Zone {
    /// The collector host's zone (`TZ`, else `/etc/localtime`), UTC when it cannot be told.
    pub fn system() -> Zone {
        Zone(TimeZone::try_system().unwrap_or(TimeZone::UTC))
    }

    pub fn utc() -> Zone {
        Zone(TimeZone::UTC)
    }

    /// `local` (the host's), `UTC`, a fixed offset such as `+08:00`, or an IANA name such as
    /// `Asia/Shanghai`.
    pub fn parse(s: &str) -> Result<Zone, String> {
        match s {
            "local" => Ok(Zone::system()),
            "UTC" | "Z" => Ok(Zone::utc()),
            _ if s.starts_with(['+', '-']) => {
                let min = tocsin_model::weekly::parse_utc_offset(s).map_err(|e| e.to_string())?;
                let off = jiff::tz::Offset::from_seconds((min * 60) as i32)
                    .map_err(|e| format!("offset {s:?}: {e}"))?;
                Ok(Zone(TimeZone::fixed(off)))
            }
            _ => TimeZone::get(s)
                .map(Zone)
                .map_err(|_| format!("unknown time zone {s:?} (an IANA name such as Asia/Shanghai, an offset such as +08:00, UTC or local)")),
        }
    }

    /// The zone's offset from UTC at `ms`, in milliseconds (daylight saving time included).
    pub fn offset_ms(&self, ms: TimestampMs) -> i64 {
        let t = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
        i64::from(self.0.to_offset(t).seconds()) * 1000
    }

    pub fn zoned(&self, ms: TimestampMs) -> jiff::Zoned {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.0.clone())
    }

    /// `2026-12-05 03:22:27 (UTC+8)`.
    pub fn format(&self, ms: TimestampMs) -> String {
        let z = self.zoned(ms);
        format!("{} ({})", z.strftime("%Y-%m-%d %H:%M:%S"), utc_offset(&z))
    }

    /// `2026-12-05 03:22`.
    pub fn format_minute(&self, ms: TimestampMs) -> String {
        self.zoned(ms).strftime("%Y-%m-%d %H:%M").to_string()
    }

    /// `2026-12-05`.
    pub fn date(&self, ms: TimestampMs) -> String {
        self.zoned(ms).strftime("%Y-%m-%d").to_string()
    }

    /// The hour of the day, 0–23.
    pub fn hour(&self, ms: TimestampMs) -> u8 {
        self.zoned(ms).hour() as u8
    }

    /// `UTC+8`, `UTC+5:30`, `UTC`.
    pub fn offset_label(&self, ms: TimestampMs) -> String {
        utc_offset(&self.zoned(ms))
    }
}

fn utc_offset(z: &jiff::Zoned) -> String {
    let secs = z.offset().seconds();
    if secs == 0 {
        return "UTC".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
    if m == 0 {
        format!("UTC{sign}{h}")
    } else {
        format!("UTC{sign}{h}:{m:02}")
    }
}

/// A duration in its two largest units: `45 秒`, `6 分 12 秒`, `2 小时 5 分`, `3 天 4 小时`
/// (`45 s`, `6 min 12 s`, `2 h 5 min`, `3 d 4 h`).
pub fn duration(ms: i64, locale: Locale) -> String {
    match locale {
        Locale::En => two_units(ms, ["d", "h", "min", "s"]),
        Locale::ZhCn => two_units(ms, ["天", "小时", "分", "秒"]),
    }
}

fn two_units(ms: i64, [day, hour, min, sec]: [&str; 4]) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, x) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{x} {sec}"),
        (0, 0, _) if x == 0 => format!("{m} {min}"),
        (0, 0, _) => format!("{m} {min} {x} {sec}"),
        (0, _, 0) => format!("{h} {hour}"),
        (0, _, _) => format!("{h} {hour} {m} {min}"),
        (_, 0, _) => format!("{d} {day}"),
        _ => format!("{d} {day} {h} {hour}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_412_147_714; // 2026-12-04T19:22:27.714Z

    #[test]
    fn times_in_a_zone_with_their_offset() {
        let sh = Zone::parse("Asia/Shanghai").unwrap();
        assert_eq!(sh.format(T), "2026-12-05 03:22:27 (UTC+8)");
        assert_eq!(
            Zone::parse("+08:00").unwrap().format(T),
            "2026-12-05 03:22:27 (UTC+8)"
        );
        assert_eq!(Zone::utc().format(T), "2026-12-04 19:22:27 (UTC)");
        assert_eq!(
            Zone::parse("Asia/Kolkata").unwrap().format(T),
            "2026-12-05 00:52:27 (UTC+5:30)"
        );
        // Summer time: the offset follows the date.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.offset_label(T), "UTC+1");
        assert_eq!(berlin.offset_label(T - 150 * 86_400_000), "UTC+2");
        assert!(Zone::parse("Mars/Olympus")
            .unwrap_err()
            .contains("unknown time zone"));
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn durations_in_two_units() {
        assert_eq!(duration(372_000, Locale::ZhCn), "6 分 12 秒");
        assert_eq!(duration(372_000, Locale::En), "6 min 12 s");
        assert_eq!(duration(7_500_000, Locale::ZhCn), "2 小时 5 分");
        assert_eq!(duration(45_000, Locale::ZhCn), "45 秒");
        assert_eq!(
            duration(3 * 86_400_000 + 4 * 3_600_000, Locale::ZhCn),
            "3 天 4 小时"
        );
    }
}
