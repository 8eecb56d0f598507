//! Backup schedules written the way people write crontab lines.
//!
//! The `cron` crate wants six or seven fields with seconds first, and counts weekdays 1–7
//! from Sunday, while crontab (and every user) counts 0–7 with 0 and 7 both Sunday and
//! 1 = Monday. Passing a crontab line through unchanged would silently run Monday's
//! backup on Sunday. So a schedule is parsed here: the 5-field crontab form gets a `0`
//! seconds field, and the day-of-week field is re-written as day *names*, which both
//! sides read the same way.

use std::fmt;
use std::str::FromStr;

use weekdays::Weekdays;

/// A validated schedule: what the user wrote, and what the `cron` crate is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    written: String,
    translated: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl Schedule {
    /// The expression as the user wrote it (this is what goes back into files).
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// The equivalent expression in the `cron` crate's dialect.
    pub fn translated(&self) -> &str {
        &self.translated
    }

    pub fn to_cron(&self) -> cron::Schedule {
        // Invariant: `FromStr` only builds a `Schedule` after `cron` accepted `translated`.
        cron::Schedule::from_str(&self.translated).expect("validated at parse time")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = written.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(ScheduleError(format!(
                    "has {n} fields; write a crontab line (`minute hour day-of-month month \
                     day-of-week`, e.g. \"*/5 * * * *\") or put seconds first (6 fields, \
                     e.g. \"0 */5 * * * *\")"
                )));
            }
        };
        let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        if !is_unrestricted(dom) && !is_unrestricted(dow) {
            // crontab runs when *either* field matches, the cron crate when *both* do:
            // there is no faithful translation, so refuse rather than guess.
            return Err(ScheduleError(format!(
                "restricts both day-of-month ({}) and day-of-week ({}); crontab would \
                 run when either matches, so the meaning is ambiguous: restrict only one of them",
                cron_item(dom),
                cron_item(dow)
            )));
        }
        let dow = translate_weekdays(dow)?;
        let translated = format!("{sec} {min} {hour} {dom} {month} {dow}");
        cron::Schedule::from_str(&translated).map_err(|_| {
            ScheduleError(
                "does not parse as a cron schedule: each field takes numbers in its range, \
                     `*`, ranges `a-b`, lists `a,b` and steps `/n` (minute 0-59, hour 0-23, \
                     day 1-31, month 1-12, weekday 0-7 or Mon-Sun)"
                    .to_string(),
            )
        })?;
        Ok(Schedule {
            written: written.to_string(),
            translated,
        })
    }
}

/// A schedule's field for a message: shown when it reads like cron (short, digits, names
/// and `* / , - ?`), by its length otherwise, since a schedule pasted in the wrong place
/// may be a secret (crate::redact).
fn cron_item(text: &str) -> String {
    let cron_like = text.len() <= 16
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*/,-?".contains(&b));
    if cron_like {
        format!("`{text}`")
    } else {
        crate::redact::described(text)
    }
}

fn is_unrestricted(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Rewrites a crontab day-of-week field (0–7, Sunday = 0 or 7, names, ranges, steps,
/// lists) into a list of day names for the `cron` crate.
fn translate_weekdays(field: &str) -> Result<String, ScheduleError> {
    if is_unrestricted(field) {
        return Ok(field.to_string());
    }
    let mut days = Weekdays::default();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(parse_step(s, field)?)),
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (parse_day(a, field)?, parse_day(b, field)?)
        } else {
            let a = parse_day(range, field)?;
            // crontab reads `a/step` as `a-7/step`.
            (a, if step.is_some() { 7 } else { a })
        };
        if first > last {
            return Err(ScheduleError(format!(
                "day-of-week {}: range {} runs backwards; write it as a list, e.g. \"5,6,0\"",
                cron_item(field),
                cron_item(range)
            )));
        }
        let step = step.unwrap_or(1);
        let mut day = first;
        while day <= last {
            days.insert(day % 7);
            day += step;
        }
    }
    Ok(days.to_cron_names())
}

