//! Calendar extensions. Dates were checked on this machine with GNU `date`
//! (`date -d "2028-03-01 -1 day" +%F` prints 2028-02-29, `date -d 2028-02-25
//! +%a` prints Fri) and clock changes with `zdump -v America/New_York`; the
//! Quartz CronTrigger tutorial's examples are renumbered to Vixie days (its
//! 1 = Sunday, 6 = Friday is our 0 and 5) and its seconds-first fields kept.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

use super::super::tests::{at, next};
use super::super::CronSchedule;

fn error(expression: &str) -> String {
    CronSchedule::parse(expression, None).unwrap_err().to_string()
}

/// The dates (UTC) of the next `n` occurrences.
fn dates(expression: &str, after: &str, n: usize) -> Vec<String> {
    CronSchedule::parse(expression, None)
        .unwrap()
        .next_n(at(after), n)
        .iter()
        .map(|t| t.format("%F").to_string())
        .collect()
}

fn walked(schedule: &CronSchedule, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    schedule.after(after).take_while(|t| *t <= until).collect()
}

#[test]
fn l_is_the_last_day_of_months_of_every_length() {
    // `date -d "$m-01 +1 month -1 day" +%F` for 2028-01 to 2028-04: 2028 is a
    // leap year, so February has 29 days.
    assert_eq!(
        dates("0 0 L * *", "2028-01-01T00:00:00Z", 4),
        ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30"]
    );
    // 2027-02 has 28 days (`date -d "2027-03-01 -1 day" +%F`: 2027-02-28).
    assert_eq!(
        dates("0 0 L 2 *", "2027-01-01T00:00:00Z", 2),
        ["2027-02-28", "2028-02-29"]
    );
    // Quartz tutorial: "0 15 10 L * ?" fires at 10:15 on the last day of every month.
    let quartz = next("0 15 10 L * *", None, "2026-01-31T10:15:00Z", 3);
    assert_eq!(
        quartz,
        [
            "2026-02-28T10:15:00+00:00",
            "2026-03-31T10:15:00+00:00",
            "2026-04-30T10:15:00+00:00"
        ]
    );
    assert_eq!(next("15 10 L * *", None, "2026-01-31T10:15:00Z", 3), quartz);
    // In a list with plain days: the first and the last.
    assert_eq!(
        dates("0 0 1,L * *", "2026-01-15T00:00:00Z", 3),
        ["2026-01-31", "2026-02-01", "2026-02-28"]
    );
}

#[test]
fn lw_is_the_last_weekday_of_the_month() {
    // `date`: 2026-01-31 is a Saturday (so Friday the 30th), 2026-02-28 a
    // Saturday (the 27th), 2026-03-31 a Tuesday, 2026-04-30 a Thursday and
    // 2026-05-31 a Sunday (so Friday the 29th).
    assert_eq!(
        dates("0 9 LW * *", "2026-01-01T00:00:00Z", 5),
        [
            "2026-01-30",
            "2026-02-27",
            "2026-03-31",
            "2026-04-30",
            "2026-05-29"
        ]
    );
}

