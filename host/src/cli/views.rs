//! Renderings of the operator's answers: one task, statistics, pulses.

use serde_json::Value;

/// A JSON value as a cell: strings bare, null as `-`.
pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds for people: `850 ms`, `12.3 s`, `4.5 min`, `2.0 h`.
pub fn millis(v: &Value) -> String {
    let Some(ms) = v.as_f64() else { return "-".into() };
    match ms {
        ms if ms < 1_000.0 => format!("{ms:.0} ms"),
        ms if ms < 60_000.0 => format!("{:.1} s", ms / 1_000.0),
        ms if ms < 3_600_000.0 => format!("{:.1} min", ms / 60_000.0),
        ms => format!("{:.1} h", ms / 3_600_000.0),
    }
}

/// `tasks show`.
pub fn task(v: &Value) -> String {
    let mut out = format!("task {} ({}/{})\n", s(&v["id"]), s(&v["plugin"]), s(&v["name"]));
    let schedule = match v["schedule"].as_str() {
        Some("cron") => format!("{} ({})", s(&v["schedule_words"]), s(&v["cron"])),
        Some("dynamic") => format!(
            "dynamic: the plugin is asked every {} s",
            s(&v["dynamic_interval_secs"])
        ),
        other => other.unwrap_or("-").to_owned(),
    };
    out.push_str(&format!("schedule   {schedule}\n"));
    out.push_str(&format!(
        "time zone  {}\n",
        v["timezone"].as_str().unwrap_or("UTC")
    ));
    let state = match &v["paused_reason"] {
        Value::Null if v["enabled"] == Value::Bool(true) => "enabled".to_owned(),
        Value::Null => "disabled by its plugin".to_owned(),
        reason => match &v["paused_until"] {
            Value::Null => format!("paused: {}", s(reason)),
            until => format!("paused until {}: {}", s(until), s(reason)),
        },
    };
    out.push_str(&format!("state      {state}\n"));
    let tags: Vec<String> = v["tags"].as_array().into_iter().flatten().map(s).collect();
    if !tags.is_empty() {
        out.push_str(&format!("tags       {}\n", tags.join(", ")));
    }
    let local = v["next_fire_times_local"].as_array().cloned().unwrap_or_default();
    let utc = v["next_fire_times"].as_array().cloned().unwrap_or_default();
    if !utc.is_empty() {
        out.push_str("next fires (local / UTC):\n");
        for (l, u) in local.iter().zip(&utc) {
            out.push_str(&format!("  {}  {}\n", s(l), s(u)));
        }
    }
    if !v["stats"].is_null() {
        out.push_str("last 24 h:\n");
        out.push_str(&indent(&stats_lines(&v["stats"])));
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// `stats [TASK]`.
pub fn stats(v: &Value) -> String {
    let whom = match v["task"].as_str() {
        Some(task) => format!("{}/{task}", s(&v["plugin"])),
        None => "all tasks".to_owned(),
    };
    format!(
        "{whom}, last {} h (since {}):\n{}",
        s(&v["window_hours"]),
        s(&v["stats"]["since"]),
        indent(&stats_lines(&v["stats"]))
    )
}

fn stats_lines(st: &Value) -> String {
    let counts: Vec<String> = st["counts"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_i64() != Some(0))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let rate = st["success_rate"]
        .as_f64()
        .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    let mark = |m: &Value| match m["run_id"].as_i64() {
        Some(id) => format!("run {id} at {}", s(&m["at"])),
        None => "-".to_owned(),
    };
    format!(
        "runs          {} ({})\nsuccess rate  {rate}\nduration      p50 {}  p95 {}  max {}\nlateness      p50 {}  p95 {}\nlast success  {}\nlast failure  {}\n",
        s(&st["runs"]),
        if counts.is_empty() { "none".to_owned() } else { counts.join(", ") },
        millis(&st["duration"]["p50_ms"]),
        millis(&st["duration"]["p95_ms"]),
        millis(&st["duration"]["max_ms"]),
        millis(&st["lateness"]["p50_ms"]),
        millis(&st["lateness"]["p95_ms"]),
        mark(&st["last_success"]),
        mark(&st["last_failure"]),
    )
}

/// `pulses`: the verdict on the last pulse, then each pulse with the gap
/// since the one before it.
pub fn pulses(v: &Value) -> String {
    let pulse = &v["readiness"]["pulse"];
    let mut out = match pulse["age_seconds"].as_f64() {
        Some(age) => format!(
            "last pulse {} ago: {} (expected at least every {})\n",
            millis(&Value::from(age * 1000.0)),
            s(&pulse["status"]),
            millis(&Value::from(
                pulse["expected_interval_seconds"].as_f64().unwrap_or(0.0) * 1000.0
            )),
        ),
        None => "no pulse yet\n".to_owned(),
    };
    let rows: Vec<&Value> = v["pulses"].as_array().into_iter().flatten().collect();
    let at = |p: &Value| {
        p["received_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header([
        "ID", "KIND", "RECEIVED", "GAP", "DUE", "CLAIMED", "MISSED", "LATE", "TOOK", "ERRORS",
    ]);
    for (i, p) in rows.iter().enumerate() {
        let earlier = rows[i + 1..].iter().find(|e| e["kind"] == p["kind"]);
        let gap = match (at(p), earlier.and_then(|e| at(e))) {
            (Some(a), Some(b)) => millis(&Value::from((a - b).num_milliseconds())),
            _ => "-".to_owned(),
        };
        let errors = p["errors"].as_array().map_or(0, Vec::len);
        table.add_row([
            s(&p["id"]),
            s(&p["kind"]),
            s(&p["received_at"]),
            gap,
            s(&p["due"]),
            s(&p["claimed"]),
            s(&p["missed"]),
            millis(&p["max_lateness_ms"]),
            millis(&p["duration_ms"]),
            errors.to_string(),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    out
}
