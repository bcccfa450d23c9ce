use std::time::Instant;

use chrono::Datelike;

use super::super::tests::at;
use super::*;

/// The reference table's expressions and some more, among them schedules
/// whose hour is fixed, ranged or stepped, and day fields in both senses.
fn expressions() -> Vec<String> {
    let table: serde_json::Value =
        serde_json::from_str(include_str!("../../../../tests/data/cron_reference.json")).unwrap();
    let mut all: Vec<String> = table["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["expression"].as_str().unwrap().to_string())
        .collect();
    all.extend(
        [
            "*/20 * * * *",
            "*/7 * * * * *",
            "0 */2 * * *",
            "15 1,2 * * *",
            "*/10 * 1-7 * MON",
        ]
        .map(String::from),
    );
    all.sort();
    all.dedup();
    all
}

/// Zones with an hour's change at night, a half hour's (Lord Howe), changes
/// at midnight (Santiago, Havana), Morocco's around Ramadan, offsets in
/// quarter and half hours, and none at all.
const ZONES: [&str; 11] = [
    "UTC",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "America/St_Johns",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
];

/// A small deterministic generator, so a failure can be reproduced.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: i64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as i64
    }
}

fn walked(schedule: &CronSchedule, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    schedule.after(after).take_while(|t| *t <= until).collect()
}

#[test]
fn counting_agrees_with_walking_around_clock_changes() {
    let mut random = Lcg(7);
    let year = (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
    let mut cases = 0;
    for zone in ZONES {
        let utc = CronSchedule::parse("* * * * *", Some(zone)).unwrap();
        let mut anchors: Vec<_> = utc.clock_changes(year.0, year.1).iter().map(|c| c.at).collect();
        anchors.push(at("2026-07-15T12:00:00Z"));
        for expression in expressions() {
            let schedule = CronSchedule::parse(&expression, Some(zone)).unwrap();
            let every_second = expression.split_whitespace().count() == 6 && expression.starts_with('*');
            let reach = if every_second { 3 * 3600 } else { 3 * 86400 };
            for anchor in &anchors {
                for _ in 0..2 {
                    let after = *anchor - Duration::seconds(random.below(reach))
                        + Duration::milliseconds(random.below(3) * 500);
                    let until = after + Duration::seconds(random.below(reach));
                    let want = walked(&schedule, after, until);
                    assert!(want.windows(2).all(|w| w[0] < w[1]), "{expression} in {zone}");
                    let got = schedule.count_between(after, until);
                    assert_eq!(
                        got,
                        want.len() as u64,
                        "{expression:?} in {zone}, ({after}, {until}]"
                    );
                    let k = random.below(4) as usize + 1;
                    let newest = schedule.newest_between(after, until, k);
                    assert_eq!(
                        newest,
                        want[want.len().saturating_sub(k)..],
                        "{expression:?} in {zone}"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert!(cases >= 3000, "{cases}");
}

#[test]
fn a_skipped_time_counts_at_the_end_of_the_gap_and_not_before() {
    // Europe/Berlin skips 02:00-03:00 at 2026-03-29T01:00Z; 02:30 fires then.
    let schedule = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    let change = at("2026-03-29T01:00:00Z");
    let from = change - Duration::hours(1);
    assert_eq!(
        schedule.count_between(from, change - Duration::milliseconds(500)),
        0
    );
    assert_eq!(schedule.count_between(from, change), 1);
    assert_eq!(
        schedule.count_between(change - Duration::milliseconds(500), change),
        1
    );
    assert_eq!(schedule.count_between(change, change + Duration::days(1)), 1);
}

#[test]
fn twelve_days_of_every_second_are_counted_exactly() {
    let schedule = CronSchedule::parse("* * * * * *", None).unwrap();
    let after = at("2026-11-11T10:00:00Z");
    assert_eq!(
        schedule.count_between(after, after + Duration::days(12)),
        1_036_800
    );
    let berlin = CronSchedule::parse("* * * * * *", Some("Europe/Berlin")).unwrap();
    let (from, to) = (at("2026-10-20T10:00:00Z"), at("2026-11-01T10:00:00Z"));
    // Every real second fires, the repeated hour included.
    assert_eq!(berlin.count_between(from, to), 1_036_800);
}

#[test]
fn ten_years_of_every_second_count_in_milliseconds() {
    let (from, to) = (at("2020-01-01T00:00:00Z"), at("2030-01-01T00:00:00Z"));
    for zone in ["UTC", "Europe/Berlin", "America/New_York"] {
        let schedule = CronSchedule::parse("* * * * * *", Some(zone)).unwrap();
        let clock = Instant::now();
        let counted = schedule.count_between(from, to);
        let took = clock.elapsed();
        assert_eq!(counted, (to - from).num_seconds() as u64, "{zone}");
        assert!(took.as_millis() < 200, "{zone}: {took:?}");
    }
    let minutes = CronSchedule::parse("*/15 9-17 * * MON-FRI", Some("Europe/Berlin")).unwrap();
    let weekdays = NaiveDate::from_ymd_opt(2020, 1, 1)
        .unwrap()
        .iter_days()
        .take_while(|d| d.year() < 2030)
        .filter(|d| d.weekday().number_from_monday() <= 5)
        .count() as u64;
    assert_eq!(minutes.count_between(from, to), weekdays * 36);
}

#[test]
fn nothing_fires_outside_the_years_the_schedule_knows() {
    let schedule = CronSchedule::parse("0 0 * * *", Some("Pacific/Kiritimati")).unwrap();
    let (from, to) = (at("2100-12-25T00:00:00Z"), at("2101-01-10T00:00:00Z"));
    assert_eq!(
        schedule.count_between(from, to),
        walked(&schedule, from, to).len() as u64
    );
    let far = at("9999-01-01T00:00:00Z");
    assert_eq!(schedule.count_between(to, far), 0);
    assert!(schedule.newest_between(to, far, 3).is_empty());
}

#[test]
fn the_newest_slots_after_twelve_silent_days_end_at_the_last_second() {
    let schedule = CronSchedule::parse("* * * * * *", None).unwrap();
    let after = at("2026-11-11T10:00:00Z");
    let until = after + Duration::days(12) + Duration::milliseconds(700);
    let newest = schedule.newest_between(after, until, 3);
    let last = at("2026-11-23T10:00:00Z");
    assert_eq!(
        newest,
        [last - Duration::seconds(2), last - Duration::seconds(1), last]
    );
}

#[test]
fn the_newest_of_a_yearly_schedule_over_three_years() {
    let schedule = CronSchedule::parse("@yearly", Some("Europe/Berlin")).unwrap();
    let (after, until) = (at("2024-06-01T00:00:00Z"), at("2027-06-01T00:00:00Z"));
    let new_years = [
        "2024-12-31T23:00:00Z",
        "2025-12-31T23:00:00Z",
        "2026-12-31T23:00:00Z",
    ]
    .map(at);
    assert_eq!(schedule.newest_between(after, until, 2), new_years[1..]);
    assert_eq!(schedule.newest_between(after, until, 10), new_years);
    assert_eq!(schedule.count_between(after, until), 3);
    assert!(schedule.newest_between(after, until, 0).is_empty());
    assert!(schedule.newest_between(until, after, 1).is_empty());
}
