-- Services: long-running processes, each kept running by exactly one host.
-- A row is one service (a plugin's task by name, across versions of the
-- plugin), its lease (who runs it, until when by the database's clock) and
-- its state as last reported by that host.
CREATE TABLE services (
    id BIGSERIAL PRIMARY KEY,
    plugin_id BIGINT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- The definition the holder runs (the task of the active version).
    task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    host_id TEXT,
    lease_until TIMESTAMPTZ,
    acquired_at TIMESTAMPTZ,
    state TEXT NOT NULL DEFAULT 'waiting'
        CHECK (state IN ('waiting', 'starting', 'running', 'backoff', 'stopped')),
    state_since TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The current incarnation, or the last one.
    run_id BIGINT,
    restarts INT NOT NULL DEFAULT 0,
    backoff_until TIMESTAMPTZ,
    last_exit_at TIMESTAMPTZ,
    last_exit_status TEXT,
    last_exit_code INT,
    last_error TEXT,
    -- The latest exits (at most a handful), to tell flapping.
    recent_exits TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
    -- Set when the service started flapping, cleared once it stays up.
    flapping_since TIMESTAMPTZ,
    UNIQUE (plugin_id, name)
);

ALTER TABLE tasks DROP CONSTRAINT tasks_schedule_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_schedule_kind_check
    CHECK (schedule_kind IN ('cron', 'dynamic', 'manual', 'service'));

ALTER TABLE slots DROP CONSTRAINT slots_trigger_check;
ALTER TABLE slots ADD CONSTRAINT slots_trigger_check
    CHECK (trigger IN ('schedule', 'manual', 'backfill', 'service'));

ALTER TABLE step_executions DROP CONSTRAINT step_executions_phase_check;
ALTER TABLE step_executions ADD CONSTRAINT step_executions_phase_check
    CHECK (phase IN ('provision', 'background', 'step', 'cleanup', 'shutdown'));

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('failure', 'recovery', 'missed', 'paused', 'pulse_overdue', 'service_flapping'));
