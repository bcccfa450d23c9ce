//! Jenkins' `H`: a value chosen by a hash of the task's identity, so that many
//! tasks written `H * * * *` spread over the hour instead of all starting at
//! minute 0, yet each task keeps the same minute across restarts, replicas
//! and Rust versions (SHA-256, never `std::hash`).
//!
//! * `H` is one value of the field's range; the day-of-month range is 1-28
//!   so that every month has the day, and day-of-week's 0-6 names Sunday once.
//! * `H/n` runs every n values from an offset `hash % n`.
//! * `H(a-b)` is one value of `a..=b`, and `H(a-b)/n` runs every n values
//!   from `a + hash % n` up to `b`; `a` and `b` may be anything the field
//!   accepts, names included.
//!
//! The hash mixes in the field's position, so a task's `H H * * *` does not
//! run at minute 7 of hour 7 just because both fields hashed alike.

use sha2::{Digest, Sha256};

use super::fields::{bits, parse_step, range, Problem};
use super::kinds::{Field, Kind};

/// Why `H` is refused when no task identity is at hand.
const REFUSED: &str =
    "uses H, which spreads a task's schedule by its name; it is only accepted in a task's schedule";

/// How to write `H`, closing the message about a malformed one.
const FORMS: &str = "is not a form of H: write H, H/n, H(a-b) or H(a-b)/n, such as H/15 or H(0-29)";

/// The values an `H` item of `kind`'s field stands for in the schedule of the
/// task `identity`; without an identity `H` is refused.
pub(super) fn item(kind: Kind, item: &str, identity: Option<&str>) -> Result<u64, Problem> {
    let Some(identity) = identity else {
        return Err(Problem::new(item, REFUSED));
    };
    let (from, to, step) = read(kind, item)?;
    let hash = hash(identity, kind.field);
    let pick = |n: u32| from + (hash % u64::from(n)) as u32;
    Ok(match step {
        None => 1 << pick(to - from + 1),
        Some(step) => bits(pick(step), to, step as usize),
    })
}

/// Reads `H`, `H/n`, `H(a-b)` or `H(a-b)/n`: the range to choose from and
/// the step, if any.
fn read(kind: Kind, item: &str) -> Result<(u32, u32, Option<u32>), Problem> {
    let rest = item.strip_prefix('H').unwrap_or(item);
    let (bounds, step) = match rest.split_once('/') {
        Some((bounds, step)) => (bounds, Some(step)),
        None => (rest, None),
    };
    let (from, to) = if bounds.is_empty() {
        spread_range(kind)
    } else {
        let inner = bounds
            .strip_prefix('(')
            .and_then(|b| b.strip_suffix(')'))
            .ok_or_else(|| Problem::new(item, FORMS))?;
        let (a, b) = inner.split_once('-').ok_or_else(|| Problem::new(item, FORMS))?;
        range(kind, inner, a, b)?
    };
    let Some(step) = step else {
        return Ok((from, to, None));
    };
    let step = parse_step(item, step)?;
    let size = to - from + 1;
    if step > size as usize {
        return Err(Problem::new(
            item,
            format!(
                "has step {step}, longer than the {size} values H chooses from ({from}-{to}): \
                 use a step of at most {size}"
            ),
        ));
    }
    Ok((from, to, Some(step as u32)))
}

/// The values a bare `H` chooses from: the field's own, but days of the
/// month only up to 28 (every month has them) and Sunday only as 0.
fn spread_range(kind: Kind) -> (u32, u32) {
    match kind.field {
        Field::DayOfMonth => (1, 28),
        Field::DayOfWeek => (0, 6),
        _ => (kind.min, kind.max),
    }
}

/// The hash of a task's identity for one field: the first eight bytes of
/// SHA-256 over the identity, a byte no UTF-8 text contains, and the
/// field's position.
pub(super) fn hash(identity: &str, field: Field) -> u64 {
    let digest = Sha256::new()
        .chain_update(identity.as_bytes())
        .chain_update([0xff, field as u8])
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
#[path = "spread_tests.rs"]
mod tests;
