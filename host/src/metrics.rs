//! Prometheus metrics: the only module that speaks `prometheus-client`.
//!
//! Two kinds of series. What this process did (runs it executed, pulses it
//! answered, plugin calls it made, runs it recovered from lost hosts, rows its
//! retention deleted) is counted in memory as it happens: sum those over
//! replicas. What the cluster holds (runs finished by task and status since
//! registration, queue depth, runs running, hook failures, the last pulse's
//! age) is read from PostgreSQL's aggregates at scrape time — every replica
//! reports the same values, so take `max` over replicas. No scrape reads
//! history: each of those reads touches one row per task or an index of the
//! live queue.

use std::sync::LazyLock;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a series, as name-value pairs.
type Labels = Vec<(&'static str, String)>;

/// Upper bounds, in seconds, of run duration and lateness buckets.
const RUN_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];
/// Upper bounds, in seconds, of pulse and plugin call buckets.
const CALL_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

struct Process {
    registry: Registry,
    runs_executed: Family<Labels, Counter>,
    run_duration: Histogram,
    run_lateness: Histogram,
    pulses: Family<Labels, Counter>,
    pulse_duration: Histogram,
    plugin_calls: Family<Labels, Counter>,
    plugin_call_duration: Family<Labels, Histogram>,
    host_lost: Counter,
    retention_deleted: Family<Labels, Counter>,
}

static PROCESS: LazyLock<Process> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("pulsehost");
    let runs_executed = Family::<Labels, Counter>::default();
    let run_duration = Histogram::new(RUN_BUCKETS);
    let run_lateness = Histogram::new(RUN_BUCKETS);
    let pulses = Family::<Labels, Counter>::default();
    let pulse_duration = Histogram::new(CALL_BUCKETS);
    let plugin_calls = Family::<Labels, Counter>::default();
    let plugin_call_duration =
        Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(CALL_BUCKETS));
    let host_lost = Counter::default();
    let retention_deleted = Family::<Labels, Counter>::default();
    let r = &mut registry;
    r.register(
        "runs_executed",
        "Runs this host executed to an end, by final status",
        runs_executed.clone(),
    );
    r.register(
        "run_duration_seconds",
        "Start to finish of runs this host executed",
        run_duration.clone(),
    );
    r.register(
        "run_lateness_seconds",
        "How late runs this host started were against their schedule",
        run_lateness.clone(),
    );
    r.register(
        "pulses_handled",
        "Pulses this host answered, by outcome",
        pulses.clone(),
    );
    r.register(
        "pulse_duration_seconds",
        "Time this host took to answer a pulse",
        pulse_duration.clone(),
    );
    r.register(
        "plugin_calls",
        "Plugin calls this host made, by call and outcome",
        plugin_calls.clone(),
    );
    r.register(
        "plugin_call_duration_seconds",
        "Plugin calls this host made, by call",
        plugin_call_duration.clone(),
    );
    r.register(
        "host_lost_recoveries",
        "Runs of lost hosts this host finished as host_lost",
        host_lost.clone(),
    );
    r.register(
        "retention_deleted_rows",
        "Rows this host's retention deleted, by table",
        retention_deleted.clone(),
    );
    Process {
        registry,
        runs_executed,
        run_duration,
        run_lateness,
        pulses,
        pulse_duration,
        plugin_calls,
        plugin_call_duration,
        host_lost,
        retention_deleted,
    }
});

/// A run this host executed ended with `status` after `duration_ms`.
pub fn run_finished(status: &str, duration_ms: Option<f64>) {
    PROCESS
        .runs_executed
        .get_or_create(&vec![("status", status.to_owned())])
        .inc();
    if let Some(ms) = duration_ms {
        PROCESS.run_duration.observe(ms / 1000.0);
    }
}

/// This host started a run `lateness_ms` after its scheduled time.
pub fn run_started(lateness_ms: Option<i64>) {
    if let Some(ms) = lateness_ms {
        PROCESS.run_lateness.observe(ms.max(0) as f64 / 1000.0);
    }
}

/// This host answered a pulse (`ok`, `replayed` or `error`) in `seconds`.
pub fn pulse_handled(outcome: &str, seconds: f64) {
    PROCESS
        .pulses
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
    PROCESS.pulse_duration.observe(seconds);
}

/// This host called a plugin's `call` (describe, should-run), with `outcome`
/// (ok, timeout, trap, out_of_memory, ...), in `seconds`.
pub fn plugin_called(call: &str, outcome: &str, seconds: f64) {
    PROCESS
        .plugin_calls
        .get_or_create(&vec![("call", call.to_owned()), ("outcome", outcome.to_owned())])
        .inc();
    PROCESS
        .plugin_call_duration
        .get_or_create(&vec![("call", call.to_owned())])
        .observe(seconds);
}

/// This host finished `n` runs of lost hosts as host_lost.
pub fn host_lost_recovered(n: usize) {
    PROCESS.host_lost.inc_by(n as u64);
}

/// This host's retention deleted `n` rows of `table`.
pub fn retention_deleted(table: &str, n: usize) {
    PROCESS
        .retention_deleted
        .get_or_create(&vec![("table", table.to_owned())])
        .inc_by(n as u64);
}

/// What the cluster holds, read from PostgreSQL for one scrape.
#[derive(Debug, Default)]
pub struct Cluster {
    /// (plugin, task, status, runs) since each task was registered.
    pub runs_finished: Vec<(String, String, String, i64)>,
    /// Runs waiting to start.
    pub queued: i64,
    /// Runs executing on some host.
    pub running: i64,
    /// (plugin, task, hook, failures) since each task was registered.
    pub hook_failures: Vec<(String, String, String, i64)>,
    /// Seconds since the last complete pulse (None before the first).
    pub last_pulse_age_seconds: Option<f64>,
}

/// Counters of (plugin, task, `third` label, value) rows.
fn per_task(rows: &[(String, String, String, i64)], third: &'static str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (plugin, task, value, n) in rows {
        let labels = vec![
            ("plugin", plugin.clone()),
            ("task", task.clone()),
            (third, value.clone()),
        ];
        family.get_or_create(&labels).inc_by(*n as u64);
    }
    family
}

/// The OpenMetrics text of this process's series and `cluster`'s.
pub fn render(cluster: &Cluster) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("pulsehost");
    registry.register(
        "runs_finished",
        "Runs that reached a final status, by task and status (cluster-wide)",
        per_task(&cluster.runs_finished, "status"),
    );
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    registry.register(
        "queue_depth",
        "Runs queued, waiting to start (cluster-wide)",
        gauge(cluster.queued),
    );
    registry.register(
        "runs_running",
        "Runs executing on some host (cluster-wide)",
        gauge(cluster.running),
    );
    registry.register(
        "hook_failures",
        "Failed provision, cleanup and background hooks, by task (cluster-wide)",
        per_task(&cluster.hook_failures, "hook"),
    );
    if let Some(age) = cluster.last_pulse_age_seconds {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(age);
        registry.register(
            "seconds_since_last_pulse",
            "Age of the last complete pulse (cluster-wide)",
            g,
        );
    }
    let mut text = String::new();
    encode_registry(&mut text, &PROCESS.registry)?;
    encode_registry(&mut text, &registry)?;
    encode_eof(&mut text)?;
    Ok(text)
}
