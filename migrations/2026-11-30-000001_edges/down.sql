ALTER TABLE runs ADD CONSTRAINT runs_slot_id_fkey FOREIGN KEY (slot_id) REFERENCES slots (id);
ALTER TABLE runs ADD CONSTRAINT runs_retry_of_fkey FOREIGN KEY (retry_of) REFERENCES runs (id);
DROP INDEX pulses_window_idx;
CREATE INDEX pulses_window_idx ON pulses (received_at DESC) WHERE kind = 'pulse';
ALTER TABLE pulses DROP COLUMN complete;

DROP INDEX runs_waiting_idx;
DROP INDEX runs_deadline_idx;
ALTER TABLE runs DROP COLUMN start_deadline;
DROP INDEX runs_running_idx;
ALTER TABLE runs ADD COLUMN lease_expires_at TIMESTAMPTZ;
CREATE INDEX runs_running_idx ON runs (lease_expires_at) WHERE status = 'running';
ALTER TABLE runs ADD COLUMN process_group INTEGER;
UPDATE runs SET process_group = process_groups[array_upper(process_groups, 1)];
ALTER TABLE runs DROP COLUMN process_groups;
ALTER TABLE runs DROP COLUMN definition_id;

DROP TRIGGER tasks_changed ON tasks;
DROP FUNCTION note_task_change();
DROP INDEX tasks_changed_idx;
ALTER TABLE tasks DROP COLUMN changed_xid;
CREATE TABLE tasks_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version BIGINT NOT NULL
);
INSERT INTO tasks_version (version) VALUES (0);
CREATE FUNCTION bump_tasks_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_changed AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION bump_tasks_version();

ALTER TABLE tasks ADD COLUMN last_asked_at TIMESTAMPTZ;
UPDATE tasks SET last_asked_at = a.asked_at FROM dynamic_asks a WHERE a.task_id = tasks.id;
DROP TABLE dynamic_asks;

ALTER TABLE tasks ADD COLUMN definition JSONB;
UPDATE tasks SET definition = d.definition FROM task_definitions d WHERE d.id = tasks.definition_id;
ALTER TABLE tasks ALTER COLUMN definition SET NOT NULL;
ALTER TABLE tasks DROP COLUMN definition_id;
DROP TABLE task_definitions;

DROP TABLE hosts;