fn parse_step(s: &str, field: &str) -> Result<u8, ScheduleError> {
    match s.parse::<u8>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ScheduleError(format!(
            "day-of-week {}: step {} must be a positive number",
            cron_item(field),
            cron_item(s)
        ))),
    }
}

/// A crontab weekday: 0–7 (0 and 7 are Sunday) or a three-letter name.
fn parse_day(s: &str, field: &str) -> Result<u8, ScheduleError> {
    if let Ok(n) = s.parse::<u8>() {
        if n <= 7 {
            return Ok(n);
        }
    } else if let Some(i) = weekdays::NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(s))
    {
        return Ok(i as u8);
    }
    Err(ScheduleError(format!(
        "day-of-week {}: {} is not a weekday; use 0-7 (0 and 7 are Sunday, 1 is Monday) or \
         names such as Mon",
        cron_item(field),
        cron_item(s)
    )))
}

/// A tiny weekday set, so this module needs no date library.
mod weekdays {
    pub const NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

    #[derive(Default)]
    pub struct Weekdays(u8);

    impl Weekdays {
        pub fn insert(&mut self, day: u8) {
            self.0 |= 1 << day;
        }

        pub fn to_cron_names(&self) -> String {
            if self.0 == 0x7f {
                return "*".to_string();
            }
            (0..7)
                .filter(|d| self.0 & (1 << d) != 0)
                .map(|d| NAMES[d as usize])
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(s: &str) -> String {
        s.parse::<Schedule>().unwrap().translated().to_string()
    }

    #[test]
    fn five_field_crontab_gets_a_seconds_field() {
        assert_eq!(translate("*/5 * * * *"), "0 */5 * * * *");
        assert_eq!(translate("0 * * * * *"), "0 * * * * *");
    }

    #[test]
    fn weekday_numbers_mean_what_crontab_means() {
        // crontab: 1 = Monday, 0 and 7 = Sunday
        assert_eq!(translate("0 3 * * 1"), "0 0 3 * * Mon");
        assert_eq!(translate("0 3 * * 0"), "0 0 3 * * Sun");
        assert_eq!(translate("0 3 * * 7"), "0 0 3 * * Sun");
        assert_eq!(translate("0 3 * * 1-5"), "0 0 3 * * Mon,Tue,Wed,Thu,Fri");
        assert_eq!(translate("0 3 * * 5-7"), "0 0 3 * * Sun,Fri,Sat");
        assert_eq!(translate("0 3 * * */2"), "0 0 3 * * Sun,Tue,Thu,Sat");
        assert_eq!(
            translate("0 3 * * mon-wed,FRI"),
            "0 0 3 * * Mon,Tue,Wed,Fri"
        );
        assert_eq!(translate("0 3 * * 0-6"), "0 0 3 * * *");
        // the 6-field form uses crontab's numbering too
        assert_eq!(translate("30 0 3 * * 1"), "30 0 3 * * Mon");
    }

    #[test]
    fn next_run_falls_on_the_crontab_weekday() {
        // 2026-11-22 is a Sunday. "Monday 03:00" must come out as Monday 2026-11-23.
        let s: Schedule = "0 3 * * 1".parse().unwrap();
        let next = s.to_cron().after(&sunday_noon()).next().unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-23T03:00:00+00:00");
        let s: Schedule = "0 0 3 * * 0".parse().unwrap();
        let next = s.to_cron().after(&sunday_noon()).next().unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-29T03:00:00+00:00");
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        let e = "* * * *".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = "0 3 * * 8".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("`8` is not a weekday"), "{e}");
        let e = "0 3 1 * 1".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("restrict only one"), "{e}");
        let e = "0 3 * * 6-2".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("runs backwards"), "{e}");
        let e = "0 61 * * *".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("does not parse"), "{e}");
    }

    fn sunday_noon() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }
}
