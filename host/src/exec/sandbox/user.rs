//! The user native processes run as. A host running as root never runs them
//! as root: it uses `PULSEHOST_RUN_AS`, or else a dedicated system user it
//! creates once ([`DEFAULT_USER`]). A host running as another user can only
//! run them as itself.

use nix::unistd::{Gid, Uid, User};

/// The system user created for steps when the host is root and no user is named.
pub const DEFAULT_USER: &str = "pulsehost-steps";

/// A user to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid.
    pub gid: Gid,
}

/// Who runs steps: Some user to switch to, or None for the host's own user
/// (only when the host is not root). `configured` is a name or a numeric uid.
/// When the default user is missing and `create` is false, the answer is
/// None (only `pulsehost doctor` asks that way).
pub fn resolve(configured: Option<&str>, create: bool) -> Result<Option<RunAs>, String> {
    let root = nix::unistd::geteuid().is_root();
    let user = match configured {
        Some(wanted) => lookup(wanted)?.ok_or_else(|| {
            format!("PULSEHOST_RUN_AS={wanted:?}: no such user; create it (useradd --system {wanted}) or name another")
        })?,
        None if root => match lookup(DEFAULT_USER)? {
            Some(user) => user,
            None if create => create_default()?,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    if user.uid.is_root() {
        return Err(format!(
            "PULSEHOST_RUN_AS={:?} is root: steps never run as root; name an unprivileged user",
            user.name
        ));
    }
    if !root {
        if user.uid == nix::unistd::geteuid() {
            return Ok(None);
        }
        return Err(format!(
            "PULSEHOST_RUN_AS={:?}: only a host running as root can run steps as another user; \
             unset it (steps then run as the host's own user) or start the host as root",
            user.name
        ));
    }
    Ok(Some(RunAs {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
    }))
}

fn lookup(wanted: &str) -> Result<Option<User>, String> {
    let found = match wanted.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(wanted),
    };
    found.map_err(|e| format!("cannot look up the user {wanted:?}: {e}"))
}

/// Creates [`DEFAULT_USER`] as a system user without a home or a login shell.
fn create_default() -> Result<User, String> {
    let attempts: [&[&str]; 2] = [
        &[
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            DEFAULT_USER,
        ],
        // BusyBox (Alpine).
        &[
            "adduser",
            "-S",
            "-D",
            "-H",
            "-h",
            "/nonexistent",
            "-s",
            "/sbin/nologin",
            DEFAULT_USER,
        ],
    ];
    let mut errors = Vec::new();
    for argv in attempts {
        match std::process::Command::new(argv[0]).args(&argv[1..]).output() {
            Ok(out) if out.status.success() => break,
            Ok(out) => errors.push(format!(
                "{}: {}",
                argv[0],
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => errors.push(format!("{}: {e}", argv[0])),
        }
    }
    match lookup(DEFAULT_USER)? {
        Some(user) => {
            tracing::info!(user = DEFAULT_USER, uid = user.uid.as_raw(), "created the system user steps run as");
            Ok(user)
        }
        None => Err(format!(
            "the host runs as root and steps never do, but the user {DEFAULT_USER:?} could not be created ({}): \
             create an unprivileged user and set PULSEHOST_RUN_AS to it",
            errors.join("; ")
        )),
    }
}

/// Whether `user` may walk down to `dir` (every ancestor searchable by it);
/// an error names the first that refuses and how to fix it.
pub fn check_reachable(dir: &std::path::Path, user: &RunAs) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let searchable = meta.mode() & 0o001 != 0
            || (meta.uid() == user.uid.as_raw() && meta.mode() & 0o100 != 0)
            || (meta.gid() == user.gid.as_raw() && meta.mode() & 0o010 != 0);
        if !searchable {
            return Err(format!(
                "steps run as {:?}, which cannot enter {}: choose a PULSEHOST_DATA_DIR whose parent \
                 directories others may traverse (e.g. /var/lib/pulsehost, or chmod o+x {}), or set \
                 PULSEHOST_RUN_AS to a user that can",
                user.name,
                ancestor.display(),
                ancestor.display()
            ));
        }
    }
    Ok(())
}
