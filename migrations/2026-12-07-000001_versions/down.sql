DROP INDEX plugin_versions_sha256_idx;
ALTER TABLE plugin_versions DROP COLUMN changes;
ALTER TABLE plugin_versions DROP COLUMN pruned_at;
UPDATE plugin_versions SET component = '' WHERE component IS NULL;
ALTER TABLE plugin_versions ALTER COLUMN component SET NOT NULL;
ALTER TABLE plugins DROP COLUMN retired_at;
