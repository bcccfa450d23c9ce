//! A schedule's occurrences between two instants, as an operator previews
//! them: each with its local time, and the zone's clock changes marked.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::cron::{self, CronSchedule};

/// At most this many occurrences are listed; a longer range is cut there.
pub const PREVIEW_MAX: usize = 1000;

/// One occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// The instant, UTC.
    pub at: DateTime<Utc>,
    /// The same instant in the schedule's zone.
    pub local: String,
    /// `clock_change`: a wall-clock time the clocks skipped going forward
    /// fires here, at the end of the gap; `repeated_hour`: its wall-clock
    /// time happens twice, the clocks going back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<&'static str>,
}

/// A change of the zone's offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockChange {
    /// The first instant with the new offset.
    pub at: DateTime<Utc>,
    /// `forward` (an hour is skipped) or `back` (an hour repeats).
    pub direction: &'static str,
    /// Offset from UTC before, seconds.
    pub offset_before_s: i64,
    /// Offset from UTC after, seconds.
    pub offset_after_s: i64,
}

/// Occurrences in `[from, to]` (at most `max`), the clock changes there, and
/// whether more occurrences were left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The occurrences, ascending.
    pub occurrences: Vec<Occurrence>,
    /// The zone's clock changes in the range.
    pub clock_changes: Vec<ClockChange>,
    /// More occurrences lie in the range than were listed.
    pub truncated: bool,
}

/// The occurrences of `schedule` (read in `timezone`) in `[from, to]`.
pub fn preview(
    schedule: &CronSchedule,
    timezone: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
) -> Preview {
    let clock_changes: Vec<ClockChange> = schedule
        .clock_changes_between(from, to)
        .into_iter()
        .map(|(at, before, after)| ClockChange {
            at,
            direction: if after > before { "forward" } else { "back" },
            offset_before_s: before.num_seconds(),
            offset_after_s: after.num_seconds(),
        })
        .collect();
    let mut listed: Vec<DateTime<Utc>> = occurrences(schedule, from, to).take(max + 1).collect();
    let truncated = listed.len() > max;
    listed.truncate(max);
    let occurrences = listed
        .into_iter()
        .map(|at| {
            let shifted = clock_changes.iter().any(|c| {
                c.at == at
                    && c.direction == "forward"
                    && schedule.fires_in_gap(
                        at,
                        Duration::seconds(c.offset_before_s),
                        Duration::seconds(c.offset_after_s),
                    )
            });
            let dst = if shifted {
                Some("clock_change")
            } else if schedule.repeated_wall_time(at) {
                Some("repeated_hour")
            } else {
                None
            };
            Occurrence {
                at,
                local: cron::local_time(at, timezone),
                dst,
            }
        })
        .collect();
    Preview {
        occurrences,
        clock_changes,
        truncated,
    }
}

/// Every occurrence in `[from, to]`, ascending.
pub fn occurrences(
    schedule: &CronSchedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + '_ {
    // `after` is exclusive; occurrences fall on whole seconds.
    schedule
        .after(from - Duration::nanoseconds(1))
        .take_while(move |at| *at <= to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_spring_forward_night_is_marked_and_the_skipped_time_fires_at_the_change() {
        // 2027-03-14: New York goes from 02:00 EST to 03:00 EDT (07:00 UTC).
        let tz = Some("America/New_York");
        let schedule = CronSchedule::parse("30 2 * * *", tz).unwrap();
        let got = preview(
            &schedule,
            tz,
            at("2027-03-13T00:00:00Z"),
            at("2027-03-16T00:00:00Z"),
            10,
        );
        let instants: Vec<String> = got.occurrences.iter().map(|o| o.at.to_rfc3339()).collect();
        assert_eq!(
            instants,
            [
                "2027-03-13T07:30:00+00:00",
                "2027-03-14T07:00:00+00:00",
                "2027-03-15T06:30:00+00:00"
            ]
        );
        assert_eq!(got.occurrences[1].dst, Some("clock_change"));
        assert_eq!(got.occurrences[1].local, "2027-03-14T03:00:00-04:00");
        assert_eq!(got.occurrences[0].dst, None);
        assert_eq!(
            got.clock_changes,
            [ClockChange {
                at: at("2027-03-14T07:00:00Z"),
                direction: "forward",
                offset_before_s: -5 * 3600,
                offset_after_s: -4 * 3600,
            }]
        );
        assert!(!got.truncated);
    }

    #[test]
    fn a_time_that_exists_at_the_jump_is_not_marked_as_skipped() {
        // 03:00 exists on 2027-03-14 in New York (the clocks jump from 02:00 to 03:00).
        let tz = Some("America/New_York");
        let schedule = CronSchedule::parse("0 3 * * *", tz).unwrap();
        let got = preview(
            &schedule,
            tz,
            at("2027-03-14T00:00:00Z"),
            at("2027-03-15T00:00:00Z"),
            10,
        );
        assert_eq!(got.occurrences[0].at, at("2027-03-14T07:00:00Z"));
        assert_eq!(got.occurrences[0].dst, None);
    }

    #[test]
    fn a_repeated_hour_is_marked_and_an_hourly_schedule_fires_in_both() {
        // 2027-11-07: New York goes back from 02:00 EDT to 01:00 EST (06:00 UTC).
        let tz = Some("America/New_York");
        let schedule = CronSchedule::parse("0 * * * *", tz).unwrap();
        let got = preview(
            &schedule,
            tz,
            at("2027-11-07T04:00:00Z"),
            at("2027-11-07T07:00:00Z"),
            10,
        );
        let marks: Vec<(String, Option<&str>)> =
            got.occurrences.iter().map(|o| (o.local.clone(), o.dst)).collect();
        assert_eq!(
            marks,
            [
                ("2027-11-07T00:00:00-04:00".to_string(), None),
                ("2027-11-07T01:00:00-04:00".to_string(), Some("repeated_hour")),
                ("2027-11-07T01:00:00-05:00".to_string(), Some("repeated_hour")),
                ("2027-11-07T02:00:00-05:00".to_string(), None),
            ]
        );
        assert_eq!(got.clock_changes[0].direction, "back");
    }

    #[test]
    fn both_ends_are_included_and_a_long_range_is_cut() {
        let schedule = CronSchedule::parse("*/15 * * * *", None).unwrap();
        let got = preview(
            &schedule,
            None,
            at("2027-01-01T00:00:00Z"),
            at("2027-01-01T01:00:00Z"),
            10,
        );
        assert_eq!(got.occurrences.len(), 5);
        let cut = preview(
            &schedule,
            None,
            at("2027-01-01T00:00:00Z"),
            at("2027-02-01T00:00:00Z"),
            3,
        );
        assert_eq!(cut.occurrences.len(), 3);
        assert!(cut.truncated);
        assert!(cut.clock_changes.is_empty());
    }
}
