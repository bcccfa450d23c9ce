//! Jenkins' `H`. The concrete values were computed independently with
//! Python's hashlib, as the module documents the hash:
//!
//! ```text
//! h = lambda identity, position: int.from_bytes(hashlib.sha256(
//!     identity.encode() + bytes([0xff, position])).digest()[:8], "big")
//! ```
//!
//! For "weather/fetch": minute (position 1) h % 60 = 40, h % 15 = 10,
//! h % 30 = 10; hour (2) h % 24 = 7, h % 2 = 1; day-of-month (3)
//! 1 + h % 28 = 19; day-of-week (5) h % 7 = 6; second (0) h % 60 = 5.
//! A change of the hash changes these, and the tests notice.

use std::collections::BTreeSet;

use chrono::{Datelike, Timelike};

use super::super::kinds::Field;
use super::super::tests::at;
use super::super::CronSchedule;
use super::hash;

const TASK: &str = "weather/fetch";

fn task(expression: &str, identity: &str) -> CronSchedule {
    CronSchedule::for_task(expression, None, identity).unwrap()
}

fn next(expression: &str, identity: &str, after: &str, n: usize) -> Vec<String> {
    task(expression, identity)
        .next_n(at(after), n)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect()
}

fn error(expression: &str) -> String {
    CronSchedule::for_task(expression, None, TASK)
        .unwrap_err()
        .to_string()
}

#[test]
fn the_same_task_always_gets_the_same_times() {
    assert_eq!(
        next("H H * * *", TASK, "2026-11-23T00:00:00Z", 2),
        ["2026-11-23T07:40:00+00:00", "2026-11-24T07:40:00+00:00"]
    );
    assert_eq!(
        next("H H * * *", TASK, "2026-11-23T00:00:00Z", 2),
        next("H H * * *", TASK, "2026-11-23T00:00:00Z", 2)
    );
    assert_eq!(
        next("H * * * * *", TASK, "2026-11-23T00:00:00Z", 1),
        ["2026-11-23T00:00:05+00:00"]
    );
    // The day-of-month is 19 and the day-of-week Saturday; both restricted,
    // so either suffices (2026-11-28 is a Saturday: `date -d 2026-11-28 +%a`).
    assert_eq!(
        next("0 0 H * H", TASK, "2026-11-18T00:00:00Z", 3),
        [
            "2026-11-19T00:00:00+00:00",
            "2026-11-21T00:00:00+00:00",
            "2026-11-28T00:00:00+00:00"
        ]
    );
    // The wall-clock time is the task's in any zone.
    let berlin = CronSchedule::for_task("H H * * *", Some("Europe/Berlin"), TASK).unwrap();
    assert_eq!(
        berlin.next_n(at("2026-11-23T00:00:00Z"), 1),
        [at("2026-11-23T06:40:00Z")]
    );
}

#[test]
fn fields_are_hashed_apart() {
    let minute = hash(TASK, Field::Minute);
    assert_ne!(minute, hash(TASK, Field::Hour));
    assert_ne!(minute, hash(TASK, Field::Second));
    assert_ne!(minute, hash("weather/fetcH", Field::Minute));
}

#[test]
fn different_tasks_spread_over_the_hour() {
    let minutes: BTreeSet<u32> = (0..20)
        .map(|i| {
            let schedule = task("H * * * *", &format!("plugin/task-{i}"));
            schedule.next_n(at("2026-11-23T00:00:00Z"), 1)[0].minute()
        })
        .collect();
    // Python's hashlib gives 16 distinct minutes for these 20 names.
    assert_eq!(minutes.len(), 16, "{minutes:?}");
}

#[test]
fn a_step_runs_from_the_tasks_offset() {
    assert_eq!(
        next("H/15 * * * *", TASK, "2026-11-23T00:00:00Z", 5),
        [
            "2026-11-23T00:10:00+00:00",
            "2026-11-23T00:25:00+00:00",
            "2026-11-23T00:40:00+00:00",
            "2026-11-23T00:55:00+00:00",
            "2026-11-23T01:10:00+00:00"
        ]
    );
    for i in 0..50 {
        let schedule = task("H/15 * * * *", &format!("plugin/task-{i}"));
        let minutes = schedule.fields.minutes;
        let first = minutes.trailing_zeros();
        assert!(first < 15, "task-{i}");
        let every_quarter = (0..4).fold(0u64, |set, k| set | 1 << (first + 15 * k));
        assert_eq!(minutes, every_quarter, "task-{i}");
    }
    // In the hours 9-17, every other hour from 9 + 1.
    let hours: Vec<u32> = task("0 H(9-17)/2 * * *", TASK)
        .next_n(at("2026-11-23T00:00:00Z"), 4)
        .iter()
        .map(|t| t.hour())
        .collect();
    assert_eq!(hours, [10, 12, 14, 16]);
}

#[test]
fn a_range_keeps_the_choice_inside_it() {
    assert_eq!(
        next("H(0-29) * * * *", TASK, "2026-11-23T00:00:00Z", 1),
        ["2026-11-23T00:10:00+00:00"]
    );
    for i in 0..100 {
        let identity = format!("plugin/task-{i}");
        let minutes = task("H(0-29) * * * *", &identity).fields.minutes;
        assert_eq!(minutes.count_ones(), 1, "{identity}");
        assert!(minutes.trailing_zeros() <= 29, "{identity}");
        let weekdays = task("0 0 * * H(MON-FRI)", &identity).fields.days_of_week;
        assert_eq!(weekdays.count_ones(), 1, "{identity}");
        assert!((1..=5).contains(&weekdays.trailing_zeros()), "{identity}");
    }
}

