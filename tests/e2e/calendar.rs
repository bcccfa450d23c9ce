//! Schedules as users write them, against the real binary: `H` spread by the
//! task's name, the calendar extensions, previews with clock changes marked,
//! backfills that claim a past slot once, pauses (until a time or until
//! unpaused) that are never caught up, and jitter fixed per slot.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde_json::{json, Value};

use crate::support::{cli, component, recorded_in, Server, TestDb, ADMIN};

const LIMIT: Duration = Duration::from_secs(60);

fn started() -> (TestDb, Server) {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-calendar"));
    assert_eq!(status, 201, "{body}");
    (db, server)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn time(v: &Value) -> DateTime<Utc> {
    at(v.as_str().unwrap_or_else(|| panic!("not an instant: {v}")))
}

/// The preview of `task` between `from` and `to`: its occurrences (UTC).
fn preview(server: &Server, task: &str, from: &str, to: &str) -> Value {
    let id = server.task_id(task);
    let query = serde_urlencoded::to_string([("from", from), ("to", to)]).unwrap();
    server.get(&format!("/v1/tasks/{id}/schedule?{query}"))
}

fn instants(preview: &Value) -> Vec<DateTime<Utc>> {
    preview["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| time(&o["at"]))
        .collect()
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    server.request("POST", path, Some(ADMIN), Some(&bytes))
}

#[test]
fn previews_mark_clock_changes_read_the_calendar_extensions_and_spread_h_by_the_task() {
    let (_db, server) = started();

    // 2027-03-14: New York skips 02:00-03:00; 02:30 fires at the end of the gap.
    let night = preview(&server, "night", "2027-03-13T00:00:00Z", "2027-03-16T00:00:00Z");
    assert_eq!(
        instants(&night),
        [
            at("2027-03-13T07:30:00Z"),
            at("2027-03-14T07:00:00Z"),
            at("2027-03-15T06:30:00Z")
        ]
    );
    assert_eq!(night["occurrences"][1]["dst"], "clock_change", "{night}");
    assert_eq!(night["occurrences"][1]["local"], "2027-03-14T03:00:00-04:00");
    assert_eq!(night["clock_changes"][0]["direction"], "forward", "{night}");
    assert_eq!(night["timezone"], "America/New_York");

    // `cal 2 2028`: February 2028 has 29 days; `ncal`: the last Friday of
    // November 2026 is the 27th, the second Monday of December 2026 the 14th.
    let month_end = preview(
        &server,
        "month-end",
        "2028-01-15T00:00:00Z",
        "2028-04-15T00:00:00Z",
    );
    assert_eq!(
        instants(&month_end),
        [
            at("2028-01-31T09:00:00Z"),
            at("2028-02-29T09:00:00Z"),
            at("2028-03-31T09:00:00Z")
        ]
    );
    let friday = preview(
        &server,
        "last-friday",
        "2026-11-01T00:00:00Z",
        "2026-11-30T23:59:59Z",
    );
    assert_eq!(instants(&friday), [at("2026-11-27T09:00:00Z")]);
    let monday = preview(
        &server,
        "second-monday",
        "2026-12-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
    );
    assert_eq!(instants(&monday), [at("2026-12-14T09:00:00Z")]);

    // `H H * * *`: one time of day, picked by the task's name, the same in the
    // preview and in the task's next fire times.
    let spread = preview(&server, "spread", "2027-01-01T00:00:00Z", "2027-01-04T00:00:00Z");
    let days = instants(&spread);
    assert_eq!(days.len(), 3, "{spread}");
    assert!(
        days.windows(2).all(|w| w[1] - w[0] == chrono::Duration::days(1)),
        "{spread}"
    );
    let task = server.get(&format!("/v1/tasks/{}", server.task_id("spread")));
    let next = time(&task["next_fire_times"][0]);
    assert_eq!(
        (next.hour(), next.minute()),
        (days[0].hour(), days[0].minute()),
        "{task}"
    );
    assert_eq!(task["cron"], "H H * * *", "{task}");

    // The CLI prints the same preview, clock changes in words.
    let printed = cli(
        &server,
        &[
            "tasks",
            "schedule",
            "night",
            "--from",
            "2027-03-13T00:00:00Z",
            "--to",
            "2027-03-16T00:00:00Z",
        ],
    );
    assert!(printed.contains("2027-03-14T03:00:00-04:00"), "{printed}");
    assert!(printed.contains("clocks go forward"), "{printed}");

    // Refusals say what is wrong.
    let id = server.task_id("by-hand");
    let (status, body) = server.request("GET", &format!("/v1/tasks/{id}/schedule"), Some(ADMIN), None);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("manual"),
        "{body}"
    );
    let night_id = server.task_id("night");
    for (query, expected) in [
        (
            "from=2027-02-01T00:00:00Z&to=2027-01-01T00:00:00Z",
            "earlier than",
        ),
        ("from=2027-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", "366 days"),
        ("from=yesterday", "RFC 3339"),
        ("since=1h", "unknown parameter"),
    ] {
        let (status, body) = server.request(
            "GET",
            &format!("/v1/tasks/{night_id}/schedule?{query}"),
            Some(ADMIN),
            None,
        );
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.to_string().contains(expected), "{query}: {body}");
    }
}

