//! A private PostgreSQL cluster for one test, on its own TCP port, that the test
//! can stop and start again: database outages without disturbing the shared
//! server every other test uses. Built from the machine's server binaries; as
//! root it runs as `postgres`, because PostgreSQL refuses to run as root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running (or stopped) private cluster, removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl Cluster {
    /// Initialises and starts a cluster with trust authentication.
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pulsehost-cluster-")
            .tempdir()
            .expect("cluster dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let cluster = Cluster {
            bin: server_binaries(),
            port: super::free_port(),
            dir,
        };
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        cluster.resume();
        cluster
    }

    /// The URL of database `name` (`postgres` always exists).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once, as a crash or a lost network would: every
    /// connection is cut and new ones are refused.
    pub fn stop(&self) {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args).env("LC_ALL", "C").current_dir("/");
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("a postgres user to run the private cluster as");
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(["-D", &self.data(), "-m", "immediate", "stop"])
            .current_dir("/");
        if let Ok(Some(user)) = nix::unistd::User::from_name("postgres") {
            if nix::unistd::geteuid().is_root() {
                cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
            }
        }
        let _ = cmd.output();
    }
}

/// The newest PostgreSQL server binaries on this machine.
fn server_binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("initdb").1
}
