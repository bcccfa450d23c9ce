//! Cron as users write it, on top of the `cron` crate. Users type Vixie cron:
//! five fields (or six with leading seconds), Sunday as 0 or 7, `@daily`-style
//! shorthands, and day-of-month OR day-of-week when both are restricted. The
//! crate wants seconds first, reads day-of-week 1 = Sunday and ANDs the two day
//! fields, so expressions are checked and normalised here and never reach users
//! raw: every error quotes the expression as the user wrote it.
//!
//! Time zones: occurrences are computed in the zone's wall-clock time and then
//! mapped to instants, following Vixie cron's rule for clock changes:
//!
//! * A wall-clock time inside a spring-forward gap fires once, at the end of
//!   the gap.
//! * In a repeated autumn hour, a schedule whose hour field starts with `*`
//!   (`*` or `*/n`, which includes `@hourly`) follows real time: a wall-clock
//!   time that happens twice fires at both of its instants, so `* * * * *`
//!   keeps firing every minute and `0 * * * *` every hour through the night.
//! * A schedule with a fixed hour (a number, list or range) runs such a time
//!   once, at its first instant: `30 2 * * *` runs once on the night the clocks
//!   go back.
//!
//! Beyond Vixie cron, a task's schedule may use Jenkins' `H` to spread tasks
//! over time by their names ([`CronSchedule::for_task`], see `spread`), and
//! any schedule the calendar extensions `L`, `LW`, `5L` and `1#2` (see
//! `calendar`).

mod calendar;
mod count;
mod fields;
mod kinds;
mod spread;
mod zones;

use std::collections::VecDeque;
use std::iter::Peekable;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use fields::{Fields, Written};

/// Why an expression or time zone was rejected; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// A parsed, normalised schedule in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// One schedule, or two whose union is the Vixie day-of-month OR day-of-week.
    parts: Vec<cron::Schedule>,
    fields: Fields,
    tz: Tz,
}

/// How far ahead of a start instant a clock change can still move wall-clock
/// time back to before the start's own wall-clock time. Real zones change
/// their clocks by at most a few hours, and never twice within this span.
const CLOCK_CHANGE_REACH: Duration = Duration::hours(3);

impl CronSchedule {
    /// Parses `expression` read in `timezone` (IANA name; None is UTC).
    /// Refuses `H`, which needs a task to spread by: see [`CronSchedule::for_task`].
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, CronError> {
        Self::read(expression, timezone, None)
    }

    /// Parses the schedule of the task `identity` (such as
    /// "plugin-name/task-name"), which may use Jenkins' `H`: each `H` stands
    /// for values chosen by a hash of `identity`, the same on every host and
    /// after every restart, and different from task to task.
    pub fn for_task(expression: &str, timezone: Option<&str>, identity: &str) -> Result<Self, CronError> {
        Self::read(expression, timezone, Some(identity))
    }

