//! Capped capture of one output stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Size of one read from a pipe.
const READ_CHUNK: usize = 64 * 1024;

/// What was kept of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first `cap` bytes (the last ones for a rolling log).
    pub bytes: Vec<u8>,
    /// Every byte the process wrote (kept or not).
    pub total: u64,
    /// More was written than kept, or the stream was abandoned before its end.
    pub truncated: bool,
}

/// A stream being read in the background.
pub(super) struct Capture {
    pub(super) shared: Arc<Mutex<Captured>>,
    reader: JoinHandle<()>,
}

/// What a running process has written so far, readable while it runs.
#[derive(Clone, Default)]
pub struct LiveOutput {
    stdout: Option<Arc<Mutex<Captured>>>,
    stderr: Option<Arc<Mutex<Captured>>>,
}

impl LiveOutput {
    pub(super) fn of(stdout: Option<&Capture>, stderr: Option<&Capture>) -> LiveOutput {
        LiveOutput {
            stdout: stdout.map(|c| Arc::clone(&c.shared)),
            stderr: stderr.map(|c| Arc::clone(&c.shared)),
        }
    }

    /// Copies of stdout and stderr as captured so far.
    pub fn snapshot(&self) -> (Captured, Captured) {
        let read = |s: &Option<Arc<Mutex<Captured>>>| {
            s.as_ref()
                .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
                .unwrap_or_default()
        };
        (read(&self.stdout), read(&self.stderr))
    }
}

/// Starts reading `pipe` to its end, keeping at most `cap` bytes (the first,
/// or with `rolling` the last) and discarding the rest so the writer never
/// blocks.
pub(super) fn start<R: AsyncRead + Unpin + Send + 'static>(
    mut pipe: R,
    cap: usize,
    rolling: bool,
) -> Capture {
    let shared = Arc::new(Mutex::new(Captured::default()));
    let sink = Arc::clone(&shared);
    let reader = tokio::spawn(async move {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut out = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            out.total += n as u64;
            if rolling {
                keep_last(&mut out, &chunk[..n], cap);
                continue;
            }
            let room = cap.saturating_sub(out.bytes.len());
            out.bytes.extend_from_slice(&chunk[..n.min(room)]);
            out.truncated |= n > room;
        }
    });
    Capture { shared, reader }
}

/// Appends `new` and drops what is older than the last `cap` bytes (marking
/// the stream truncated when something was dropped).
fn keep_last(out: &mut Captured, new: &[u8], cap: usize) {
    out.bytes.extend_from_slice(new);
    if out.bytes.len() > cap {
        let excess = out.bytes.len() - cap;
        out.bytes.drain(..excess);
        out.truncated = true;
    }
}

/// Waits up to `deadline` for the reader to reach the end of its pipe. A reader
/// still blocked then (a process outside the group holds the pipe open) is
/// abandoned: the host keeps what was read and marks the stream truncated.
pub(super) async fn finish(capture: Option<Capture>, deadline: Duration) -> Captured {
    let Some(Capture { shared, mut reader }) = capture else {
        return Captured::default();
    };
    let complete = tokio::time::timeout(deadline, &mut reader).await.is_ok();
    if !complete {
        reader.abort();
    }
    let mut out = std::mem::take(&mut *shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    out.truncated |= !complete;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rolling_capture_keeps_the_last_bytes_and_a_plain_one_the_first() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let last = finish(
            Some(start(std::io::Cursor::new(text.clone()), 1000, true)),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(last.bytes, text[text.len() - 1000..]);
        assert_eq!(last.total, text.len() as u64);
        assert!(last.truncated);
        let first = finish(
            Some(start(std::io::Cursor::new(text.clone()), 1000, false)),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(first.bytes, text[..1000]);
        let short = finish(
            Some(start(std::io::Cursor::new(b"hi".to_vec()), 1000, true)),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!((short.bytes.as_slice(), short.truncated), (&b"hi"[..], false));
    }
}
