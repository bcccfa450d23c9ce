//! Reading the six fields of a Vixie cron expression ourselves, so that a
//! mistake is reported in the user's own terms (their bounds, their text)
//! rather than in the `cron` crate's, and so that the sets of matching values
//! are at hand for counting occurrences arithmetically.

use chrono::{Datelike, NaiveDate};

use super::calendar::Calendar;
use super::kinds::{Kind, DAY_OF_MONTH, DAY_OF_WEEK, HOUR, MINUTE, MONTH, MONTH_NAMES, SECOND};
use super::{calendar, spread, CronError};

/// The values each field matches, as bit sets (bit `n` set: value `n` matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fields {
    pub seconds: u64,
    pub minutes: u64,
    pub hours: u64,
    pub days_of_month: u64,
    pub months: u64,
    /// Sunday is bit 0; a 7 in the expression has been folded onto it.
    pub days_of_week: u64,
    /// Days no value list can name (`L`, `LW`, `5L`, `1#2`), matched in
    /// addition to the day fields' values.
    pub calendar: Calendar,
    /// Both day fields are restricted, so a day matches if EITHER does (Vixie).
    pub days_either: bool,
    /// The hour field starts with `*`: the schedule follows real time through
    /// a repeated autumn hour instead of running a wall-clock time once.
    pub hour_wildcard: bool,
}

/// An expression split into its fields, as the user wrote them.
pub(super) struct Written<'a> {
    pub second: &'a str,
    pub minute: &'a str,
    pub hour: &'a str,
    pub day_of_month: &'a str,
    pub month: &'a str,
    pub day_of_week: &'a str,
}

impl Fields {
    /// Reads and checks every field; errors quote `expression` as written.
    /// `H` is spread by `identity` (a task's name); without one it is refused.
    pub fn read(expression: &str, written: &Written, identity: Option<&str>) -> Result<Self, CronError> {
        let field = |kind: Kind, text: &str| {
            parse_field(kind, text, identity).map_err(|p| CronError(p.message(expression, kind, text)))
        };
        let plain = |kind: Kind, text: &str| field(kind, text).map(|(set, _)| set);
        // In this order, the first mistake of several is the one reported.
        let (day_of_week, by_week_day) = field(DAY_OF_WEEK, written.day_of_week)?;
        let seconds = plain(SECOND, written.second)?;
        let minutes = plain(MINUTE, written.minute)?;
        let hours = plain(HOUR, written.hour)?;
        let (days_of_month, by_month_day) = field(DAY_OF_MONTH, written.day_of_month)?;
        let restricted = |text: &str, calendar: Calendar| !text.starts_with('*') || !calendar.is_empty();
        let fields = Fields {
            seconds,
            minutes,
            hours,
            days_of_month,
            months: plain(MONTH, written.month)?,
            days_of_week: (day_of_week | day_of_week >> 7) & 0x7f,
            calendar: by_month_day.union(by_week_day),
            days_either: restricted(written.day_of_month, by_month_day)
                && restricted(written.day_of_week, by_week_day),
            hour_wildcard: written.hour.starts_with('*'),
        };
        fields.check_fires(expression, written)?;
        Ok(fields)
    }

    /// Whether the schedule runs at all on `date`.
    pub fn day_matches(&self, date: NaiveDate) -> bool {
        // The `cron` crate knows no years outside these, so neither may counting.
        if !(1970..=2100).contains(&date.year()) || !has(self.months, date.month()) {
            return false;
        }
        let by_month_day = has(self.days_of_month, date.day()) || self.calendar.by_month_day(date);
        let by_week_day =
            has(self.days_of_week, date.weekday().num_days_from_sunday()) || self.calendar.by_week_day(date);
        if self.days_either {
            by_month_day || by_week_day
        } else {
            by_month_day && by_week_day
        }
    }

    /// How many times of day (hour, minute, second) match.
    pub fn times_per_day(&self) -> u64 {
        u64::from(self.hours.count_ones() * self.minutes.count_ones() * self.seconds.count_ones())
    }

