//! The embedded default database: with `DATABASE_URL` unset the host runs a
//! private PostgreSQL cluster of its own under its data dir, from the machine's
//! server binaries, listening on a Unix socket only (in a directory only the
//! cluster's account may enter), requiring a generated password on every
//! connection, and stops it on exit.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use diesel::{Connection, RunQueryDsl};

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
    password: String,
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
        prepare_base(&base, run_as.as_ref())?;
        let socket_dir = socket_dir_for(&base, run_as.as_ref())?;
        let password = password(&data_dir)?;
        let me = EmbeddedPostgres {
            bin_dir,
            pgdata,
            socket_dir,
            run_as,
            password,
        };
        if !me.pgdata.join("PG_VERSION").exists() {
            me.initdb(&base)?;
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
        me.require_password()?;
        tracing::info!(pgdata = %me.pgdata.display(), socket = %me.socket_dir.display(), "embedded PostgreSQL running");
        Ok(me)
    }

    /// The connection URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "postgres://pulsehost:{}@/postgres?host={}",
            self.password,
            self.socket_dir.display()
        )
    }

    /// Creates the cluster with password authentication for every connection.
    fn initdb(&self, base: &Path) -> Result<(), EmbeddedError> {
        let pwfile = base.join("initdb-password");
        write_private(&pwfile, &self.password, self.run_as.as_ref())?;
        let result = self.pg(
            "initdb",
            &[
                "-D",
                &self.pgdata.to_string_lossy(),
                "-U",
                "pulsehost",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
            ],
        );
        let _ = std::fs::remove_file(&pwfile);
        result?;
        write_private(&self.pgdata.join("pg_hba.conf"), HBA, self.run_as.as_ref())
    }

    /// A cluster made by an earlier version trusted every local connection:
    /// it gets the password and password authentication, and is reloaded.
    fn require_password(&self) -> Result<(), EmbeddedError> {
        let hba = self.pgdata.join("pg_hba.conf");
        let current = std::fs::read_to_string(&hba).map_err(|source| EmbeddedError::Io {
            path: hba.clone(),
            source,
        })?;
        if !current
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("trust"))
        {
            return Ok(());
        }
        let trusted = format!(
            "postgres://pulsehost@/postgres?host={}",
            self.socket_dir.display()
        );
        let mut connection =
            diesel::PgConnection::establish(&trusted).map_err(|e| EmbeddedError::Command {
                command: "connecting to set the password".into(),
                detail: e.to_string(),
            })?;
        diesel::sql_query(format!("ALTER ROLE pulsehost PASSWORD '{}'", self.password))
            .execute(&mut connection)
            .map_err(|e| EmbeddedError::Command {
                command: "ALTER ROLE pulsehost PASSWORD".into(),
                detail: e.to_string(),
            })?;
        write_private(&hba, HBA, self.run_as.as_ref())?;
        self.pg("pg_ctl", &["-D", &self.pgdata.to_string_lossy(), "reload"])?;
        tracing::info!("embedded PostgreSQL now requires its password");
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.pg("pg_ctl", &["-D", &self.pgdata.to_string_lossy(), "status"])
            .is_ok()
    }

    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, EmbeddedError> {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The server gets none of the host's variables (its tokens among them).
        cmd.args(args)
            .process_group(0)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
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

/// Every connection needs the password; nothing but the socket listens.
const HBA: &str =
    "# Written by pulsehost: every connection needs the password.\nlocal all all scram-sha-256\n";

/// The cluster's directory, private to its account.
fn prepare_base(base: &Path, run_as: Option<&nix::unistd::User>) -> Result<(), EmbeddedError> {
    private_dir(base, run_as)
}

/// Makes `dir` (mode 0700) and gives it to `owner`.
fn private_dir(dir: &Path, owner: Option<&nix::unistd::User>) -> Result<(), EmbeddedError> {
    let io = |source| EmbeddedError::Io {
        path: dir.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    if let Some(user) = owner {
        nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).map_err(|e| io(e.into()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Writes `text` to `path` readable by its owner only (`owner`, or the host's user).
fn write_private(path: &Path, text: &str, owner: Option<&nix::unistd::User>) -> Result<(), EmbeddedError> {
    let io = |source| EmbeddedError::Io {
        path: path.into(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    if let Some(user) = owner {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| io(e.into()))?;
    }
    Ok(())
}

/// The cluster's password: generated once, kept in the data dir (mode 0600,
/// the host's user only).
fn password(data_dir: &Path) -> Result<String, EmbeddedError> {
    let path = data_dir.join("db-password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok(existing.trim().to_string());
        }
    }
    let secret = hex::encode(rand::random::<[u8; 24]>());
    write_private(&path, &secret, None)?;
    Ok(secret)
}

/// The socket lives beside the cluster (inside its private directory) unless
/// that path is too long for a Unix socket; then in a new directory with a
/// random name under the temporary directory, private to the cluster's
/// account, whose path is remembered beside the cluster so a cluster still
/// running is found again. Never a predictable shared path.
fn socket_dir_for(base: &Path, owner: Option<&nix::unistd::User>) -> Result<PathBuf, EmbeddedError> {
    let beside = base.join("socket");
    if beside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        private_dir(&beside, owner)?;
        return Ok(beside);
    }
    let remembered = base.join("socket-dir");
    if let Ok(dir) = std::fs::read_to_string(&remembered).map(|d| PathBuf::from(d.trim())) {
        if is_private_to(&dir, owner) {
            return Ok(dir);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("pulsehost-pg-")
        .tempdir()
        .map_err(|source| EmbeddedError::Io {
            path: std::env::temp_dir(),
            source,
        })?
        .keep();
    private_dir(&dir, owner)?;
    std::fs::write(&remembered, dir.as_os_str().as_encoded_bytes()).map_err(|source| EmbeddedError::Io {
        path: remembered,
        source,
    })?;
    Ok(dir)
}

/// A directory (not a link) of `owner` (or the host's user) that nobody else may enter.
fn is_private_to(dir: &Path, owner: Option<&nix::unistd::User>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let uid = owner.map_or(nix::unistd::geteuid(), |u| u.uid).as_raw();
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
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
