DELETE FROM alerts WHERE kind = 'service_flapping';
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('failure', 'recovery', 'missed', 'paused', 'pulse_overdue'));
DELETE FROM step_executions WHERE phase = 'shutdown';
ALTER TABLE step_executions DROP CONSTRAINT step_executions_phase_check;
ALTER TABLE step_executions ADD CONSTRAINT step_executions_phase_check
    CHECK (phase IN ('provision', 'background', 'step', 'cleanup'));
ALTER TABLE slots DROP CONSTRAINT slots_trigger_check;
ALTER TABLE slots ADD CONSTRAINT slots_trigger_check
    CHECK (trigger IN ('schedule', 'manual', 'backfill'));
DROP TABLE services;
DELETE FROM tasks WHERE schedule_kind = 'service';
ALTER TABLE tasks DROP CONSTRAINT tasks_schedule_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_schedule_kind_check
    CHECK (schedule_kind IN ('cron', 'dynamic', 'manual'));