#[test]
fn the_last_and_the_nth_weekday_of_the_month() {
    // `date`: 2028-02-29 is a Tuesday, 2028-02-25 a Friday, the last of February.
    assert_eq!(dates("0 0 * 2 5L", "2028-01-01T00:00:00Z", 1), ["2028-02-25"]);
    // Quartz tutorial: "0 15 10 ? * 6L" fires at 10:15 on the last Friday of
    // every month. `date`: 2028-01-28 and 2028-03-31 are Fridays, 2028-01-31 a Monday.
    let last_fridays = next("0 15 10 * * 5L", None, "2028-01-01T00:00:00Z", 3);
    assert_eq!(
        last_fridays,
        [
            "2028-01-28T10:15:00+00:00",
            "2028-02-25T10:15:00+00:00",
            "2028-03-31T10:15:00+00:00"
        ]
    );
    assert_eq!(
        next("15 10 * * FRIL", None, "2028-01-01T00:00:00Z", 3),
        last_fridays
    );
    // Quartz tutorial: "0 15 10 ? * 6#3" fires at 10:15 on the third Friday of
    // every month. `date`: 2028-01-01 is a Saturday, 02-01 a Tuesday, 03-01 a Wednesday.
    let third_fridays = next("0 15 10 * * 5#3", None, "2028-01-01T00:00:00Z", 3);
    assert_eq!(
        third_fridays,
        [
            "2028-01-21T10:15:00+00:00",
            "2028-02-18T10:15:00+00:00",
            "2028-03-17T10:15:00+00:00"
        ]
    );
    assert_eq!(
        next("15 10 * * fri#3", None, "2028-01-01T00:00:00Z", 3),
        third_fridays
    );
    // `date`: 2026-06-01 is a Monday, 2026-07-01 a Wednesday, 2026-11-01 a Sunday.
    assert_eq!(
        dates("0 0 * 6,7,11 1#2", "2026-01-01T00:00:00Z", 3),
        ["2026-06-08", "2026-07-13", "2026-11-09"]
    );
    assert_eq!(
        dates("0 0 * 6,7,11 MON#2", "2026-01-01T00:00:00Z", 3),
        ["2026-06-08", "2026-07-13", "2026-11-09"]
    );
    // 7 is Sunday too.
    assert_eq!(
        dates("0 0 * * 7L", "2026-01-01T00:00:00Z", 2),
        dates("0 0 * * 0L", "2026-01-01T00:00:00Z", 2)
    );
    assert_eq!(
        dates("0 0 * * 7#1", "2026-01-01T00:00:00Z", 2),
        dates("0 0 * * SUN#1", "2026-01-01T00:00:00Z", 2)
    );
}

#[test]
fn a_fifth_sunday_only_in_months_that_have_one() {
    // `date`: 2026-03-01 is a Sunday (Sundays 1 to 29), 2026-04-01 a Wednesday
    // (Sundays 5 to 26, no fifth), 2026-05-01 a Friday (Sundays 3 to 31).
    assert_eq!(
        dates("0 0 * * 0#5", "2026-03-01T00:00:00Z", 2),
        ["2026-03-29", "2026-05-31"]
    );
    // April has a fifth Sunday when it starts on a Saturday or a Sunday:
    // `date` finds 2028-04-01 a Saturday and 2029-04-01 a Sunday first.
    assert_eq!(
        dates("0 0 * 4 0#5", "2026-01-01T00:00:00Z", 2),
        ["2028-04-30", "2029-04-29"]
    );
}

#[test]
fn an_extension_and_a_weekday_fire_on_either_day() {
    // The last day of the month OR any Monday (Vixie, both fields restricted).
    // `date`: 2026-01-26 and 2026-02-02 are Mondays, 2026-01-31 a Saturday.
    assert_eq!(
        dates("0 0 L * MON", "2026-01-25T00:00:00Z", 3),
        ["2026-01-26", "2026-01-31", "2026-02-02"]
    );
    // The 15th OR the first Monday: `date`: 2026-06-01 is a Monday, 2026-07-06 too.
    assert_eq!(
        dates("0 0 15 6,7 1#1", "2026-05-01T00:00:00Z", 4),
        ["2026-06-01", "2026-06-15", "2026-07-06", "2026-07-15"]
    );
    // The first Monday or the last Friday: 2026-01-05 and 2026-01-30, 2026-02-02 and 2026-02-27.
    assert_eq!(
        dates("0 0 * * 1#1,5L", "2026-01-01T00:00:00Z", 4),
        ["2026-01-05", "2026-01-30", "2026-02-02", "2026-02-27"]
    );
}