#[test]
fn a_backfill_creates_the_missing_slots_of_a_past_range_once_and_runs_them() {
    let (_db, server) = started();
    let id = server.task_id("hourly");
    let now = Utc::now();
    let (from, to) = (now - chrono::Duration::hours(5), now - chrono::Duration::hours(1));
    let hours = (1..=5)
        .map(|h| {
            (now - chrono::Duration::hours(h))
                .with_minute(0)
                .unwrap()
                .with_second(0)
                .unwrap()
        })
        .map(|t| t.with_nanosecond(0).unwrap())
        .filter(|t| *t >= from && *t <= to)
        .count();
    let range = json!({"from": from, "to": to});

    // A dry run lists them and records nothing.
    let (status, dry) = post(
        &server,
        &format!("/v1/tasks/{id}/backfill"),
        &json!({"from": from, "to": to, "dry_run": true}),
    );
    assert_eq!(status, 200, "{dry}");
    let slots = dry["slots"].as_array().unwrap();
    assert_eq!(slots.len(), hours, "{dry}");
    assert!(slots.iter().all(|s| s["state"] == "would_create"), "{dry}");
    assert!(server.get(&format!("/v1/runs?task_id={id}"))["runs"]
        .as_array()
        .unwrap()
        .is_empty());

    // The backfill records a run per slot; they run.
    let (status, done) = post(&server, &format!("/v1/tasks/{id}/backfill"), &range);
    assert_eq!(status, 200, "{done}");
    let created = done["slots"].as_array().unwrap();
    assert_eq!(created.len(), hours, "{done}");
    for slot in created {
        assert_eq!(slot["state"], "created", "{done}");
        assert_eq!(slot["status"], "queued", "{done}");
        let run = server.finished_run(slot["run_id"].as_i64().unwrap(), LIMIT);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["scheduled_for"], slot["scheduled_for"], "{run}");
    }

    // An earlier range right after: its runs queue behind the others (the
    // task's overlap is `skip`, which a backfill never uses a slot up for).
    let (earlier_from, earlier_to) = (
        from - chrono::Duration::hours(3),
        from - chrono::Duration::minutes(1),
    );
    let (status, earlier) = post(
        &server,
        &format!("/v1/tasks/{id}/backfill"),
        &json!({"from": earlier_from, "to": earlier_to}),
    );
    assert_eq!(status, 200, "{earlier}");
    let earlier_slots = earlier["slots"].as_array().unwrap();
    assert!(!earlier_slots.is_empty());
    assert!(earlier_slots.iter().all(|s| s["status"] == "queued"), "{earlier}");
    for slot in earlier_slots {
        let run = server.finished_run(slot["run_id"].as_i64().unwrap(), LIMIT);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert!(
            run["lateness_ms"].is_null(),
            "a backfilled run is not late: {run}"
        );
    }
    let hours = hours + earlier_slots.len();

    // Again: every slot exists and is left as it is; nothing new is recorded.
    let (status, again) = post(&server, &format!("/v1/tasks/{id}/backfill"), &range);
    assert_eq!(status, 200, "{again}");
    assert!(
        again["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "exists"),
        "{again}"
    );
    let hours_in_range = again["slots"].as_array().unwrap().len();
    let runs = server.get(&format!("/v1/runs?task_id={id}&limit=100"));
    assert_eq!(runs["runs"].as_array().unwrap().len(), hours, "{runs}");
    let printed = cli(
        &server,
        &[
            "tasks",
            "backfill",
            "hourly",
            "--from",
            &from.to_rfc3339(),
            "--to",
            &to.to_rfc3339(),
            "--dry-run",
        ],
    );
    assert!(
        printed.contains(&format!("0 would be created, {hours_in_range} already claimed")),
        "{printed}"
    );

    // Refusals record nothing.
    let later = now + chrono::Duration::hours(2);
    let every = server.task_id("every-second");
    let manual = server.task_id("by-hand");
    let off = server.task_id("switched-off");
    for (path, body, status, expected) in [
        (
            format!("/v1/tasks/{off}/backfill"),
            range.clone(),
            422,
            "disabled by its plugin",
        ),
        (
            format!("/v1/tasks/{id}/backfill"),
            json!({"from": from, "to": later}),
            422,
            "later than now",
        ),
        (
            format!("/v1/tasks/{every}/backfill"),
            json!({"from": from, "to": to}),
            422,
            "more than 1000",
        ),
        (
            format!("/v1/tasks/{manual}/backfill"),
            range.clone(),
            422,
            "manual",
        ),
        (
            format!("/v1/tasks/{id}/backfill"),
            json!({"from": to, "to": from}),
            400,
            "earlier than",
        ),
        (format!("/v1/tasks/{id}/backfill"), json!({"to": to}), 400, "from"),
        (
            format!("/v1/tasks/{id}/backfill"),
            json!({"from": from, "to": to, "dryrun": true}),
            400,
            "dryrun",
        ),
    ] {
        let (got, answer) = post(&server, &path, &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.to_string().contains(expected), "{body}: {answer}");
    }
    let after = server.get(&format!("/v1/runs?task_id={id}&limit=100"));
    assert_eq!(after["runs"].as_array().unwrap().len(), hours, "{after}");
}

