//! Human-readable renderings of API answers.

use comfy_table::presets::NOTHING;
use comfy_table::Table;
use serde_json::Value;

pub(super) fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    format!("{t}\n")
}

use super::views::s;

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// `plugin push`.
pub fn pushed(v: &Value) -> String {
    let what = match (v["created"].as_bool(), v["activated"].as_bool()) {
        (Some(false), Some(true)) => "identical to a stored version, now active:",
        (Some(false), _) => "identical to the active version, nothing changed:",
        _ => "pushed",
    };
    format!(
        "{what} {} version {} (sha256 {}), tasks: {}\n",
        s(&v["plugin"]),
        s(&v["version"]),
        s(&v["sha256"]),
        s(&v["tasks"])
    )
}

/// `plugin rollback`.
pub fn activated(v: &Value) -> String {
    format!(
        "{} version {} is active, tasks: {}\n",
        s(&v["plugin"]),
        s(&v["version"]),
        s(&v["tasks"])
    )
}

/// `plugin remove`.
pub fn retired(v: &Value) -> String {
    format!(
        "{} retired: its tasks are no longer due (history and versions stay; \
         `pulsehost plugin rollback {} --to N` brings it back)\n",
        s(&v["plugin"]),
        s(&v["plugin"])
    )
}

/// `plugin versions`.
pub fn versions(v: &Value) -> String {
    let names = |c: &Value, key: &str| {
        let list: Vec<String> = items(c, key).map(s).collect();
        if list.is_empty() {
            String::new()
        } else {
            format!(
                "{}{}",
                &key[..1].replace('a', "+").replace('r', "-").replace('c', "~"),
                list.join(",")
            )
        }
    };
    let rows = items(v, "versions").map(|r| {
        let changes = ["added", "removed", "changed"]
            .iter()
            .map(|k| names(&r["changes"], k))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            s(&r["version"]),
            if r["active"] == Value::Bool(true) {
                "*".into()
            } else {
                String::new()
            },
            s(&r["declared_version"]),
            r["sha256"]
                .as_str()
                .map(|h| h.chars().take(12).collect())
                .unwrap_or_default(),
            s(&r["size_bytes"]),
            s(&r["uploaded_at"]),
            if r["pruned"] == Value::Bool(true) {
                "pruned".into()
            } else {
                String::new()
            },
            changes,
        ]
    });
    table(
        &[
            "VERSION", "ACTIVE", "DECLARED", "SHA256", "BYTES", "UPLOADED", "STATE", "CHANGES",
        ],
        rows,
    )
}

/// `plugin list`.
pub fn plugins(v: &Value) -> String {
    let rows = items(v, "plugins").map(|p| {
        [
            "name",
            "version",
            "declared_version",
            "size_bytes",
            "uploaded_at",
            "description",
        ]
        .iter()
        .map(|k| s(&p[*k]))
        .collect()
    });
    table(
        &["NAME", "VERSION", "DECLARED", "BYTES", "UPLOADED", "DESCRIPTION"],
        rows,
    )
}

/// `tasks`.
pub fn tasks(v: &Value) -> String {
    let rows = items(v, "tasks").map(|t| {
        let schedule = match t["schedule"].as_str() {
            Some("cron") => format!("cron {}", s(&t["cron"])),
            other => other.unwrap_or("-").to_string(),
        };
        let state = match &t["paused_reason"] {
            Value::Null if t["enabled"] == Value::Bool(true) => "enabled".to_string(),
            Value::Null => "disabled".to_string(),
            reason => format!("paused: {}", s(reason)),
        };
        vec![
            s(&t["id"]),
            s(&t["plugin"]),
            s(&t["name"]),
            schedule,
            s(&t["timezone"]),
            state,
        ]
    });
    table(&["ID", "PLUGIN", "TASK", "SCHEDULE", "TZ", "STATE"], rows)
}

/// `tasks run`.
pub fn triggered(v: &Value) -> String {
    format!(
        "queued run {} of task {} (slot {})\n",
        s(&v["run_id"]),
        s(&v["task"]),
        s(&v["slot_id"])
    )
}

/// `tasks resume`.
pub fn resumed(v: &Value) -> String {
    format!("resumed task {} ({})\n", s(&v["id"]), s(&v["name"]))
}

