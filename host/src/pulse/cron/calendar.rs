//! Days that no list of values can name, written as Quartz and cronie write
//! them but numbered as in Vixie cron (0 and 7 are Sunday, 1 is Monday):
//!
//! * day-of-month `L`: the last day of the month; `LW`: its last weekday
//!   (Monday to Friday).
//! * day-of-week `5L` (or `FRIL`): the month's last Friday; `1#2` (or
//!   `MON#2`): its second Monday, `#1` to `#5`.
//!
//! They may stand in a list with ordinary values (`1,L`, `1#1,5L`). A day
//! field holding one counts as restricted, so with both day fields restricted
//! a day matches if either does (Vixie). The `cron` crate knows none of this:
//! it walks such a schedule with `*` for both day fields, and the walk skips
//! to the next day [`Fields::day_matches`] accepts (see [`Fields::next_day`]).

use chrono::{Datelike, NaiveDate};

use super::fields::{value, Fields, Problem};
use super::kinds::{Field, Kind};

/// The calendar extensions of a schedule; each day field contributes its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Calendar {
    /// `L` in day-of-month: the last day of the month.
    last_day: bool,
    /// `LW` in day-of-month: the last weekday (Monday to Friday) of the month.
    last_weekday: bool,
    /// `<d>L` in day-of-week: bit `d` (0 = Sunday) for the month's last `d`.
    last_of: u8,
    /// `<d>#<k>` in day-of-week: bit `7 * (k - 1) + d` for the month's k-th `d`.
    nth: u64,
}

impl Calendar {
    /// No extension at all.
    pub fn is_empty(self) -> bool {
        self == Calendar::default()
    }

    /// The extensions of both.
    pub fn union(self, other: Calendar) -> Calendar {
        Calendar {
            last_day: self.last_day || other.last_day,
            last_weekday: self.last_weekday || other.last_weekday,
            last_of: self.last_of | other.last_of,
            nth: self.nth | other.nth,
        }
    }

    /// Whether a day-of-month extension (`L`, `LW`) matches `date`.
    pub fn by_month_day(self, date: NaiveDate) -> bool {
        if !self.last_day && !self.last_weekday {
            return false;
        }
        let (day, last) = (date.day(), u32::from(date.num_days_in_month()));
        // Days from Monday of the month's last day: 5 is Saturday, 6 Sunday.
        let last_from_monday = (date.weekday().num_days_from_monday() + last - day) % 7;
        let last_weekday = last - last_from_monday.saturating_sub(4);
        (self.last_day && day == last) || (self.last_weekday && day == last_weekday)
    }

    /// Whether a day-of-week extension (`5L`, `1#2`) matches `date`.
    pub fn by_week_day(self, date: NaiveDate) -> bool {
        if self.last_of == 0 && self.nth == 0 {
            return false;
        }
        let (day, weekday) = (date.day(), date.weekday().num_days_from_sunday());
        let last = u32::from(date.num_days_in_month());
        let is_last = day + 7 > last && self.last_of >> weekday & 1 == 1;
        is_last || self.nth >> (7 * ((day - 1) / 7) + weekday) & 1 == 1
    }
}

impl Fields {
    /// The first day after `after` on which the schedule runs, None when
    /// there is none up to 2100 (the last year the `cron` crate knows).
    pub fn next_day(&self, after: NaiveDate) -> Option<NaiveDate> {
        let first = after.succ_opt()?.max(NaiveDate::from_ymd_opt(1970, 1, 1)?);
        first
            .iter_days()
            .take_while(|d| d.year() <= 2100)
            .find(|d| self.day_matches(*d))
    }
}

/// The extension an item of `kind`'s field stands for; None for an ordinary
/// item. Extensions outside the day fields, or malformed, are refused.
pub(super) fn item(kind: Kind, item: &str) -> Result<Option<Calendar>, Problem> {
    match kind.field {
        Field::DayOfMonth => month_day(item),
        Field::DayOfWeek => week_day(kind, item),
        Field::Month if !matches!(upper(item).as_str(), "L" | "LW") && !item.contains('#') => Ok(None),
        // Month names contain L (JUL, APRIL); numbers of the time fields never do.
        _ if !upper(item).contains('L') && !item.contains('#') => Ok(None),
        _ => Err(Problem::new(
            item,
            "is a calendar extension, which only the day fields accept: L or LW in day-of-month, \
             such as 5L or 1#2 in day-of-week",
        )),
    }
}

