//! Cgroup work done off a step's path, on a thread of the host's own: a step's
//! end is recorded without waiting for the kernel to free its cgroups or to
//! empty its memory cell. Inline when that thread cannot be started.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::cells::{Cell, Cells};
use super::cgroup;

/// How often a cell whose last tasks are still exiting is looked at again.
const RETRY_EVERY: Duration = Duration::from_millis(10);

/// How long a cell may keep tasks before it is given up (and removed once it
/// has none).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// What a process's end leaves to do.
struct Job {
    /// Cgroups to remove with their descendants (see [`cgroup::remove`]).
    remove: Vec<PathBuf>,
    /// Cgroups to remove once their last tasks are gone (tried again until
    /// they are, or for [`GIVE_UP_AFTER`]).
    remove_when_empty: Vec<PathBuf>,
    /// Cells to make fresh and give back.
    recycle: Vec<(Arc<Cells>, Cell)>,
}

/// Has `dirs` removed (as [`cgroup::remove`]) off the caller's path. A run's
/// own cgroup is removed after its processes', and takes any of theirs the
/// janitor has not reached yet.
pub fn remove_later(dirs: Vec<PathBuf>) {
    release_later(dirs, Vec::new(), Vec::new());
}

/// [`remove_later`] for `dirs`; has each of `when_empty` removed once no task
/// is left in it, and each cell made fresh and given back to its cells.
pub fn release_later(dirs: Vec<PathBuf>, when_empty: Vec<PathBuf>, cells: Vec<(Arc<Cells>, Cell)>) {
    send(Job {
        remove: dirs,
        remove_when_empty: when_empty,
        recycle: cells,
    });
}

fn send(job: Job) {
    static JANITOR: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    let janitor = JANITOR.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("cgroup-janitor".into());
        thread.spawn(move || work(receiver)).ok().map(|_| sender)
    });
    let unsent = match janitor {
        Some(sender) => sender.send(job).err().map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = unsent {
        let mut pending = Pending::default();
        pending.take(job);
        // No thread to try again later: what is still busy is given up.
        for (_, _, cell) in pending.cells {
            cgroup::remove(&cell.dir);
        }
    }
}

/// A cell waiting for its last tasks to be gone, since when.
type Waiting = (Instant, Arc<Cells>, Cell);

/// What could not be done yet: cells still holding tasks, and cgroups that
/// could not be removed (a task still exiting), each since when.
#[derive(Default)]
struct Pending {
    cells: Vec<Waiting>,
    dirs: Vec<(Instant, PathBuf)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.dirs.is_empty()
    }

    fn take(&mut self, job: Job) {
        job.remove.iter().for_each(|dir| cgroup::remove(dir));
        for dir in job.remove_when_empty {
            if !remove(&dir) {
                self.dirs.push((Instant::now(), dir));
            }
        }
        for (cells, cell) in job.recycle {
            if let Err(cell) = cells.recycle(cell) {
                self.cells.push((Instant::now(), cells, cell));
            }
        }
    }

    /// Tries everything again; what stays busy for too long is given up.
    fn retry(&mut self) {
        for (since, cells, cell) in std::mem::take(&mut self.cells) {
            match cells.recycle(cell) {
                Ok(()) => {}
                Err(cell) if since.elapsed() < GIVE_UP_AFTER => self.cells.push((since, cells, cell)),
                Err(cell) => {
                    tracing::warn!(cgroup = %cell.dir.display(), "a cell still holds tasks: given up");
                    cgroup::remove(&cell.dir);
                }
            }
        }
        self.dirs
            .retain(|(since, dir)| !remove(dir) && since.elapsed() < GIVE_UP_AFTER);
    }
}

/// Removes `dir` and what is below it; whether it is gone.
fn remove(dir: &std::path::Path) -> bool {
    cgroup::remove(dir);
    !dir.exists()
}

fn work(jobs: mpsc::Receiver<Job>) {
    let mut pending = Pending::default();
    let mut tried = Instant::now();
    loop {
        let next = if pending.is_empty() {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(RETRY_EVERY)
        };
        match next {
            Ok(job) => pending.take(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Also while jobs keep coming faster than the retry period.
        if !pending.is_empty() && tried.elapsed() >= RETRY_EVERY {
            pending.retry();
            tried = Instant::now();
        }
    }
}
