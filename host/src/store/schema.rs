//! Diesel's view of the tables in `migrations/` (kept in step with them by hand;
//! the store tests load every table through these definitions, so a drift fails).
//! `tasks.changed_xid` (an `xid8`) is left out on purpose: a trigger sets it and
//! only hand-written SQL reads it.
#![allow(missing_docs)]

diesel::table! {
    plugins (id) {
        id -> Int8,
        name -> Text,
        active_version_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    plugin_versions (id) {
        id -> Int8,
        plugin_id -> Int8,
        version -> Int4,
        declared_version -> Text,
        description -> Text,
        sha256 -> Text,
        size_bytes -> Int8,
        wit_package -> Text,
        component -> Nullable<Bytea>,
        manifest -> Jsonb,
        created_at -> Timestamptz,
        pruned_at -> Nullable<Timestamptz>,
        changes -> Jsonb,
    }
}

diesel::table! {
    tasks (id) {
        id -> Int8,
        plugin_id -> Int8,
        plugin_version_id -> Int8,
        name -> Text,
        active -> Bool,
        schedule_kind -> Text,
        cron_expression -> Nullable<Text>,
        timezone -> Nullable<Text>,
        enabled -> Bool,
        priority -> Int4,
        definition_id -> Int8,
        overlap -> Text,
        catch_up -> Text,
        starting_deadline_ms -> Nullable<Int8>,
        depends_on -> Array<Text>,
        dynamic_interval_secs -> Nullable<Int4>,
        schedule_since -> Timestamptz,
        paused_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        tags -> Array<Text>,
        reserve_memory_bytes -> Nullable<Int8>,
        reserve_cpu_millicores -> Nullable<Int4>,
        concurrency_key -> Nullable<Text>,
        concurrency_limit -> Nullable<Int4>,
        paused_until -> Nullable<Timestamptz>,
        jitter_ms -> Nullable<Int8>,
        paused_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    concurrency_holds (key) {
        key -> Text,
        until -> Timestamptz,
    }
}

diesel::table! {
    pulses (id) {
        id -> Int8,
        kind -> Text,
        received_at -> Timestamptz,
        source -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        response -> Nullable<Jsonb>,
        errors -> Jsonb,
        max_lateness_ms -> Nullable<Int8>,
        due -> Int4,
        claimed -> Int4,
        skipped -> Int4,
        missed -> Int4,
        duration_ms -> Nullable<Float8>,
        complete -> Bool,
    }
}

diesel::table! {
    slots (id) {
        id -> Int8,
        task_id -> Int8,
        scheduled_for -> Timestamptz,
        pulse_id -> Nullable<Int8>,
        trigger -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    runs (id) {
        id -> Int8,
        slot_id -> Int8,
        task_id -> Int8,
        plugin_version_id -> Int8,
        attempt -> Int4,
        status -> Text,
        priority -> Int4,
        scheduled_for -> Timestamptz,
        not_before -> Timestamptz,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        lateness_ms -> Nullable<Int8>,
        failure_type -> Nullable<Text>,
        error -> Nullable<Text>,
        skip_reason -> Nullable<Text>,
        host_id -> Nullable<Text>,
        cancel_requested_at -> Nullable<Timestamptz>,
        depends_on_runs -> Array<Int8>,
        retry_of -> Nullable<Int8>,
        definition_id -> Int8,
        process_groups -> Array<Int4>,
        start_deadline -> Nullable<Timestamptz>,
        overrides -> Nullable<Jsonb>,
    }
}

diesel::table! {
    hook_failures (task_id, hook) {
        task_id -> Int8,
        hook -> Text,
        consecutive -> Int4,
        total -> Int4,
        last_failed_at -> Nullable<Timestamptz>,
        last_errors -> Jsonb,
    }
}

diesel::table! {
    step_executions (id) {
        id -> Int8,
        run_id -> Int8,
        phase -> Text,
        step_index -> Int4,
        name -> Text,
        kind -> Text,
        status -> Text,
        exit_code -> Nullable<Int4>,
        signal -> Nullable<Int4>,
        stdout -> Bytea,
        stderr -> Bytea,
        stdout_bytes -> Int8,
        stderr_bytes -> Int8,
        stdout_truncated -> Bool,
        stderr_truncated -> Bool,
        stdout_json -> Nullable<Jsonb>,
        error -> Nullable<Text>,
        started_at -> Timestamptz,
        finished_at -> Timestamptz,
        duration_ms -> Float8,
        plan -> Nullable<Jsonb>,
        cpu_user_ms -> Nullable<Float8>,
        cpu_system_ms -> Nullable<Float8>,
        peak_memory_bytes -> Nullable<Int8>,
        peak_processes -> Nullable<Int4>,
        schema_errors -> Nullable<Jsonb>,
    }
}

diesel::table! {
    run_events (id) {
        id -> Int8,
        run_id -> Int8,
        at -> Timestamptz,
        kind -> Text,
        detail -> Jsonb,
    }
}

diesel::table! {
    task_definitions (id) {
        id -> Int8,
        plugin_version_id -> Int8,
        name -> Text,
        format -> Int4,
        definition -> Jsonb,
    }
}

diesel::table! {
    dynamic_asks (task_id) {
        task_id -> Int8,
        asked_at -> Timestamptz,
    }
}

diesel::table! {
    hosts (id) {
        id -> Text,
        machine -> Text,
        pid -> Int4,
        started_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
        lease_ms -> Int8,
        stopped_at -> Nullable<Timestamptz>,
        lost_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    run_stats (task_id, hour, status) {
        task_id -> Int8,
        hour -> Timestamptz,
        status -> Text,
        runs -> Int8,
        duration_count -> Int8,
        duration_max_ms -> Nullable<Float8>,
        duration_hist -> Array<Int8>,
        lateness_count -> Int8,
        lateness_hist -> Array<Int8>,
    }
}

diesel::table! {
    step_output_live (run_id, phase, step_index) {
        run_id -> Int8,
        phase -> Text,
        step_index -> Int4,
        name -> Text,
        stdout -> Bytea,
        stderr -> Bytea,
        stdout_bytes -> Int8,
        stderr_bytes -> Int8,
        started_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    run_stats_pending (id) {
        id -> Int8,
        run_id -> Int8,
        task_id -> Int8,
        status -> Text,
        at -> Timestamptz,
        duration_ms -> Nullable<Float8>,
        lateness_ms -> Nullable<Float8>,
    }
}

diesel::table! {
    run_totals (task_id, status) {
        task_id -> Int8,
        status -> Text,
        runs -> Int8,
    }
}

diesel::table! {
    task_marks (task_id) {
        task_id -> Int8,
        last_success_at -> Nullable<Timestamptz>,
        last_success_run -> Nullable<Int8>,
        last_failure_at -> Nullable<Timestamptz>,
        last_failure_run -> Nullable<Int8>,
    }
}

diesel::joinable!(plugin_versions -> plugins (plugin_id));
diesel::joinable!(task_definitions -> plugin_versions (plugin_version_id));
diesel::joinable!(dynamic_asks -> tasks (task_id));
diesel::joinable!(tasks -> plugins (plugin_id));
diesel::joinable!(slots -> tasks (task_id));
diesel::joinable!(runs -> tasks (task_id));
diesel::joinable!(runs -> slots (slot_id));
diesel::joinable!(step_executions -> runs (run_id));
diesel::joinable!(run_events -> runs (run_id));
diesel::joinable!(hook_failures -> tasks (task_id));

diesel::allow_tables_to_appear_in_same_query!(
    plugins,
    plugin_versions,
    tasks,
    pulses,
    slots,
    runs,
    step_executions,
    run_events,
    hook_failures,
    task_definitions,
    dynamic_asks,
    hosts,
    run_stats,
    run_stats_pending,
    run_totals,
    step_output_live,
    task_marks,
);

diesel::table! {
    alerts (id) {
        id -> Int8,
        kind -> Text,
        dedupe_key -> Text,
        task_id -> Nullable<Int8>,
        run_id -> Nullable<Int8>,
        webhook -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    alert_attempts (id) {
        id -> Int8,
        alert_id -> Int8,
        attempt -> Int4,
        at -> Timestamptz,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        duration_ms -> Float8,
    }
}

diesel::table! {
    services (id) {
        id -> Int8,
        plugin_id -> Int8,
        name -> Text,
        task_id -> Int8,
        host_id -> Nullable<Text>,
        lease_until -> Nullable<Timestamptz>,
        acquired_at -> Nullable<Timestamptz>,
        state -> Text,
        state_since -> Timestamptz,
        run_id -> Nullable<Int8>,
        restarts -> Int4,
        backoff_until -> Nullable<Timestamptz>,
        last_exit_at -> Nullable<Timestamptz>,
        last_exit_status -> Nullable<Text>,
        last_exit_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        recent_exits -> Array<Timestamptz>,
        flapping_since -> Nullable<Timestamptz>,
    }
}
