//! Schedule windows: PRs are only opened or updated inside them (like Renovate's `schedule`, a
//! window a run must land in, not a trigger). Days of the week and an hour range in a time zone;
//! a range that ends before it starts runs past midnight (`22:00-06:00` on `fri` is Friday night
//! into Saturday morning). Daylight-saving changes follow the zone's rules (jiff's bundled tzdb).

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

/// A weekly window.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Days the window opens on; empty means every day.
    pub days: Vec<Weekday>,
    /// Start and end, in minutes after midnight; `None` means the whole day.
    pub hours: Option<(u16, u16)>,
    /// The zone the days and hours are in.
    pub zone: TimeZone,
    /// The zone's name, for messages.
    pub zone_name: String,
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

/// Parse `mon`, `monday`, `Mon`.
pub fn parse_day(text: &str) -> Result<Weekday, String> {
    let t = text.trim().to_ascii_lowercase();
    let day = match t.get(..3).unwrap_or("") {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return Err(format!("`{text}` is not a day; use mon, tue, wed, thu, fri, sat or sun")),
    };
    Ok(day)
}

fn parse_time(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let (h, m) = t.split_once(':').unwrap_or((t, "0"));
    let h: u16 = h.parse().map_err(|_| format!("`{text}` is not a time"))?;
    let m: u16 = m.parse().map_err(|_| format!("`{text}` is not a time"))?;
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("`{text}` is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// Parse `22-06`, `09:00-17:30`.
pub fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let (a, b) =
        text.split_once('-').ok_or_else(|| format!("`{text}` is not an hour range; write e.g. `22:00-06:00`"))?;
    let (start, end) = (parse_time(a)?, parse_time(b)?);
    if start == end {
        return Err(format!("`{text}` is an empty range"));
    }
    Ok((start, end))
}

/// Look up an IANA time zone (`Europe/Berlin`, `UTC`).
pub fn parse_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name)
        .map_err(|_| format!("`{name}` is not a known time zone; use an IANA name such as Europe/Berlin"))
}

impl Schedule {
    /// Is `at` inside the window?
    pub fn contains(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.zone.clone());
        let day = local.weekday();
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let on = |d: Weekday| self.days.is_empty() || self.days.contains(&d);
        match self.hours {
            None => on(day),
            Some((start, end)) if start < end => on(day) && minute >= start && minute < end,
            // Past midnight: the late part belongs to the day it started on.
            Some((start, end)) => (on(day) && minute >= start) || (on(day.previous()) && minute < end),
        }
    }

    /// `mon,fri 22:00-06:00 Europe/Berlin`.
    pub fn describe(&self) -> String {
        let days = if self.days.is_empty() {
            "every day".to_string()
        } else {
            self.days.iter().map(|d| day_name(*d)).collect::<Vec<_>>().join(",")
        };
        let hours = self
            .hours
            .map_or(String::new(), |(s, e)| format!(" {:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60));
        format!("{days}{hours} {}", self.zone_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(days: &[&str], hours: &str, zone: &str) -> Schedule {
        Schedule {
            days: days.iter().map(|d| parse_day(d).unwrap_or_else(|e| panic!("{e}"))).collect(),
            hours: Some(parse_hours(hours).unwrap_or_else(|e| panic!("{e}"))),
            zone: parse_zone(zone).unwrap_or_else(|e| panic!("{e}")),
            zone_name: zone.into(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn window_edges_in_a_time_zone() {
        // 09:00-17:00 Mon-Fri in Berlin (UTC+1 in winter).
        let s = schedule(&["mon", "tue", "wed", "thu", "fri"], "09:00-17:00", "Europe/Berlin");
        assert!(!s.contains(at("2026-11-23T07:59:59Z")), "08:59:59 Berlin");
        assert!(s.contains(at("2026-11-23T08:00:00Z")), "09:00 Berlin opens");
        assert!(s.contains(at("2026-11-23T15:59:59Z")));
        assert!(!s.contains(at("2026-11-23T16:00:00Z")), "17:00 closes");
        assert!(!s.contains(at("2026-11-22T10:00:00Z")), "Sunday");
    }

    #[test]
    fn ranges_past_midnight_belong_to_their_start_day() {
        let s = schedule(&["fri"], "22-06", "UTC");
        assert!(s.contains(at("2026-11-27T22:30:00Z")), "Friday night");
        assert!(s.contains(at("2026-11-28T05:59:00Z")), "Saturday early, started Friday");
        assert!(!s.contains(at("2026-11-28T22:30:00Z")), "Saturday night");
        assert!(!s.contains(at("2026-11-27T05:00:00Z")), "Friday early belongs to Thursday");
    }

    #[test]
    fn daylight_saving_moves_the_window_in_utc() {
        let s = schedule(&[], "02:30-03:30", "America/New_York");
        // Summer (UTC-4): 02:30 local is 06:30Z; winter (UTC-5): 07:30Z.
        assert!(s.contains(at("2026-07-01T06:45:00Z")) && !s.contains(at("2026-07-01T07:45:00Z")));
        assert!(s.contains(at("2026-12-01T07:45:00Z")) && !s.contains(at("2026-12-01T06:45:00Z")));
        assert!(parse_zone("Mars/Olympus").is_err() && parse_hours("9").is_err() && parse_day("funday").is_err());
    }
}
