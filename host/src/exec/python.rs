//! Python venvs, one per sha256(requirements + interpreter version), built in a
//! temporary directory and renamed into place. An exclusive file lock per hash
//! makes concurrent runs (in this process or another host sharing the data dir)
//! build a venv once while the others wait; a half-built venv is never visible.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::sandbox::{Limits, Policy, Sandbox};
use super::{run, ExitKind, ProcessSpec, Program};

/// Creating a venv and installing requirements may download packages.
const VENV_BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// pip's output kept when a build fails.
const PIP_OUTPUT_CAP: usize = 256 * 1024;

/// Host variables pip may see, so a local wheelhouse or mirror works offline.
const PIP_VARIABLES: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
];

/// A venv could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct VenvError {
    /// What failed.
    pub message: String,
    /// pip's (or venv's) output, kept for the step record.
    pub output: String,
}

/// Records that a step used the venv `dir` now: the directory's own
/// modification time (the host's, which no step can change) is its last use.
/// Nothing is written inside it, so nothing a package planted there is followed.
fn mark_used(dir: &Path) {
    let touched = std::fs::File::open(dir).and_then(|d| d.set_modified(std::time::SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(venv = %dir.display(), error = %e, "could not mark the venv used");
    }
}

/// The cache of venvs under one directory.
pub struct VenvCache {
    root: PathBuf,
    python: String,
    version: OnceCell<String>,
    sandbox: Arc<Sandbox>,
    limits: Limits,
}

impl VenvCache {
    /// A cache under `root` using interpreter `python`; pip runs confined by
    /// `sandbox`, as the steps' user, under the operator's step `limits`.
    pub fn new(root: PathBuf, python: String, sandbox: Arc<Sandbox>, limits: Limits) -> Self {
        VenvCache {
            root,
            python,
            version: OnceCell::new(),
            sandbox,
            limits,
        }
    }

    /// The venv's interpreter for `requirements`, building the venv first if needed.
    pub async fn python_for(&self, requirements: &[String]) -> Result<PathBuf, VenvError> {
        let version = self
            .version
            .get_or_try_init(|| interpreter_version(&self.python))
            .await?;
        let hash = venv_hash(requirements, version);
        let dir = self.root.join(&hash);
        let interpreter = dir.join("bin").join("python");
        if interpreter.exists() {
            mark_used(&dir);
            return Ok(interpreter);
        }
        std::fs::create_dir_all(&self.root).map_err(|e| io_error(&self.root, e))?;
        let lock = lock_exclusive(self.root.join(format!("{hash}.lock"))).await?;
        if !interpreter.exists() {
            self.build(&dir, requirements).await?;
        }
        drop(lock);
        mark_used(&dir);
        Ok(interpreter)
    }

    /// Removes the venvs no step used for `unused` (by their last-used mark);
    /// returns how many. A venv is renamed away before it is deleted, so a
    /// step asking for it at that moment builds it again.
    pub fn remove_unused(&self, unused: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let used = std::fs::symlink_metadata(&dir).and_then(|m| m.modified());
            let stale = used.is_ok_and(|at| at.elapsed().is_ok_and(|age| age > unused));
            if !stale {
                continue;
            }
            let doomed = self.root.join(format!(".removing-{name}"));
            if std::fs::rename(&dir, &doomed).is_ok() && std::fs::remove_dir_all(&doomed).is_ok() {
                let _ = std::fs::remove_file(self.root.join(format!("{name}.lock")));
                removed += 1;
            }
        }
        removed
    }

    async fn build(&self, dir: &Path, requirements: &[String]) -> Result<(), VenvError> {
        let staging = tempfile::Builder::new()
            .prefix(".building-")
            .tempdir_in(&self.root)
            .map_err(|e| io_error(&self.root, e))?;
        let venv = staging.path().join("venv");
        let venv_arg = venv.to_string_lossy().to_string();
        // pip runs code from the packages it installs: as the steps' user, in
        // a directory of theirs, confined like a step.
        if let Some(user) = &self.sandbox.run_as {
            nix::unistd::chown(staging.path(), Some(user.uid), Some(user.gid))
                .map_err(|e| io_error(staging.path(), e.into()))?;
        }
        let builder = Builder {
            sandbox: &self.sandbox,
            home: staging.path(),
            limits: &self.limits,
        };
        builder
            .step(&self.python, &["-m", "venv", &venv_arg], "creating the venv")
            .await?;
        if !requirements.is_empty() {
            let list = staging.path().join("requirements.txt");
            std::fs::write(&list, requirements.join("\n") + "\n").map_err(|e| io_error(&list, e))?;
            let python = venv.join("bin").join("python").to_string_lossy().to_string();
            let list_arg = list.to_string_lossy().to_string();
            let args = [
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
                &list_arg,
            ];
            builder.step(&python, &args, "pip install").await?;
        }
        // Shared by every step that asks for these requirements: no step may
        // change it for the others. The staging directory becomes the host's
        // alone first, so nothing can be swapped in for the venv after it is
        // checked; then the tree is sealed without following links (steps of
        // the same user may be running and trying to redirect the walk).
        if let Some(user) = &self.sandbox.run_as {
            lock_staging(staging.path()).map_err(|e| io_error(staging.path(), e))?;
            super::seal::seal(&venv, user.uid).map_err(|e| io_error(&venv, e))?;
        }
        // The builds' cgroups go (a concurrent build's stays: it is not empty).
        self.sandbox.forget_run(0);
        std::fs::rename(&venv, dir).map_err(|e| io_error(dir, e))?;
        tracing::info!(venv = %dir.display(), requirements = requirements.len(), "python venv built");
        Ok(())
    }
}

