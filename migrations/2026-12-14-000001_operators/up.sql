-- Operators' view: run listings by any single filter without scanning history,
-- statistics from aggregates kept by PostgreSQL itself, and retention.

-- A task's labels, copied from its definition, so runs can be listed by tag.
ALTER TABLE tasks ADD COLUMN tags TEXT[] NOT NULL DEFAULT '{}';
UPDATE tasks t SET tags = ARRAY(SELECT jsonb_array_elements_text(d.definition -> 'tags'))
FROM task_definitions d
WHERE d.id = t.definition_id AND jsonb_typeof(d.definition -> 'tags') = 'array';
CREATE INDEX tasks_tags_idx ON tasks USING gin (tags);

-- Listings are newest first by (created_at, id); each single filter has an
-- index that yields that order, so a page costs the same at any depth.
CREATE INDEX runs_created_idx ON runs (created_at, id);
CREATE INDEX runs_task_created_idx ON runs (task_id, created_at, id);
CREATE INDEX runs_status_created_idx ON runs (status, created_at, id);

-- Statistics: one row per task, hour and final status. A duration or lateness
-- in milliseconds falls in bucket 1 + ceil(log_1.25(ms)) (1 to 100), so a
-- percentile read from the buckets is within 12% of the true one.
CREATE TABLE run_stats (
    task_id BIGINT NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    runs BIGINT NOT NULL DEFAULT 0,
    duration_count BIGINT NOT NULL DEFAULT 0,
    duration_max_ms DOUBLE PRECISION,
    duration_hist BIGINT[] NOT NULL DEFAULT array_fill(0::BIGINT, ARRAY[100]),
    lateness_count BIGINT NOT NULL DEFAULT 0,
    lateness_hist BIGINT[] NOT NULL DEFAULT array_fill(0::BIGINT, ARRAY[100]),
    PRIMARY KEY (task_id, hour, status)
);
CREATE INDEX run_stats_hour_idx ON run_stats (hour);

-- Runs per task and final status since the task was first registered: never
-- pruned, so /metrics exports them as counters without reading history.
CREATE TABLE run_totals (
    task_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    runs BIGINT NOT NULL,
    PRIMARY KEY (task_id, status)
);

-- The latest success and failure of each task.
CREATE TABLE task_marks (
    task_id BIGINT PRIMARY KEY,
    last_success_at TIMESTAMPTZ,
    last_success_run BIGINT,
    last_failure_at TIMESTAMPTZ,
    last_failure_run BIGINT
);

CREATE FUNCTION run_stats_bucket(ms DOUBLE PRECISION) RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(100, greatest(1, 1 + ceil(ln(greatest(ms, 1)) / ln(1.25))::INTEGER))
$$;

