DROP TABLE run_events;
DROP TABLE step_executions;
DROP TABLE runs;
DROP TABLE slots;
DROP TABLE pulses;
DROP TABLE tasks;
ALTER TABLE plugins DROP CONSTRAINT plugins_active_version_fk;
DROP TABLE plugin_versions;
DROP TABLE plugins;
