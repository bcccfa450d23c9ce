ALTER TABLE step_executions
    DROP COLUMN plan,
    DROP COLUMN cpu_user_ms,
    DROP COLUMN cpu_system_ms,
    DROP COLUMN peak_memory_bytes,
    DROP COLUMN peak_processes;
