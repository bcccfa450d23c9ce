//! A process's stdin and stdout against the JSON Schemas it declares: what
//! it reads, checked before it starts, and what it wrote, after it ends.

use crate::exec::ExitKind;
use crate::schemas::{self, Schema, Violation};

use super::process::{Executed, Invocation};

/// What a process reads: the run's chosen stdin (a manual run's first
/// step), else the `stdin-json` it declares, else JSON piped from the step
/// before it.
pub(super) fn stdin_of(inv: &Invocation<'_>) -> Option<Vec<u8>> {
    inv.chosen_stdin
        .clone()
        .or_else(|| inv.spec.stdin_json.clone().map(String::into_bytes))
        .or_else(|| inv.piped_stdin.clone())
}

/// Checks `bytes` (None: nothing) against `schema`, when there is one.
pub(super) fn checked(schema: Option<&str>, what: &str, bytes: Option<&[u8]>) -> Result<(), Vec<Violation>> {
    let Some(text) = schema else {
        return Ok(());
    };
    // Checked at upload; a schema that no longer compiles is one violation.
    let schema = Schema::compile(text).map_err(|problem| {
        vec![Violation {
            at: String::new(),
            message: format!("its {what} schema {problem}"),
        }]
    })?;
    schema.check_bytes(what, bytes.unwrap_or_default())
}

/// Fails a process that succeeded but whose stdout breaks `schema`.
pub(super) fn check_stdout(done: &mut Executed, schema: Option<&str>) {
    if schema.is_none() || done.outcome.kind != ExitKind::Succeeded {
        return;
    }
    let stdout = &done.outcome.stdout;
    let result = if stdout.truncated {
        Err(vec![Violation {
            at: String::new(),
            message: format!(
                "stdout was cut at the output cap ({} of {} bytes kept), so it cannot be checked",
                stdout.bytes.len(),
                stdout.total
            ),
        }])
    } else {
        checked(schema, "stdout", Some(&stdout.bytes))
    };
    if let Err(violations) = result {
        done.outcome.kind = ExitKind::Failed;
        done.outcome.error = Some(schemas::summary("stdout", &violations));
        done.schema_errors = Some(violations);
    }
}
