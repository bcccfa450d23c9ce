//! The embedded default database: with `DATABASE_URL` unset the host runs a
//! private PostgreSQL cluster of its own under its data dir, from the machine's
//! server binaries, listening on a Unix socket only, and stops it on exit.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Where Debian, Ubuntu and the PGDG packages put the server binaries.
const DISTRIBUTION_BIN_DIRS: &str = "/usr/lib/postgresql";

/// A Unix socket path must fit in `sun_path` (108 bytes) with `/.s.PGSQL.5432`.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Why the embedded cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// `initdb`/`pg_ctl` are nowhere to be found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under {DISTRIBUTION_BIN_DIRS}/*/bin: \
         install them (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to an existing database"
    )]
    NoBinaries,
    /// Running as root without an unprivileged account for the cluster.
    #[error(
        "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as: \
         run pulsehost as an ordinary user or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    /// The unprivileged account cannot reach the data dir.
    #[error(
        "PostgreSQL refuses to run as root, so the embedded cluster runs as 'postgres', which cannot \
         enter {0:?}: choose a PULSEHOST_DATA_DIR whose parent directories others may traverse \
         (chmod o+x), or set DATABASE_URL"
    )]
    Unreachable(PathBuf),
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// What was run.
        command: String,
        /// Its output, or why it could not start.
        detail: String,
    },
    /// A file-system step failed.
    #[error("embedded database directory {path:?}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A running private PostgreSQL cluster; stopped when dropped.
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<nix::unistd::User>,
}

impl EmbeddedPostgres {
    /// Initialises (first time) and starts the cluster under `data_dir/postgres`.
    pub fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::NoBinaries)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres").ok().flatten();
            Some(user.ok_or(EmbeddedError::NoUnprivilegedUser)?)
        } else {
            None
        };
        let data_dir = absolute(data_dir)?;
        if let Some(user) = &run_as {
            make_traversable(&data_dir, user)?;
        }
        let base = data_dir.join("postgres");
        let pgdata = base.join("data");
        let socket_dir = socket_dir_for(&base);
        let me = EmbeddedPostgres {
            bin_dir,
            pgdata,
            socket_dir,
            run_as,
        };
        me.prepare_dirs(&base)?;
        if !me.pgdata.join("PG_VERSION").exists() {
            me.pg(
                "initdb",
                &[
                    "-D",
                    &me.pgdata.to_string_lossy(),
                    "-U",
                    "pulsehost",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
            )?;
        }
        if !me.is_running() {
            let options = format!("-c listen_addresses='' -k {} -p 5432", me.socket_dir.display());
            let log = base.join("postgres.log");
            me.pg(
                "pg_ctl",
                &[
                    "-D",
                    &me.pgdata.to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
                    "-o",
                    &options,
                    "-w",
                    "start",
                ],
            )?;
        }
        tracing::info!(pgdata = %me.pgdata.display(), socket = %me.socket_dir.display(), "embedded PostgreSQL running");
        Ok(me)
    }

    /// The connection URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "postgres://pulsehost@/postgres?host={}",
            self.socket_dir.display()
        )
    }

    fn is_running(&self) -> bool {
        self.pg("pg_ctl", &["-D", &self.pgdata.to_string_lossy(), "status"])
            .is_ok()
    }

    fn prepare_dirs(&self, base: &Path) -> Result<(), EmbeddedError> {
        for dir in [base, &self.socket_dir] {
            std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::Io {
                path: dir.into(),
                source,
            })?;
            if let Some(user) = &self.run_as {
                nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).map_err(|e| EmbeddedError::Io {
                    path: dir.into(),
                    source: e.into(),
                })?;
            }
        }
        let perms = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(base, perms).map_err(|source| EmbeddedError::Io {
            path: base.into(),
            source,
        })
    }

    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, EmbeddedError> {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.args(args)
            .process_group(0)
            .env_remove("PGDATA")
            .env("LC_ALL", "C");
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw()).current_dir("/");
        }
        let described = format!("{program} {}", args.join(" "));
        let output = cmd.output().map_err(|e| EmbeddedError::Command {
            command: described.clone(),
            detail: e.to_string(),
        })?;
        if output.status.success() {
            Ok(output)
        } else {
            let detail = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            Err(EmbeddedError::Command {
                command: described,
                detail: detail.trim().to_string(),
            })
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        match self.pg(
            "pg_ctl",
            &["-D", &self.pgdata.to_string_lossy(), "-m", "fast", "-w", "stop"],
        ) {
            Ok(_) => tracing::info!("embedded PostgreSQL stopped"),
            Err(e) => tracing::warn!(error = %e, "embedded PostgreSQL did not stop cleanly"),
        }
    }
}

/// The cluster's account must be able to walk down to the data dir: the data
/// dir itself gets `o+x` (enter, not list); a parent that refuses is an error.
fn make_traversable(data_dir: &Path, user: &nix::unistd::User) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| EmbeddedError::Io {
        path: data_dir.into(),
        source,
    };
    let mode = std::fs::metadata(data_dir).map_err(io)?.permissions().mode();
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(mode | 0o111)).map_err(io)?;
    for dir in data_dir.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|source| EmbeddedError::Io {
            path: dir.into(),
            source,
        })?;
        if meta.mode() & 0o001 == 0 && meta.uid() != user.uid.as_raw() {
            return Err(EmbeddedError::Unreachable(dir.into()));
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    std::path::absolute(path).map_err(|source| EmbeddedError::Io {
        path: path.into(),
        source,
    })
}

/// The socket lives beside the cluster unless that path is too long for a Unix
/// socket, in which case a short directory under /tmp named after it is used.
fn socket_dir_for(base: &Path) -> PathBuf {
    let beside = base.join("socket");
    if beside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return beside;
    }
    let digest = Sha256::digest(base.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("pulsehost-pg-{}", &hex::encode(digest)[..16]))
}

fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DISTRIBUTION_BIN_DIRS)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
