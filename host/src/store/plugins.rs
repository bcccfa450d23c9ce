//! Plugins, their immutable versions, and the tasks the active version describes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use serde::Serialize;

use super::models::TaskRow;
use super::schema::{plugin_versions, plugins, tasks};
use super::{StoreError, StoreResult};
use crate::spec::{Manifest, Schedule};

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
    /// The tasks now active.
    pub tasks: Vec<String>,
}

/// One plugin with its active version, for listings.
#[derive(Debug, Clone, Queryable, Serialize)]
pub struct PluginSummary {
    /// Identifier.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Active version number.
    pub version: i32,
    /// The plugin's own version string.
    pub declared_version: String,
    /// Free text.
    pub description: String,
    /// sha256 of the active component.
    pub sha256: String,
    /// Its size.
    pub size_bytes: i64,
    /// When that version was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

/// A task's name, schedule kind, expression, time zone and since-when.
type ExistingSchedule = (String, String, Option<String>, Option<String>, DateTime<Utc>);

/// Records a new version of a plugin and makes it active: its tasks are upserted
/// (keeping their identity and schedule cursor) and tasks it no longer describes
/// are deactivated, all in the caller's transaction.
pub fn register_version(
    conn: &mut PgConnection,
    new: &NewPluginVersion<'_>,
    now: DateTime<Utc>,
) -> StoreResult<RegisteredVersion> {
    let manifest = new.manifest;
    // The upsert takes the plugin row's lock, so concurrent uploads of one plugin
    // number their versions one after the other.
    let plugin_id: i64 = diesel::insert_into(plugins::table)
        .values(plugins::name.eq(&manifest.name))
        .on_conflict(plugins::name)
        .do_update()
        .set(plugins::name.eq(excluded(plugins::name)))
        .returning(plugins::id)
        .get_result(conn)?;
    let latest: Option<i32> = plugin_versions::table
        .filter(plugin_versions::plugin_id.eq(plugin_id))
        .select(diesel::dsl::max(plugin_versions::version))
        .first(conn)?;
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
            plugin_versions::component.eq(new.component),
            plugin_versions::manifest.eq(&manifest_json),
            plugin_versions::created_at.eq(now),
        ))
        .returning(plugin_versions::id)
        .get_result(conn)?;

    // A task whose schedule changes starts its new schedule now; otherwise it
    // keeps the instant its schedule took effect.
    let existing: Vec<ExistingSchedule> = tasks::table
        .filter(tasks::plugin_id.eq(plugin_id))
        .select((
            tasks::name,
            tasks::schedule_kind,
            tasks::cron_expression,
            tasks::timezone,
            tasks::schedule_since,
        ))
        .load(conn)?;
    for task in &manifest.tasks {
        let (expression, timezone) = match &task.schedule {
            Schedule::Cron { expression, timezone } => (Some(expression.clone()), timezone.clone()),
            _ => (None, None),
        };
        let interval = match task.schedule {
            Schedule::Dynamic { interval_secs } => Some(i32::try_from(interval_secs).unwrap_or(i32::MAX)),
            _ => None,
        };
        let since = existing
            .iter()
            .find(|(name, kind, expr, tz, _)| {
                name == &task.name && kind == task.schedule.kind() && expr == &expression && tz == &timezone
            })
            .map_or(now, |(.., since)| *since);
        let definition =
            serde_json::to_value(task).map_err(|e| StoreError::Encoding(format!("task: {e}")))?;
        let values = (
            tasks::plugin_id.eq(plugin_id),
            tasks::plugin_version_id.eq(version_id),
            tasks::name.eq(&task.name),
            tasks::active.eq(true),
            tasks::schedule_kind.eq(task.schedule.kind()),
            tasks::cron_expression.eq(&expression),
            tasks::timezone.eq(&timezone),
            tasks::enabled.eq(task.enabled),
            tasks::priority.eq(task.priority),
            tasks::definition.eq(&definition),
            tasks::overlap.eq(task.overlap.as_str()),
            tasks::catch_up.eq(task.catch_up.as_str()),
            tasks::starting_deadline_ms.eq(task.starting_deadline_ms.map(|ms| ms as i64)),
            tasks::depends_on.eq(&task.depends_on),
            tasks::dynamic_interval_secs.eq(interval),
            tasks::schedule_since.eq(since),
            tasks::updated_at.eq(now),
        );
        diesel::insert_into(tasks::table)
            .values((values, tasks::created_at.eq(now)))
            .on_conflict((tasks::plugin_id, tasks::name))
            .do_update()
            .set(values)
            .execute(conn)?;
    }
    let names: Vec<&str> = manifest.tasks.iter().map(|t| t.name.as_str()).collect();
    diesel::update(tasks::table)
        .filter(tasks::plugin_id.eq(plugin_id))
        .filter(tasks::name.ne_all(&names))
        .set((tasks::active.eq(false), tasks::updated_at.eq(now)))
        .execute(conn)?;
    diesel::update(plugins::table.find(plugin_id))
        .set(plugins::active_version_id.eq(version_id))
        .execute(conn)?;
    Ok(RegisteredVersion {
        plugin_id,
        plugin: manifest.name.clone(),
        version_id,
        version,
        tasks: names.iter().map(|s| s.to_string()).collect(),
    })
}

/// Every plugin with its active version, by name.
pub fn list_plugins(conn: &mut PgConnection) -> StoreResult<Vec<PluginSummary>> {
    Ok(plugins::table
        .inner_join(plugin_versions::table.on(plugins::active_version_id.eq(plugin_versions::id.nullable())))
        .select((
            plugins::id,
            plugins::name,
            plugin_versions::version,
            plugin_versions::declared_version,
            plugin_versions::description,
            plugin_versions::sha256,
            plugin_versions::size_bytes,
            plugin_versions::created_at,
        ))
        .order(plugins::name)
        .load(conn)?)
}

/// Active tasks with their plugin's name, by plugin then task name.
pub fn list_tasks(conn: &mut PgConnection) -> StoreResult<Vec<(String, TaskRow)>> {
    Ok(tasks::table
        .inner_join(plugins::table)
        .filter(tasks::active.eq(true))
        .select((plugins::name, TaskRow::as_select()))
        .order((plugins::name, tasks::name))
        .load(conn)?)
}

/// One task by id, with its plugin's name.
pub fn get_task(conn: &mut PgConnection, id: i64) -> StoreResult<(String, TaskRow)> {
    tasks::table
        .inner_join(plugins::table)
        .filter(tasks::id.eq(id))
        .select((plugins::name, TaskRow::as_select()))
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("task {id}")))
}

/// The component bytes and sha256 of a plugin version.
pub fn component(conn: &mut PgConnection, version_id: i64) -> StoreResult<(String, Vec<u8>)> {
    plugin_versions::table
        .find(version_id)
        .select((plugin_versions::sha256, plugin_versions::component))
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plugin version {version_id}")))
}
