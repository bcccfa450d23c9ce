//! Clock changes: Europe/Berlin goes back from 03:00 CEST to 02:00 CET at
//! 2026-10-25T01:00Z, America/New_York from 02:00 EDT to 01:00 EST at
//! 2026-11-01T06:00Z.

use std::collections::BTreeSet;

use super::tests::{at, next};
use super::*;

const BERLIN: &str = "Europe/Berlin";
const NEW_YORK: &str = "America/New_York";

/// Each zone's autumn night: a window of six real hours around the change.
const NIGHTS: [(&str, &str, &str); 2] = [
    (BERLIN, "2026-10-24T22:00:00Z", "2026-10-25T04:00:00Z"),
    (NEW_YORK, "2026-11-01T03:00:00Z", "2026-11-01T09:00:00Z"),
];

fn between(expr: &str, zone: &str, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    let to = at(to);
    CronSchedule::parse(expr, Some(zone))
        .unwrap()
        .after(at(from))
        .take_while(|t| *t <= to)
        .collect()
}

/// The distinct gaps between consecutive occurrences; also checks they ascend.
fn gaps(occurrences: &[DateTime<Utc>]) -> BTreeSet<i64> {
    occurrences
        .windows(2)
        .map(|w| {
            assert!(w[0] < w[1], "not ascending: {} then {}", w[0], w[1]);
            (w[1] - w[0]).num_seconds()
        })
        .collect()
}

#[test]
fn every_minute_keeps_firing_through_the_repeated_hour() {
    for (zone, from, to) in NIGHTS {
        let got = between("* * * * *", zone, from, to);
        let tz: Tz = zone.parse().unwrap();
        let walls: BTreeSet<NaiveDateTime> = got.iter().map(|t| t.with_timezone(&tz).naive_local()).collect();
        assert_eq!(got.len(), 360, "{zone}");
        assert_eq!(got.len(), walls.len() + 60, "{zone}");
        assert_eq!(gaps(&got), BTreeSet::from([60]), "{zone}: silence in the night");
    }
}

#[test]
fn every_second_keeps_firing_through_the_repeated_hour() {
    let got = between(
        "* * * * * *",
        BERLIN,
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:30:00Z",
    );
    assert_eq!(got.len(), 3600);
    assert_eq!(gaps(&got), BTreeSet::from([1]));
}

#[test]
fn quarter_hours_and_hours_follow_real_time() {
    for (zone, from, to) in NIGHTS {
        let quarters = between("*/15 * * * *", zone, from, to);
        assert_eq!(
            (quarters.len(), gaps(&quarters)),
            (24, BTreeSet::from([900])),
            "{zone}"
        );
        let hours = between("0 * * * *", zone, from, to);
        assert_eq!((hours.len(), gaps(&hours)), (6, BTreeSet::from([3600])), "{zone}");
        let hourly = between("@hourly", zone, from, to);
        assert_eq!(hourly, hours, "{zone}");
    }
    let (_, from, to) = NIGHTS[0];
    let every_other = between("0 */2 * * *", BERLIN, from, to);
    let want = [
        "2026-10-25T00:00:00Z",
        "2026-10-25T01:00:00Z",
        "2026-10-25T03:00:00Z",
    ];
    assert_eq!(every_other, want.map(at), "both copies of 02:00");
}

#[test]
fn a_fixed_hour_runs_a_repeated_time_once_at_its_first_instant() {
    let (_, from, to) = NIGHTS[0];
    assert_eq!(
        between("30 2 * * *", BERLIN, from, to),
        [at("2026-10-25T00:30:00Z")]
    );
    let (_, from, to) = NIGHTS[1];
    assert_eq!(
        between("30 1 * * *", NEW_YORK, from, to),
        [at("2026-11-01T05:30:00Z")]
    );
    // A range is fixed too: 01:00, 01:30, 02:00, 02:30, 03:00, 03:30 once each.
    let (_, from, to) = NIGHTS[0];
    let range = between("*/30 1-3 * * *", BERLIN, from, to);
    assert_eq!(range.len(), 6);
    assert_eq!(
        range[2..4],
        [at("2026-10-25T00:00:00Z"), at("2026-10-25T00:30:00Z")]
    );
    let autumn = next("30 2 * * *", Some(BERLIN), "2026-10-24T12:00:00Z", 2);
    assert_eq!(autumn, ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]);
}

