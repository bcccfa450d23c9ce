-- What protected each process (its execution plan) and what it used.
ALTER TABLE step_executions
    ADD COLUMN plan jsonb,
    ADD COLUMN cpu_user_ms double precision,
    ADD COLUMN cpu_system_ms double precision,
    ADD COLUMN peak_memory_bytes bigint,
    ADD COLUMN peak_processes integer;
