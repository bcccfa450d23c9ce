//! Notifications: derived from what is recorded, once each (a unique dedupe
//! key makes every evaluation, on any replica, idempotent), then delivered
//! at least once; every delivery attempt is kept.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Int8, Nullable, Text, Timestamptz};
use serde::Serialize;

use super::schema::{alert_attempts, alerts};
use super::{StoreResult, Tx};

/// The rule of a task's definition for `$event`, one row per webhook, and
/// the task's identity: `rule.url`, `t.id`, `t.name`, `p.name`.
const RULES: &str = "JOIN tasks t ON t.id = r.task_id \
     JOIN plugins p ON p.id = t.plugin_id \
     JOIN task_definitions d ON d.id = r.definition_id \
     CROSS JOIN LATERAL (SELECT e.rule ->> 'webhook' AS url \
         FROM jsonb_array_elements(COALESCE(d.definition -> 'alerts', '[]'::jsonb)) AS e (rule) \
         WHERE e.rule -> 'events' ? $3) rule";

/// A final attempt: no later attempt of its slot exists.
const FINAL: &str = "NOT EXISTS (SELECT 1 FROM runs n WHERE n.slot_id = r.slot_id AND n.attempt > r.attempt)";

/// Records the notifications that what happened since `since` calls for and
/// that were not recorded yet: failures (final attempts that failed or timed
/// out), recoveries (a success whose task's previous final run failed),
/// missed slots (one per task and pulse), pauses (one per pause) and, when
/// `host_webhook` is set, a pulse overdue (a gap longer than
/// `expected_ms` between pulses, or since the last one) and services that
/// started flapping. Returns how many.
pub fn evaluate(
    tx: &mut Tx<'_>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    host_webhook: Option<&str>,
    expected_ms: i64,
) -> StoreResult<usize> {
    let mut recorded = 0;
    for (event, query) in [
        ("failure", FAILURES),
        ("recovery", RECOVERIES),
        ("missed", MISSED),
    ] {
        recorded += diesel::sql_query(query.replace("{RULES}", RULES).replace("{FINAL}", FINAL))
            .bind::<Timestamptz, _>(since)
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(event)
            .execute(tx.c())?;
    }
    recorded += diesel::sql_query(PAUSES)
        .bind::<Timestamptz, _>(since)
        .execute(tx.c())?;
    if let Some(webhook) = host_webhook {
        recorded += diesel::sql_query(OVERDUE)
            .bind::<Timestamptz, _>(since)
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(webhook)
            .bind::<Int8, _>(expected_ms)
            .execute(tx.c())?;
        recorded += diesel::sql_query(FLAPPING)
            .bind::<Timestamptz, _>(since)
            .bind::<Text, _>(webhook)
            .execute(tx.c())?;
    }
    Ok(recorded)
}

const FAILURES: &str = "INSERT INTO alerts (kind, dedupe_key, task_id, run_id, webhook, payload) \
     SELECT 'failure', 'failure:' || r.id || ':' || rule.url, r.task_id, r.id, rule.url, \
         jsonb_build_object('event', 'failure', 'plugin', p.name, 'task', t.name, 'task_id', t.id, \
             'run_id', r.id, 'status', r.status, 'attempt', r.attempt, 'failure_type', r.failure_type, \
             'error', r.error, 'scheduled_for', r.scheduled_for, 'finished_at', r.finished_at) \
     FROM runs r {RULES} \
     WHERE r.finished_at > $1 AND r.finished_at <= $2 AND r.status IN ('failed', 'timed_out') AND {FINAL} \
     ON CONFLICT (dedupe_key) DO NOTHING";

const RECOVERIES: &str = "INSERT INTO alerts (kind, dedupe_key, task_id, run_id, webhook, payload) \
     SELECT 'recovery', 'recovery:' || r.id || ':' || rule.url, r.task_id, r.id, rule.url, \
         jsonb_build_object('event', 'recovery', 'plugin', p.name, 'task', t.name, 'task_id', t.id, \
             'run_id', r.id, 'scheduled_for', r.scheduled_for, 'finished_at', r.finished_at) \
     FROM runs r {RULES} \
     WHERE r.finished_at > $1 AND r.finished_at <= $2 AND r.status = 'succeeded' \
       AND (SELECT o.status FROM runs o WHERE o.task_id = r.task_id AND o.id <> r.id \
              AND o.finished_at <= r.finished_at AND o.status IN ('succeeded', 'failed', 'timed_out') \
              AND NOT EXISTS (SELECT 1 FROM runs n WHERE n.slot_id = o.slot_id AND n.attempt > o.attempt) \
            ORDER BY o.finished_at DESC, o.id DESC LIMIT 1) IN ('failed', 'timed_out') \
     ON CONFLICT (dedupe_key) DO NOTHING";

