//! Compiled components in memory, bounded by the size of their machine code:
//! when the total passes the bound, the least recently used are dropped (they
//! load again from the artifact directory when next needed).
//!
//! An entry is ready, being prepared (every caller waits for the one
//! preparation), or failed (remembered for a while, so a pulse reports the
//! failure instead of starting the same doomed work each time). A component
//! compiled for an upload is *provisional* until the upload is recorded: a
//! failed upload forgets it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{PluginError, Pre};

/// How long a failed preparation is remembered before it may be tried again.
pub(super) const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// A preparation's outcome, as its waiters see it.
pub(super) type Outcome = Option<Result<Pre, PluginError>>;

/// Where a component stands on this host.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// Compiled and linked: a call costs an instantiation.
    Ready,
    /// Being loaded or compiled.
    Warming,
    /// The last preparation failed with this error.
    Failed(PluginError),
    /// Not here.
    Absent,
}

enum Entry {
    Ready {
        pre: Pre,
        weight: usize,
        used: u64,
        provisional: bool,
    },
    Pending(watch::Receiver<Outcome>),
    Failed(PluginError, Instant),
}

/// What [`Cache::begin`] found.
pub(super) enum Begin {
    /// Already prepared.
    Ready(Pre),
    /// Someone prepares it: wait on this.
    Wait(watch::Receiver<Outcome>),
    /// Nobody does: the caller prepares it and reports through this.
    Start(watch::Sender<Outcome>),
}

/// The map and its bound.
pub(super) struct Cache {
    entries: HashMap<String, Entry>,
    limit_bytes: usize,
    clock: u64,
}

impl Cache {
    /// An empty cache holding at most `limit_bytes` of machine code (at least
    /// one component, however large).
    pub fn new(limit_bytes: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            limit_bytes,
            clock: 0,
        }
    }

    /// The prepared component, marked as just used.
    pub fn ready(&mut self, sha: &str) -> Option<Pre> {
        self.clock += 1;
        match self.entries.get_mut(sha) {
            Some(Entry::Ready { pre, used, .. }) => {
                *used = self.clock;
                Some(pre.clone())
            }
            _ => None,
        }
    }

    /// Where `sha` stands.
    pub fn readiness(&self, sha: &str) -> Readiness {
        match self.entries.get(sha) {
            Some(Entry::Ready { .. }) => Readiness::Ready,
            Some(Entry::Pending(_)) => Readiness::Warming,
            Some(Entry::Failed(error, at)) if at.elapsed() < RETRY_FAILED_AFTER => {
                Readiness::Failed(error.clone())
            }
            _ => Readiness::Absent,
        }
    }

    /// Joins or starts the preparation of `sha`. With `retry_failed` a
    /// remembered failure is tried again at once (an upload brings the bytes).
    pub fn begin(&mut self, sha: &str, retry_failed: bool) -> Result<Begin, PluginError> {
        if let Some(pre) = self.ready(sha) {
            return Ok(Begin::Ready(pre));
        }
        match self.entries.get(sha) {
            Some(Entry::Pending(waiting)) => return Ok(Begin::Wait(waiting.clone())),
            Some(Entry::Failed(error, at)) if !retry_failed && at.elapsed() < RETRY_FAILED_AFTER => {
                return Err(error.clone())
            }
            _ => {}
        }
        let (done, waiting) = watch::channel(None);
        self.entries.insert(sha.to_string(), Entry::Pending(waiting));
        Ok(Begin::Start(done))
    }

    /// Records how a preparation ended; keeps the bound.
    pub fn finish(&mut self, sha: &str, outcome: &Result<(Pre, usize), PluginError>, provisional: bool) {
        self.clock += 1;
        let entry = match outcome {
            Ok((pre, weight)) => Entry::Ready {
                pre: pre.clone(),
                weight: *weight,
                used: self.clock,
                provisional,
            },
            // A failed upload leaves nothing behind; a failed warm-up is remembered.
            Err(_) if provisional => {
                self.entries.remove(sha);
                return;
            }
            Err(error) => Entry::Failed(error.clone(), Instant::now()),
        };
        self.entries.insert(sha.to_string(), entry);
        self.evict();
    }

    /// The upload of `sha` was recorded: its component stays like any other.
    pub fn confirm(&mut self, sha: &str) {
        if let Some(Entry::Ready { provisional, .. }) = self.entries.get_mut(sha) {
            *provisional = false;
        }
    }

    /// The upload of `sha` failed: forgets its component unless it was
    /// confirmed meanwhile (by another upload of the same bytes).
    pub fn forget_provisional(&mut self, sha: &str) {
        if let Some(Entry::Ready {
            provisional: true, ..
        }) = self.entries.get(sha)
        {
            self.entries.remove(sha);
        }
    }

    /// Bytes of machine code held.
    pub fn held_bytes(&self) -> usize {
        self.entries
            .values()
            .map(|e| match e {
                Entry::Ready { weight, .. } => *weight,
                _ => 0,
            })
            .sum()
    }

    /// Drops least recently used ready components until the total fits,
    /// keeping at least the newest one.
    fn evict(&mut self) {
        while self.held_bytes() > self.limit_bytes {
            let victim = self
                .entries
                .iter()
                .filter_map(|(sha, e)| match e {
                    Entry::Ready { used, .. } => Some((*used, sha.clone())),
                    _ => None,
                })
                .min();
            let ready = self
                .entries
                .values()
                .filter(|e| matches!(e, Entry::Ready { .. }))
                .count();
            match victim {
                Some((_, sha)) if ready > 1 => {
                    tracing::info!(component = %sha, "compiled component dropped from memory (PULSEHOST_PLUGIN_CACHE_BYTES)");
                    self.entries.remove(&sha);
                }
                _ => break,
            }
        }
    }
}
