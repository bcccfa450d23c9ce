use super::*;

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn next(expr: &str, tz: Option<&str>, after: &str, n: usize) -> Vec<String> {
    CronSchedule::parse(expr, tz)
        .unwrap()
        .next_n(at(after), n)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect()
}

#[test]
fn sunday_is_zero_and_seven_and_one_to_five_is_monday_to_friday() {
    // 2026-11-23 is a Monday.
    assert_eq!(
        next("0 9 * * 0", None, "2026-11-23T00:00:00Z", 1),
        ["2026-11-29T09:00:00+00:00"]
    );
    assert_eq!(
        next("0 9 * * 7", None, "2026-11-23T00:00:00Z", 1),
        ["2026-11-29T09:00:00+00:00"]
    );
    let weekdays = next("0 9 * * 1-5", None, "2026-11-22T00:00:00Z", 6);
    assert_eq!(weekdays.first().unwrap(), "2026-11-23T09:00:00+00:00");
    assert_eq!(weekdays.last().unwrap(), "2026-11-30T09:00:00+00:00");
}

#[test]
fn both_day_fields_restricted_means_either() {
    // The 1st of the month OR any Friday.
    let got = next("0 0 1 * FRI", None, "2026-11-23T00:00:00Z", 3);
    assert_eq!(
        got,
        [
            "2026-11-27T00:00:00+00:00",
            "2026-12-01T00:00:00+00:00",
            "2026-12-04T00:00:00+00:00"
        ]
    );
}

#[test]
fn seconds_and_shorthands_are_accepted() {
    assert_eq!(
        next("*/20 * * * * *", None, "2026-11-23T00:00:00Z", 2),
        ["2026-11-23T00:00:20+00:00", "2026-11-23T00:00:40+00:00"]
    );
    assert_eq!(
        next("@daily", None, "2026-11-23T00:00:00Z", 1),
        ["2026-11-24T00:00:00+00:00"]
    );
}

#[test]
fn a_value_with_a_step_runs_to_the_end_of_the_field() {
    assert_eq!(
        next("50/5 * * * *", None, "2026-11-23T00:00:00Z", 3),
        [
            "2026-11-23T00:50:00+00:00",
            "2026-11-23T00:55:00+00:00",
            "2026-11-23T01:50:00+00:00"
        ]
    );
    assert_eq!(
        next("0 0 * JAN-MAR/2 SAT,SUN", None, "2026-02-27T00:00:00Z", 2),
        ["2026-03-01T00:00:00+00:00", "2026-03-07T00:00:00+00:00"]
    );
}

/// Cases computed by an independent implementation (croniter), around clock
/// changes in several zones; see tests/data/cron_reference.py. Cases where
/// pulsehost deliberately differs from croniter carry the reason, and the
/// table's header says how many there are.
#[test]
fn next_occurrences_match_the_independent_reference_table() {
    let table: serde_json::Value =
        serde_json::from_str(include_str!("../../../../tests/data/cron_reference.json")).unwrap();
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() >= 400);
    let deviating = cases
        .iter()
        .filter(|c| c.get("deviates_from_reference").is_some())
        .count();
    eprintln!(
        "{} reference cases, {deviating} of them deliberately deviating from croniter",
        cases.len()
    );
    assert_eq!(Some(deviating as u64), table["deviating_cases"].as_u64());
    let mut failures = Vec::new();
    for case in cases {
        let expression = case["expression"].as_str().unwrap();
        let zone = case["timezone"].as_str().unwrap();
        let after = at(case["after"].as_str().unwrap());
        let expected: Vec<DateTime<Utc>> = case["next"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| at(t.as_str().unwrap()))
            .collect();
        let got = CronSchedule::parse(expression, Some(zone))
            .unwrap()
            .next_n(after, expected.len());
        if got != expected {
            failures.push(format!(
                "{expression:?} in {zone} after {after}: got {got:?}, want {expected:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
