DROP INDEX runs_finished_at_idx;
ALTER TABLE tasks DROP COLUMN paused_at;
DROP TABLE alert_attempts;
DROP TABLE alerts;
