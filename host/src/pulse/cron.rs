//! Cron as users write it, on top of the `cron` crate. Users type Vixie cron:
//! five fields (or six with leading seconds), Sunday as 0 or 7, `@daily`-style
//! shorthands, and day-of-month OR day-of-week when both are restricted. The
//! crate wants seconds first, reads day-of-week 1 = Sunday and ANDs the two day
//! fields, so expressions are normalised here and never reach users raw.
//!
//! Time zones: occurrences are computed in the zone's wall-clock time and then
//! mapped to instants. A wall-clock time inside a spring-forward gap fires once,
//! at the end of the gap; a time in a repeated autumn hour fires once, at its
//! first occurrence.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Why an expression or time zone was rejected; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// A parsed, normalised schedule in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// One schedule, or two whose union is the Vixie day-of-month OR day-of-week.
    parts: Vec<cron::Schedule>,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expression` read in `timezone` (IANA name; None is UTC).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, CronError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                CronError(format!(
                    "unknown time zone {name:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""
                ))
            })?,
        };
        let parts = normalise(expression)?
            .iter()
            .map(|text| {
                cron::Schedule::from_str(text)
                    .map_err(|e| CronError(format!("invalid cron expression {expression:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CronSchedule { parts, tz })
    }

    /// Occurrences strictly after `after`, ascending, each instant once.
    pub fn after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Wall-clock times are walked as if they were UTC, then placed in the zone.
        let start = Utc.from_utc_datetime(&after.with_timezone(&self.tz).naive_local());
        let mut streams: Vec<_> = self.parts.iter().map(|s| s.after(&start).peekable()).collect();
        let mut last: Option<DateTime<Utc>> = None;
        std::iter::from_fn(move || loop {
            let next = streams
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| s.peek().map(|t| (i, *t)))
                .min_by_key(|(_, t)| *t)?;
            streams[next.0].next();
            let instant = self.instant(next.1.naive_utc());
            if instant > after && last.is_none_or(|l| instant > l) {
                last = Some(instant);
                return Some(instant);
            }
        })
    }

    /// The newest occurrence in `(after, until]`, and how many there were,
    /// counting at most `limit` (a cursor years old must not spin the host).
    pub fn latest_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> (Option<DateTime<Utc>>, usize) {
        let mut newest = None;
        let mut count = 0;
        for t in self.after(after).take_while(|t| *t <= until).take(limit) {
            newest = Some(t);
            count += 1;
        }
        (newest, count)
    }

    /// The first `n` occurrences after `after`.
    pub fn next_n(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.after(after).take(n).collect()
    }

    fn instant(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            LocalResult::None => {
                // Inside a gap: the first wall-clock minute that exists ends it.
                let mut probe = wall;
                loop {
                    probe += Duration::minutes(1);
                    if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                        let end =
                            t - Duration::seconds(i64::from(chrono::Timelike::second(&t.naive_local())));
                        return end.with_timezone(&Utc);
                    }
                }
            }
        }
    }
}

/// Turns a user's expression into one or two expressions for the `cron` crate.
fn normalise(expression: &str) -> Result<Vec<String>, CronError> {
    let trimmed = expression.trim();
    let expanded = match trimmed.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => {
            return Err(CronError(format!(
                "unknown shorthand {trimmed:?}: use @yearly, @monthly, @weekly, @daily or @hourly"
            )))
        }
        _ => trimmed,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        n => {
            return Err(CronError(format!(
                "cron expression {trimmed:?} has {n} fields: write 5 (minute hour day-of-month month \
                 day-of-week), optionally preceded by a seconds field"
            )))
        }
    };
    let [minute, hour, dom, month, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
    if [second, minute, hour, dom, month, dow]
        .iter()
        .any(|f| f.contains('?'))
    {
        return Err(CronError(format!(
            "cron expression {trimmed:?}: '?' is not standard cron; use '*'"
        )));
    }
    let days =
        day_of_week(dow).map_err(|e| CronError(format!("cron expression {trimmed:?}: day-of-week {e}")))?;
    let both_restricted = !dom.starts_with('*') && !dow.starts_with('*');
    Ok(if both_restricted {
        vec![
            format!("{second} {minute} {hour} {dom} {month} *"),
            format!("{second} {minute} {hour} * {month} {days}"),
        ]
    } else {
        vec![format!("{second} {minute} {hour} {dom} {month} {days}")]
    })
}

/// Expands a Vixie day-of-week field (0–7, Sunday is 0 or 7, names, ranges,
/// lists, steps) into the crate's numbering (1 = Sunday) as an explicit list.
fn day_of_week(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (
                b,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or(format!("step {s:?} is not a positive number"))?,
            ),
            None => (item, 1),
        };
        let (from, to) = match base {
            "*" => (0, 6),
            _ => match base.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if item.contains('/') => (day(base)?, 6),
                None => (day(base)?, day(base)?),
            },
        };
        if from > to {
            return Err(format!(
                "range {base:?} runs backwards; write the smaller day first"
            ));
        }
        for d in (from..=to).step_by(step as usize) {
            days[(d % 7) as usize] = true;
        }
    }
    let list: Vec<String> = (0..7).filter(|d| days[*d]).map(|d| (d + 1).to_string()).collect();
    Ok(list.join(","))
}

fn day(token: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Ok(n) = token.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("{n} is out of range: use 0-7 (0 and 7 are Sunday)"))
        };
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(token))
        .map(|p| p as u32)
        .ok_or(format!("{token:?} is not a day: use 0-7 or SUN-SAT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Option<&str>, after: &str, n: usize) -> Vec<String> {
        CronSchedule::parse(expr, tz)
            .unwrap()
            .next_n(at(after), n)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn sunday_is_zero_and_seven_and_one_to_five_is_monday_to_friday() {
        // 2026-11-23 is a Monday.
        assert_eq!(
            next("0 9 * * 0", None, "2026-11-23T00:00:00Z", 1),
            ["2026-11-29T09:00:00+00:00"]
        );
        assert_eq!(
            next("0 9 * * 7", None, "2026-11-23T00:00:00Z", 1),
            ["2026-11-29T09:00:00+00:00"]
        );
        let weekdays = next("0 9 * * 1-5", None, "2026-11-22T00:00:00Z", 6);
        assert_eq!(weekdays.first().unwrap(), "2026-11-23T09:00:00+00:00");
        assert_eq!(weekdays.last().unwrap(), "2026-11-30T09:00:00+00:00");
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 1st of the month OR any Friday.
        let got = next("0 0 1 * FRI", None, "2026-11-23T00:00:00Z", 3);
        assert_eq!(
            got,
            [
                "2026-11-27T00:00:00+00:00",
                "2026-12-01T00:00:00+00:00",
                "2026-12-04T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn a_spring_forward_gap_fires_once_at_its_end_and_a_repeated_hour_once() {
        // Europe/Berlin: 2026-03-29 02:00 -> 03:00; 2026-10-25 03:00 -> 02:00.
        let spring = next("30 2 * * *", Some("Europe/Berlin"), "2026-03-28T12:00:00Z", 2);
        assert_eq!(spring, ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]);
        let autumn = next("30 2 * * *", Some("Europe/Berlin"), "2026-10-24T12:00:00Z", 2);
        assert_eq!(autumn, ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]);
    }

    #[test]
    fn bad_expressions_say_how_to_fix_them() {
        for (expr, hint) in [
            ("61 * * * *", "invalid cron expression"),
            ("* * * *", "has 4 fields"),
            ("0 0 * * 8", "0-7"),
            ("@reboot", "unknown shorthand"),
        ] {
            let err = CronSchedule::parse(expr, None).unwrap_err().to_string();
            assert!(err.contains(hint), "{expr}: {err}");
        }
        let err = CronSchedule::parse("* * * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("IANA"), "{err}");
    }

    #[test]
    fn seconds_and_shorthands_are_accepted() {
        assert_eq!(
            next("*/20 * * * * *", None, "2026-11-23T00:00:00Z", 2),
            ["2026-11-23T00:00:20+00:00", "2026-11-23T00:00:40+00:00"]
        );
        assert_eq!(
            next("@daily", None, "2026-11-23T00:00:00Z", 1),
            ["2026-11-24T00:00:00+00:00"]
        );
    }

    /// 405 cases (45 expressions, 5 zones, 9 base instants around DST changes)
    /// computed by an independent implementation; see tests/data/cron_reference.py.
    #[test]
    fn next_occurrences_match_the_independent_reference_table() {
        let table: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/data/cron_reference.json")).unwrap();
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 40);
        let mut failures = Vec::new();
        for case in cases {
            let expression = case["expression"].as_str().unwrap();
            let zone = case["timezone"].as_str().unwrap();
            let after = at(case["after"].as_str().unwrap());
            let expected: Vec<DateTime<Utc>> = case["next"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| at(t.as_str().unwrap()))
                .collect();
            let got = CronSchedule::parse(expression, Some(zone))
                .unwrap()
                .next_n(after, expected.len());
            if got != expected {
                failures.push(format!(
                    "{expression:?} in {zone} after {after}: got {got:?}, want {expected:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}
