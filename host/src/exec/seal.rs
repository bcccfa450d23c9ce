//! Sealing what a step user built (a venv) so that it becomes the host's and
//! no step can change it, while steps of that user may still be running and
//! trying to redirect the walk. Every entry is reached through the open
//! descriptor of its directory (`/proc/self/fd/<dir>/<name>`), opened without
//! following a link, and changed through its own descriptor: a directory
//! swapped for a link mid-walk is not followed, and a link is re-owned itself,
//! never its target. Only entries the builder owns change hands; anything else
//! found there (a hard link to someone else's file) is left exactly as it is.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::libc;
use nix::unistd::Uid;

/// Gives the directory `dir` and everything under it that `builder` owns to
/// the host's user, without write access for anyone else or set-id bits.
/// `dir` itself must be a real directory (not a link).
pub fn seal(dir: &Path, builder: Uid) -> std::io::Result<()> {
    let root = open(dir, true)?;
    seal_open(&root, builder)
}

fn seal_open(dir: &File, builder: Uid) -> std::io::Result<()> {
    take(dir, builder)?;
    let here = fd_path(dir);
    for entry in std::fs::read_dir(&here)? {
        let name = entry?.file_name();
        let path = here.join(&name);
        match open(&path, true) {
            Ok(subdir) => seal_open(&subdir, builder)?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                seal_entry(&path, builder)?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seals one entry that is not a directory: a file through its own
/// descriptor, a link itself (never what it points to).
fn seal_entry(path: &Path, builder: Uid) -> std::io::Result<()> {
    match open(path, false) {
        Ok(file) => take(&file, builder),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            if std::fs::symlink_metadata(path)?.uid() == builder.as_raw() {
                std::os::unix::fs::lchown(path, Some(0), Some(0))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Opens `path` without following a final link (a directory, or anything
/// else without blocking on a fifo).
fn open(path: &Path, directory: bool) -> std::io::Result<File> {
    let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    OpenOptions::new().read(true).custom_flags(flags).open(path)
}

/// Makes the open entry the host's, if `builder` owns it.
fn take(file: &File, builder: Uid) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if meta.uid() != builder.as_raw() {
        return Ok(());
    }
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o755))
}

fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed_and_foreign_files_keep_their_owner_and_mode() {
        if !nix::unistd::geteuid().is_root() {
            return; // re-owning needs root; the e2e tests run as root
        }
        let builder = Uid::from_raw(65534);
        let tree = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let venv = tree.path().join("venv");
        std::fs::create_dir_all(venv.join("lib")).unwrap();
        std::fs::write(venv.join("lib/mod.py"), "x").unwrap();
        std::os::unix::fs::symlink(&secret, venv.join("lib/link-to-secret")).unwrap();
        std::os::unix::fs::symlink(outside.path(), venv.join("dir-link")).unwrap();
        for p in [&venv, &venv.join("lib"), &venv.join("lib/mod.py")] {
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::os::unix::fs::lchown(venv.join("lib/link-to-secret"), Some(65534), Some(65534)).unwrap();

        seal(&venv, builder).unwrap();

        let module = std::fs::metadata(venv.join("lib/mod.py")).unwrap();
        assert_eq!((module.uid(), module.mode() & 0o777), (0, 0o755));
        let lib = std::fs::metadata(venv.join("lib")).unwrap();
        assert_eq!((lib.uid(), lib.mode() & 0o777), (0, 0o755));
        let target = std::fs::metadata(&secret).unwrap();
        assert_eq!(target.mode() & 0o777, 0o600, "the link's target is untouched");
        assert_eq!(
            std::fs::symlink_metadata(venv.join("lib/link-to-secret"))
                .unwrap()
                .uid(),
            0
        );
    }
}
