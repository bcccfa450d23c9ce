//! Plugins, their immutable versions, the definition each version gives each
//! task, and the tasks the active version describes. An upload is a handful of
//! statements whatever its number of tasks: definitions and tasks go in as
//! arrays, not row by row.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::upsert::excluded;
use serde::Serialize;

use super::models::TaskRow;
use super::schema::{plugin_versions, plugins, task_definitions, tasks};
use super::{versions, StoreError, StoreResult, Tx};
use crate::spec::{Manifest, Schedule, TaskSpec, DEFINITION_FORMAT};

/// Longest description a listing shows; the rest is cut (`description_bytes`
/// says how long the whole is).
const LISTED_DESCRIPTION_CHARS: i32 = 280;

/// A validated upload to record.
pub struct NewPluginVersion<'a> {
    /// sha256 of the component, hex.
    pub sha256: &'a str,
    /// The component's bytes.
    pub component: &'a [u8],
    /// The WIT package the component targets.
    pub wit_package: &'a str,
    /// What `describe()` returned, validated.
    pub manifest: &'a Manifest,
    /// Versions of the plugin whose bytes are kept (older ones are pruned).
    pub keep_versions: u32,
}

/// What an upload registered.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredVersion {
    /// The plugin's identifier.
    pub plugin_id: i64,
    /// The plugin's name.
    pub plugin: String,
    /// The new version's identifier.
    pub version_id: i64,
    /// 1, 2, 3… per plugin.
    pub version: i32,
    /// sha256 of its component.
    pub sha256: String,
    /// The tasks now active.
    pub tasks: Vec<String>,
    /// False when the bytes matched a version already stored, which was made
    /// active instead of recording a new one.
    pub created: bool,
}

/// One plugin with its active version, for listings.
#[derive(Debug, Clone, QueryableByName, Serialize)]
pub struct PluginSummary {
    /// Identifier.
    #[diesel(sql_type = Int8)]
    pub id: i64,
    /// Name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Active version number.
    #[diesel(sql_type = Int4)]
    pub version: i32,
    /// The plugin's own version string.
    #[diesel(sql_type = Text)]
    pub declared_version: String,
    /// Free text, cut to a listing's length.
    #[diesel(sql_type = Text)]
    pub description: String,
    /// Length of the whole description.
    #[diesel(sql_type = Int4)]
    pub description_bytes: i32,
    /// sha256 of the active component.
    #[diesel(sql_type = Text)]
    pub sha256: String,
    /// Its size.
    #[diesel(sql_type = Int8)]
    pub size_bytes: i64,
    /// When that version was uploaded.
    #[diesel(sql_type = Timestamptz)]
    pub uploaded_at: DateTime<Utc>,
}

/// What the stored row of a task says about when its schedule took effect.
#[derive(Debug, Clone, Queryable)]
pub struct ExistingTask {
    /// Name.
    pub name: String,
    /// Described by the active version.
    pub active: bool,
    /// Enabled by the plugin.
    pub enabled: bool,
    /// cron, dynamic or manual.
    pub schedule_kind: String,
    /// Cron expression.
    pub cron_expression: Option<String>,
    /// Time zone.
    pub timezone: Option<String>,
    /// Dynamic interval.
    pub dynamic_interval_secs: Option<i32>,
    /// Occurrences at or before this instant are never due.
    pub schedule_since: DateTime<Utc>,
}

/// The stored tasks of the plugin called `name` (none for a new plugin).
pub fn existing_tasks(tx: &mut Tx<'_>, name: &str) -> StoreResult<Vec<ExistingTask>> {
    Ok(tasks::table
        .inner_join(plugins::table)
        .filter(plugins::name.eq(name))
        .select((
            tasks::name,
            tasks::active,
            tasks::enabled,
            tasks::schedule_kind,
            tasks::cron_expression,
            tasks::timezone,
            tasks::dynamic_interval_secs,
            tasks::schedule_since,
        ))
        .load(tx.c())?)
}

/// The database's clock, for decisions taken in Rust within a transaction.
pub fn database_now(tx: &mut Tx<'_>) -> StoreResult<DateTime<Utc>> {
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        now: DateTime<Utc>,
    }
    let rows: Vec<Now> = diesel::sql_query("SELECT now() AS now").load(tx.c())?;
    rows.first()
        .map(|r| r.now)
        .ok_or_else(|| StoreError::NotFound("the database's clock".into()))
}