/// `runs cancel`.
pub fn cancelled(v: &Value) -> String {
    match v["outcome"].as_str() {
        Some("cancelled") => "cancelled (it had not started)\n".into(),
        _ => format!("cancel requested; host {} stops it\n", s(&v["host_id"])),
    }
}

/// `pulse`.
pub fn pulse(v: &Value) -> String {
    let claimed: Vec<&Value> = items(v, "claimed").collect();
    let skipped: Vec<&Value> = items(v, "skipped").collect();
    let mut out = format!(
        "pulse {}: {} due, {} claimed, {} skipped ({:.1} ms)\n",
        s(&v["pulse_id"]),
        s(&v["due"]),
        claimed.len(),
        skipped.len(),
        v["duration_ms"].as_f64().unwrap_or(0.0)
    );
    if !claimed.is_empty() || !skipped.is_empty() {
        let rows = claimed.iter().chain(skipped.iter()).map(|r| {
            vec![
                s(&r["run_id"]),
                s(&r["task"]),
                s(&r["scheduled_for"]),
                r["reason"].as_str().unwrap_or("queued").to_string(),
            ]
        });
        out.push_str(&table(&["RUN", "TASK", "SCHEDULED FOR", "STATE"], rows));
    }
    out
}

/// `runs list`.
pub fn runs(v: &Value) -> String {
    let rows = items(v, "runs").map(|r| {
        [
            "id",
            "plugin",
            "task",
            "status",
            "attempt",
            "scheduled_for",
            "started_at",
            "duration_ms",
            "lateness_ms",
            "error",
        ]
        .iter()
        .map(|k| match *k {
            "duration_ms" | "lateness_ms" => super::views::millis(&r[*k]),
            k => s(&r[k]),
        })
        .collect()
    });
    let mut out = table(
        &[
            "ID",
            "PLUGIN",
            "TASK",
            "STATUS",
            "ATTEMPT",
            "SCHEDULED FOR",
            "STARTED",
            "TOOK",
            "LATE",
            "ERROR",
        ],
        rows,
    );
    if let Some(next) = v["next_before"].as_i64() {
        out.push_str(&format!("more: --before {next}\n"));
    }
    out
}

/// `runs show`.
pub fn run(v: &Value) -> String {
    let mut out = format!(
        "run {} of {}/{}: {} (attempt {})\nscheduled {}  started {}  finished {}\n",
        s(&v["id"]),
        s(&v["plugin"]),
        s(&v["task"]),
        s(&v["status"]),
        s(&v["attempt"]),
        s(&v["scheduled_for"]),
        s(&v["started_at"]),
        s(&v["finished_at"])
    );
    if let Some(input) = v["overrides"].as_object() {
        if let Some(stdin) = input.get("stdin_json") {
            out.push_str(&format!("chosen stdin: {stdin}\n"));
        }
        for (name, value) in input.get("envs").and_then(Value::as_object).into_iter().flatten() {
            out.push_str(&format!("chosen env: {name}={}\n", s(value)));
        }
    }
    if !v["error"].is_null() {
        out.push_str(&format!(
            "error ({}): {}\n",
            s(&v["failure_type"]),
            s(&v["error"])
        ));
    }
    for step in items(v, "steps") {
        out.push_str(&format!(
            "\n[{} {}] {} {}: {} exit={} signal={} {:.1} ms\n",
            s(&step["phase"]),
            s(&step["index"]),
            s(&step["kind"]),
            s(&step["name"]),
            s(&step["status"]),
            s(&step["exit_code"]),
            s(&step["signal"]),
            step["duration_ms"].as_f64().unwrap_or(0.0)
        ));
        for stream in ["stdout", "stderr"] {
            let text = step[stream].as_str().unwrap_or("");
            if !text.is_empty() {
                let truncated = if step[format!("{stream}_truncated")] == Value::Bool(true) {
                    " (truncated)"
                } else {
                    ""
                };
                out.push_str(&format!("  {stream}{truncated}:\n"));
                for line in text.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
        if let Some(e) = step["error"].as_str() {
            out.push_str(&format!("  error: {e}\n"));
        }
    }
    out
}
