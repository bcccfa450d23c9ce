-- A manual run's chosen input: {"stdin_json": <JSON>, "envs": {"NAME": "value"}}
-- (kept by its retries).
ALTER TABLE runs ADD COLUMN overrides JSONB;
-- How a process's stdin or stdout broke its declared JSON Schema:
-- [{"at": "<JSON Pointer>", "message": "..."}].
ALTER TABLE step_executions ADD COLUMN schema_errors JSONB;
