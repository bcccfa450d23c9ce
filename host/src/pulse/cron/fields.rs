//! Reading the six fields of a Vixie cron expression ourselves, so that a
//! mistake is reported in the user's own terms (their bounds, their text)
//! rather than in the `cron` crate's, and so that the sets of matching values
//! are at hand for counting occurrences arithmetically.

use chrono::{Datelike, NaiveDate};

use super::CronError;

/// The bounds and names of one field, as users write it.
#[derive(Debug, Clone, Copy)]
struct Kind {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names accepted in place of numbers; index 0 stands for `min`.
    names: &'static [&'static str],
    /// Full names accepted too, because stored expressions may use them.
    long_names: &'static [&'static str],
    /// What a value of this field is called when one is not recognised.
    noun: &'static str,
    hint: &'static str,
}

const SECOND: Kind = Kind {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    long_names: &[],
    noun: "a number",
    hint: "use 0-59",
};
const MINUTE: Kind = Kind {
    name: "minute",
    hint: "use 0-59",
    ..SECOND
};
const HOUR: Kind = Kind {
    name: "hour",
    max: 23,
    hint: "use 0-23",
    ..SECOND
};
const DAY_OF_MONTH: Kind = Kind {
    name: "day-of-month",
    min: 1,
    max: 31,
    hint: "use 1-31",
    ..SECOND
};
const MONTH: Kind = Kind {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    long_names: &MONTH_NAMES,
    noun: "a month",
    hint: "use 1-12 or JAN-DEC",
};
const DAY_OF_WEEK: Kind = Kind {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    long_names: &[],
    noun: "a day",
    hint: "use 0-7 (0 and 7 are Sunday) or SUN-SAT",
};

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

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
    pub fn read(expression: &str, written: &Written) -> Result<Self, CronError> {
        let field = |kind: Kind, text: &str| {
            parse_field(kind, text).map_err(|p| CronError(p.message(expression, kind, text)))
        };
        let day_of_week = field(DAY_OF_WEEK, written.day_of_week)?;
        let fields = Fields {
            seconds: field(SECOND, written.second)?,
            minutes: field(MINUTE, written.minute)?,
            hours: field(HOUR, written.hour)?,
            days_of_month: field(DAY_OF_MONTH, written.day_of_month)?,
            months: field(MONTH, written.month)?,
            days_of_week: (day_of_week | day_of_week >> 7) & 0x7f,
            days_either: !written.day_of_month.starts_with('*') && !written.day_of_week.starts_with('*'),
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
        let by_month_day = has(self.days_of_month, date.day());
        let by_week_day = has(self.days_of_week, date.weekday().num_days_from_sunday());
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
        if self.days_either {
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
    /// calendar is checked.
    fn check_fires(&self, expression: &str, written: &Written) -> Result<(), CronError> {
        if self.days_either {
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

fn has(set: u64, value: u32) -> bool {
    value < 64 && set >> value & 1 == 1
}

/// What is wrong with one field: the offending piece of it and why.
#[derive(Debug)]
struct Problem {
    piece: String,
    why: String,
}

impl Problem {
    fn new(piece: &str, why: impl Into<String>) -> Self {
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
/// optionally followed by `/step` (`n/step` runs from `n` to the maximum).
fn parse_field(kind: Kind, field: &str) -> Result<u64, Problem> {
    if field.contains('?') {
        return Err(Problem::new(
            field,
            "uses '?', which is not standard cron: use '*'",
        ));
    }
    let mut set = 0u64;
    for item in field.split(',') {
        if item.is_empty() {
            return Err(Problem::new(
                field,
                "has an empty list item: remove the extra comma",
            ));
        }
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
        for v in (from..=to).step_by(step) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn parse_step(item: &str, step: &str) -> Result<usize, Problem> {
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

fn range(kind: Kind, base: &str, a: &str, b: &str) -> Result<(u32, u32), Problem> {
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

fn value(kind: Kind, token: &str) -> Result<u32, Problem> {
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
