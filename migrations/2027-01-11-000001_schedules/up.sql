-- An operator's pause may end by itself; a backfill claims past slots.
ALTER TABLE tasks ADD COLUMN paused_until TIMESTAMPTZ;
CREATE INDEX tasks_paused_until_idx ON tasks (paused_until) WHERE paused_until IS NOT NULL;

ALTER TABLE pulses DROP CONSTRAINT pulses_kind_check;
ALTER TABLE pulses ADD CONSTRAINT pulses_kind_check CHECK (kind IN ('pulse', 'manual', 'backfill'));
ALTER TABLE slots DROP CONSTRAINT slots_trigger_check;
ALTER TABLE slots ADD CONSTRAINT slots_trigger_check CHECK (trigger IN ('schedule', 'manual', 'backfill'));

-- Each occurrence of a cron task may start up to this late (fixed per slot).
ALTER TABLE tasks ADD COLUMN jitter_ms BIGINT;
UPDATE tasks t SET jitter_ms = (d.definition #>> '{schedule,jitter_ms}')::int8
    FROM task_definitions d WHERE d.id = t.definition_id;