    /// Parses `expression` in `timezone`, spreading `H` by `identity` if any.
    fn read(expression: &str, timezone: Option<&str>, identity: Option<&str>) -> Result<Self, CronError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                CronError(format!(
                    "unknown time zone {name:?}: use an IANA name; nearest: {}",
                    zones::nearest(name)
                        .iter()
                        .map(|z| format!("{z:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        let expanded = expand_shorthand(expression)?;
        let written = split_fields(expression, expanded)?;
        let fields = Fields::read(expression, &written, identity)?;
        let parts = fields
            .for_crate(&written)
            .iter()
            .map(|text| {
                // Every field was checked above; should the crate still object,
                // its message would show the normalised form, not the user's.
                cron::Schedule::from_str(text).map_err(|_| {
                    CronError(format!(
                        "invalid cron expression {expression:?}: it could not be read; write minute \
                         hour day-of-month month day-of-week, such as \"*/5 * * * *\""
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CronSchedule { parts, fields, tz })
    }

    /// Occurrences strictly after `after`, ascending, each instant once.
    pub fn after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        Occurrences {
            schedule: self,
            walls: self.walls_after(self.walk_start(after)),
            walked: None,
            deferred: VecDeque::new(),
            after,
            last: None,
        }
    }

    /// The first `n` occurrences after `after`.
    pub fn next_n(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.after(after).take(n).collect()
    }

    /// The wall-clock time from which to walk so that no occurrence after
    /// `after` is missed. Usually that is `after`'s own wall-clock time, but
    /// when the clocks go back within the next hours, the second copies of the
    /// repeated times lie after `after` although their wall-clock times do
    /// not; a schedule that fires them must walk from the start of the
    /// repeated stretch.
    fn walk_start(&self, after: DateTime<Utc>) -> NaiveDateTime {
        let wall = after.naive_utc();
        let own = wall.checked_add_signed(self.offset_at(after)).unwrap_or(wall);
        if !self.fields.hour_wildcard {
            return own;
        }
        let reach = after.checked_add_signed(CLOCK_CHANGE_REACH).unwrap_or(after);
        self.clock_changes(after, reach)
            .iter()
            .filter(|change| change.at > after && change.after < change.before)
            .map(|change| change.at.naive_utc() + change.after - Duration::seconds(1))
            .fold(own, NaiveDateTime::min)
    }

    /// The zone's offset from UTC at `instant`.
    fn offset_at(&self, instant: DateTime<Utc>) -> Duration {
        let offset = self.tz.offset_from_utc_datetime(&instant.naive_utc()).fix();
        Duration::seconds(i64::from(offset.local_minus_utc()))
    }

    /// Matching wall-clock times strictly after `start`, ascending, each once.
    fn walls_after(&self, start: NaiveDateTime) -> WallClock<'_> {
        let mut walls = WallClock {
            parts: &self.parts,
            streams: Vec::new(),
            days: (!self.fields.calendar.is_empty()).then_some(&self.fields),
        };
        walls.restart(start);
        walls
    }

    /// The instant a wall-clock time fires at, and for a repeated time the
    /// second instant too when the schedule follows real time.
    fn instants(&self, wall: NaiveDateTime) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => (t.with_timezone(&Utc), None),
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                let (first, second) = (first.min(second), first.max(second));
                (first, self.fields.hour_wildcard.then_some(second))
            }
            LocalResult::None => (self.end_of_gap(wall), None),
        }
    }

    /// The instant a wall-clock time inside a spring-forward gap fires at:
    /// the first wall-clock minute that exists again.
    fn end_of_gap(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        let mut probe = wall;
        loop {
            probe += Duration::minutes(1);
            if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                let end = t - Duration::seconds(i64::from(t.naive_local().second()));
                return end.with_timezone(&Utc);
            }
        }
    }
}

/// The wall-clock times of every part of a schedule, merged.
struct WallClock<'a> {
    parts: &'a [cron::Schedule],
    streams: Vec<Peekable<cron::ScheduleIterator<'a, Utc>>>,
    /// Set when the crate walks every day (calendar extensions): only the
    /// days these fields match are kept.
    days: Option<&'a Fields>,
}

impl WallClock<'_> {
    /// Walks on from `start` (exclusive), forgetting what was peeked.
    fn restart(&mut self, start: NaiveDateTime) {
        // The crate walks wall-clock time when handed it as if it were UTC.
        let start = Utc.from_utc_datetime(&start);
        self.streams = self
            .parts
            .iter()
            .map(|part| part.after(&start).peekable())
            .collect();
    }

    /// The next time of the merged streams, whatever its day.
    fn merged(&mut self) -> Option<NaiveDateTime> {
        let next = self.streams.iter_mut().filter_map(|s| s.peek().copied()).min()?;
        for stream in &mut self.streams {
            if stream.peek() == Some(&next) {
                stream.next();
            }
        }
        Some(next.naive_utc())
    }
}

