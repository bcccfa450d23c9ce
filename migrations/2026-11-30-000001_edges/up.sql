-- Guarantees at the edges: liveness of hosts judged by PostgreSQL's clock,
-- task definitions stored per plugin version, every process group of a run,
-- starting deadlines that hold in the queue, and change tracking of tasks that
-- neither serialises writers nor moves when a dynamic schedule is asked.

-- Every host heartbeats here; a run is lost only when the host that runs it
-- stopped heartbeating for longer than its lease, by the database's clock.
CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    -- Where it runs (hostname) and its process id, so that a host on the same
    -- machine can kill what a lost host left behind.
    machine TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- How long it may stay silent before it counts as lost.
    lease_ms BIGINT NOT NULL CHECK (lease_ms > 0),
    -- Set by the host itself when it stopped cleanly.
    stopped_at TIMESTAMPTZ,
    -- Set by the host that found it silent and finished its runs.
    lost_at TIMESTAMPTZ
);

-- A task's definition as one plugin version describes it, decoded alone when a
-- run starts (never a whole manifest). `format` is the definition's own
-- version: new fields get defaults, so older rows stay readable.
CREATE TABLE task_definitions (
    id BIGSERIAL PRIMARY KEY,
    plugin_version_id BIGINT NOT NULL REFERENCES plugin_versions (id),
    name TEXT NOT NULL,
    format INTEGER NOT NULL,
    definition JSONB NOT NULL,
    UNIQUE (plugin_version_id, name)
);

INSERT INTO task_definitions (plugin_version_id, name, format, definition)
SELECT pv.id, t ->> 'name', 1, t
FROM plugin_versions pv, jsonb_array_elements(pv.manifest -> 'tasks') t;

ALTER TABLE tasks ADD COLUMN definition_id BIGINT REFERENCES task_definitions (id);
UPDATE tasks SET definition_id = d.id
FROM task_definitions d
WHERE d.plugin_version_id = tasks.plugin_version_id AND d.name = tasks.name;
ALTER TABLE tasks ALTER COLUMN definition_id SET NOT NULL;
ALTER TABLE tasks DROP COLUMN definition;

-- When a dynamic schedule was last asked lives apart from the task, so asking
-- never changes the task rows a pulse caches.
CREATE TABLE dynamic_asks (
    task_id BIGINT PRIMARY KEY REFERENCES tasks (id),
    asked_at TIMESTAMPTZ NOT NULL
);
INSERT INTO dynamic_asks (task_id, asked_at)
SELECT id, last_asked_at FROM tasks WHERE last_asked_at IS NOT NULL;
ALTER TABLE tasks DROP COLUMN last_asked_at;

-- Which transaction last wrote each task. A pulse that read the tasks under a
-- snapshot asks only for rows written by transactions that snapshot could not
-- see (an index range from the snapshot's xmin), which is exact whatever
-- order writers commit in, and no writer waits for another.
DROP TRIGGER tasks_changed ON tasks;
DROP FUNCTION bump_tasks_version();
DROP TABLE tasks_version;
ALTER TABLE tasks ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX tasks_changed_idx ON tasks (changed_xid);
CREATE FUNCTION note_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
-- Writers that stamp the row themselves (an upload's upsert) skip the call.
CREATE TRIGGER tasks_changed BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW WHEN (NEW.changed_xid IS DISTINCT FROM pg_current_xact_id())
    EXECUTE FUNCTION note_task_change();

-- Runs name the definition they execute.
ALTER TABLE runs ADD COLUMN definition_id BIGINT;
UPDATE runs SET definition_id = d.id
FROM tasks t, task_definitions d
WHERE t.id = runs.task_id AND d.plugin_version_id = runs.plugin_version_id AND d.name = t.name;
ALTER TABLE runs ALTER COLUMN definition_id SET NOT NULL;

-- Every live process group of a run (a background hook runs beside a step),
-- for the host that recovers the run after its host died.
ALTER TABLE runs ADD COLUMN process_groups INTEGER[] NOT NULL DEFAULT '{}';
UPDATE runs SET process_groups = ARRAY[process_group] WHERE process_group IS NOT NULL;
ALTER TABLE runs DROP COLUMN process_group;

-- Liveness is the host's heartbeat now, not a lease per run.
DROP INDEX runs_running_idx;
ALTER TABLE runs DROP COLUMN lease_expires_at;
CREATE INDEX runs_running_idx ON runs (host_id) WHERE status = 'running';

-- A queued run that could not start by this instant is recorded as missed.
ALTER TABLE runs ADD COLUMN start_deadline TIMESTAMPTZ;
CREATE INDEX runs_deadline_idx ON runs (start_deadline)
    WHERE status = 'queued' AND start_deadline IS NOT NULL;

-- Dependency cascades look up the queued runs that wait for given runs.
CREATE INDEX runs_waiting_idx ON runs USING gin (depends_on_runs)
    WHERE status = 'queued' AND depends_on_runs <> '{}';

-- A pulse claims in two transactions: its cron slots, then the dynamic
-- answers and what waits for them. Only a complete pulse bounds the next
-- pulse's window, so what an interrupted pulse left unclaimed is evaluated
-- again (what it did claim stays claimed once: slots are unique).
ALTER TABLE pulses ADD COLUMN complete BOOLEAN NOT NULL DEFAULT true;
DROP INDEX pulses_window_idx;
CREATE INDEX pulses_window_idx ON pulses (received_at DESC) WHERE kind = 'pulse' AND complete;

-- A pulse records a run per claimed slot in the statement that inserts the
-- slot, and a retry copies its failed attempt's slot: both references hold by
-- construction, so the per-row foreign-key checks (a third of a pulse's claim)
-- go. Slots keep theirs to tasks.
ALTER TABLE runs DROP CONSTRAINT runs_slot_id_fkey;
ALTER TABLE runs DROP CONSTRAINT runs_retry_of_fkey;
