//! What a process runs: a shell script, a binary checked again against the
//! allowed directories, or a Python step's program in its venv.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::exec::Program;
use crate::spec::StepKind;

use super::process::Invocation;
use super::Runner;

/// What runs and its arguments: a binary checked again, or a Python step's
/// program written out and its venv's interpreter.
pub(super) async fn program(
    runner: &Runner,
    workdir: &Path,
    inv: &Invocation<'_>,
) -> Result<(Program, Vec<String>), (String, String)> {
    let mut args = inv.spec.args.clone();
    let program = match &inv.spec.kind {
        StepKind::Shell { script } => Program::Shell(script.clone()),
        StepKind::Binary { path } => {
            // Checked again now: the file may have changed since the upload. The
            // resolved path is what runs, so a link swapped in later cannot
            // point elsewhere between the check and the start.
            let resolved = runner
                .config
                .binary_dirs
                .check(path)
                .map_err(|e| (e, String::new()))?;
            Program::Binary {
                path: resolved,
                name: path.clone(),
            }
        }
        StepKind::Python { source, requirements } => {
            let python = runner
                .venvs
                .python_for(requirements)
                .await
                .map_err(|e| (e.message, e.output))?;
            let script = workdir.join(format!(".pulsehost-{}-{}.py", inv.phase.as_str(), inv.index));
            write_script(&script, source).map_err(|e| (format!("writing the script: {e}"), String::new()))?;
            args.insert(0, script.to_string_lossy().into_owned());
            Program::Executable(python)
        }
    };
    Ok((program, args))
}

/// Writes a Python step's program into the scratch directory, which the
/// step user owns and earlier steps may have filled: whatever is at the path
/// (a link planted to redirect the host's write) is removed, and the file is
/// created anew without following links.
fn write_script(path: &Path, source: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)?;
    file.write_all(source.as_bytes())
}
