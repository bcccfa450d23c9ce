//! The runner's rules as plain functions: whether and when a failed run is
//! retried, which waiting runs a failed dependency takes down with it, and
//! when repeated hook failures pause a task. `store/` records what these decide.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::Rng;

use crate::spec::RetryPolicy;
use crate::store::deps::Waiting;
use crate::store::queue::Candidate;

/// Statuses after which a run never succeeds any more.
const UNSUCCESSFUL: [&str; 5] = ["failed", "timed_out", "cancelled", "skipped", "missed"];

/// The delay before attempt `attempt + 1` after attempt `attempt` failed:
/// exponential backoff `min(backoff_ms * 2^(attempt-1), max_backoff_ms)`, of
/// which a random half is jitter (the delay lies between half of it and all of it).
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, rng: &mut impl Rng) -> Duration {
    let doublings = attempt.saturating_sub(1).min(63);
    let base = policy
        .backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_backoff_ms);
    let half = base / 2;
    Duration::from_millis(half + rng.gen_range(0..=base - half))
}

/// The delay before the next attempt of a run that ended with `status` on
/// attempt `attempt`, or None when it is not retried: only failures and
/// timeouts are, while the policy allows another attempt.
pub fn next_attempt(
    policy: Option<&RetryPolicy>,
    status: &str,
    attempt: i32,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let policy = policy?;
    let retryable = matches!(status, "failed" | "timed_out");
    let attempt = attempt.max(1) as u32;
    (retryable && attempt < policy.max_attempts).then(|| retry_delay(policy, attempt, rng))
}

/// Which waiting runs are skipped: a run waiting for a run that ended without
/// success, or for a run skipped by this same cascade, transitively. Each
/// verdict names the dependencies that failed. Runs already retried do not
/// appear as dependencies (their waiters wait for the next attempt).
pub fn cascade(waiting: &[Waiting]) -> Vec<(i64, Vec<i64>)> {
    let mut failed: HashSet<i64> = waiting
        .iter()
        .flat_map(|w| &w.depends_on)
        .filter(|(_, status)| UNSUCCESSFUL.contains(&status.as_str()))
        .map(|(id, _)| *id)
        .collect();
    let mut verdicts: HashMap<i64, Vec<i64>> = HashMap::new();
    loop {
        let before = verdicts.len();
        for w in waiting {
            if verdicts.contains_key(&w.id) {
                continue;
            }
            let failing: Vec<i64> = w
                .depends_on
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| failed.contains(id))
                .collect();
            if !failing.is_empty() {
                failed.insert(w.id);
                verdicts.insert(w.id, failing);
            }
        }
        if verdicts.len() == before {
            break;
        }
    }
    let mut out: Vec<(i64, Vec<i64>)> = verdicts.into_iter().collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

/// What this host can still give runs: memory and CPU not reserved by the
/// runs executing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Bytes.
    pub memory_bytes: i64,
    /// Thousandths of a core.
    pub cpu_millicores: i64,
}

/// Which of the queue's `candidates` (in queue order) start now, at most
/// `limit`: every run of a task whose overlap is `allow`, and at most one run of
/// each exclusive task — only of those `idle` (locked by this host and with no
/// run running); a run whose task names a concurrency key only while the key's
/// `budgets` (locked by this host) has room; and a run that reserves memory or
/// CPU only while it fits the `room` left.
pub fn choose(
    candidates: &[Candidate],
    idle: &[i64],
    budgets: &HashMap<String, i64>,
    mut room: Room,
    limit: usize,
) -> Vec<i64> {
    let mut started = HashSet::new();
    let mut budgets = budgets.clone();
    let mut chosen = Vec::new();
    for c in candidates {
        if chosen.len() == limit {
            break;
        }
        if c.exclusive && (!idle.contains(&c.task_id) || started.contains(&c.task_id)) {
            continue;
        }
        if let Some(key) = &c.concurrency_key {
            if budgets.get(key).is_none_or(|left| *left <= 0) {
                continue;
            }
        }
        let memory = c.reserve_memory_bytes.unwrap_or(0);
        let cpu = i64::from(c.reserve_cpu_millicores.unwrap_or(0));
        if memory > room.memory_bytes || cpu > room.cpu_millicores {
            continue;
        }
        room.memory_bytes -= memory;
        room.cpu_millicores -= cpu;
        if let Some(left) = c.concurrency_key.as_ref().and_then(|k| budgets.get_mut(k)) {
            *left -= 1;
        }
        if c.exclusive {
            started.insert(c.task_id);
        }
        chosen.push(c.id);
    }
    chosen
}