#[test]
fn a_spring_forward_gap_fires_once_at_its_end() {
    // Europe/Berlin: 2026-03-29 02:00 -> 03:00.
    let spring = next("30 2 * * *", Some(BERLIN), "2026-03-28T12:00:00Z", 2);
    assert_eq!(spring, ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]);
    let minutes = between(
        "* * * * *",
        BERLIN,
        "2026-03-29T00:00:00Z",
        "2026-03-29T02:00:00Z",
    );
    assert_eq!(minutes.len(), 120);
    assert_eq!(gaps(&minutes), BTreeSet::from([60]));
}

#[test]
fn starting_inside_the_first_copy_finds_the_second_copies() {
    // 00:20Z is 02:20 CEST: the rest of the first copy, then all of the second.
    let quarters = next("*/15 * * * *", Some(BERLIN), "2026-10-25T00:20:00Z", 7);
    let want = ["00:30", "00:45", "01:00", "01:15", "01:30", "01:45", "02:00"];
    assert_eq!(quarters, want.map(|t| format!("2026-10-25T{t}:00+00:00")));
    // Between the two copies of 02:30 a fixed-hour job has already run.
    let fixed = next("30 2 * * *", Some(BERLIN), "2026-10-25T00:45:00Z", 1);
    assert_eq!(fixed, ["2026-10-26T01:30:00+00:00"]);
    // 05:10Z is 01:10 EDT in New York; just before the change, too.
    let hours = next("0 * * * *", Some(NEW_YORK), "2026-11-01T05:10:00Z", 3);
    assert_eq!(
        hours,
        [
            "2026-11-01T06:00:00+00:00",
            "2026-11-01T07:00:00+00:00",
            "2026-11-01T08:00:00+00:00"
        ]
    );
    let before = next("*/20 * * * *", Some(NEW_YORK), "2026-11-01T04:59:59Z", 7);
    let want = ["05:00", "05:20", "05:40", "06:00", "06:20", "06:40", "07:00"];
    assert_eq!(before, want.map(|t| format!("2026-11-01T{t}:00+00:00")));
}

#[test]
fn starting_inside_the_second_copy_goes_on_from_there() {
    // 01:20Z is 02:20 CET, the second copy.
    let quarters = next("*/15 * * * *", Some(BERLIN), "2026-10-25T01:20:00Z", 3);
    let want = ["01:30", "01:45", "02:00"];
    assert_eq!(quarters, want.map(|t| format!("2026-10-25T{t}:00+00:00")));
    let fixed = next("30 2 * * *", Some(BERLIN), "2026-10-25T01:20:00Z", 1);
    assert_eq!(fixed, ["2026-10-26T01:30:00+00:00"]);
    // 06:30Z is 01:30 EST in New York.
    let minutes = next("* * * * *", Some(NEW_YORK), "2026-11-01T06:30:00Z", 2);
    assert_eq!(
        minutes,
        ["2026-11-01T06:31:00+00:00", "2026-11-01T06:32:00+00:00"]
    );
    let fixed = next("30 1 * * *", Some(NEW_YORK), "2026-11-01T06:00:00Z", 1);
    assert_eq!(fixed, ["2026-11-02T06:30:00+00:00"]);
}

#[test]
fn the_walk_starts_early_only_when_second_copies_lie_ahead() {
    let wall = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    let every_minute = CronSchedule::parse("* * * * *", Some(BERLIN)).unwrap();
    let fixed = CronSchedule::parse("30 2 * * *", Some(BERLIN)).unwrap();
    // Two hours before the change: 01:00 CEST, nothing repeated yet ahead.
    let early = at("2026-10-24T23:00:00Z");
    assert_eq!(every_minute.walk_start(early), wall("2026-10-25 01:00:00"));
    // Inside the first copy: from just before the repeated stretch.
    let inside = at("2026-10-25T00:30:00Z");
    assert_eq!(every_minute.walk_start(inside), wall("2026-10-25 01:59:59"));
    // A fixed hour never fires second copies, so it walks from its own time.
    assert_eq!(fixed.walk_start(inside), wall("2026-10-25 02:30:00"));
}