/// Reads a day-of-month item: `L`, `LW`, or None for an ordinary one.
fn month_day(item: &str) -> Result<Option<Calendar>, Problem> {
    let upper = upper(item);
    let why = match upper.as_str() {
        "L" => {
            return Ok(Some(Calendar {
                last_day: true,
                ..Calendar::default()
            }))
        }
        "LW" => {
            return Ok(Some(Calendar {
                last_weekday: true,
                ..Calendar::default()
            }))
        }
        _ if item.contains('#') => {
            "uses '#', which only day-of-week accepts: write 1#2 there for the month's second Monday"
        }
        _ if upper.starts_with('L') => {
            "adds to L: L (the last day of the month) and LW (its last weekday) stand alone, \
             without a step, range or offset"
        }
        _ if upper.contains('L') => {
            "uses L after a value: in day-of-month write L alone for the last day of the month; \
             the last Friday is 5L in day-of-week"
        }
        _ if upper.contains('W') => {
            "asks for the weekday nearest a day, which is not supported: LW, the last weekday \
             of the month, is"
        }
        _ => return Ok(None),
    };
    Err(Problem::new(item, why))
}

/// Reads a day-of-week item: `<d>L`, `<d>#<k>`, or None for an ordinary one.
fn week_day(kind: Kind, item: &str) -> Result<Option<Calendar>, Problem> {
    let upper = upper(item);
    let base = upper.split('/').next().unwrap_or_default();
    let why = match upper.as_str() {
        "L" => "is not a day: write the day before L, such as 5L for the month's last Friday",
        "LW" => {
            "is for day-of-month (the month's last weekday): in day-of-week write a day before L, \
             such as 5L for the last Friday"
        }
        _ if item.contains('/') && (base.ends_with('L') || base.contains('#')) => {
            "has a step, which the last (5L) and n-th (1#2) days of a month do not take: \
             list them instead, such as 1#1,1#3"
        }
        _ => match (item.split_once('#'), item.strip_suffix(['L', 'l'])) {
            (Some((day, n)), _) => return nth(kind, item, day, n).map(Some),
            (None, Some(day)) => return last_of(kind, item, day).map(Some),
            (None, None) => return Ok(None),
        },
    };
    Err(Problem::new(item, why))
}

/// Reads `<d>L`, the month's last `d`, written as `item`.
fn last_of(kind: Kind, item: &str, day: &str) -> Result<Calendar, Problem> {
    let day = one_day(kind, item, day, "L")?;
    Ok(Calendar {
        last_of: 1 << day,
        ..Calendar::default()
    })
}

/// Reads `<d>#<n>`, the month's n-th `d`, written as `item`.
fn nth(kind: Kind, item: &str, day: &str, n: &str) -> Result<Calendar, Problem> {
    let day = one_day(kind, item, day, "'#'")?;
    let n = match n.as_bytes() {
        [digit @ b'1'..=b'5'] => u32::from(digit - b'0'),
        _ => {
            return Err(Problem::new(
                item,
                "asks for a week a month does not have: write #1 to #5 after the day (a month \
                 has at most five of each), such as 1#2 for the second Monday",
            ))
        }
    };
    Ok(Calendar {
        nth: 1 << (7 * (n - 1) + day),
        ..Calendar::default()
    })
}

/// Reads the one day before `L` or `#` (Sunday as 0), written as `item`.
fn one_day(kind: Kind, item: &str, day: &str, mark: &str) -> Result<u32, Problem> {
    if day.is_empty() {
        return Err(Problem::new(
            item,
            format!("has no day before {mark}: write one, such as 5L for the last Friday or 1#2 for the second Monday"),
        ));
    }
    if day.contains(['-', '*', '/']) {
        return Err(Problem::new(
            item,
            format!(
                "names more than one day before {mark}: write one day, and list several as 1#2,3#2 or 1L,5L"
            ),
        ));
    }
    Ok(value(kind, day)? % 7)
}

/// `item` in capitals, for comparing letters in any case.
fn upper(item: &str) -> String {
    item.to_ascii_uppercase()
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;
