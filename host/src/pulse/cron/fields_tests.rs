use super::super::CronSchedule;

fn error(expression: &str) -> String {
    CronSchedule::parse(expression, None).unwrap_err().to_string()
}

#[test]
fn out_of_range_values_name_the_field_and_its_bounds() {
    for (expression, message) in [
        (
            "61 * * * *",
            r#"invalid cron expression "61 * * * *": minute "61" is out of range: use 0-59"#,
        ),
        (
            "60 * * * * *",
            r#"invalid cron expression "60 * * * * *": second "60" is out of range: use 0-59"#,
        ),
        (
            "0 24 * * *",
            r#"invalid cron expression "0 24 * * *": hour "24" is out of range: use 0-23"#,
        ),
        (
            "0 0 0 * *",
            r#"invalid cron expression "0 0 0 * *": day-of-month "0" is out of range: use 1-31"#,
        ),
        (
            "0 0 32 * *",
            r#"invalid cron expression "0 0 32 * *": day-of-month "32" is out of range: use 1-31"#,
        ),
        (
            "0 0 * 13 *",
            r#"invalid cron expression "0 0 * 13 *": month "13" is out of range: use 1-12 or JAN-DEC"#,
        ),
        (
            "0 0 * * 8",
            r#"invalid cron expression "0 0 * * 8": day-of-week "8" is out of range: use 0-7 (0 and 7 are Sunday) or SUN-SAT"#,
        ),
        (
            "5,61 * * * *",
            r#"invalid cron expression "5,61 * * * *": minute "5,61": "61" is out of range: use 0-59"#,
        ),
        (
            "0 9-25 * * *",
            r#"invalid cron expression "0 9-25 * * *": hour "9-25": "25" is out of range: use 0-23"#,
        ),
        (
            "0 0 * * 99999999999",
            r#"invalid cron expression "0 0 * * 99999999999": day-of-week "99999999999" is out of range: use 0-7 (0 and 7 are Sunday) or SUN-SAT"#,
        ),
    ] {
        assert_eq!(error(expression), message);
    }
}

#[test]
fn unknown_words_steps_ranges_and_lists_say_what_to_write() {
    for (expression, message) in [
        (
            "0 0 * FOO *",
            r#"invalid cron expression "0 0 * FOO *": month "FOO" is not a month: use 1-12 or JAN-DEC"#,
        ),
        (
            "0 0 * * MONDAY",
            r#"invalid cron expression "0 0 * * MONDAY": day-of-week "MONDAY" is not a day: use 0-7 (0 and 7 are Sunday) or SUN-SAT"#,
        ),
        (
            "x * * * *",
            r#"invalid cron expression "x * * * *": minute "x" is not a number: use 0-59"#,
        ),
        (
            "*/0 * * * *",
            r#"invalid cron expression "*/0 * * * *": minute "*/0" has step 0, which never advances: use a step of 1 or more"#,
        ),
        (
            "0 */ * * *",
            r#"invalid cron expression "0 */ * * *": hour "*/" has no step after '/': write a number, such as */5"#,
        ),
        (
            "0 1-5/x * * *",
            r#"invalid cron expression "0 1-5/x * * *": hour "1-5/x" has step "x": a step is a whole number, such as */5"#,
        ),
        (
            "0 17-9 * * *",
            r#"invalid cron expression "0 17-9 * * *": hour "17-9" runs backwards: write the smaller value first (9-17), or a list"#,
        ),
        (
            "0 0 * * FRI-MON",
            r#"invalid cron expression "0 0 * * FRI-MON": day-of-week "FRI-MON" runs backwards: write the smaller value first (MON-FRI), or a list"#,
        ),
        (
            "0 9-17/2,20-/3 * * *",
            r#"invalid cron expression "0 9-17/2,20-/3 * * *": hour "9-17/2,20-/3": "20-" is missing a range end: write ranges as first-last, such as 1-5"#,
        ),
        (
            "1,,2 * * * *",
            r#"invalid cron expression "1,,2 * * * *": minute "1,,2" has an empty list item: remove the extra comma"#,
        ),
        (
            "0 0 ? * MON",
            r#"invalid cron expression "0 0 ? * MON": day-of-month "?" uses '?', which is not standard cron: use '*'"#,
        ),
    ] {
        assert_eq!(error(expression), message);
    }
}

#[test]
fn names_are_read_in_any_case() {
    // Full month names were always accepted, so stored expressions may use them.
    for expression in [
        "0 0 * jan,Feb,MAR *",
        "0 0 * * sun-Sat",
        "0 0 * Jun-aug/2 mon",
        "0 0 * january-MARCH *",
    ] {
        assert!(CronSchedule::parse(expression, None).is_ok(), "{expression}");
    }
}

#[test]
fn schedules_that_never_fire_are_rejected_with_the_reason() {
    for (expression, message) in [
        (
            "0 0 31 2 *",
            r#"invalid cron expression "0 0 31 2 *" never fires: February has at most 29 days, so day-of-month "31" never occurs in month "2"; choose days that exist in those months"#,
        ),
        (
            "0 0 30 FEB *",
            r#"invalid cron expression "0 0 30 FEB *" never fires: February has at most 29 days, so day-of-month "30" never occurs in month "FEB"; choose days that exist in those months"#,
        ),
        (
            "0 0 31 4,6 *",
            r#"invalid cron expression "0 0 31 4,6 *" never fires: April and June have 30 days, so day-of-month "31" never occurs in month "4,6"; choose days that exist in those months"#,
        ),
        (
            "0 0 31 2,9,11 */2",
            r#"invalid cron expression "0 0 31 2,9,11 */2" never fires: February has at most 29 days and September and November have 30, so day-of-month "31" never occurs in month "2,9,11"; choose days that exist in those months"#,
        ),
    ] {
        assert_eq!(error(expression), message);
    }
    // Leap days exist; with both day fields restricted either one suffices.
    for expression in ["0 0 29 2 *", "0 0 31 2 MON", "0 0 31 * *", "0 0 1-31 2 *"] {
        assert!(CronSchedule::parse(expression, None).is_ok(), "{expression}");
    }
}

#[test]
fn field_counts_shorthands_and_zones_say_how_to_fix_them() {
    assert_eq!(
        error("* * * *"),
        "cron expression \"* * * *\" has 4 fields: write 5 (minute hour day-of-month month \
         day-of-week), optionally preceded by a seconds field"
    );
    assert_eq!(
        error("@reboot"),
        "unknown shorthand \"@reboot\": use @yearly, @monthly, @weekly, @daily or @hourly"
    );
    let zone = CronSchedule::parse("* * * * *", Some("Mars/Olympus"))
        .unwrap_err()
        .to_string();
    assert!(zone.contains("IANA"), "{zone}");
}