impl Iterator for WallClock<'_> {
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        loop {
            let next = self.merged()?;
            let Some(fields) = self.days else {
                return Some(next);
            };
            if fields.day_matches(next.date()) {
                return Some(next);
            }
            // Rather than every time of a day that does not match, skip to
            // the first time of the next day that does.
            let day = fields.next_day(next.date())?;
            self.restart(day.and_time(NaiveTime::MIN) - Duration::seconds(1));
        }
    }
}

/// Occurrences in instant order. Walking wall-clock time yields the first
/// instants of a repeated hour in order but its second instants an hour too
/// early, so those are held back until the walk passes them.
struct Occurrences<'a> {
    schedule: &'a CronSchedule,
    walls: WallClock<'a>,
    /// The next first instant from the walk, not yet handed out.
    walked: Option<DateTime<Utc>>,
    /// Second instants of repeated times, ascending, not yet handed out.
    deferred: VecDeque<DateTime<Utc>>,
    after: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
}

impl Occurrences<'_> {
    fn walk(&mut self) -> Option<DateTime<Utc>> {
        let wall = self.walls.next()?;
        let (first, second) = self.schedule.instants(wall);
        self.deferred.extend(second);
        Some(first)
    }
}

impl Iterator for Occurrences<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if self.walked.is_none() {
                self.walked = self.walk();
            }
            let candidate = match (self.deferred.front(), self.walked) {
                (Some(deferred), Some(walked)) if *deferred < walked => self.deferred.pop_front(),
                (_, Some(_)) => self.walked.take(),
                (Some(_), None) => self.deferred.pop_front(),
                (None, None) => return None,
            }?;
            if candidate > self.after && self.last.is_none_or(|l| candidate > l) {
                self.last = Some(candidate);
                return Some(candidate);
            }
        }
    }
}

/// What a task's `H` values and jitter are picked by: its plugin's name and
/// its own, the same on every replica, restart and version.
pub fn task_identity(plugin: &str, task: &str) -> String {
    format!("{plugin}/{task}")
}

/// The five-field form of an `@`-shorthand, or the expression itself.
fn expand_shorthand(expression: &str) -> Result<&str, CronError> {
    let trimmed = expression.trim();
    Ok(match trimmed.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => {
            return Err(CronError(format!(
                "unknown shorthand {expression:?}: use @yearly, @monthly, @weekly, @daily or @hourly"
            )))
        }
        _ => trimmed,
    })
}

/// Splits five fields (or six, seconds first); five fields run at second 0.
/// The schedule in English ("Every 15 minutes", "At 09:00 AM, Monday through
/// Friday"); None when it cannot be put in words.
pub fn in_words(expression: &str) -> Option<String> {
    let expanded = expand_shorthand(expression).ok()?;
    let written = split_fields(expression, expanded).ok()?;
    let five = [
        written.minute,
        written.hour,
        written.day_of_month,
        written.month,
        written.day_of_week,
    ]
    .join(" ");
    let words = cronspeak::describe(&five).ok()?;
    Some(match written.second {
        "0" => words,
        "*" if five == "* * * * *" => "Every second".to_owned(),
        second => format!("{words}, at second {second}"),
    })
}

/// `at` as an RFC 3339 instant in `timezone` (UTC when None or unknown).
pub fn local_time(at: DateTime<Utc>, timezone: Option<&str>) -> String {
    let tz = timezone
        .and_then(|name| Tz::from_str(name).ok())
        .unwrap_or(Tz::UTC);
    at.with_timezone(&tz).to_rfc3339()
}

fn split_fields<'a>(expression: &str, expanded: &'a str) -> Result<Written<'a>, CronError> {
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        n => {
            return Err(CronError(format!(
                "cron expression {expression:?} has {n} fields: write 5 (minute hour day-of-month month \
                 day-of-week), optionally preceded by a seconds field"
            )))
        }
    };
    Ok(Written {
        second,
        minute: rest[0],
        hour: rest[1],
        day_of_month: rest[2],
        month: rest[3],
        day_of_week: rest[4],
    })
}

#[cfg(test)]
mod dst_tests;
#[cfg(test)]
mod tests;
