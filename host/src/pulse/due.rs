//! Which occurrences of a task a pulse runs and which it records as missed:
//! the catch-up policy and the starting deadline, as pure functions.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::spec::CatchUp;

/// Why a slot was recorded as missed instead of run (the same reason a
/// queued run gets when its deadline passes before it can start).
pub use crate::store::queue::DEADLINE_EXCEEDED;
/// An older occurrence under catch-up `latest`.
pub const SUPERSEDED: &str = "superseded_by_newer_slot";
/// An occurrence that was not on time under catch-up `none`.
pub const NOT_ON_TIME: &str = "catch_up_none";

/// A task's policies as the pulse applies them.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// latest, all or none.
    pub catch_up: CatchUp,
    /// Slots later than this are missed whatever the catch-up policy.
    pub starting_deadline: Option<Duration>,
    /// Under catch-up `none`, how late the newest slot may be and still run.
    pub on_time: Duration,
}

/// What to do with one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Claim it and queue a run.
    Run,
    /// Claim it and record it as missed, with this reason.
    Missed(&'static str),
}

/// The verdict for each occurrence (ascending) of one task at `now`.
pub fn classify(occurrences: &[DateTime<Utc>], now: DateTime<Utc>, policy: Policy) -> Vec<Verdict> {
    let newest = occurrences.len().saturating_sub(1);
    occurrences
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let late = now - *slot;
            if policy.starting_deadline.is_some_and(|d| late > d) {
                return Verdict::Missed(DEADLINE_EXCEEDED);
            }
            match policy.catch_up {
                CatchUp::All => Verdict::Run,
                CatchUp::Latest if i == newest => Verdict::Run,
                CatchUp::Latest => Verdict::Missed(SUPERSEDED),
                CatchUp::None if i == newest && late <= policy.on_time => Verdict::Run,
                CatchUp::None => Verdict::Missed(NOT_ON_TIME),
            }
        })
        .collect()
}

/// How late the occurrence `slot` of the task `identity` (`plugin/task`)
/// starts under a jitter of at most `max_ms`: a hash of both, so every
/// replica and restart picks the same delay for a slot, and different tasks
/// due at the same instant spread out.
pub fn jitter(identity: &str, slot: DateTime<Utc>, max_ms: i64) -> Duration {
    if max_ms <= 0 {
        return Duration::zero();
    }
    let digest = Sha256::digest(format!("{identity}\n{}", slot.timestamp()));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let spread = u64::from_be_bytes(first) % (max_ms as u64 + 1);
    Duration::milliseconds(spread as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(n: i64) -> Vec<DateTime<Utc>> {
        let base = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        (0..n).map(|i| base + Duration::minutes(i)).collect()
    }

    fn policy(catch_up: CatchUp) -> Policy {
        Policy {
            catch_up,
            starting_deadline: None,
            on_time: Duration::seconds(90),
        }
    }

    #[test]
    fn latest_runs_the_newest_missed_slot_and_records_the_others() {
        let slots = minutes(4);
        let now = slots[3] + Duration::seconds(5);
        let got = classify(&slots, now, policy(CatchUp::Latest));
        assert_eq!(
            got,
            [
                Verdict::Missed(SUPERSEDED),
                Verdict::Missed(SUPERSEDED),
                Verdict::Missed(SUPERSEDED),
                Verdict::Run
            ]
        );
    }

    #[test]
    fn all_runs_every_slot_and_none_runs_only_an_on_time_one() {
        let slots = minutes(3);
        assert_eq!(
            classify(&slots, slots[2], policy(CatchUp::All)),
            [Verdict::Run; 3]
        );
        let on_time = classify(&slots, slots[2] + Duration::seconds(10), policy(CatchUp::None));
        assert_eq!(
            on_time,
            [
                Verdict::Missed(NOT_ON_TIME),
                Verdict::Missed(NOT_ON_TIME),
                Verdict::Run
            ]
        );
        let late = classify(
            &slots[2..],
            slots[2] + Duration::minutes(10),
            policy(CatchUp::None),
        );
        assert_eq!(late, [Verdict::Missed(NOT_ON_TIME)]);
    }

    #[test]
    fn jitter_is_fixed_per_task_and_slot_within_its_bound() {
        let slots = minutes(50);
        let delays: Vec<Duration> = slots.iter().map(|s| jitter("p/a", *s, 30_000)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::zero() && *d <= Duration::seconds(30)));
        // Deterministic: the same slot gets the same delay every time.
        assert_eq!(delays[7], jitter("p/a", slots[7], 30_000));
        // Spread: fifty slots do not share one delay, nor do two tasks.
        assert!(delays.iter().any(|d| *d != delays[0]));
        assert!(slots
            .iter()
            .any(|s| jitter("p/b", *s, 30_000) != jitter("p/a", *s, 30_000)));
        assert_eq!(jitter("p/a", slots[0], 0), Duration::zero());
    }

    #[test]
    fn the_starting_deadline_overrides_catch_up() {
        let slots = minutes(3);
        let p = Policy {
            starting_deadline: Some(Duration::seconds(30)),
            ..policy(CatchUp::All)
        };
        let got = classify(&slots, slots[2] + Duration::seconds(20), p);
        assert_eq!(
            got,
            [
                Verdict::Missed(DEADLINE_EXCEEDED),
                Verdict::Missed(DEADLINE_EXCEEDED),
                Verdict::Run
            ]
        );
    }
}
