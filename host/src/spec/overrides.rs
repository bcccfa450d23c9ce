//! A manual run's chosen input: a JSON document for its first step's stdin,
//! and environment variables for every process of the run. Stored with the
//! run (and its retries), shown in its history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most variables one run may set.
pub const MAX_ENVS: usize = 64;
/// Longest value of one variable, bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
/// Largest stdin document, bytes as JSON text.
pub const MAX_STDIN_BYTES: usize = 1 << 20;
/// Prefix of the run context's variables, which only the host sets.
pub const RESERVED_PREFIX: &str = "PULSEHOST_";

/// What `POST /v1/tasks/{id}/run` may change for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOverrides {
    /// Written to the first step's stdin, in place of what it declares or is piped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_json: Option<serde_json::Value>,
    /// Set for every process of the run, over the task's own `envs`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
}

impl RunOverrides {
    /// Nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.stdin_json.is_none() && self.envs.is_empty()
    }

    /// The first step's stdin, as bytes.
    pub fn stdin_bytes(&self) -> Option<Vec<u8>> {
        self.stdin_json.as_ref().map(|v| v.to_string().into_bytes())
    }

    /// The first thing wrong, as `(field, what is wrong and how to fix it)`.
    pub fn problem(&self) -> Option<(String, String)> {
        if let Some(stdin) = &self.stdin_json {
            let bytes = stdin.to_string().len();
            if holds_nul(stdin) {
                return Some((
                    "stdin_json".into(),
                    "holds a NUL character (\\u0000), which the run's record cannot store".into(),
                ));
            }
            if bytes > MAX_STDIN_BYTES {
                return Some((
                    "stdin_json".into(),
                    format!("is {bytes} bytes as JSON; at most {MAX_STDIN_BYTES} are accepted"),
                ));
            }
        }
        if self.envs.len() > MAX_ENVS {
            return Some((
                "envs".into(),
                format!(
                    "sets {} variables; at most {MAX_ENVS} are accepted",
                    self.envs.len()
                ),
            ));
        }
        self.envs
            .iter()
            .find_map(|(name, value)| env_problem(name, value).map(|p| (format!("envs.{name}"), p)))
    }
}

/// True when a string or key anywhere in `value` holds a NUL character.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// What is wrong with one variable.
fn env_problem(name: &str, value: &str) -> Option<String> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed || name.len() > 256 {
        return Some(
            "is not a variable name: use letters, digits and underscores, not starting with a digit (at most 256)"
                .into(),
        );
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Some(format!(
            "{RESERVED_PREFIX}* variables are the run's context, set by the host: choose another name"
        ));
    }
    if value.contains('\0') {
        return Some("holds a NUL character, which no environment can carry".into());
    }
    (value.len() > MAX_ENV_VALUE_BYTES).then(|| {
        format!(
            "is {} bytes; at most {MAX_ENV_VALUE_BYTES} are accepted",
            value.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(name: &str, value: &str) -> RunOverrides {
        RunOverrides {
            envs: [(name.to_string(), value.to_string())].into(),
            ..RunOverrides::default()
        }
    }

    #[test]
    fn well_formed_overrides_have_no_problem() {
        let o: RunOverrides =
            serde_json::from_str(r#"{"stdin_json": {"n": 1}, "envs": {"MODE": "dry", "_x1": ""}}"#).unwrap();
        assert_eq!(o.problem(), None);
        assert_eq!(o.stdin_bytes().unwrap(), br#"{"n":1}"#);
    }

    #[test]
    fn each_bad_variable_is_named_with_the_reason() {
        let cases = [
            ("1ABC", "not a variable name"),
            ("A-B", "not a variable name"),
            ("PULSEHOST_RUN_ID", "run's context"),
        ];
        for (name, expected) in cases {
            let (field, message) = with_env(name, "v").problem().unwrap();
            assert_eq!(field, format!("envs.{name}"));
            assert!(message.contains(expected), "{name}: {message}");
        }
        let nul = with_env("A", "a\0b").problem().unwrap();
        assert!(nul.1.contains("NUL"), "{nul:?}");
        let long = with_env("A", &"x".repeat(MAX_ENV_VALUE_BYTES + 1))
            .problem()
            .unwrap();
        assert!(long.1.contains("at most"), "{long:?}");
    }

    #[test]
    fn unknown_fields_and_oversized_input_are_refused() {
        assert!(serde_json::from_str::<RunOverrides>(r#"{"stdin": 1}"#).is_err());
        let big = RunOverrides {
            stdin_json: Some(serde_json::Value::String("x".repeat(MAX_STDIN_BYTES))),
            ..RunOverrides::default()
        };
        assert_eq!(big.problem().unwrap().0, "stdin_json");
        let many = RunOverrides {
            envs: (0..=MAX_ENVS).map(|i| (format!("V{i}"), String::new())).collect(),
            ..RunOverrides::default()
        };
        assert_eq!(many.problem().unwrap().0, "envs");
    }
}