/// Records a new version of a plugin and makes it active: a definition per
/// task, the tasks upserted (keeping their identity) with `since[i]` as the
/// instant the schedule of `manifest.tasks[i]` takes effect, and tasks the
/// version no longer describes deactivated — all in the caller's transaction.
/// Bytes already stored as a version of the plugin (an upload that raced an
/// identical one, or one whose bytes were pruned) make that version active
/// instead. Old versions' bytes beyond `keep_versions` are pruned.
pub fn register_version(
    tx: &mut Tx<'_>,
    new: &NewPluginVersion<'_>,
    since: &[DateTime<Utc>],
) -> StoreResult<RegisteredVersion> {
    let manifest = new.manifest;
    // Concurrent uploads of one plugin number their versions one after the other.
    let plugin_id = lock_or_create(tx, &manifest.name)?;
    let same: Option<(i64, i32)> = plugin_versions::table
        .filter(plugin_versions::plugin_id.eq(plugin_id))
        .filter(plugin_versions::sha256.eq(new.sha256))
        .select((plugin_versions::id, plugin_versions::version))
        .first(tx.c())
        .optional()?;
    let (version_id, version, definitions, created) = match same {
        Some((version_id, version)) => {
            versions::restore_bytes(tx, version_id, new.component)?;
            let stored = versions::lock_version(tx, &manifest.name, version)?;
            (version_id, version, versions::definitions(tx, &stored)?.1, false)
        }
        None => {
            let (version_id, version) = insert_version(tx, plugin_id, new)?;
            let definitions = insert_definitions(tx, version_id, &manifest.tasks)?;
            versions::record_changes(tx, version_id)?;
            (version_id, version, definitions, true)
        }
    };
    make_active(tx, plugin_id, version_id, &manifest.tasks, &definitions, since)?;
    versions::prune(tx, plugin_id, new.keep_versions)?;
    Ok(RegisteredVersion {
        plugin_id,
        plugin: manifest.name.clone(),
        version_id,
        version,
        sha256: new.sha256.to_string(),
        tasks: manifest.tasks.iter().map(|t| t.name.clone()).collect(),
        created,
    })
}

/// The id of plugin `name`, created if new, its row locked for the rest of
/// the transaction.
pub fn lock_or_create(tx: &mut Tx<'_>, name: &str) -> StoreResult<i64> {
    Ok(diesel::insert_into(plugins::table)
        .values(plugins::name.eq(name))
        .on_conflict(plugins::name)
        .do_update()
        .set(plugins::name.eq(excluded(plugins::name)))
        .returning(plugins::id)
        .get_result(tx.c())?)
}

/// Inserts the version row, numbered after the plugin's newest.
fn insert_version(tx: &mut Tx<'_>, plugin_id: i64, new: &NewPluginVersion<'_>) -> StoreResult<(i64, i32)> {
    let manifest = new.manifest;
    let latest: Option<i32> = plugin_versions::table
        .filter(plugin_versions::plugin_id.eq(plugin_id))
        .select(diesel::dsl::max(plugin_versions::version))
        .first(tx.c())?;
    let version = latest.unwrap_or(0) + 1;
    let manifest_json =
        serde_json::to_value(manifest).map_err(|e| StoreError::Encoding(format!("manifest: {e}")))?;
    let version_id: i64 = diesel::insert_into(plugin_versions::table)
        .values((
            plugin_versions::plugin_id.eq(plugin_id),
            plugin_versions::version.eq(version),
            plugin_versions::declared_version.eq(&manifest.version),
            plugin_versions::description.eq(&manifest.description),
            plugin_versions::sha256.eq(new.sha256),
            plugin_versions::size_bytes.eq(new.component.len() as i64),
            plugin_versions::wit_package.eq(new.wit_package),
            plugin_versions::component.eq(Some(new.component)),
            plugin_versions::manifest.eq(&manifest_json),
        ))
        .returning(plugin_versions::id)
        .get_result(tx.c())?;
    Ok((version_id, version))
}