-- The 100 buckets of the given values (NULLs are not counted).
CREATE FUNCTION run_stats_hist(vals DOUBLE PRECISION[]) RETURNS BIGINT[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(coalesce(c.n, 0) ORDER BY b)
    FROM generate_series(1, 100) b
    LEFT JOIN (SELECT run_stats_bucket(v) AS bucket, count(*) AS n FROM unnest(vals) v
               WHERE v IS NOT NULL GROUP BY 1) c ON c.bucket = b
$$;

CREATE FUNCTION run_stats_sum(a BIGINT[], b BIGINT[]) RETURNS BIGINT[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(x + y ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS u (x, y, i)
$$;

-- Runs that reached a final status and are not yet in the aggregates. The
-- trigger only appends here: ending a run never waits for another
-- transaction's lock, whatever order runs end in.
CREATE TABLE run_stats_pending (
    id BIGSERIAL PRIMARY KEY,
    run_id BIGINT NOT NULL,
    task_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    duration_ms DOUBLE PRECISION,
    lateness_ms DOUBLE PRECISION
);
CREATE INDEX run_stats_pending_task_idx ON run_stats_pending (task_id);

CREATE FUNCTION run_stats_count(ids BIGINT[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO run_stats_pending (run_id, task_id, status, at, duration_ms, lateness_ms)
    SELECT id, task_id, status, coalesce(finished_at, created_at),
           extract(epoch FROM finished_at - started_at) * 1000, lateness_ms
    FROM runs WHERE id = ANY (ids)
$$;

-- Moves up to `batch` pending runs into the aggregates: per task (and for all
-- tasks, as task 0), hour of finishing and status; totals; latest success and
-- failure. One transaction at a time does this (an advisory lock it tries,
-- never waits for), so the aggregates' rows have one writer. Returns how many
-- it moved (0 as well when another transaction holds the lock).
CREATE FUNCTION run_stats_rollup(batch INTEGER) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    moved BIGINT;
BEGIN
    IF NOT pg_try_advisory_xact_lock(8247196331420613985) THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        DELETE FROM run_stats_pending WHERE id IN (SELECT id FROM run_stats_pending ORDER BY id LIMIT batch)
        RETURNING *
    ), keyed AS (
        SELECT task_id, at, status, duration_ms, lateness_ms FROM taken
        UNION ALL
        SELECT 0, at, status, duration_ms, lateness_ms FROM taken
    ), stats AS (
        INSERT INTO run_stats AS s (task_id, hour, status, runs, duration_count, duration_max_ms,
                                    duration_hist, lateness_count, lateness_hist)
        SELECT task_id, date_trunc('hour', at), status, count(*), count(duration_ms), max(duration_ms),
               run_stats_hist(array_agg(duration_ms)), count(lateness_ms), run_stats_hist(array_agg(lateness_ms))
        FROM keyed GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (task_id, hour, status) DO UPDATE SET
            runs = s.runs + EXCLUDED.runs,
            duration_count = s.duration_count + EXCLUDED.duration_count,
            duration_max_ms = greatest(s.duration_max_ms, EXCLUDED.duration_max_ms),
            duration_hist = run_stats_sum(s.duration_hist, EXCLUDED.duration_hist),
            lateness_count = s.lateness_count + EXCLUDED.lateness_count,
            lateness_hist = run_stats_sum(s.lateness_hist, EXCLUDED.lateness_hist)
    ), totals AS (
        INSERT INTO run_totals AS t (task_id, status, runs)
        SELECT task_id, status, count(*) FROM taken GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (task_id, status) DO UPDATE SET runs = t.runs + EXCLUDED.runs
    ), marks AS (
        INSERT INTO task_marks AS m (task_id, last_success_at, last_success_run, last_failure_at, last_failure_run)
        SELECT task_id,
               max(at) FILTER (WHERE status = 'succeeded'),
               max(run_id) FILTER (WHERE status = 'succeeded'),
               max(at) FILTER (WHERE status IN ('failed', 'timed_out')),
               max(run_id) FILTER (WHERE status IN ('failed', 'timed_out'))
        FROM taken WHERE status IN ('succeeded', 'failed', 'timed_out')
        GROUP BY task_id ORDER BY task_id
        ON CONFLICT (task_id) DO UPDATE SET
            last_success_at = greatest(m.last_success_at, EXCLUDED.last_success_at),
            last_success_run = greatest(m.last_success_run, EXCLUDED.last_success_run),
            last_failure_at = greatest(m.last_failure_at, EXCLUDED.last_failure_at),
            last_failure_run = greatest(m.last_failure_run, EXCLUDED.last_failure_run)
    )
    SELECT count(*) INTO moved FROM taken;
    RETURN moved;
END
$$;

CREATE FUNCTION runs_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM run_stats_count(ARRAY(SELECT id FROM new_rows WHERE status NOT IN ('queued', 'running')));
    RETURN NULL;
END
$$;

CREATE FUNCTION runs_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM run_stats_count(ARRAY(
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.status IN ('queued', 'running') AND n.status NOT IN ('queued', 'running')));
    RETURN NULL;
END
$$;

-- Every way a run reaches a final status passes through one of these two.
CREATE TRIGGER runs_final_insert AFTER INSERT ON runs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runs_count_inserted();
CREATE TRIGGER runs_final_update AFTER UPDATE ON runs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runs_count_updated();

SELECT run_stats_count(ARRAY(SELECT id FROM runs WHERE status NOT IN ('queued', 'running')));
SELECT run_stats_rollup(2147483647);

-- Retention clears retry links to the runs it deletes.
CREATE INDEX runs_retry_of_idx ON runs (retry_of) WHERE retry_of IS NOT NULL;

-- Output of processes still running, flushed by their host every second so
-- the run detail and `runs logs --follow` show it live. A row goes when the
-- process's final record is written.
CREATE TABLE step_output_live (
    run_id BIGINT NOT NULL,
    phase TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    name TEXT NOT NULL,
    stdout BYTEA NOT NULL,
    stderr BYTEA NOT NULL,
    stdout_bytes BIGINT NOT NULL,
    stderr_bytes BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, phase, step_index)
);

-- Retention deletes pulses and slots by age.
CREATE INDEX pulses_received_idx ON pulses (received_at);
CREATE INDEX slots_created_idx ON slots (created_at);