/// What a pulse recorded for `task`: every slot instant.
fn slots_of(pulse: &Value, task: &str) -> Vec<DateTime<Utc>> {
    recorded_in(pulse, task)
        .iter()
        .map(|r| time(&r["scheduled_for"]))
        .collect()
}

#[test]
fn a_paused_task_is_not_due_and_its_paused_span_is_never_caught_up() {
    let (_db, server) = started();
    let id = server.task_id("every-second");
    server.pulse();

    let (status, paused) = post(
        &server,
        &format!("/v1/tasks/{id}/pause"),
        &json!({"reason": "maintenance"}),
    );
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused_reason"], "maintenance");
    assert!(paused["paused_until"].is_null(), "{paused}");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(slots_of(&server.pulse(), "every-second").is_empty());

    // Runs queued while it is paused (here by a backfill) wait for the unpause.
    let past = Utc::now() - chrono::Duration::seconds(30);
    let (status, held) = post(
        &server,
        &format!("/v1/tasks/{id}/backfill"),
        &json!({"from": past, "to": past + chrono::Duration::seconds(1)}),
    );
    assert_eq!(status, 200, "{held}");
    let held_run = held["slots"][0]["run_id"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let waiting = server.get(&format!("/v1/runs/{held_run}"));
    assert_eq!(waiting["status"], "queued", "{waiting}");

    let unpaused_at = Utc::now();
    let printed = cli(&server, &["tasks", "unpause", "every-second"]);
    assert!(printed.contains("resumed"), "{printed}");
    std::thread::sleep(Duration::from_millis(1500));
    let slots = slots_of(&server.pulse(), "every-second");
    assert!(!slots.is_empty());
    assert!(
        slots
            .iter()
            .all(|s| *s > unpaused_at - chrono::Duration::seconds(1)),
        "{slots:?} vs {unpaused_at}"
    );
    assert_eq!(server.finished_run(held_run, LIMIT)["status"], "succeeded");

    // A pause with an end resumes by itself then, and its span is not caught up.
    let until = Utc::now() + chrono::Duration::seconds(2);
    let until_text = until.to_rfc3339();
    let printed = cli(
        &server,
        &[
            "tasks",
            "pause",
            "every-second",
            "--reason",
            "deploy window",
            "--until",
            &until_text,
        ],
    );
    assert!(
        printed.contains("paused task") && printed.contains("deploy window"),
        "{printed}"
    );
    let shown = cli(&server, &["tasks", "show", "every-second"]);
    assert!(shown.contains("paused until"), "{shown}");
    std::thread::sleep(Duration::from_millis(3500));
    let slots = slots_of(&server.pulse(), "every-second");
    assert!(!slots.is_empty());
    assert!(slots.iter().all(|s| *s > until), "{slots:?} vs {until}");
    let task = server.get(&format!("/v1/tasks/{id}"));
    assert!(
        task["paused_reason"].is_null() && task["paused_until"].is_null(),
        "{task}"
    );

    // Refusals.
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    for (body, status, expected) in [
        (json!({"reason": " "}), 400, "reason"),
        (json!({"reason": "x", "until": past}), 400, "has passed"),
        (json!({"why": "x"}), 400, "reason"),
    ] {
        let (got, answer) = post(&server, &format!("/v1/tasks/{id}/pause"), &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.to_string().contains(expected), "{body}: {answer}");
    }
    let (status, _) = post(&server, "/v1/tasks/999999/pause", &json!({"reason": "x"}));
    assert_eq!(status, 404);
}

#[test]
fn jitter_delays_each_slot_by_its_own_fixed_amount() {
    let (_db, server) = started();
    let mut checked = 0;
    for _ in 0..3 {
        let pulse = server.pulse();
        let received = time(&pulse["received_at"]);
        for claimed in pulse["claimed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["task"] == "jittered")
        {
            let slot = time(&claimed["scheduled_for"]);
            let delay = pulsehost::pulse::due::jitter("fixture-calendar/jittered", slot, 1500);
            let run = server.finished_run(claimed["run_id"].as_i64().unwrap(), LIMIT);
            assert_eq!(time(&run["not_before"]), (slot + delay).max(received), "{run}");
            assert!(time(&run["started_at"]) >= time(&run["not_before"]), "{run}");
            checked += 1;
        }
        std::thread::sleep(Duration::from_millis(2100));
    }
    assert!(checked >= 2, "only {checked} jittered runs were claimed");
}