    /// How many matching times of day are at or before `seconds` past midnight.
    pub fn times_up_to(&self, seconds: u32) -> u64 {
        let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        let below = |set: u64, value: u32| u64::from((set & ((1u64 << value) - 1)).count_ones());
        let per_hour = u64::from(self.minutes.count_ones() * self.seconds.count_ones());
        let mut count = below(self.hours, hour) * per_hour;
        if has(self.hours, hour) {
            count += below(self.minutes, minute) * u64::from(self.seconds.count_ones());
            if has(self.minutes, minute) {
                count += below(self.seconds, second + 1);
            }
        }
        count
    }

    /// The crate's spelling of each field: `*` stays, anything else becomes
    /// an explicit list, with day-of-week renumbered to the crate's 1 = Sunday.
    /// The crate knows no calendar extensions: with one, it gets `*` for both
    /// day fields and the walk keeps only the days [`Fields::day_matches`].
    pub fn for_crate(&self, written: &Written) -> Vec<String> {
        let list = |set: u64, text: &str| {
            if text == "*" {
                "*".to_string()
            } else {
                let values: Vec<String> = (0..64).filter(|v| has(set, *v)).map(|v| v.to_string()).collect();
                values.join(",")
            }
        };
        // Shifting the set renumbers Sunday from 0 to the crate's 1.
        let days_of_week = list(self.days_of_week << 1, written.day_of_week);
        let time = format!(
            "{} {} {}",
            list(self.seconds, written.second),
            list(self.minutes, written.minute),
            list(self.hours, written.hour)
        );
        let days_of_month = list(self.days_of_month, written.day_of_month);
        let months = list(self.months, written.month);
        if !self.calendar.is_empty() {
            vec![format!("{time} * {months} *")]
        } else if self.days_either {
            vec![
                format!("{time} {days_of_month} {months} *"),
                format!("{time} * {months} {days_of_week}"),
            ]
        } else {
            vec![format!("{time} {days_of_month} {months} {days_of_week}")]
        }
    }

    /// Rejects day-of-month and month fields that never meet, such as the
    /// 31st of February. Under Vixie OR the weekdays always fire, and every
    /// existing date falls on every weekday in some year, so only the
    /// calendar is checked. Every extension fires in every month of some
    /// year (`5#5` in February of a leap year starting on a Friday).
    fn check_fires(&self, expression: &str, written: &Written) -> Result<(), CronError> {
        if self.days_either || !self.calendar.is_empty() {
            return Ok(());
        }
        let longest = |month: u32| if month == 2 { 29 } else { days_in_month(month) };
        let months: Vec<u32> = (1..=12).filter(|m| has(self.months, *m)).collect();
        let fires = months
            .iter()
            .any(|m| (1..=longest(*m)).any(|d| has(self.days_of_month, d)));
        if fires {
            return Ok(());
        }
        Err(CronError(format!(
            "invalid cron expression {expression:?} never fires: {}, so day-of-month {:?} never \
             occurs in month {:?}; choose days that exist in those months",
            month_lengths(&months),
            written.day_of_month,
            written.month
        )))
    }
}

/// "February has at most 29 days and April and June have 30", for the
/// months of a schedule that never fires (none of them has 31 days).
fn month_lengths(months: &[u32]) -> String {
    let mut parts = Vec::new();
    if months.contains(&2) {
        parts.push("February has at most 29 days".to_string());
    }
    let thirty: Vec<&str> = months
        .iter()
        .filter(|m| **m != 2)
        .map(|m| MONTH_NAMES[*m as usize - 1])
        .collect();
    if !thirty.is_empty() {
        let verb = if thirty.len() == 1 { "has" } else { "have" };
        let unit = if parts.is_empty() { " days" } else { "" };
        parts.push(format!("{} {verb} 30{unit}", join_and(&thirty)));
    }
    parts.join(" and ")
}