#[test]
fn a_day_of_the_month_exists_in_every_month() {
    assert_eq!(
        next("0 0 H * *", TASK, "2026-11-23T00:00:00Z", 2),
        ["2026-12-19T00:00:00+00:00", "2027-01-19T00:00:00+00:00"]
    );
    let mut seen = BTreeSet::new();
    for i in 0..200 {
        let days = task("0 0 H * *", &format!("plugin/task-{i}"))
            .fields
            .days_of_month;
        assert_eq!(days.count_ones(), 1);
        let day = days.trailing_zeros();
        assert!((1..=28).contains(&day), "task-{i}: {day}");
        seen.insert(day);
        let sunday_once = task("0 0 * * H", &format!("plugin/task-{i}")).fields.days_of_week;
        assert!(sunday_once.trailing_zeros() <= 6);
    }
    assert!(seen.len() > 20, "{seen:?}");
    // February, every year.
    let february = task("0 0 H 2 *", TASK).next_n(at("2027-01-01T00:00:00Z"), 2);
    assert!(february.iter().all(|t| t.month() == 2 && t.day() == 19));
}

#[test]
fn h_stands_in_lists_and_an_h_hour_is_fixed() {
    let listed = task("H,30 * * * *", TASK).fields.minutes;
    assert_eq!(listed, 1 << 40 | 1 << 30);
    let fixed = task("0 H * * *", TASK);
    assert!(!fixed.fields.hour_wildcard);
    assert_eq!(fixed.fields.hours, 1 << 7);
    assert!(task("0 * * * *", TASK).fields.hour_wildcard);
    // An H day field is restricted: Vixie's OR applies.
    assert!(task("0 0 H * MON", TASK).fields.days_either);
    assert!(!task("0 0 * * H", TASK).fields.days_either);
    // Without H, a task's schedule is read like any other.
    let plain = CronSchedule::parse("*/5 9-17 * * 1-5", None).unwrap().fields;
    assert_eq!(task("*/5 9-17 * * 1-5", TASK).fields, plain);
}

#[test]
fn h_is_refused_without_a_task() {
    let refused = |expression: &str| CronSchedule::parse(expression, None).unwrap_err().to_string();
    assert_eq!(
        refused("H * * * *"),
        r#"invalid cron expression "H * * * *": minute "H" uses H, which spreads a task's schedule by its name; it is only accepted in a task's schedule"#
    );
    assert_eq!(
        refused("0 H,12 * * *"),
        r#"invalid cron expression "0 H,12 * * *": hour "H,12": "H" uses H, which spreads a task's schedule by its name; it is only accepted in a task's schedule"#
    );
    assert_eq!(
        refused("0 0 * * H(1-5)"),
        r#"invalid cron expression "0 0 * * H(1-5)": day-of-week "H(1-5)" uses H, which spreads a task's schedule by its name; it is only accepted in a task's schedule"#
    );
}

#[test]
fn malformed_h_says_how_to_write_it() {
    let forms = "is not a form of H: write H, H/n, H(a-b) or H(a-b)/n, such as H/15 or H(0-29)";
    for (expression, message) in [
        (
            "H/0 * * * *",
            r#"invalid cron expression "H/0 * * * *": minute "H/0" has step 0, which never advances: use a step of 1 or more"#.to_string(),
        ),
        (
            "H(5-2) * * * *",
            r#"invalid cron expression "H(5-2) * * * *": minute "H(5-2)": "5-2" runs backwards: write the smaller value first (2-5), or a list"#.to_string(),
        ),
        (
            "H(1-99) * * * *",
            r#"invalid cron expression "H(1-99) * * * *": minute "H(1-99)": "99" is out of range: use 0-59"#.to_string(),
        ),
        (
            "H/61 * * * *",
            r#"invalid cron expression "H/61 * * * *": minute "H/61" has step 61, longer than the 60 values H chooses from (0-59): use a step of at most 60"#.to_string(),
        ),
        (
            "0 0 H/29 * *",
            r#"invalid cron expression "0 0 H/29 * *": day-of-month "H/29" has step 29, longer than the 28 values H chooses from (1-28): use a step of at most 28"#.to_string(),
        ),
        (
            "H(0-29)/x * * * *",
            r#"invalid cron expression "H(0-29)/x * * * *": minute "H(0-29)/x" has step "x": a step is a whole number, such as */5"#.to_string(),
        ),
        ("H( * * * *", format!(r#"invalid cron expression "H( * * * *": minute "H(" {forms}"#)),
        ("Hx * * * *", format!(r#"invalid cron expression "Hx * * * *": minute "Hx" {forms}"#)),
        ("H() * * * *", format!(r#"invalid cron expression "H() * * * *": minute "H()" {forms}"#)),
        ("H(7) * * * *", format!(r#"invalid cron expression "H(7) * * * *": minute "H(7)" {forms}"#)),
        (
            "0 5,H(1-3 * * *",
            format!(r#"invalid cron expression "0 5,H(1-3 * * *": hour "5,H(1-3": "H(1-3" {forms}"#),
        ),
    ] {
        assert_eq!(error(expression), message);
    }
    // Only a capital H is H; a small one is an unknown word, as before.
    assert_eq!(
        error("h * * * *"),
        r#"invalid cron expression "h * * * *": minute "h" is not a number: use 0-59"#
    );
}