/// Makes version `version_id` (describing `specs`, defined by `definitions`)
/// the active one of plugin `plugin_id`, which is back in service if it was
/// retired: its tasks upserted with `since`, every other task deactivated.
pub fn make_active(
    tx: &mut Tx<'_>,
    plugin_id: i64,
    version_id: i64,
    specs: &[TaskSpec],
    definitions: &[i64],
    since: &[DateTime<Utc>],
) -> StoreResult<()> {
    upsert_tasks(tx, plugin_id, version_id, specs, definitions, since)?;
    let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
    diesel::update(tasks::table)
        .filter(tasks::plugin_id.eq(plugin_id))
        .filter(tasks::active.eq(true))
        .filter(tasks::name.ne_all(&names))
        .set((tasks::active.eq(false), tasks::updated_at.eq(diesel::dsl::now)))
        .execute(tx.c())?;
    diesel::update(plugins::table.find(plugin_id))
        .set((
            plugins::active_version_id.eq(version_id),
            plugins::retired_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(tx.c())?;
    Ok(())
}

/// One definition row per task, taken apart by PostgreSQL from the manifest
/// just stored with the version (nothing is sent twice); their ids in task order.
fn insert_definitions(tx: &mut Tx<'_>, version_id: i64, specs: &[TaskSpec]) -> StoreResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Int8)]
        id: i64,
        #[diesel(sql_type = Text)]
        name: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "INSERT INTO task_definitions (plugin_version_id, name, format, definition) \
         SELECT v.id, t ->> 'name', $2, t FROM plugin_versions v, jsonb_array_elements(v.manifest -> 'tasks') t \
         WHERE v.id = $1 RETURNING id, name",
    )
    .bind::<Int8, _>(version_id)
    .bind::<Int4, _>(DEFINITION_FORMAT)
    .load(tx.c())?;
    let by_name: std::collections::HashMap<&str, i64> =
        rows.iter().map(|r| (r.name.as_str(), r.id)).collect();
    specs
        .iter()
        .map(|t| {
            by_name
                .get(t.name.as_str())
                .copied()
                .ok_or_else(|| StoreError::NotFound(format!("the stored definition of task {}", t.name)))
        })
        .collect()
}

/// Inserts or updates every task of a version in one statement.
fn upsert_tasks(
    tx: &mut Tx<'_>,
    plugin_id: i64,
    version_id: i64,
    specs: &[TaskSpec],
    definitions: &[i64],
    since: &[DateTime<Utc>],
) -> StoreResult<()> {
    let col = |f: &dyn Fn(&TaskSpec) -> Option<String>| specs.iter().map(f).collect::<Vec<_>>();
    let cron = |t: &TaskSpec| match &t.schedule {
        Schedule::Cron {
            expression, timezone, ..
        } => (Some(expression.clone()), timezone.clone()),
        _ => (None, None),
    };
    let interval = |t: &TaskSpec| match t.schedule {
        Schedule::Dynamic { interval_secs } => Some(i32::try_from(interval_secs).unwrap_or(i32::MAX)),
        _ => None,
    };
    // An array per task cannot travel inside an array: each goes as an array
    // literal (task names are plain: lowercase letters, digits, '-' and '_').
    let depends_on: Vec<String> = specs
        .iter()
        .map(|t| format!("{{{}}}", t.depends_on.join(",")))
        .collect();
    diesel::sql_query(
        "INSERT INTO tasks (plugin_id, plugin_version_id, name, active, schedule_kind, cron_expression, \
             timezone, enabled, priority, definition_id, overlap, catch_up, starting_deadline_ms, \
             depends_on, dynamic_interval_secs, schedule_since, changed_xid, tags, \
             reserve_memory_bytes, reserve_cpu_millicores, concurrency_key, concurrency_limit, jitter_ms) \
         SELECT $1, $2, i.name, true, i.kind, i.expression, i.timezone, i.enabled, i.priority, i.definition, \
             i.overlap, i.catch_up, i.deadline, i.depends_on::text[], i.interval, i.since, \
             pg_current_xact_id(), ARRAY(SELECT jsonb_array_elements_text(d.definition -> 'tags')), \
             (d.definition #>> '{reservation,memory_bytes}')::int8, \
             (d.definition #>> '{reservation,cpu_millicores}')::int4, \
             d.definition #>> '{concurrency,key}', (d.definition #>> '{concurrency,limit}')::int4, \
             (d.definition #>> '{schedule,jitter_ms}')::int8 \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::int4[], $9::int8[], \
             $10::text[], $11::text[], $12::int8[], $13::text[], $14::int4[], $15::timestamptz[]) \
             AS i (name, kind, expression, timezone, enabled, priority, definition, overlap, catch_up, \
                   deadline, depends_on, interval, since) \
         JOIN task_definitions d ON d.id = i.definition \
         ON CONFLICT (plugin_id, name) DO UPDATE SET \
             plugin_version_id = EXCLUDED.plugin_version_id, active = true, \
             schedule_kind = EXCLUDED.schedule_kind, cron_expression = EXCLUDED.cron_expression, \
             timezone = EXCLUDED.timezone, enabled = EXCLUDED.enabled, priority = EXCLUDED.priority, \
             definition_id = EXCLUDED.definition_id, overlap = EXCLUDED.overlap, \
             catch_up = EXCLUDED.catch_up, starting_deadline_ms = EXCLUDED.starting_deadline_ms, \
             depends_on = EXCLUDED.depends_on, dynamic_interval_secs = EXCLUDED.dynamic_interval_secs, \
             schedule_since = EXCLUDED.schedule_since, updated_at = now(), \
             changed_xid = EXCLUDED.changed_xid, tags = EXCLUDED.tags, \
             reserve_memory_bytes = EXCLUDED.reserve_memory_bytes, \
             reserve_cpu_millicores = EXCLUDED.reserve_cpu_millicores, \
             concurrency_key = EXCLUDED.concurrency_key, concurrency_limit = EXCLUDED.concurrency_limit, \
             jitter_ms = EXCLUDED.jitter_ms",
    )
    .bind::<Int8, _>(plugin_id)
    .bind::<Int8, _>(version_id)
    .bind::<Array<Text>, _>(specs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(specs.iter().map(|t| t.schedule.kind()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(col(&|t| cron(t).0))
    .bind::<Array<Nullable<Text>>, _>(col(&|t| cron(t).1))
    .bind::<Array<Bool>, _>(specs.iter().map(|t| t.enabled).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(specs.iter().map(|t| t.priority).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(definitions)
    .bind::<Array<Text>, _>(specs.iter().map(|t| t.overlap.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(specs.iter().map(|t| t.catch_up.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Int8>>, _>(
        specs
            .iter()
            .map(|t| t.starting_deadline_ms.map(|ms| ms as i64))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(&depends_on)
    .bind::<Array<Nullable<Int4>>, _>(specs.iter().map(interval).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(since)
    .execute(tx.c())?;
    Ok(())
}

/// Every plugin with its active version, by name; descriptions cut short.
pub fn list_plugins(tx: &mut Tx<'_>) -> StoreResult<Vec<PluginSummary>> {
    Ok(diesel::sql_query(
        "SELECT p.id, p.name, v.version, v.declared_version, left(v.description, $1) AS description, \
                octet_length(v.description) AS description_bytes, v.sha256, v.size_bytes, \
                v.created_at AS uploaded_at \
         FROM plugins p JOIN plugin_versions v ON v.id = p.active_version_id \
         WHERE p.retired_at IS NULL ORDER BY p.name",
    )
    .bind::<Int4, _>(LISTED_DESCRIPTION_CHARS)
    .load(tx.c())?)
}

/// Active tasks with their plugin's name, by plugin then task name.
pub fn list_tasks(tx: &mut Tx<'_>) -> StoreResult<Vec<(String, TaskRow)>> {
    Ok(tasks::table
        .inner_join(plugins::table)
        .filter(tasks::active.eq(true))
        .select((plugins::name, TaskRow::as_select()))
        .order((plugins::name, tasks::name))
        .load(tx.c())?)
}

/// One task by id, with its plugin's name and its current definition.
pub fn get_task(tx: &mut Tx<'_>, id: i64) -> StoreResult<(String, TaskRow, serde_json::Value)> {
    tasks::table
        .inner_join(plugins::table)
        .inner_join(task_definitions::table.on(task_definitions::id.eq(tasks::definition_id)))
        .filter(tasks::id.eq(id))
        .select((plugins::name, TaskRow::as_select(), task_definitions::definition))
        .first(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("task {id}")))
}

/// The component bytes of a plugin version; `None` when they were pruned.
pub fn component(tx: &mut Tx<'_>, version_id: i64) -> StoreResult<Option<Vec<u8>>> {
    plugin_versions::table
        .find(version_id)
        .select(plugin_versions::component)
        .first(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plugin version {version_id}")))
}

/// `(version id, sha256)` of every active version of a plugin in service,
/// newest upload first.
pub fn active_components(tx: &mut Tx<'_>) -> StoreResult<Vec<(i64, String)>> {
    Ok(plugins::table
        .inner_join(plugin_versions::table.on(plugin_versions::id.nullable().eq(plugins::active_version_id)))
        .filter(plugins::retired_at.is_null())
        .order(plugin_versions::created_at.desc())
        .select((plugin_versions::id, plugin_versions::sha256))
        .load(tx.c())?)
}
