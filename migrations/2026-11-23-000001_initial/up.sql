-- pulsehost's initial schema: plugins and their immutable versions, the tasks
-- they describe, pulses, slots (one per task occurrence, claimed exactly once),
-- runs (attempts of a slot), the processes each run executed, and an append-only
-- log of run lifecycle events.

CREATE TABLE plugins (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    active_version_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE plugin_versions (
    id BIGSERIAL PRIMARY KEY,
    plugin_id BIGINT NOT NULL REFERENCES plugins (id),
    -- 1, 2, 3… per plugin; every upload is a new immutable version.
    version INTEGER NOT NULL,
    -- What the plugin's manifest calls itself (free text, e.g. "1.2.0").
    declared_version TEXT NOT NULL,
    description TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    wit_package TEXT NOT NULL,
    component BYTEA NOT NULL,
    -- The validated manifest as the host understood it (see host/src/spec.rs).
    manifest JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (plugin_id, version)
);

ALTER TABLE plugins
    ADD CONSTRAINT plugins_active_version_fk
    FOREIGN KEY (active_version_id) REFERENCES plugin_versions (id);

-- A task's identity is (plugin, name) and outlives plugin versions, so slots and
-- history stay attached to it when a new version of the plugin is uploaded.
CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    plugin_id BIGINT NOT NULL REFERENCES plugins (id),
    plugin_version_id BIGINT NOT NULL REFERENCES plugin_versions (id),
    name TEXT NOT NULL,
    -- False once the plugin's active version no longer describes the task.
    active BOOLEAN NOT NULL DEFAULT true,
    schedule_kind TEXT NOT NULL CHECK (schedule_kind IN ('cron', 'dynamic', 'manual')),
    cron_expression TEXT,
    timezone TEXT,
    enabled BOOLEAN NOT NULL,
    priority INTEGER NOT NULL,
    definition JSONB NOT NULL,
    -- Policies a pulse needs, copied out of the definition so that evaluating
    -- thousands of tasks never parses their JSON.
    overlap TEXT NOT NULL CHECK (overlap IN ('skip', 'allow', 'replace')),
    catch_up TEXT NOT NULL CHECK (catch_up IN ('latest', 'all', 'none')),
    starting_deadline_ms BIGINT,
    depends_on TEXT[] NOT NULL DEFAULT '{}',
    dynamic_interval_secs INTEGER,
    -- Occurrences at or before this instant are never due (the schedule took
    -- effect then); later ones are evaluated from the previous pulse on.
    schedule_since TIMESTAMPTZ NOT NULL,
    -- Dynamic schedules: when should-run was last asked.
    last_asked_at TIMESTAMPTZ,
    paused_reason TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (plugin_id, name)
);

-- A counter bumped by every statement that changes tasks, so that a pulse
-- learns from one row whether the tasks it read last time are still current.
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

CREATE TABLE pulses (
    id BIGSERIAL PRIMARY KEY,
    -- 'pulse' (hosted cron) or 'manual' (an operator's run-now); only pulses
    -- delimit the window the next pulse evaluates.
    kind TEXT NOT NULL DEFAULT 'pulse' CHECK (kind IN ('pulse', 'manual')),
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    source TEXT,
    -- A retried delivery with the same key gets the first answer.
    idempotency_key TEXT UNIQUE,
    response JSONB,
    -- Failures met while evaluating (a dynamic schedule that trapped, …).
    errors JSONB NOT NULL DEFAULT '[]',
    max_lateness_ms BIGINT,
    due INTEGER NOT NULL DEFAULT 0,
    claimed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    missed INTEGER NOT NULL DEFAULT 0,
    duration_ms DOUBLE PRECISION
);

-- One occurrence of a task's schedule (or one manual trigger). The unique key is
-- what makes any number of replicas and duplicate pulses run a slot once.
CREATE INDEX pulses_window_idx ON pulses (received_at DESC) WHERE kind = 'pulse';

CREATE TABLE slots (
    id BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    scheduled_for TIMESTAMPTZ NOT NULL,
    -- The pulse that claimed it (provenance only, so not a foreign key: pulses
    -- are never deleted, and a pulse claiming 1,000 slots skips 1,000 checks).
    pulse_id BIGINT,
    trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (task_id, scheduled_for)
);

CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    -- Only the slot is a foreign key: task and plugin version are copied from
    -- it at claim time (neither is ever deleted), which spares a pulse that
    -- queues 1,000 runs 2,000 extra key checks.
    slot_id BIGINT NOT NULL REFERENCES slots (id),
    task_id BIGINT NOT NULL,
    plugin_version_id BIGINT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL CHECK (status IN
        ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')),
    priority INTEGER NOT NULL DEFAULT 0,
    scheduled_for TIMESTAMPTZ NOT NULL,
    not_before TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    lateness_ms BIGINT,
    failure_type TEXT,
    error TEXT,
    skip_reason TEXT,
    host_id TEXT,
    lease_expires_at TIMESTAMPTZ,
    -- Set by POST /v1/runs/{id}/cancel; the host executing the run acts on it.
    cancel_requested_at TIMESTAMPTZ,
    -- Runs of the same pulse that must succeed before this one may start.
    depends_on_runs BIGINT[] NOT NULL DEFAULT '{}',
    -- Process group of the process the run is executing, for crash recovery.
    process_group INTEGER,
    -- The failed attempt this run retries.
    retry_of BIGINT REFERENCES runs (id),
    UNIQUE (slot_id, attempt)
);

CREATE INDEX runs_queue_idx ON runs (priority DESC, not_before, id) WHERE status = 'queued';
CREATE INDEX runs_task_idx ON runs (task_id, id DESC);
-- Crash recovery on every pulse and every few seconds: running runs by lease.
CREATE INDEX runs_running_idx ON runs (lease_expires_at) WHERE status = 'running';
-- The overlap check of every pulse: which tasks have a run queued or running.
CREATE INDEX runs_active_idx ON runs (task_id) WHERE status IN ('queued', 'running');

-- One native process of a run: a hook or a step.
CREATE TABLE step_executions (
    id BIGSERIAL PRIMARY KEY,
    run_id BIGINT NOT NULL REFERENCES runs (id),
    phase TEXT NOT NULL CHECK (phase IN ('provision', 'background', 'step', 'cleanup')),
    step_index INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('shell', 'python', 'binary')),
    status TEXT NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    stdout BYTEA NOT NULL,
    stderr BYTEA NOT NULL,
    stdout_bytes BIGINT NOT NULL,
    stderr_bytes BIGINT NOT NULL,
    stdout_truncated BOOLEAN NOT NULL,
    stderr_truncated BOOLEAN NOT NULL,
    stdout_json JSONB,
    error TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL
);

CREATE INDEX step_executions_run_idx ON step_executions (run_id, id);

-- Append-only lifecycle log of runs.
CREATE TABLE run_events (
    id BIGSERIAL PRIMARY KEY,
    run_id BIGINT NOT NULL REFERENCES runs (id),
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind TEXT NOT NULL,
    detail JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX run_events_run_idx ON run_events (run_id, id);

-- Failures of a task's exec hooks, per hook type: after N consecutive failures
-- the task is paused until an operator resumes it.
CREATE TABLE hook_failures (
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    hook TEXT NOT NULL CHECK (hook IN ('provision', 'background', 'cleanup')),
    consecutive INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    last_failed_at TIMESTAMPTZ,
    -- The most recent errors, newest first.
    last_errors JSONB NOT NULL DEFAULT '[]',
    PRIMARY KEY (task_id, hook)
);
