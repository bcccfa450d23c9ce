ALTER TABLE tasks DROP COLUMN jitter_ms;
DELETE FROM slots WHERE trigger = 'backfill';
ALTER TABLE slots DROP CONSTRAINT slots_trigger_check;
ALTER TABLE slots ADD CONSTRAINT slots_trigger_check CHECK (trigger IN ('schedule', 'manual'));
DELETE FROM pulses WHERE kind = 'backfill';
ALTER TABLE pulses DROP CONSTRAINT pulses_kind_check;
ALTER TABLE pulses ADD CONSTRAINT pulses_kind_check CHECK (kind IN ('pulse', 'manual'));
DROP INDEX tasks_paused_until_idx;
ALTER TABLE tasks DROP COLUMN paused_until;