fn join_and(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The number of days in `month` of a common year.
pub(super) fn days_in_month(month: u32) -> u32 {
    match month {
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether bit `value` of `set` is set.
pub(super) fn has(set: u64, value: u32) -> bool {
    value < 64 && set >> value & 1 == 1
}

/// What is wrong with one field: the offending piece of it and why.
#[derive(Debug)]
pub(super) struct Problem {
    piece: String,
    why: String,
}

impl Problem {
    pub(super) fn new(piece: &str, why: impl Into<String>) -> Self {
        Problem {
            piece: piece.to_string(),
            why: why.into(),
        }
    }

    fn message(&self, expression: &str, kind: Kind, field: &str) -> String {
        if self.piece == field {
            format!(
                "invalid cron expression {expression:?}: {} {field:?} {}",
                kind.name, self.why
            )
        } else {
            format!(
                "invalid cron expression {expression:?}: {} {field:?}: {:?} {}",
                kind.name, self.piece, self.why
            )
        }
    }
}

/// Reads one field: a comma-separated list of `*`, `n` or `a-b`, each
/// optionally followed by `/step` (`n/step` runs from `n` to the maximum),
/// of `H` items (spread by `identity`) and, in the day fields, of calendar
/// extensions, which are returned apart from the values.
fn parse_field(kind: Kind, field: &str, identity: Option<&str>) -> Result<(u64, Calendar), Problem> {
    if field.contains('?') {
        return Err(Problem::new(
            field,
            "uses '?', which is not standard cron: use '*'",
        ));
    }
    let (mut set, mut days) = (0u64, Calendar::default());
    for item in field.split(',') {
        if item.is_empty() {
            return Err(Problem::new(
                field,
                "has an empty list item: remove the extra comma",
            ));
        }
        if item.starts_with('H') {
            set |= spread::item(kind, item, identity)?;
        } else if let Some(day) = calendar::item(kind, item)? {
            days = days.union(day);
        } else {
            set |= plain_item(kind, item)?;
        }
    }
    Ok((set, days))
}

/// Reads one plain item of a list: `*`, `n` or `a-b`, optionally with `/step`.
fn plain_item(kind: Kind, item: &str) -> Result<u64, Problem> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, parse_step(item, step)?),
        None => (item, 1),
    };
    let (from, to) = match base.split_once('-') {
        _ if base == "*" => (kind.min, kind.max),
        Some((a, b)) => range(kind, base, a, b)?,
        None if item.contains('/') => (value(kind, base)?, kind.max),
        None => (value(kind, base)?, value(kind, base)?),
    };
    Ok(bits(from, to, step))
}

/// The set of `from`, `from + step`, ... up to `to`.
pub(super) fn bits(from: u32, to: u32, step: usize) -> u64 {
    (from..=to).step_by(step).fold(0, |set, v| set | 1 << v)
}

/// Reads the step after `/` in `item`.
pub(super) fn parse_step(item: &str, step: &str) -> Result<usize, Problem> {
    if step.is_empty() {
        return Err(Problem::new(
            item,
            "has no step after '/': write a number, such as */5",
        ));
    }
    match digits(step) {
        Some(0) => Err(Problem::new(
            item,
            "has step 0, which never advances: use a step of 1 or more",
        )),
        Some(n) => Ok(n as usize),
        None => Err(Problem::new(
            item,
            format!("has step {step:?}: a step is a whole number, such as */5"),
        )),
    }
}

/// Reads the range `a-b` written as `base`.
pub(super) fn range(kind: Kind, base: &str, a: &str, b: &str) -> Result<(u32, u32), Problem> {
    if a.is_empty() || b.is_empty() {
        return Err(Problem::new(
            base,
            "is missing a range end: write ranges as first-last, such as 1-5",
        ));
    }
    let (from, to) = (value(kind, a)?, value(kind, b)?);
    if from > to {
        return Err(Problem::new(
            base,
            format!("runs backwards: write the smaller value first ({b}-{a}), or a list"),
        ));
    }
    Ok((from, to))
}

/// Reads one value: a number within the field's bounds, or a name.
pub(super) fn value(kind: Kind, token: &str) -> Result<u32, Problem> {
    if let Some(n) = digits(token) {
        return if (kind.min..=kind.max).contains(&n) {
            Ok(n)
        } else {
            Err(Problem::new(token, format!("is out of range: {}", kind.hint)))
        };
    }
    if token.bytes().all(|b| b.is_ascii_digit()) && !token.is_empty() {
        return Err(Problem::new(token, format!("is out of range: {}", kind.hint)));
    }
    let named = |names: &[&str]| names.iter().position(|name| name.eq_ignore_ascii_case(token));
    named(kind.names)
        .or_else(|| named(kind.long_names))
        .map(|p| p as u32 + kind.min)
        .ok_or_else(|| Problem::new(token, format!("is not {}: {}", kind.noun, kind.hint)))
}

/// A plain run of ASCII digits that fits in a u32 (no sign, no spaces).
fn digits(token: &str) -> Option<u32> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
