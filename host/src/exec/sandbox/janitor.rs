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
    /// Cells to make fresh and give back.
    recycle: Vec<(Arc<Cells>, Cell)>,
}

/// Has `dirs` removed (as [`cgroup::remove`]) off the caller's path. A run's
/// own cgroup is removed after its processes', and takes any of theirs the
/// janitor has not reached yet.
pub fn remove_later(dirs: Vec<PathBuf>) {
    release_later(dirs, Vec::new());
}

/// [`remove_later`] for `dirs`, and has each cell made fresh and given back
/// to its cells once no task is left in it.
pub fn release_later(dirs: Vec<PathBuf>, cells: Vec<(Arc<Cells>, Cell)>) {
    send(Job {
        remove: dirs,
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
        let mut waiting = Vec::new();
        do_job(job, &mut waiting);
        // No thread to try again later: a cell still busy is given up.
        for (_, _, cell) in waiting {
            cgroup::remove(&cell.dir);
        }
    }
}

/// A cell waiting for its last tasks to be gone, since when.
type Waiting = (Instant, Arc<Cells>, Cell);

fn work(jobs: mpsc::Receiver<Job>) {
    let mut waiting: Vec<Waiting> = Vec::new();
    loop {
        let next = if waiting.is_empty() {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(RETRY_EVERY)
        };
        match next {
            Ok(job) => do_job(job, &mut waiting),
            Err(RecvTimeoutError::Timeout) => retry(&mut waiting),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn do_job(job: Job, waiting: &mut Vec<Waiting>) {
    job.remove.iter().for_each(|dir| cgroup::remove(dir));
    for (cells, cell) in job.recycle {
        if let Err(cell) = cells.recycle(cell) {
            waiting.push((Instant::now(), cells, cell));
        }
    }
}

/// Tries each waiting cell again; one busy for too long is given up.
fn retry(waiting: &mut Vec<Waiting>) {
    for (since, cells, cell) in std::mem::take(waiting) {
        match cells.recycle(cell) {
            Ok(()) => {}
            Err(cell) if since.elapsed() < GIVE_UP_AFTER => waiting.push((since, cells, cell)),
            Err(cell) => {
                tracing::warn!(cgroup = %cell.dir.display(), "a memory cell still holds tasks: given up");
                cgroup::remove(&cell.dir);
            }
        }
    }
}