const MISSED: &str = "INSERT INTO alerts (kind, dedupe_key, task_id, webhook, payload) \
     SELECT 'missed', 'missed:' || r.task_id || ':' || s.pulse_id || ':' || rule.url, r.task_id, rule.url, \
         jsonb_build_object('event', 'missed', 'plugin', min(p.name), 'task', min(t.name), \
             'task_id', r.task_id, 'pulse_id', s.pulse_id, 'missed', count(*), \
             'first', min(r.scheduled_for), 'last', max(r.scheduled_for), \
             'reasons', jsonb_agg(DISTINCT r.skip_reason)) \
     FROM runs r JOIN slots s ON s.id = r.slot_id {RULES} \
     WHERE r.finished_at > $1 AND r.finished_at <= $2 AND r.status = 'missed' \
     GROUP BY r.task_id, s.pulse_id, rule.url \
     ON CONFLICT (dedupe_key) DO NOTHING";

const PAUSES: &str = "INSERT INTO alerts (kind, dedupe_key, task_id, webhook, payload) \
     SELECT 'paused', 'paused:' || t.id || ':' || extract(epoch FROM t.paused_at) || ':' || (e.rule ->> 'webhook'), \
         t.id, e.rule ->> 'webhook', \
         jsonb_build_object('event', 'paused', 'plugin', p.name, 'task', t.name, 'task_id', t.id, \
             'reason', t.paused_reason, 'until', t.paused_until, 'paused_at', t.paused_at) \
     FROM tasks t JOIN plugins p ON p.id = t.plugin_id \
     JOIN task_definitions d ON d.id = t.definition_id \
     CROSS JOIN LATERAL jsonb_array_elements(COALESCE(d.definition -> 'alerts', '[]'::jsonb)) AS e (rule) \
     WHERE t.paused_at > $1 AND t.paused_reason IS NOT NULL AND e.rule -> 'events' ? 'paused' \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// A service that started flapping (see `services::exited`), once per
/// episode: the key carries the moment it started.
const FLAPPING: &str = "INSERT INTO alerts (kind, dedupe_key, task_id, run_id, webhook, payload) \
     SELECT 'service_flapping', 'service_flapping:' || s.id || ':' || extract(epoch FROM s.flapping_since), \
         s.task_id, s.run_id, $2, \
         jsonb_build_object('event', 'service_flapping', 'plugin', p.name, 'service', s.name, \
             'service_id', s.id, 'task_id', s.task_id, 'host', s.host_id, 'restarts', s.restarts, \
             'exits', cardinality(s.recent_exits), 'flapping_since', s.flapping_since, \
             'last_exit_status', s.last_exit_status, 'last_exit_code', s.last_exit_code, \
             'last_error', s.last_error) \
     FROM services s JOIN plugins p ON p.id = s.plugin_id \
     WHERE s.flapping_since > $1 \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// A gap between two complete pulses longer than expected, or a silence
/// since the last one; keyed by the pulse the silence followed, so each
/// silence is notified once whether a ticker saw it going on or the next
/// pulse ended it.
const OVERDUE: &str = "INSERT INTO alerts (kind, dedupe_key, webhook, payload) \
     SELECT 'pulse_overdue', 'pulse_overdue:' || g.last_id, $3, \
         jsonb_build_object('event', 'pulse_overdue', 'last_pulse_id', g.last_id, \
             'last_pulse_at', g.last_at, 'next_pulse_at', g.next_at, \
             'silent_seconds', extract(epoch FROM COALESCE(g.next_at, $2) - g.last_at), \
             'expected_interval_seconds', $4 / 1000.0) \
     FROM (SELECT id AS last_id, received_at AS last_at, \
               lead(received_at) OVER (ORDER BY received_at, id) AS next_at \
           FROM pulses WHERE kind = 'pulse' AND complete AND received_at > $1 - $4 * interval '1 millisecond') g \
     WHERE COALESCE(g.next_at, $2) - g.last_at > $4 * interval '1 millisecond' \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// An alert due for a delivery attempt.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueAlert {
    /// The alert.
    #[diesel(sql_type = Int8)]
    pub id: i64,
    /// Where it goes.
    #[diesel(sql_type = Text)]
    pub webhook: String,
    /// Its JSON body.
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub payload: serde_json::Value,
    /// This attempt's number (1 for the first).
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
}

