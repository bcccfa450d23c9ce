//! Runs that wait for other runs: loading what a dependency cascade needs to
//! decide, linking a pulse's runs, and recording the skips the runner decided.
//! The rule itself (who is skipped) is `runner::policy::cascade`.

use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Text};

use super::runs::add_each_event;
use super::schema::runs;
use super::{StoreResult, Tx};

/// Where a dependency stands: its newest attempt's status. A failed run whose
/// retry is queued is still pending, even for a run linked to it before the
/// retry was visible (see [`follow_retries`]).
const STATUS: &str = "COALESCE(newest.status, d.status)";
const NEWEST: &str = "LEFT JOIN LATERAL (SELECT a.status FROM runs a \
     WHERE a.slot_id = d.slot_id AND a.attempt > d.attempt ORDER BY a.attempt DESC LIMIT 1) newest ON true";

/// A queued run with dependencies, and where each dependency stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The queued run.
    pub id: i64,
    /// `(dependency run, its status)`.
    pub depends_on: Vec<(i64, String)>,
}

#[derive(QueryableByName)]
struct Edge {
    #[diesel(sql_type = Int8)]
    id: i64,
    #[diesel(sql_type = Int8)]
    dependency: i64,
    #[diesel(sql_type = Text)]
    status: String,
}

/// Queued runs that wait, directly or through other queued runs, for any of
/// `roots`, each with its dependencies' statuses.
pub fn waiting_on(tx: &mut Tx<'_>, roots: &[i64]) -> StoreResult<Vec<Waiting>> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let edges: Vec<Edge> = diesel::sql_query(format!(
        "WITH RECURSIVE w (id) AS ( \
             SELECT id FROM runs WHERE status = 'queued' AND depends_on_runs <> '{{}}' \
                 AND depends_on_runs && $1::int8[] \
             UNION \
             SELECT r.id FROM runs r JOIN w ON r.depends_on_runs @> ARRAY[w.id] \
             WHERE r.status = 'queued' AND r.depends_on_runs <> '{{}}') \
         SELECT r.id, d.id AS dependency, {STATUS} AS status \
         FROM runs r CROSS JOIN LATERAL unnest(r.depends_on_runs) AS dep (id) JOIN runs d ON d.id = dep.id \
         {NEWEST} \
         WHERE r.id IN (SELECT id FROM w)"
    ))
    .bind::<Array<Int8>, _>(roots)
    .load(tx.c())?;
    Ok(group(edges))
}

/// Every queued run with dependencies, each with its dependencies' statuses
/// (what the sweeper checks).
pub fn all_waiting(tx: &mut Tx<'_>) -> StoreResult<Vec<Waiting>> {
    let edges: Vec<Edge> = diesel::sql_query(format!(
        "SELECT r.id, d.id AS dependency, {STATUS} AS status \
         FROM runs r CROSS JOIN LATERAL unnest(r.depends_on_runs) AS dep (id) JOIN runs d ON d.id = dep.id \
         {NEWEST} \
         WHERE r.status = 'queued' AND r.depends_on_runs <> '{{}}'"
    ))
    .load(tx.c())?;
    Ok(group(edges))
}

fn group(edges: Vec<Edge>) -> Vec<Waiting> {
    let mut waiting: Vec<Waiting> = Vec::new();
    for edge in edges {
        match waiting.iter_mut().find(|w| w.id == edge.id) {
            Some(w) => w.depends_on.push((edge.dependency, edge.status)),
            None => waiting.push(Waiting {
                id: edge.id,
                depends_on: vec![(edge.dependency, edge.status)],
            }),
        }
    }
    waiting
}

/// Records the decided skips of queued runs: `(run, the dependencies that
/// failed)`. Returns the runs actually skipped (those still queued).
pub fn skip_waiting(tx: &mut Tx<'_>, skips: &[(i64, Vec<i64>)], reason: &str) -> StoreResult<Vec<i64>> {
    if skips.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = skips.iter().map(|s| s.0).collect();
    let skipped: Vec<i64> = diesel::update(
        runs::table
            .filter(runs::id.eq_any(&ids))
            .filter(runs::status.eq("queued")),
    )
    .set((
        runs::status.eq("skipped"),
        runs::skip_reason.eq(reason),
        runs::finished_at.eq(diesel::dsl::now),
    ))
    .returning(runs::id)
    .get_results(tx.c())?;
    let events: Vec<(i64, &str, serde_json::Value)> = skips
        .iter()
        .filter(|(id, _)| skipped.contains(id))
        .map(|(id, failed)| {
            (
                *id,
                "skipped",
                serde_json::json!({ "reason": reason, "dependencies": failed }),
            )
        })
        .collect();
    add_each_event(tx, &events)?;
    Ok(skipped)
}

/// Points queued runs that wait for a retried run at its newest attempt (a
/// run linked while the retry was being queued by another transaction missed
/// the re-pointing that comes with a retry); returns how many changed.
pub fn follow_retries(tx: &mut Tx<'_>) -> StoreResult<usize> {
    Ok(diesel::sql_query(
        "UPDATE runs r SET depends_on_runs = ARRAY( \
             SELECT COALESCE((SELECT a.id FROM runs a WHERE a.slot_id = d.slot_id \
                              ORDER BY a.attempt DESC LIMIT 1), u.id) \
             FROM unnest(r.depends_on_runs) WITH ORDINALITY AS u (id, n) LEFT JOIN runs d ON d.id = u.id \
             ORDER BY u.n) \
         WHERE r.status = 'queued' AND r.depends_on_runs <> '{}' AND EXISTS ( \
             SELECT 1 FROM unnest(r.depends_on_runs) AS u (id) JOIN runs d ON d.id = u.id \
             JOIN runs a ON a.slot_id = d.slot_id AND a.attempt > d.attempt)",
    )
    .execute(tx.c())?)
}

/// Makes queued runs wait for other runs: `(run, dependency runs)`. Each
/// dependency is resolved to the newest attempt of its slot, so a run linked
/// after its dependency was already retried waits for the retry.
pub fn link(tx: &mut Tx<'_>, links: &[(i64, Vec<i64>)]) -> StoreResult<()> {
    for (run, depends_on) in links {
        diesel::sql_query(
            "UPDATE runs SET depends_on_runs = ARRAY( \
                 SELECT DISTINCT ON (a.slot_id) a.id FROM runs d JOIN runs a ON a.slot_id = d.slot_id \
                 WHERE d.id = ANY($2::int8[]) ORDER BY a.slot_id, a.attempt DESC) \
             WHERE id = $1 AND status = 'queued'",
        )
        .bind::<Int8, _>(run)
        .bind::<Array<Int8>, _>(depends_on)
        .execute(tx.c())?;
    }
    Ok(())
}