/// sha256 over the interpreter version and the requirements, order-insensitive.
pub fn venv_hash(requirements: &[String], interpreter_version: &str) -> String {
    let mut sorted: Vec<&str> = requirements.iter().map(|r| r.trim()).collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(interpreter_version.as_bytes());
    for requirement in sorted {
        hasher.update(b"\n");
        hasher.update(requirement.as_bytes());
    }
    hex::encode(hasher.finalize())
}

async fn interpreter_version(python: &str) -> Result<String, VenvError> {
    let unconfined = Sandbox::disabled();
    let builder = Builder {
        sandbox: &unconfined,
        home: Path::new("/"),
        limits: &Limits::default(),
    };
    let out = builder
        .step(
            python,
            &["-c", "import sys; print(sys.version)"],
            "asking the interpreter its version",
        )
        .await?;
    Ok(out.trim().to_string())
}

/// Runs venv's build commands in `home` (also their `HOME`), confined by `sandbox`.
struct Builder<'a> {
    sandbox: &'a Sandbox,
    home: &'a Path,
    limits: &'a Limits,
}

impl Builder<'_> {
    /// The cgroup of one build command: unique per build directory and
    /// command (a command's cgroup is removed off its path, so the next one
    /// must never reuse it).
    fn cgroup_name(&self, what: &str) -> String {
        let dir = self.home.file_name().unwrap_or_default().to_string_lossy();
        let command: String = what.chars().filter(char::is_ascii_alphanumeric).collect();
        format!("venv{}-{command}", dir.trim_start_matches('.'))
    }
}

impl Builder<'_> {
    /// Runs one build command through the same process machinery as steps.
    async fn step(&self, program: &str, args: &[&str], what: &str) -> Result<String, VenvError> {
        let mut env: Vec<(String, String)> = PIP_VARIABLES
            .iter()
            .filter(|k| **k != "HOME")
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        env.push(("HOME".into(), self.home.to_string_lossy().into_owned()));
        let confinement = self
            .sandbox
            .confine(0, &self.cgroup_name(what), self.limits, Policy::BestEffort)
            .map_err(|message| VenvError {
                message,
                output: String::new(),
            })?;
        let spec = ProcessSpec {
            program: Program::Executable(resolve(program)),
            args: args.iter().map(|s| s.to_string()).collect(),
            env,
            working_dir: self.home.to_path_buf(),
            stdin: None,
            timeout: VENV_BUILD_TIMEOUT,
            grace: Duration::from_secs(5),
            output_cap: PIP_OUTPUT_CAP,
            confinement: Some(confinement),
            rolling: false,
            terminal: false,
        };
        judge(run(&spec, &CancellationToken::new()).await, what)
    }
}

/// Makes the build's staging directory the host's, private, and checks that
/// the venv in it is a real directory.
fn lock_staging(staging: &Path) -> std::io::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    std::os::unix::fs::lchown(staging, Some(uid), Some(gid))?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))?;
    if !std::fs::symlink_metadata(staging.join("venv"))?.is_dir() {
        return Err(std::io::Error::other(
            "the build left something other than a directory as its venv",
        ));
    }
    Ok(())
}

fn judge(outcome: super::ProcessOutcome, what: &str) -> Result<String, VenvError> {
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&outcome.stdout.bytes),
        String::from_utf8_lossy(&outcome.stderr.bytes)
    );
    match outcome.kind {
        ExitKind::Succeeded => Ok(String::from_utf8_lossy(&outcome.stdout.bytes).into_owned()),
        _ => Err(VenvError {
            message: format!("{what} failed: {}", outcome.error.unwrap_or_default()),
            output,
        }),
    }
}

/// Finds `program` on the host's PATH (processes get a cleared environment).
pub fn resolve(program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

async fn lock_exclusive(path: PathBuf) -> Result<nix::fcntl::Flock<std::fs::File>, VenvError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_error(&path, e.into()))
    })
    .await
    .map_err(|e| VenvError {
        message: format!("venv lock task failed: {e}"),
        output: String::new(),
    })?
}

fn io_error(path: &Path, e: std::io::Error) -> VenvError {
    VenvError {
        message: format!("venv directory {}: {e}", path.display()),
        output: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::venv_hash;

    #[test]
    fn the_hash_ignores_requirement_order_but_not_the_interpreter() {
        let a = venv_hash(&["six==1.16.0".into(), "attrs".into()], "3.11.7");
        let b = venv_hash(&["attrs".into(), "six==1.16.0".into()], "3.11.7");
        let c = venv_hash(&["attrs".into(), "six==1.16.0".into()], "3.12.1");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
