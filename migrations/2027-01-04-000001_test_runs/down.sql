ALTER TABLE step_executions DROP COLUMN schema_errors;
ALTER TABLE runs DROP COLUMN overrides;