#[test]
fn extensions_follow_the_zones_clock_changes() {
    const NEW_YORK: Option<&str> = Some("America/New_York");
    // `zdump -v America/New_York`: 02:00 EST jumps to 03:00 EDT at
    // 2026-03-08T07:00Z and 2027-03-14T07:00Z, the second Sundays of March;
    // 02:30 does not exist and fires at the end of the gap.
    assert_eq!(
        next("30 2 * 3 0#2", NEW_YORK, "2026-01-01T00:00:00Z", 2),
        ["2026-03-08T07:00:00+00:00", "2027-03-14T07:00:00+00:00"]
    );
    // 02:00 EDT goes back to 01:00 EST at 2026-11-01T06:00Z and
    // 2027-11-07T06:00Z, the first Sundays of November: a fixed hour runs
    // 01:30 once, at its first instant (EDT).
    assert_eq!(
        next("30 1 * 11 0#1", NEW_YORK, "2026-01-01T00:00:00Z", 2),
        ["2026-11-01T05:30:00+00:00", "2027-11-07T05:30:00+00:00"]
    );
    // Every half hour follows real time through the 25-hour day.
    let day = (at("2026-11-01T04:00:00Z"), at("2026-11-02T05:00:00Z"));
    let schedule = CronSchedule::parse("*/30 * * 11 0#1", NEW_YORK).unwrap();
    let got = walked(
        &schedule,
        day.0 - Duration::seconds(1),
        day.1 - Duration::seconds(1),
    );
    assert_eq!(got.len(), 50);
    assert!(got.windows(2).all(|w| w[1] - w[0] == Duration::minutes(30)));
    assert_eq!(schedule.count_between(day.0 - Duration::seconds(1), day.1), 50);
    // Local midnight of the last day: EDT in October, EST in November.
    assert_eq!(
        next("0 0 L * *", NEW_YORK, "2026-10-01T00:00:00Z", 2),
        ["2026-10-31T04:00:00+00:00", "2026-11-30T05:00:00+00:00"]
    );
}

#[test]
fn counting_agrees_with_walking_for_extensions() {
    let year = (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
    let expressions = [
        "0 0 L * *",
        "*/30 * LW * *",
        "15 10 * * 5L",
        "0 */6 * * 1#2",
        "0 0 * * 0#5",
        "0 12 L * MON",
        "*/20 1-3 1,L * 1#1,5L",
        "0 30 2 * 3,10,11 0#1,0#2,0L",
        "* * L 2 *",
    ];
    for zone in ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"] {
        for expression in expressions {
            let schedule = CronSchedule::parse(expression, Some(zone)).unwrap();
            let all = walked(&schedule, year.0, year.1);
            assert!(!all.is_empty(), "{expression} in {zone}");
            assert!(all.windows(2).all(|w| w[0] < w[1]), "{expression} in {zone}");
            assert_eq!(
                schedule.count_between(year.0, year.1),
                all.len() as u64,
                "{expression:?} in {zone}"
            );
            // And month by month, from odd instants.
            for month in 0..12 {
                let from = year.0 + Duration::days(30 * month) + Duration::seconds(4321);
                let until = (from + Duration::days(31)).min(year.1);
                let want = all.iter().filter(|t| **t > from && **t <= until).count() as u64;
                assert_eq!(
                    schedule.count_between(from, until),
                    want,
                    "{expression:?} in {zone}, ({from}, {until}]"
                );
            }
        }
    }
}

#[test]
fn the_walk_skips_days_that_do_not_match() {
    // Every second of a February with five Mondays: a leap year starting on a
    // Monday; `date` finds 1988, 2016, 2044 and 2072 up to 2100. Walking every
    // second of the Februaries between would take minutes.
    let clock = Instant::now();
    let schedule = CronSchedule::parse("* * * * 2 1#5", None).unwrap();
    assert_eq!(
        schedule.next_n(at("2026-01-01T00:00:00Z"), 2),
        [at("2044-02-29T00:00:00Z"), at("2044-02-29T00:00:01Z")]
    );
    assert!(schedule.next_n(at("2072-03-01T00:00:00Z"), 1).is_empty());
    let fifth_mondays = CronSchedule::parse("0 0 * 2 1#5", None).unwrap();
    assert_eq!(
        fifth_mondays.next_n(at("1960-01-01T00:00:00Z"), 10),
        ["1988-02-29", "2016-02-29", "2044-02-29", "2072-02-29"].map(|d| at(&format!("{d}T00:00:00Z")))
    );
    let last_days = CronSchedule::parse("* * L * *", None).unwrap();
    let ten_years = (at("2026-01-01T00:00:00Z"), at("2036-01-01T00:00:00Z"));
    assert_eq!(walked(&last_days, ten_years.0, ten_years.1).len(), 120 * 1440);
    let took = clock.elapsed();
    assert!(took.as_secs() < 20, "{took:?}");
}

