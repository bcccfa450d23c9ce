//! `pulsehost tasks schedule | backfill | pause | unpause`: steering a task's
//! schedule over the API, how each answer is printed, and `pulsehost alerts`.

use serde_json::{json, Value};

use super::client::{Client, Need};
use super::history::Answer;
use super::views::s;

/// `tasks schedule`: the occurrences between `from` and `to` (the API's
/// defaults when not given).
pub fn preview(c: &Client, id: i64, from: Option<&str>, to: Option<&str>) -> anyhow::Result<Answer> {
    let pairs: Vec<(&str, &str)> = [("from", from), ("to", to)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let query = serde_urlencoded::to_string(&pairs)?;
    let path = format!("/v1/tasks/{id}/schedule?{query}");
    Ok((c.get(&path, Need::Read)?, print_preview))
}

/// `tasks backfill`.
pub fn backfill(c: &Client, id: i64, from: &str, to: &str, dry_run: bool) -> anyhow::Result<Answer> {
    let body = json!({ "from": from, "to": to, "dry_run": dry_run });
    Ok((
        c.post_json(&format!("/v1/tasks/{id}/backfill"), &body, Need::Admin)?,
        print_backfill,
    ))
}

/// `tasks pause`.
pub fn pause(c: &Client, id: i64, reason: &str, until: Option<&str>) -> anyhow::Result<Answer> {
    let body = json!({ "reason": reason, "until": until });
    Ok((
        c.post_json(&format!("/v1/tasks/{id}/pause"), &body, Need::Admin)?,
        print_paused,
    ))
}

/// `tasks unpause`.
pub fn unpause(c: &Client, id: i64) -> anyhow::Result<Answer> {
    Ok((
        c.post(&format!("/v1/tasks/{id}/unpause"), Need::Admin)?,
        super::output::resumed,
    ))
}

/// One line per occurrence, local time first, clock changes marked.
fn print_preview(v: &Value) -> String {
    let mut out = format!(
        "{} ({} in {}): {} occurrence(s)\n",
        s(&v["task"]),
        s(&v["cron"]),
        s(&v["timezone"]),
        v["occurrences"].as_array().map_or(0, Vec::len)
    );
    for o in v["occurrences"].as_array().into_iter().flatten() {
        let mark = match o["dst"].as_str() {
            Some("clock_change") => "  (clocks go forward: the skipped time fires here)",
            Some("repeated_hour") => "  (repeated hour: clocks go back)",
            _ => "",
        };
        out.push_str(&format!("{}  {}{mark}\n", s(&o["local"]), s(&o["at"])));
    }
    for change in v["clock_changes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "clocks go {} at {}\n",
            s(&change["direction"]),
            s(&change["at"])
        ));
    }
    if v["truncated"] == Value::Bool(true) {
        out.push_str("… more occurrences follow: narrow --from/--to\n");
    }
    out
}

/// One line per occurrence and what became of it.
fn print_backfill(v: &Value) -> String {
    let slots = v["slots"].as_array().cloned().unwrap_or_default();
    let count = |state: &str| slots.iter().filter(|x| x["state"] == state).count();
    let mut out = String::new();
    for slot in &slots {
        let detail = match slot["state"].as_str() {
            Some("created") => format!("run {} {}", s(&slot["run_id"]), s(&slot["status"])),
            Some("exists") => "already claimed, left as it is".to_string(),
            _ => "would be created".to_string(),
        };
        out.push_str(&format!("{}  {detail}\n", s(&slot["scheduled_for"])));
    }
    let verb = if v["dry_run"] == Value::Bool(true) {
        format!("{} would be created", count("would_create"))
    } else {
        format!("{} created", count("created"))
    };
    out.push_str(&format!(
        "{}: {verb}, {} already claimed\n",
        s(&v["task"]),
        count("exists")
    ));
    out
}

fn print_paused(v: &Value) -> String {
    let until = match &v["paused_until"] {
        Value::Null => "until unpaused".to_string(),
        until => format!("until {}", s(until)),
    };
    format!(
        "paused task {} ({}) {until}: {}\n",
        s(&v["id"]),
        s(&v["name"]),
        s(&v["paused_reason"])
    )
}

/// `alerts`: one line per alert, with how its delivery went.
pub fn alerts(v: &Value) -> String {
    let mut out = String::new();
    for a in v["alerts"].as_array().into_iter().flatten() {
        let payload = &a["payload"];
        let name = if payload["task"].is_string() {
            &payload["task"]
        } else {
            &payload["service"]
        };
        let about = match (&payload["plugin"], name) {
            (Value::String(p), Value::String(t)) => format!("{p}/{t}"),
            _ => "host".to_string(),
        };
        let error = match &a["last_error"] {
            Value::Null => String::new(),
            e => format!(" ({})", s(e)),
        };
        out.push_str(&format!(
            "{}  {} {}  {}  {} after {} attempt(s){error}\n",
            s(&a["id"]),
            s(&a["kind"]),
            about,
            s(&a["created_at"]),
            s(&a["status"]),
            s(&a["attempts"])
        ));
    }
    if out.is_empty() {
        out.push_str("no alerts\n");
    }
    out
}
