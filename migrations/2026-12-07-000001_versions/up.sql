-- Plugins as a platform: retiring a plugin, pruning old component bytes, and
-- what each version changed against the one before it.

-- A retired plugin describes no due task; its versions and history stay, and
-- activating a version (or uploading one) brings it back.
ALTER TABLE plugins ADD COLUMN retired_at TIMESTAMPTZ;

-- Bytes of old versions may be pruned (never the active version's): the row,
-- its manifest and definitions stay, so history keeps naming it.
ALTER TABLE plugin_versions ALTER COLUMN component DROP NOT NULL;
ALTER TABLE plugin_versions ADD COLUMN pruned_at TIMESTAMPTZ;

-- Task names added, removed and changed against the previous version by number,
-- computed once when the version is recorded.
ALTER TABLE plugin_versions ADD COLUMN changes JSONB NOT NULL
    DEFAULT '{"added": [], "removed": [], "changed": []}';

-- An identical upload finds its version by content.
CREATE INDEX plugin_versions_sha256_idx ON plugin_versions (sha256);
