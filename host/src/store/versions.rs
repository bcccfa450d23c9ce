//! The versions of a plugin: which one is active, what each changed against
//! the one before it, switching the active one (rollback is one call), retiring
//! a plugin, and pruning the bytes of old versions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int4, Int8, Jsonb, Text, Timestamptz};
use serde::Serialize;

use super::schema::{plugin_versions, plugins, task_definitions, tasks};
use super::{StoreError, StoreResult, Tx};
use crate::spec::Manifest;

/// One version of a plugin, for listings.
#[derive(Debug, Clone, QueryableByName, Serialize)]
pub struct VersionSummary {
    /// 1, 2, 3… per plugin.
    #[diesel(sql_type = Int4)]
    pub version: i32,
    /// The plugin's own version string.
    #[diesel(sql_type = Text)]
    pub declared_version: String,
    /// sha256 of the component.
    #[diesel(sql_type = Text)]
    pub sha256: String,
    /// Size of the component.
    #[diesel(sql_type = Int8)]
    pub size_bytes: i64,
    /// When it was uploaded.
    #[diesel(sql_type = Timestamptz)]
    pub uploaded_at: DateTime<Utc>,
    /// Whether its tasks are the ones in service.
    #[diesel(sql_type = Bool)]
    pub active: bool,
    /// Whether its component bytes were pruned (it cannot be activated again
    /// without uploading them).
    #[diesel(sql_type = Bool)]
    pub pruned: bool,
    /// Task names `added`, `removed` and `changed` against the version before.
    #[diesel(sql_type = Jsonb)]
    pub changes: serde_json::Value,
}

/// A stored version that an identical upload or an activation refers to.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredVersion {
    /// The plugin.
    #[diesel(sql_type = Int8)]
    pub plugin_id: i64,
    /// Its name.
    #[diesel(sql_type = Text)]
    pub plugin: String,
    /// The version's id.
    #[diesel(sql_type = Int8)]
    pub version_id: i64,
    /// Its number.
    #[diesel(sql_type = Int4)]
    pub version: i32,
    /// sha256 of its component.
    #[diesel(sql_type = Text)]
    pub sha256: String,
    /// Whether it is active in a plugin in service.
    #[diesel(sql_type = Bool)]
    pub active: bool,
    /// Whether its bytes were pruned.
    #[diesel(sql_type = Bool)]
    pub pruned: bool,
    /// What its `describe()` returned, as stored.
    #[diesel(sql_type = Jsonb)]
    pub manifest: serde_json::Value,
}

const STORED_VERSION: &str = "SELECT p.id AS plugin_id, p.name AS plugin, v.id AS version_id, v.version, v.sha256, \
     (p.active_version_id = v.id AND p.retired_at IS NULL) AS active, v.component IS NULL AS pruned, v.manifest \
     FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id";

/// The newest version whose component has this sha256, in any plugin.
pub fn find_by_sha(tx: &mut Tx<'_>, sha256: &str) -> StoreResult<Option<StoredVersion>> {
    Ok(diesel::sql_query(format!(
        "{STORED_VERSION} WHERE v.sha256 = $1 ORDER BY v.id DESC LIMIT 1"
    ))
    .bind::<Text, _>(sha256)
    .get_result(tx.c())
    .optional()?)
}

/// Version `version` of plugin `plugin`, its plugin row locked for the rest of
/// the transaction (versions of one plugin change one at a time).
pub fn lock_version(tx: &mut Tx<'_>, plugin: &str, version: i32) -> StoreResult<StoredVersion> {
    let plugin_id = lock_plugin(tx, plugin)?;
    diesel::sql_query(format!(
        "{STORED_VERSION} WHERE v.plugin_id = $1 AND v.version = $2"
    ))
    .bind::<Int8, _>(plugin_id)
    .bind::<Int4, _>(version)
    .get_result(tx.c())
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("version {version} of plugin {plugin}")))
}

