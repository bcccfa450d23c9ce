//! Which programs binary steps may run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The directories binary steps must live under, as configured and resolved
/// (every `..` and symbolic link followed) once.
#[derive(Debug, Clone)]
pub struct BinaryDirs {
    listed: Vec<PathBuf>,
    resolved: Vec<PathBuf>,
}

impl BinaryDirs {
    /// Resolves `listed` (a directory that does not exist stays as written).
    pub fn new(listed: Vec<PathBuf>) -> Self {
        let resolved = listed
            .iter()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
            .collect();
        BinaryDirs { listed, resolved }
    }

    /// A binary step's program: absolute, existing, executable, and, once every
    /// `..` and symbolic link is resolved, under an allowed directory. Returns
    /// the resolved path, which is what runs.
    pub fn check(&self, path: &str) -> Result<PathBuf, String> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(format!("{path:?} must be an absolute path"));
        }
        let resolved =
            std::fs::canonicalize(p).map_err(|_| format!("{path:?} does not exist on this host"))?;
        let meta =
            std::fs::metadata(&resolved).map_err(|_| format!("{path:?} does not exist on this host"))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("{path:?} is not an executable file"));
        }
        if !self.resolved.iter().any(|dir| resolved.starts_with(dir)) {
            let listed: Vec<String> = self.listed.iter().map(|d| d.display().to_string()).collect();
            let shown = if resolved == p {
                format!("{path:?}")
            } else {
                format!("{path:?} resolves to {:?}, which", resolved.display().to_string())
            };
            return Err(format!(
                "{shown} is not under an allowed directory ({}); use a program there or add its directory \
                 to PULSEHOST_BINARY_DIRS",
                listed.join(", ")
            ));
        }
        Ok(resolved)
    }
}
