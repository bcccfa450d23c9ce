//! The write-behind journal of this host's runs. Everything a running run
//! records (each finished process, its live process groups, hook outcomes, and
//! finally how it ended) goes into one ordered queue that a single writer
//! flushes to PostgreSQL in batches, one transaction per batch. That keeps a
//! run's records in order, costs one transaction for many runs instead of
//! several per run, and carries a database outage: while PostgreSQL is away
//! the records wait here (the runs stay `running` in the database, held by
//! this host's heartbeat) and are written, with the times they happened, when
//! it returns. Only a crash of this host loses what was not yet written; its
//! runs are then recovered as `host_lost` and retried by policy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::store::models::NewStepExecution;
use crate::store::{hooks, runs, Db, StoreResult, Tx};

use super::policy;
use super::settle::{self, Ending};
use crate::store::finish::ScheduledRetry;

/// What recording a run's end did.
#[derive(Debug, Clone, Default)]
pub(super) struct Recorded {
    /// False when the run was no longer running on this host: another host
    /// declared this one lost and finished it.
    pub recorded: bool,
    /// Its next attempt, when one was queued.
    pub retry: Option<ScheduledRetry>,
    /// Its final status and milliseconds from start to finish, when recorded.
    pub outcome: Option<(String, Option<f64>)>,
}

/// Records written per transaction at most.
const BATCH: usize = 512;
/// Captured output written per transaction at most (a process can carry two
/// output caps' worth): a backlog after an outage is written in pieces.
const BATCH_BYTES: usize = 32 << 20;
/// Attempts at a record that fails for a reason retrying may not cure, before
/// it is given up.
const ATTEMPTS: u32 = 3;
/// First wait before writing again after the database was unavailable.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two attempts while the database is unavailable.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One thing a run records.
pub(super) enum Entry {
    /// A finished process.
    Step(Box<NewStepExecution>),
    /// The run's live process groups now.
    Groups { run_id: i64, groups: Vec<i32> },
    /// An exec hook's outcome (None: it succeeded).
    Hook {
        task_id: i64,
        run_id: i64,
        hook: &'static str,
        error: Option<String>,
    },
    /// How the run ended; `settled` hears what recording it set in motion.
    End {
        ending: Ending,
        settled: Option<oneshot::Sender<Recorded>>,
    },
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(super) struct Journal {
    sender: mpsc::UnboundedSender<Entry>,
    pending: Arc<AtomicUsize>,
    flushed: Arc<Notify>,
}

impl Journal {
    /// Starts the writer. `pause_after` is the hook-failure threshold;
    /// `written` is told after every batch (runs may have become claimable).
    pub fn start(db: Db, pause_after: u32, written: Arc<Notify>) -> Journal {
        let (sender, receiver) = mpsc::unbounded_channel();
        let journal = Journal {
            sender,
            pending: Arc::default(),
            flushed: Arc::default(),
        };
        let writer = Writer {
            db,
            pause_after,
            written,
            pending: Arc::clone(&journal.pending),
            flushed: Arc::clone(&journal.flushed),
        };
        tokio::spawn(writer.run(receiver));
        journal
    }