#[test]
fn extensions_still_let_impossible_dates_be_refused() {
    for expression in [
        "0 0 L 2 *",
        "0 0 30,L 2 *",
        "0 0 LW 2 *",
        "0 0 * 2 1#5",
        "0 0 31 2 5L",
        "0 0 * JUL,APRIL *",
    ] {
        assert!(CronSchedule::parse(expression, None).is_ok(), "{expression}");
    }
    assert!(error("0 0 30 2 *").contains("never fires"));
}

#[test]
fn misplaced_or_malformed_extensions_say_what_to_write() {
    let elsewhere = "is a calendar extension, which only the day fields accept: L or LW in \
                     day-of-month, such as 5L or 1#2 in day-of-week";
    let week = "asks for a week a month does not have: write #1 to #5 after the day (a month has at \
                most five of each), such as 1#2 for the second Monday";
    let step = "has a step, which the last (5L) and n-th (1#2) days of a month do not take: list them \
                instead, such as 1#1,1#3";
    for (expression, message) in [
        ("L * * * *", format!(r#"minute "L" {elsewhere}"#)),
        ("0 5L * * *", format!(r#"hour "5L" {elsewhere}"#)),
        ("0 0 * L *", format!(r#"month "L" {elsewhere}"#)),
        ("0 0 * 1#2 *", format!(r#"month "1#2" {elsewhere}"#)),
        ("0 0 * * 0#6", format!(r#"day-of-week "0#6" {week}"#)),
        ("0 0 * * 1#", format!(r#"day-of-week "1#" {week}"#)),
        ("0 0 * * 1,2#0", format!(r#"day-of-week "1,2#0": "2#0" {week}"#)),
        (
            "0 0 * * #2",
            r##"day-of-week "#2" has no day before '#': write one, such as 5L for the last Friday or 1#2 for the second Monday"##.to_string(),
        ),
        (
            "0 0 * * 1-5#2",
            r#"day-of-week "1-5#2" names more than one day before '#': write one day, and list several as 1#2,3#2 or 1L,5L"#.to_string(),
        ),
        (
            "0 0 * * 8L",
            r#"day-of-week "8L": "8" is out of range: use 0-7 (0 and 7 are Sunday) or SUN-SAT"#.to_string(),
        ),
        (
            "0 0 * * XYZL",
            r#"day-of-week "XYZL": "XYZ" is not a day: use 0-7 (0 and 7 are Sunday) or SUN-SAT"#.to_string(),
        ),
        (
            "0 0 * * LW",
            r#"day-of-week "LW" is for day-of-month (the month's last weekday): in day-of-week write a day before L, such as 5L for the last Friday"#.to_string(),
        ),
        (
            "0 0 * * L",
            r#"day-of-week "L" is not a day: write the day before L, such as 5L for the month's last Friday"#.to_string(),
        ),
        ("0 0 * * 5L/2", format!(r#"day-of-week "5L/2" {step}"#)),
        ("0 0 * * 1#2/2", format!(r#"day-of-week "1#2/2" {step}"#)),
        (
            "0 0 L/2 * *",
            r#"day-of-month "L/2" adds to L: L (the last day of the month) and LW (its last weekday) stand alone, without a step, range or offset"#.to_string(),
        ),
        (
            "0 0 1,L-2 * *",
            r#"day-of-month "1,L-2": "L-2" adds to L: L (the last day of the month) and LW (its last weekday) stand alone, without a step, range or offset"#.to_string(),
        ),
        (
            "0 0 5L * *",
            r#"day-of-month "5L" uses L after a value: in day-of-month write L alone for the last day of the month; the last Friday is 5L in day-of-week"#.to_string(),
        ),
        (
            "0 0 15W * *",
            r#"day-of-month "15W" asks for the weekday nearest a day, which is not supported: LW, the last weekday of the month, is"#.to_string(),
        ),
        (
            "0 0 1#2 * *",
            r#"day-of-month "1#2" uses '#', which only day-of-week accepts: write 1#2 there for the month's second Monday"#.to_string(),
        ),
    ] {
        assert_eq!(
            error(expression),
            format!("invalid cron expression {expression:?}: {message}")
        );
    }
}
