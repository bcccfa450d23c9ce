//! JSON Schemas of a process's stdin and stdout, the one module that uses
//! `jsonschema`.
//!
//! A plugin may declare, per process, a schema its stdin must satisfy
//! (checked before it starts) and one its stdout must satisfy as JSON
//! (checked after it ends). Schemas are checked at upload: they must be JSON,
//! valid against their draft's meta-schema (the draft their `$schema` names,
//! 2020-12 when none), and self-contained: references to URLs or files are
//! refused, so a plugin cannot make the host fetch or read anything.

use serde::Serialize;
use serde_json::Value;

/// Violations reported for one document, at most this many.
pub const MAX_VIOLATIONS: usize = 20;

/// A compiled schema.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// One way a document breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where in the document, as a JSON Pointer (`""` is the whole document).
    pub at: String,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.at.is_empty() { "/" } else { &self.at };
        write!(f, "at {at}: {}", self.message)
    }
}

impl Schema {
    /// Compiles `text`; the error says what is wrong with it.
    pub fn compile(text: &str) -> Result<Schema, String> {
        let document: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        if !matches!(document, Value::Object(_) | Value::Bool(_)) {
            return Err("must be a JSON object (or true or false)".into());
        }
        let validator =
            jsonschema::validator_for(&document).map_err(|e| format!("is not a valid JSON Schema: {e}"))?;
        Ok(Schema { validator })
    }

    /// How `document` breaks this schema (empty when it satisfies it), the
    /// first [`MAX_VIOLATIONS`].
    pub fn violations(&self, document: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(document)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                at: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }

    /// Checks the bytes a process reads or wrote: they must be one JSON
    /// document that satisfies this schema. `what` names them ("stdin").
    pub fn check_bytes(&self, what: &str, bytes: &[u8]) -> Result<(), Vec<Violation>> {
        let whole = |message: String| {
            vec![Violation {
                at: String::new(),
                message,
            }]
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(whole(format!("{what} is empty, and its schema asks for JSON")));
        }
        let document: Value =
            serde_json::from_slice(bytes).map_err(|e| whole(format!("{what} is not JSON: {e}")))?;
        match self.violations(&document) {
            found if found.is_empty() => Ok(()),
            found => Err(found),
        }
    }
}

/// The violations as one line for a step's error.
pub fn summary(what: &str, violations: &[Violation]) -> String {
    let listed: Vec<String> = violations.iter().map(Violation::to_string).collect();
    format!("{what} does not satisfy its schema: {}", listed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{
        "type": "object",
        "required": ["id", "items"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "items": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
        },
        "additionalProperties": false
    }"#;

    #[test]
    fn a_document_that_satisfies_the_schema_has_no_violations() {
        let schema = Schema::compile(ORDER).unwrap();
        assert_eq!(
            schema.check_bytes("stdin", br#"{"id": 3, "items": ["a"]}"#),
            Ok(())
        );
    }

    #[test]
    fn each_violation_names_where_it_is() {
        let schema = Schema::compile(ORDER).unwrap();
        let found = schema
            .check_bytes("stdout", br#"{"id": 0, "items": ["a", 2, "c"], "x": 1}"#)
            .unwrap_err();
        let places: Vec<&str> = found.iter().map(|v| v.at.as_str()).collect();
        assert!(places.contains(&"/id"), "{found:?}");
        assert!(places.contains(&"/items/1"), "{found:?}");
        assert!(places.contains(&"/items"), "{found:?}");
        assert!(places.contains(&""), "additionalProperties: {found:?}");
    }

    #[test]
    fn empty_or_non_json_bytes_are_one_violation_of_the_whole() {
        let schema = Schema::compile(ORDER).unwrap();
        let empty = schema.check_bytes("stdin", b" \n").unwrap_err();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].message.contains("stdin is empty"), "{empty:?}");
        let text = schema.check_bytes("stdout", b"done").unwrap_err();
        assert!(text[0].message.contains("stdout is not JSON"), "{text:?}");
    }

    #[test]
    fn bad_schemas_are_refused_with_the_reason() {
        assert!(Schema::compile("{").unwrap_err().contains("is not JSON"));
        assert!(Schema::compile("[1]")
            .unwrap_err()
            .contains("must be a JSON object"));
        assert!(Schema::compile(r#"{"type": 12}"#)
            .unwrap_err()
            .contains("is not a valid JSON Schema"));
    }

    #[test]
    fn references_to_files_or_urls_are_refused() {
        for reference in ["file:///etc/passwd", "https://example.com/schema.json"] {
            let text = format!(r#"{{"$ref": "{reference}"}}"#);
            let error = Schema::compile(&text).err();
            assert!(error.is_some(), "{reference} was resolved");
        }
        let local = r##"{"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}"##;
        let schema = Schema::compile(local).unwrap();
        assert!(schema.check_bytes("stdin", b"5").is_ok());
        assert!(schema.check_bytes("stdin", b"\"x\"").is_err());
    }

    #[test]
    fn violations_are_capped() {
        let schema = Schema::compile(r#"{"items": {"type": "string"}}"#).unwrap();
        let many = serde_json::to_vec(&vec![1; 100]).unwrap();
        assert_eq!(
            schema.check_bytes("stdin", &many).unwrap_err().len(),
            MAX_VIOLATIONS
        );
    }
}