/// Why a task is paused after `consecutive` failures in a row of `hook`, or
/// None while it stays below `threshold`.
pub fn pause_reason(hook: &str, consecutive: i32, threshold: u32, error: &str) -> Option<String> {
    (consecutive >= threshold.max(1) as i32)
        .then(|| format!("{hook} hook failed {consecutive} times in a row; last error: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff_ms: 200,
            max_backoff_ms: 1_000,
        }
    }

    #[test]
    fn the_delay_doubles_per_attempt_up_to_the_cap_with_at_most_half_of_it_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        for (attempt, base) in [(1, 200), (2, 400), (3, 800), (4, 1_000), (9, 1_000), (200, 1_000)] {
            for _ in 0..200 {
                let ms = retry_delay(&policy(), attempt, &mut rng).as_millis() as u64;
                assert!(
                    (base / 2..=base).contains(&ms),
                    "attempt {attempt}: {ms} ms outside {}..={base}",
                    base / 2
                );
            }
        }
    }

    #[test]
    fn the_jitter_spreads_the_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: HashSet<_> = (0..50).map(|_| retry_delay(&policy(), 3, &mut rng)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn only_failures_and_timeouts_are_retried_and_only_while_attempts_remain() {
        let mut rng = StdRng::seed_from_u64(3);
        let p = RetryPolicy {
            max_attempts: 3,
            ..policy()
        };
        assert!(next_attempt(Some(&p), "failed", 1, &mut rng).is_some());
        assert!(next_attempt(Some(&p), "timed_out", 2, &mut rng).is_some());
        assert!(next_attempt(Some(&p), "failed", 3, &mut rng).is_none());
        assert!(next_attempt(Some(&p), "cancelled", 1, &mut rng).is_none());
        assert!(next_attempt(Some(&p), "succeeded", 1, &mut rng).is_none());
        assert!(next_attempt(None, "failed", 1, &mut rng).is_none());
    }

    fn waiting(id: i64, deps: &[(i64, &str)]) -> Waiting {
        Waiting {
            id,
            depends_on: deps.iter().map(|(d, s)| (*d, s.to_string())).collect(),
        }
    }

    #[test]
    fn a_failed_dependency_skips_the_whole_chain_behind_it() {
        // c waits for b, which waits for a; a was skipped.
        let got = cascade(&[waiting(3, &[(2, "queued")]), waiting(2, &[(1, "skipped")])]);
        assert_eq!(got, [(2, vec![1]), (3, vec![2])]);
    }

    #[test]
    fn runs_whose_dependencies_are_pending_or_succeeded_keep_waiting() {
        let got = cascade(&[
            waiting(5, &[(1, "running"), (2, "succeeded")]),
            waiting(6, &[(5, "queued"), (3, "queued")]),
        ]);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn every_unsuccessful_end_counts_as_failed() {
        for status in UNSUCCESSFUL {
            assert_eq!(cascade(&[waiting(2, &[(1, status)])]), [(2, vec![1])], "{status}");
        }
    }

    #[test]
    fn one_run_of_an_exclusive_task_starts_and_only_if_the_task_is_idle() {
        let c = |id, task_id, exclusive| candidate(id, task_id, exclusive, None, 0, 0);
        let queue = [
            c(1, 7, true),
            c(2, 7, true),
            c(3, 8, false),
            c(4, 8, false),
            c(5, 9, true),
        ];
        assert_eq!(choose(&queue, &[7], &HashMap::new(), ROOMY, 10), [1, 3, 4]);
        assert_eq!(choose(&queue, &[7, 9], &HashMap::new(), ROOMY, 2), [1, 3]);
    }

    const ROOMY: Room = Room {
        memory_bytes: i64::MAX,
        cpu_millicores: i64::MAX,
    };

    fn candidate(
        id: i64,
        task_id: i64,
        exclusive: bool,
        key: Option<&str>,
        memory: i64,
        cpu: i32,
    ) -> Candidate {
        Candidate {
            id,
            task_id,
            exclusive,
            concurrency_key: key.map(String::from),
            reserve_memory_bytes: Some(memory),
            reserve_cpu_millicores: Some(cpu),
        }
    }

    #[test]
    fn a_key_admits_up_to_its_room_and_an_unlocked_key_admits_none() {
        let queue = [
            candidate(1, 1, false, Some("api"), 0, 0),
            candidate(2, 2, false, Some("api"), 0, 0),
            candidate(3, 3, false, Some("api"), 0, 0),
            candidate(4, 4, false, Some("other"), 0, 0),
            candidate(5, 5, false, None, 0, 0),
        ];
        let budgets = HashMap::from([("api".to_string(), 2)]);
        assert_eq!(choose(&queue, &[], &budgets, ROOMY, 10), [1, 2, 5]);
        let full = HashMap::from([("api".to_string(), 0)]);
        assert_eq!(choose(&queue, &[], &full, ROOMY, 10), [5]);
    }

    #[test]
    fn runs_are_admitted_while_their_reservations_fit_and_a_small_one_passes_a_big_one() {
        let gib = 1 << 30;
        let queue = [
            candidate(1, 1, false, None, 3 * gib, 500),
            candidate(2, 2, false, None, 2 * gib, 500),
            candidate(3, 3, false, None, gib, 500),
            candidate(4, 4, false, None, 0, 1500),
        ];
        let room = Room {
            memory_bytes: 4 * gib,
            cpu_millicores: 2000,
        };
        assert_eq!(choose(&queue, &[], &HashMap::new(), room, 10), [1, 3]);
    }

    #[test]
    fn a_task_is_paused_at_the_threshold_and_the_reason_says_why() {
        assert!(pause_reason("provision", 2, 3, "boom").is_none());
        let reason = pause_reason("provision", 3, 3, "boom").unwrap();
        assert!(reason.contains("provision hook failed 3 times") && reason.contains("boom"));
    }
}
