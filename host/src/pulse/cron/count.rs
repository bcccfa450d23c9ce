//! How many occurrences a window holds, and which are the newest, without
//! walking the window from its start: a pulse after days of silence must not
//! iterate a million slots of an every-second schedule to find the last one.
//!
//! Wall-clock time and instants correspond one to one except at clock
//! changes, so the window is cut at each change and every piece is counted
//! from the field sets alone: matching days times matching times of day. At a
//! change the module's rules are applied to the cut: a repeated stretch
//! counts its second copies only when the hour field starts with `*`, and a
//! spring-forward gap adds one occurrence at its end when a time inside it
//! matches but the end itself does not. Walking the real iterator instead
//! costs microseconds per occurrence, which years of an every-second
//! schedule cannot afford; the tests check every count against that walk.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

use super::{CronSchedule, CLOCK_CHANGE_REACH};

/// A change of the zone's offset from UTC.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClockChange {
    /// The first instant with the new offset.
    pub at: DateTime<Utc>,
    pub before: Duration,
    pub after: Duration,
}

impl CronSchedule {
    /// The exact number of occurrences in `(after, until]`: as many as
    /// [`CronSchedule::after`] yields up to `until`, counted in time that grows
    /// with the number of days and clock changes in the window, not with the
    /// number of occurrences.
    pub fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
        let (after, until) = (after.max(earliest()), until.min(latest()));
        if until <= after {
            return 0;
        }
        let mut total = 0;
        // Everything in (after, cursor] is counted.
        let mut cursor = after;
        for change in self.clock_changes(after - CLOCK_CHANGE_REACH, until + CLOCK_CHANGE_REACH) {
            let last_before = (change.at - Duration::seconds(1)).min(until);
            if last_before > cursor {
                total += self.count_steady(cursor, last_before);
                cursor = last_before;
            }
            if cursor >= until {
                break;
            }
            if cursor < change.at && change.at <= until {
                total += self.gap_end(change);
            }
            if change.after < change.before && !self.fields.hour_wildcard {
                // The repeated stretch: its times all ran at their first instants.
                let repeated_end = change.at + (change.before - change.after) - Duration::seconds(1);
                cursor = cursor.max(repeated_end.min(until));
            }
        }
        total + self.count_steady(cursor, until)
    }

    /// 1 when the clocks jump forward over a matching time but the first time
    /// after the jump does not match: the skipped times fire once, at the
    /// change; 0 otherwise.
    fn gap_end(&self, change: ClockChange) -> u64 {
        if change.after <= change.before {
            return 0;
        }
        let one = Duration::seconds(1);
        let (skipped_from, resumed) = (
            change.at.naive_utc() + change.before,
            change.at.naive_utc() + change.after,
        );
        let skipped = self.count_walls(skipped_from - one, resumed - one);
        let resumed = self.count_walls(resumed - one, resumed);
        u64::from(skipped > 0 && resumed == 0)
    }

    /// The newest `k` occurrences in `(after, until]`, ascending. Looks back
    /// from `until` over a window that doubles until it holds `k` occurrences
    /// or reaches `after`, so the cost follows `k`, not the window's length.
    pub fn newest_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, k: usize) -> Vec<DateTime<Utc>> {
        if k == 0 || until <= after {
            return Vec::new();
        }
        let mut span = Duration::minutes(1);
        loop {
            let from = until.checked_sub_signed(span).map_or(after, |f| f.max(after));
            let mut newest = VecDeque::with_capacity(k.min(1024));
            for t in self.after(from).take_while(|t| *t <= until) {
                if newest.len() == k {
                    newest.pop_front();
                }
                newest.push_back(t);
            }
            if newest.len() == k || from == after {
                return newest.into();
            }
            span = span.checked_mul(2).unwrap_or(Duration::MAX);
        }
    }

    /// Occurrences in `(from, to]`, a stretch with one UTC offset throughout,
    /// as if no clock change were near.
    fn count_steady(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        if to <= from {
            return 0;
        }
        let offset = self.offset_at(to);
        self.count_walls(from.naive_utc() + offset, to.naive_utc() + offset)
    }

    /// Matching wall-clock times in `(from, to]`.
    fn count_walls(&self, from: NaiveDateTime, to: NaiveDateTime) -> u64 {
        let fields = &self.fields;
        let up_to = |w: NaiveDateTime| fields.times_up_to(w.time().num_seconds_from_midnight());
        let (first, last) = (from.date(), to.date());
        if first == last {
            return if fields.day_matches(first) {
                up_to(to) - up_to(from)
            } else {
                0
            };
        }
        let per_day = fields.times_per_day();
        let mut total = if fields.day_matches(first) {
            per_day - up_to(from)
        } else {
            0
        };
        let whole_days = first.iter_days().skip(1).take_while(|d| *d < last);
        total += whole_days.filter(|d| fields.day_matches(*d)).count() as u64 * per_day;
        if fields.day_matches(last) {
            total += up_to(to);
        }
        total
    }

    /// The clock changes in `[from, to]`, found by sampling the offset every
    /// few hours and bisecting where it differs to the second.
    /// The zone's clock changes in `[from, to]`: each one's first instant with
    /// the new offset, and the offsets from UTC before and after it.
    pub fn clock_changes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, Duration, Duration)> {
        let changes = self.clock_changes(from, to).into_iter();
        changes
            .filter(|c| from <= c.at && c.at <= to)
            .map(|c| (c.at, c.before, c.after))
            .collect()
    }

    /// Whether the schedule names a wall-clock time the clocks skipped when
    /// they went forward from offset `before` to `after` at `at` (such a time
    /// fires at `at`, the end of the gap).
    pub fn fires_in_gap(&self, at: DateTime<Utc>, before: Duration, after: Duration) -> bool {
        use super::fields::has;
        let start = at.naive_utc() + before;
        let seconds = (after - before).num_seconds().max(0);
        (0..seconds).map(|s| start + Duration::seconds(s)).any(|wall| {
            self.fields.day_matches(wall.date())
                && has(self.fields.hours, wall.hour())
                && has(self.fields.minutes, wall.minute())
                && has(self.fields.seconds, wall.second())
        })
    }

    /// Whether the wall-clock time of `at` in the schedule's zone happens
    /// twice (it lies in the hour the clocks go back).
    pub fn repeated_wall_time(&self, at: DateTime<Utc>) -> bool {
        let wall = at.with_timezone(&self.tz).naive_local();
        matches!(
            self.tz.from_local_datetime(&wall),
            chrono::LocalResult::Ambiguous(..)
        )
    }

    pub(super) fn clock_changes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<ClockChange> {
        let mut changes = Vec::new();
        if self.tz == chrono_tz::Tz::UTC {
            return changes;
        }
        let step = CLOCK_CHANGE_REACH.num_seconds();
        let offset = |ts: i64| Utc.timestamp_opt(ts, 0).single().map(|t| self.offset_at(t));
        let (mut low, end) = (from.timestamp(), to.timestamp() + 1);
        let mut low_offset = offset(low);
        while low < end {
            let high = (low + step).min(end);
            let high_offset = offset(high);
            if high_offset != low_offset {
                let (mut before, mut at) = (low, high);
                while at - before > 1 {
                    let middle = before + (at - before) / 2;
                    if offset(middle) == low_offset {
                        before = middle;
                    } else {
                        at = middle;
                    }
                }
                if let (Some(at), Some(before), Some(after)) =
                    (Utc.timestamp_opt(at, 0).single(), low_offset, high_offset)
                {
                    changes.push(ClockChange { at, before, after });
                }
            }
            (low, low_offset) = (high, high_offset);
        }
        changes
    }
}

/// Before this the `cron` crate knows no years, so nothing fires.
fn earliest() -> DateTime<Utc> {
    date_time(1969, 12, 30)
}

/// After this the `cron` crate knows no years, so nothing fires.
fn latest() -> DateTime<Utc> {
    date_time(2101, 1, 2)
}

fn date_time(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |t| Utc.from_utc_datetime(&t))
}

#[cfg(test)]
#[path = "count_tests.rs"]
mod tests;
