-- What protected each process (its execution plan) and what it used.
ALTER TABLE step_executions
    ADD COLUMN plan jsonb,
    ADD COLUMN cpu_user_ms double precision,
    ADD COLUMN cpu_system_ms double precision,
    ADD COLUMN peak_memory_bytes bigint,
    ADD COLUMN peak_processes integer;

-- What a task's runs need of a host, and the concurrency key they share.
ALTER TABLE tasks
    ADD COLUMN reserve_memory_bytes bigint,
    ADD COLUMN reserve_cpu_millicores integer,
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer;
CREATE INDEX tasks_concurrency_key_idx ON tasks (concurrency_key) WHERE concurrency_key IS NOT NULL;

-- A key held by a rate-limited run (exit code 75 with retry_after_ms): no run
-- of a task naming it starts before `until`.
CREATE TABLE concurrency_holds (
    key text PRIMARY KEY,
    until timestamptz NOT NULL
);