    /// Queues a record.
    pub fn record(&self, entry: Entry) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.sender.send(entry).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("the journal writer stopped; a record is lost");
        }
    }

    /// Waits until everything queued so far is written.
    pub async fn flushed(&self) {
        loop {
            let notified = self.flushed.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct Writer {
    db: Db,
    pause_after: u32,
    written: Arc<Notify>,
    pending: Arc<AtomicUsize>,
    flushed: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Entry>) {
        while let Some(first) = receiver.recv().await {
            let mut bytes = first.size();
            let mut batch = vec![first];
            while batch.len() < BATCH && bytes < BATCH_BYTES {
                match receiver.try_recv() {
                    Ok(entry) => {
                        bytes += entry.size();
                        batch.push(entry);
                    }
                    Err(_) => break,
                }
            }
            let count = batch.len();
            self.write(batch).await;
            self.pending.fetch_sub(count, Ordering::SeqCst);
            self.flushed.notify_waiters();
            self.written.notify_one();
        }
    }

    /// Writes a batch in one transaction, retrying while the database is
    /// unavailable or the transaction lost a race. A batch that fails otherwise
    /// is written entry by entry, so one bad record cannot take others with it.
    async fn write(&self, batch: Vec<Entry>) {
        let (batch, notify) = detach_listeners(batch);
        let batch = Arc::new(batch);
        let whole = Arc::clone(&batch);
        let recorded = match self.retrying(move || Arc::clone(&whole), false).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::error!(error = %e, "writing run records failed; writing them one by one");
                self.write_one_by_one(&batch).await
            }
        };
        // Counted once committed: a transaction retried above counts once.
        for (status, duration_ms) in recorded.values().filter_map(|r| r.outcome.as_ref()) {
            crate::metrics::run_finished(status, *duration_ms);
        }
        // A listener whose end was given up hears nothing (its sender drops).
        for (run_id, listener) in notify {
            if let Some(r) = recorded.get(&run_id) {
                let _ = listener.send(r.clone());
            }
        }
    }

    async fn write_one_by_one(&self, batch: &Arc<Vec<Record>>) -> HashMap<i64, Recorded> {
        let mut recorded = HashMap::new();
        for index in 0..batch.len() {
            let all = Arc::clone(batch);
            match self
                .retrying(move || Arc::new(all[index..=index].to_vec()), true)
                .await
            {
                Ok(r) => recorded.extend(r),
                Err(e) => tracing::error!(error = %e, "a run record failed {ATTEMPTS} times and is given up"),
            }
        }
        recorded
    }

    /// Applies the records `entries` gives until that works: without end while
    /// the failure is transient (the database away, a deadlock), and up to
    /// [`ATTEMPTS`] times otherwise when `persist` (else once).
    async fn retrying(
        &self,
        entries: impl Fn() -> Arc<Vec<Record>>,
        persist: bool,
    ) -> StoreResult<HashMap<i64, Recorded>> {
        let (mut wait, mut failures) = (RETRY_FIRST, 0);
        loop {
            let (items, pause_after) = (entries(), self.pause_after);
            match self.db.run(move |tx| apply(tx, &items, pause_after)).await {
                Ok(recorded) => return Ok(recorded),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "database unavailable; run records wait in the journal");
                }
                Err(e) => {
                    failures += 1;
                    if !persist || failures >= ATTEMPTS {
                        return Err(e);
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }
}

impl Entry {
    /// Roughly how many bytes writing it sends.
    fn size(&self) -> usize {
        match self {
            Entry::Step(step) => step.stdout.len() + step.stderr.len() + 512,
            _ => 128,
        }
    }
}

/// An entry as the writer keeps it: the record without its listener.
#[derive(Clone)]
enum Record {
    Step(Box<NewStepExecution>),
    Groups {
        run_id: i64,
        groups: Vec<i32>,
    },
    Hook {
        task_id: i64,
        run_id: i64,
        hook: &'static str,
        error: Option<String>,
    },
    End(Ending),
}

/// Splits a batch into its records and the listeners of its ends.
fn detach_listeners(batch: Vec<Entry>) -> (Vec<Record>, Vec<(i64, oneshot::Sender<Recorded>)>) {
    let mut listeners = Vec::new();
    let records = batch
        .into_iter()
        .map(|entry| match entry {
            Entry::End { ending, settled } => {
                if let Some(listener) = settled {
                    listeners.push((ending.end.run_id, listener));
                }
                Record::End(ending)
            }
            Entry::Step(step) => Record::Step(step),
            Entry::Groups { run_id, groups } => Record::Groups { run_id, groups },
            Entry::Hook {
                task_id,
                run_id,
                hook,
                error,
            } => Record::Hook {
                task_id,
                run_id,
                hook,
                error,
            },
        })
        .collect();
    (records, listeners)
}

/// Writes the records in order of kind: process groups, processes, hook
/// outcomes, then ends (a run's end is always its last record).
fn apply(tx: &mut Tx<'_>, batch: &[Record], pause_after: u32) -> StoreResult<HashMap<i64, Recorded>> {
    let mut groups: HashMap<i64, Vec<i32>> = HashMap::new();
    let mut steps = Vec::new();
    let mut endings = Vec::new();
    for record in batch {
        match record {
            Record::Groups { run_id, groups: g } => _ = groups.insert(*run_id, g.clone()),
            Record::Step(step) => steps.push((**step).clone()),
            Record::End(ending) => endings.push(ending.clone()),
            Record::Hook { .. } => {}
        }
    }
    runs::set_process_groups(tx, &groups.into_iter().collect::<Vec<_>>())?;
    runs::record_steps(tx, &steps)?;
    for record in batch {
        if let Record::Hook {
            task_id,
            run_id,
            hook,
            error,
        } = record
        {
            let consecutive = hooks::record(tx, *task_id, hook, error.as_deref())?;
            let reason = error
                .as_deref()
                .and_then(|e| policy::pause_reason(hook, consecutive, pause_after, e));
            if let Some(reason) = reason {
                if hooks::pause(tx, *task_id, &reason)? {
                    tracing::warn!(task.id = task_id, run.id = run_id, %reason, "task paused");
                }
            }
        }
    }
    let settled = settle::finish(tx, &endings)?;
    if !settled.skipped.is_empty() {
        tracing::info!(skipped = ?settled.skipped, "runs waiting for a failed run were skipped");
    }
    Ok(endings
        .iter()
        .map(|e| {
            let id = e.end.run_id;
            let recorded = Recorded {
                recorded: settled.recorded.contains(&id),
                retry: settled.retries.iter().find(|r| r.retry_of == id).cloned(),
                outcome: settled
                    .outcomes
                    .iter()
                    .find(|o| o.0 == id)
                    .map(|o| (o.1.clone(), o.2)),
            };
            (id, recorded)
        })
        .collect())
}
