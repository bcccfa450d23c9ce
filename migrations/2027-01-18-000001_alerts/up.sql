-- Notifications: each is derived once from what is recorded (its dedupe key
-- is unique), delivered at least once by a signed webhook POST, and every
-- delivery attempt is kept.
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('failure', 'recovery', 'missed', 'paused', 'pulse_overdue')),
    dedupe_key TEXT NOT NULL UNIQUE,
    task_id BIGINT REFERENCES tasks (id) ON DELETE CASCADE,
    run_id BIGINT,
    webhook TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at TIMESTAMPTZ,
    last_error TEXT
);
CREATE INDEX alerts_due_idx ON alerts (next_attempt_at) WHERE status = 'pending';

CREATE TABLE alert_attempts (
    id BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    attempt INT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code INT,
    error TEXT,
    duration_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX alert_attempts_alert_idx ON alert_attempts (alert_id);

-- When a task was paused, so that each pause is notified once.
ALTER TABLE tasks ADD COLUMN paused_at TIMESTAMPTZ;
UPDATE tasks SET paused_at = updated_at WHERE paused_reason IS NOT NULL;

CREATE INDEX runs_finished_at_idx ON runs (finished_at) WHERE finished_at IS NOT NULL;
