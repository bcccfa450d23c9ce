//! Remote files a process asks for: downloaded once into a cache keyed by
//! their sha256 under the data dir, verified while they stream in (a file
//! larger than the cap or whose hash differs is never kept), and linked into
//! the process's working directory before it starts. The cache is bounded:
//! past its cap the least recently used files are removed.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Uid};
use sha2::{Digest, Sha256};

use crate::spec::RemoteFile;

/// How long a download may take, connecting included.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The cache of remote files.
#[derive(Debug, Clone)]
pub struct ResourceCache {
    dir: PathBuf,
    /// Largest single file, bytes.
    pub max_file_bytes: u64,
    /// Largest total, bytes.
    pub max_total_bytes: u64,
}

impl ResourceCache {
    /// A cache under `dir`.
    pub fn new(dir: PathBuf, max_file_bytes: u64, max_total_bytes: u64) -> Self {
        ResourceCache {
            dir,
            max_file_bytes,
            max_total_bytes,
        }
    }

    /// Makes sure every file of `files` is in the cache, verified; the error
    /// names the file and what went wrong.
    pub async fn fetch_all(&self, files: Vec<RemoteFile>) -> Result<(), String> {
        let cache = self.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&cache.dir)
                .map_err(|e| format!("cannot create {}: {e}", cache.dir.display()))?;
            for file in &files {
                cache.fetch(file)?;
            }
            cache.evict();
            Ok(())
        })
        .await
        .map_err(|e| format!("the download task stopped: {e}"))?
    }

    fn cached(&self, sha256: &str, executable: bool) -> PathBuf {
        self.dir.join(if executable {
            format!("{sha256}.x")
        } else {
            sha256.to_string()
        })
    }

    fn fetch(&self, file: &RemoteFile) -> Result<(), String> {
        let sha = file.sha256.to_ascii_lowercase();
        let target = self.cached(&sha, file.executable);
        if target.exists() {
            touch(&target);
            return Ok(());
        }
        let what = format!("resource {} ({})", file.dest, file.url);
        let staging = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| format!("{what}: {e}"))?;
        let response = ureq::get(&file.url)
            .timeout(DOWNLOAD_TIMEOUT)
            .call()
            .map_err(|e| format!("{what}: download failed: {e}"))?;
        let mut body = response.into_reader().take(self.max_file_bytes + 1);
        let mut hasher = Sha256::new();
        let mut out = staging.as_file();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = body
                .read(&mut buffer)
                .map_err(|e| format!("{what}: download failed: {e}"))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > self.max_file_bytes {
                return Err(format!(
                    "{what}: larger than {} bytes (PULSEHOST_RESOURCE_MAX_BYTES)",
                    self.max_file_bytes
                ));
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(|e| format!("{what}: {e}"))?;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != sha {
            return Err(format!(
                "{what}: sha256 mismatch: expected {sha}, got {actual} ({total} bytes)"
            ));
        }
        let mode = if file.executable { 0o555 } else { 0o444 };
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{what}: {e}"))?;
        staging.persist(&target).map_err(|e| format!("{what}: {e}"))?;
        Ok(())
    }

    /// Removes the least recently used files while the cache is over its cap.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, size, path) in files {
            if total <= self.max_total_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }

    /// Puts `files` (already fetched) at their destinations under `workdir`,
    /// a fresh scratch directory nothing has run in yet (so no link planted
    /// by a step can redirect a write): as hard links to the read-only cached
    /// files when steps run as another user (`owner`, who then owns the
    /// directories made for them and cannot change the files), as copies
    /// otherwise.
    pub fn place(
        &self,
        files: &[RemoteFile],
        workdir: &Path,
        owner: Option<(Uid, Gid)>,
    ) -> Result<(), String> {
        for file in files {
            let cached = self.cached(&file.sha256.to_ascii_lowercase(), file.executable);
            let what = format!("resource {}", file.dest);
            let dest = workdir.join(&file.dest);
            make_parents(workdir, Path::new(&file.dest), owner).map_err(|e| format!("{what}: {e}"))?;
            let _ = std::fs::remove_file(&dest);
            let linked = owner.is_some() && std::fs::hard_link(&cached, &dest).is_ok();
            if !linked {
                std::fs::copy(&cached, &dest).map_err(|e| format!("{what}: {e}"))?;
            }
            touch(&cached);
        }
        Ok(())
    }
}

/// Makes the directories of `relative` under `root`, each given to `owner`.
fn make_parents(root: &Path, relative: &Path, owner: Option<(Uid, Gid)>) -> std::io::Result<()> {
    let mut at = root.to_path_buf();
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        at.push(part);
        if !at.is_dir() {
            std::fs::create_dir(&at)?;
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(&at, Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

/// Marks a cached file used now (its modification time orders eviction).
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Why `file` cannot be fetched or placed, if it cannot (checked at upload).
pub fn problem(file: &RemoteFile) -> Option<(&'static str, String)> {
    use std::path::Component;
    if !(file.url.starts_with("http://") || file.url.starts_with("https://")) {
        return Some((
            "url",
            format!("{:?} must be an http:// or https:// address", file.url),
        ));
    }
    if file.sha256.len() != 64 || !file.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(("sha256", "must be the file's sha256 as 64 hex digits".into()));
    }
    let dest = Path::new(&file.dest);
    let plain = !file.dest.is_empty() && dest.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Some((
            "dest",
            format!(
                "{:?} must be a relative path inside the working directory, without `..`",
                file.dest
            ),
        ));
    }
    None
}
