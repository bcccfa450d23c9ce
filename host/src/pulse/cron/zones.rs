//! Suggestions for a time zone name that is not an IANA name: the nearest
//! names by edit distance (case aside), and every zone whose city matches.

use chrono_tz::TZ_VARIANTS;

/// How many names a suggestion lists at most.
const SUGGESTIONS: usize = 3;

/// The IANA names nearest to `wrong`, best first.
pub fn nearest(wrong: &str) -> Vec<&'static str> {
    let wrong = wrong.trim().to_ascii_lowercase().replace(' ', "_");
    let mut scored: Vec<(f64, &'static str)> = TZ_VARIANTS
        .iter()
        .map(|tz| {
            let name = tz.name();
            let lower = name.to_ascii_lowercase();
            let city = lower.rsplit('/').next().unwrap_or(&lower);
            let score = strsim::jaro_winkler(&wrong, &lower).max(strsim::jaro_winkler(&wrong, city));
            (score, name)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(SUGGESTIONS)
        .map(|(_, name)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_and_partial_names_find_their_zone() {
        assert_eq!(nearest("Europe/Berln")[0], "Europe/Berlin");
        assert_eq!(nearest("berlin")[0], "Europe/Berlin");
        assert_eq!(nearest("america/new york")[0], "America/New_York");
        assert!(nearest("CET").contains(&"CET"));
    }
}