/// Takes up to `limit` pending alerts whose attempt is due, counting the
/// attempt and holding them for `lease_ms` (another replica takes an alert
/// only once that passed without a recorded outcome).
pub fn take_due(tx: &mut Tx<'_>, limit: i64, lease_ms: i64) -> StoreResult<Vec<DueAlert>> {
    Ok(diesel::sql_query(
        "UPDATE alerts a SET attempts = a.attempts + 1, \
             next_attempt_at = now() + $2 * interval '1 millisecond' \
         WHERE a.id IN (SELECT id FROM alerts WHERE status = 'pending' AND next_attempt_at <= now() \
                        ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING a.id, a.webhook, a.payload, a.attempts",
    )
    .bind::<Int8, _>(limit)
    .bind::<Int8, _>(lease_ms)
    .load(tx.c())?)
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The alert.
    pub alert_id: i64,
    /// Its number.
    pub attempt: i32,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// What went wrong, when it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: f64,
    /// Delivered (a 2xx answer).
    pub delivered: bool,
    /// When to try again; None: give up (when not delivered).
    pub retry_in_ms: Option<i64>,
}

/// Records an attempt and what follows from it.
pub fn record_attempt(tx: &mut Tx<'_>, a: &Attempt) -> StoreResult<()> {
    diesel::insert_into(alert_attempts::table)
        .values((
            alert_attempts::alert_id.eq(a.alert_id),
            alert_attempts::attempt.eq(a.attempt),
            alert_attempts::status_code.eq(a.status_code),
            alert_attempts::error.eq(a.error.as_deref()),
            alert_attempts::duration_ms.eq(a.duration_ms),
        ))
        .execute(tx.c())?;
    let status = match (a.delivered, a.retry_in_ms) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    diesel::sql_query(
        "UPDATE alerts SET status = $2, last_error = $3, \
             delivered_at = CASE WHEN $2 = 'delivered' THEN now() END, \
             next_attempt_at = now() + COALESCE($4, 0) * interval '1 millisecond' \
         WHERE id = $1",
    )
    .bind::<Int8, _>(a.alert_id)
    .bind::<Text, _>(status)
    .bind::<Nullable<Text>, _>(a.error.as_deref())
    .bind::<Nullable<Int8>, _>(a.retry_in_ms)
    .execute(tx.c())?;
    Ok(())
}

/// One alert as listed, with its attempts.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = alerts, check_for_backend(diesel::pg::Pg))]
pub struct AlertRow {
    /// Identifier.
    pub id: i64,
    /// failure, recovery, missed, paused or pulse_overdue.
    pub kind: String,
    /// The task, for a task's alert.
    pub task_id: Option<i64>,
    /// The run, for a failure or recovery.
    pub run_id: Option<i64>,
    /// Where it goes.
    pub webhook: String,
    /// The body sent.
    pub payload: serde_json::Value,
    /// pending, delivered or failed (given up).
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Next attempt, while pending.
    pub next_attempt_at: DateTime<Utc>,
    /// Recorded at.
    pub created_at: DateTime<Utc>,
    /// Delivered at.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// One delivery attempt as listed.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = alert_attempts, check_for_backend(diesel::pg::Pg))]
pub struct AttemptRow {
    /// The alert.
    pub alert_id: i64,
    /// Its number.
    pub attempt: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status.
    pub status_code: Option<i32>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: f64,
}

/// Alerts newest first (below id `before`), each with its attempts.
pub fn list(
    tx: &mut Tx<'_>,
    limit: i64,
    before: Option<i64>,
) -> StoreResult<Vec<(AlertRow, Vec<AttemptRow>)>> {
    let mut query = alerts::table.order(alerts::id.desc()).limit(limit).into_boxed();
    if let Some(before) = before {
        query = query.filter(alerts::id.lt(before));
    }
    let rows: Vec<AlertRow> = query.select(AlertRow::as_select()).load(tx.c())?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let attempts: Vec<AttemptRow> = alert_attempts::table
        .filter(alert_attempts::alert_id.eq_any(&ids))
        .order((alert_attempts::alert_id, alert_attempts::attempt))
        .select(AttemptRow::as_select())
        .load(tx.c())?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mine = attempts
                .iter()
                .filter(|a| a.alert_id == row.id)
                .cloned()
                .collect();
            (row, mine)
        })
        .collect())
}
