//! Query strings of history endpoints, parsed strictly: an unknown parameter,
//! status or time is a 400 that lists what is accepted, never an empty page.

use chrono::{DateTime, Utc};

use super::ApiError;
use crate::store::history::{RunFilter, STATUSES};

/// Largest page of runs.
pub const MAX_PAGE: i64 = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 50;
/// Parameters `GET /v1/runs` accepts.
const RUN_PARAMS: [&str; 8] = [
    "limit",
    "before",
    "task_id",
    "status",
    "tag",
    "since",
    "until",
    "hide_missed",
];
/// Longest statistics window.
const MAX_WINDOW_HOURS: i64 = 24 * 366;

/// The filter of `GET /v1/runs`, from its raw key-value pairs. `status` may
/// repeat and may hold several comma-separated statuses; `since` and `until`
/// take an RFC 3339 instant or a duration before `now` (`90m`, `1h`, `7d`).
pub fn run_filter(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<RunFilter, ApiError> {
    let mut filter = RunFilter {
        limit: DEFAULT_PAGE,
        ..RunFilter::default()
    };
    let mut hide_missed = false;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => filter.limit = integer(key, value)?,
            "before" => filter.before = Some(integer(key, value)?),
            "task_id" => filter.task_id = Some(integer(key, value)?),
            "status" => filter.statuses.extend(statuses(value)?),
            "tag" => filter.tag = Some(value.clone()),
            "since" => filter.since = Some(instant(key, value, now)?),
            "until" => filter.until = Some(instant(key, value, now)?),
            "hide_missed" => hide_missed = boolean(key, value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter '{other}'; accepted: {}",
                    RUN_PARAMS.join(", ")
                )))
            }
        }
    }
    if !(1..=MAX_PAGE).contains(&filter.limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    if hide_missed {
        if filter.statuses.is_empty() {
            filter.statuses = STATUSES.iter().map(|s| s.to_string()).collect();
        }
        filter.statuses.retain(|s| s != "missed" && s != "skipped");
        if filter.statuses.is_empty() {
            return Err(ApiError::bad_request(
                "hide_missed=true hides every status asked for; drop one of them",
            ));
        }
    }
    filter.statuses.sort();
    filter.statuses.dedup();
    Ok(filter)
}

/// Statuses from one `status` value (comma-separated), each checked.
pub fn statuses(value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if STATUSES.contains(&s) {
                Ok(s.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "unknown status '{s}'; valid statuses: {}",
                    STATUSES.join(", ")
                )))
            }
        })
        .collect()
}

fn integer(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{key} must be an integer, not '{value}'")))
}

fn boolean(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{key} must be true or false, not '{value}'"
        ))),
    }
}

/// The page size of a listing paged by id: 1 to 500, 50 when not given.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    Ok(limit)
}

/// An RFC 3339 instant, or a duration before `now`.
pub fn instant(key: &str, value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    humantime::parse_duration(value)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{key} must be an RFC 3339 instant (2026-11-24T09:00:00Z) or a duration before now \
                 (90m, 1h, 7d), not '{value}'"
            ))
        })
}

/// A statistics window (`24h`, `7d`, `90m`) in whole hours, rounded up.
pub fn window_hours(value: Option<&str>) -> Result<i64, ApiError> {
    let Some(value) = value else { return Ok(24) };
    let hours = humantime::parse_duration(value)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs().div_ceil(3600)).ok())
        .filter(|h| (1..=MAX_WINDOW_HOURS).contains(h));
    hours.ok_or_else(|| {
        ApiError::bad_request(format!(
            "window must be a duration from 1h to 366d (24h, 7d), not '{value}'"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn statuses_repeat_and_split_on_commas_and_unknown_ones_are_refused() {
        let now = Utc::now();
        let f = run_filter(
            &pairs(&[("status", "failed,timed_out"), ("status", "failed")]),
            now,
        )
        .unwrap();
        assert_eq!(f.statuses, ["failed", "timed_out"]);
        let e = run_filter(&pairs(&[("status", "bogus")]), now).unwrap_err();
        assert!(
            e.message.contains("bogus") && e.message.contains("timed_out"),
            "{}",
            e.message
        );
        let e = run_filter(&pairs(&[("statuss", "failed")]), now).unwrap_err();
        assert!(
            e.message.contains("statuss") && e.message.contains("hide_missed"),
            "{}",
            e.message
        );
    }

    #[test]
    fn since_takes_an_instant_or_a_duration_before_now() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .to_utc();
        let f = run_filter(&pairs(&[("since", "1h"), ("until", "2026-11-24T09:30:00Z")]), now).unwrap();
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-24T09:00:00+00:00");
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-11-24T09:30:00+00:00");
        assert!(run_filter(&pairs(&[("since", "yesterday")]), now).is_err());
    }

    #[test]
    fn hide_missed_drops_missed_and_skipped() {
        let f = run_filter(&pairs(&[("hide_missed", "true")]), Utc::now()).unwrap();
        assert!(!f.statuses.iter().any(|s| s == "missed" || s == "skipped"));
        assert_eq!(f.statuses.len(), 6);
        assert!(run_filter(
            &pairs(&[("hide_missed", "true"), ("status", "missed")]),
            Utc::now()
        )
        .is_err());
    }

    #[test]
    fn a_window_is_whole_hours() {
        assert_eq!(window_hours(None).unwrap(), 24);
        assert_eq!(window_hours(Some("7d")).unwrap(), 168);
        assert_eq!(window_hours(Some("90m")).unwrap(), 2);
        assert!(window_hours(Some("0s")).is_err());
        assert!(window_hours(Some("forever")).is_err());
    }
}