/// Locks the row of plugin `plugin`; its id.
pub fn lock_plugin(tx: &mut Tx<'_>, plugin: &str) -> StoreResult<i64> {
    plugins::table
        .filter(plugins::name.eq(plugin))
        .select(plugins::id)
        .for_update()
        .first(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plugin {plugin}")))
}

/// The decoded manifest and the definition ids (in task order) of a stored version.
pub fn definitions(tx: &mut Tx<'_>, stored: &StoredVersion) -> StoreResult<(Manifest, Vec<i64>)> {
    let manifest: Manifest = serde_json::from_value(stored.manifest.clone()).map_err(|e| {
        StoreError::Encoding(format!("the stored manifest of version {}: {e}", stored.version))
    })?;
    let rows: Vec<(String, i64)> = task_definitions::table
        .filter(task_definitions::plugin_version_id.eq(stored.version_id))
        .select((task_definitions::name, task_definitions::id))
        .load(tx.c())?;
    let by_name: std::collections::HashMap<String, i64> = rows.into_iter().collect();
    let ids = manifest
        .tasks
        .iter()
        .map(|t| {
            by_name
                .get(&t.name)
                .copied()
                .ok_or_else(|| StoreError::NotFound(format!("the stored definition of task {}", t.name)))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((manifest, ids))
}

/// Puts the bytes of a pruned version back.
pub fn restore_bytes(tx: &mut Tx<'_>, version_id: i64, component: &[u8]) -> StoreResult<()> {
    diesel::update(plugin_versions::table.find(version_id))
        .set((
            plugin_versions::component.eq(Some(component)),
            plugin_versions::pruned_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(tx.c())?;
    Ok(())
}

/// Records which task names version `version_id` added, removed and changed
/// against the version of the same plugin numbered just before it.
pub fn record_changes(tx: &mut Tx<'_>, version_id: i64) -> StoreResult<()> {
    diesel::sql_query(
        "WITH v AS (SELECT plugin_id, version FROM plugin_versions WHERE id = $1), \
         cur AS (SELECT name, definition FROM task_definitions WHERE plugin_version_id = $1), \
         prev AS (SELECT d.name, d.definition FROM task_definitions d \
                  JOIN plugin_versions pv ON pv.id = d.plugin_version_id, v \
                  WHERE pv.plugin_id = v.plugin_id AND pv.version = v.version - 1) \
         UPDATE plugin_versions SET changes = jsonb_build_object( \
             'added', (SELECT coalesce(jsonb_agg(name ORDER BY name), '[]') FROM cur \
                       WHERE name NOT IN (SELECT name FROM prev)), \
             'removed', (SELECT coalesce(jsonb_agg(name ORDER BY name), '[]') FROM prev \
                         WHERE name NOT IN (SELECT name FROM cur)), \
             'changed', (SELECT coalesce(jsonb_agg(cur.name ORDER BY cur.name), '[]') FROM cur \
                         JOIN prev ON prev.name = cur.name WHERE prev.definition <> cur.definition)) \
         WHERE id = $1",
    )
    .bind::<Int8, _>(version_id)
    .execute(tx.c())?;
    Ok(())
}

/// Every version of `plugin`, newest first.
pub fn list(tx: &mut Tx<'_>, plugin: &str) -> StoreResult<Vec<VersionSummary>> {
    let plugin_id: i64 = plugins::table
        .filter(plugins::name.eq(plugin))
        .select(plugins::id)
        .first(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plugin {plugin}")))?;
    Ok(diesel::sql_query(
        "SELECT v.version, v.declared_version, v.sha256, v.size_bytes, v.created_at AS uploaded_at, \
             (p.active_version_id = v.id AND p.retired_at IS NULL) AS active, \
             v.component IS NULL AS pruned, v.changes \
         FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id \
         WHERE v.plugin_id = $1 ORDER BY v.version DESC",
    )
    .bind::<Int8, _>(plugin_id)
    .load(tx.c())?)
}

/// Retires `plugin`: none of its tasks is due any more; versions and history
/// stay. False when it was retired already.
pub fn retire(tx: &mut Tx<'_>, plugin: &str) -> StoreResult<bool> {
    let plugin_id = lock_plugin(tx, plugin)?;
    let retired = diesel::update(plugins::table.find(plugin_id))
        .filter(plugins::retired_at.is_null())
        .set(plugins::retired_at.eq(diesel::dsl::now))
        .execute(tx.c())?;
    diesel::update(tasks::table)
        .filter(tasks::plugin_id.eq(plugin_id))
        .filter(tasks::active.eq(true))
        .set((tasks::active.eq(false), tasks::updated_at.eq(diesel::dsl::now)))
        .execute(tx.c())?;
    Ok(retired == 1)
}

/// Drops the component bytes of versions older than the newest `keep` of the
/// plugin, never those of its active version; how many were pruned.
pub fn prune(tx: &mut Tx<'_>, plugin_id: i64, keep: u32) -> StoreResult<usize> {
    Ok(diesel::sql_query(
        "UPDATE plugin_versions v SET component = NULL, pruned_at = now() \
         FROM plugins p WHERE p.id = v.plugin_id AND v.plugin_id = $1 AND v.component IS NOT NULL \
             AND v.id IS DISTINCT FROM p.active_version_id \
             AND v.version <= (SELECT max(version) FROM plugin_versions WHERE plugin_id = $1) - $2",
    )
    .bind::<Int8, _>(plugin_id)
    .bind::<Int8, _>(i64::from(keep))
    .execute(tx.c())?)
}
