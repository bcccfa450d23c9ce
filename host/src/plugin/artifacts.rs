//! Compiled components on disk: wasmtime's precompiled artifacts, one file per
//! component and engine, so a restarted host loads machine code instead of
//! compiling again.
//!
//! A file is named `<component sha256>-<engine compatibility hash>.cwasm`: a
//! host upgrade or an engine setting that changes code generation looks for
//! another name, misses, and compiles. Its content is a header (magic, the
//! component's sha256, the engine hash, and the sha256 of the artifact)
//! followed by the artifact; a file whose header names another component or
//! engine, or whose checksum does not match (torn, truncated, edited, copied
//! under another name), is deleted and the component compiled again. Files are written to a temporary name in the same directory, synced,
//! then renamed into place, so a reader never sees half a file.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// First bytes of every artifact file (format version 2).
const MAGIC: &[u8; 8] = b"PHCWASM2";
/// Header length: magic, component sha256 (64 hex), engine hash (16 hex), artifact sha256.
const HEADER_LEN: usize = MAGIC.len() + 64 + 16 + 32;

/// Where compiled components of one engine are kept.
#[derive(Debug, Clone)]
pub struct ArtifactDir {
    dir: PathBuf,
    engine_hash: String,
}

/// What looking for a component's artifact found.
pub enum Found {
    /// A sound artifact, loaded.
    Loaded(Component),
    /// No artifact for this component and engine.
    Missing,
    /// A file that failed its checksum or did not load; it was removed.
    Discarded(String),
}

impl ArtifactDir {
    /// The artifact directory `dir` for `engine` (created when first written).
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactDir {
            dir,
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the component with `sha256`.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_hash))
    }

    /// Loads the artifact of `sha256`, if a sound one is on disk.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Found {
        let path = self.path(sha256);
        let file = match std::fs::read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
            Err(e) => return Found::Discarded(format!("reading {}: {e}", path.display())),
        };
        let discard = |why: String| {
            let _ = std::fs::remove_file(&path);
            Found::Discarded(format!("{}: {why}", path.display()))
        };
        let Some(artifact) = checked(&file, &self.identity(sha256)) else {
            return discard("another component or engine, a checksum mismatch, or a truncated file".into());
        };
        match deserialize(engine, artifact) {
            Ok(component) => Found::Loaded(component),
            Err(e) => discard(format!("{e:#}")),
        }
    }

    /// Writes the artifact of `component` (with `sha256`) atomically.
    pub fn store(&self, sha256: &str, component: &Component) -> std::io::Result<PathBuf> {
        let artifact = component.serialize().map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(sha256);
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(&self.identity(sha256))?;
        file.write_all(&Sha256::digest(&artifact))?;
        file.write_all(&artifact)?;
        file.as_file().sync_all()?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

impl ArtifactDir {
    /// What a file must say it holds: the component's sha256 and the engine hash.
    fn identity(&self, sha256: &str) -> Vec<u8> {
        let mut id = format!("{sha256:0>64.64}").into_bytes();
        id.extend_from_slice(self.engine_hash.as_bytes());
        id
    }
}

/// The artifact inside `file`, if its header names `identity` and its checksum holds.
fn checked<'f>(file: &'f [u8], identity: &[u8]) -> Option<&'f [u8]> {
    if file.len() < HEADER_LEN || &file[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (id, rest) = file[MAGIC.len()..].split_at(identity.len());
    let (digest, artifact) = rest.split_at(32);
    (id == identity && Sha256::digest(artifact).as_slice() == digest).then_some(artifact)
}

/// Turns artifact bytes back into a component.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime trusts an artifact to be its own output. These bytes are:
    // this host's engine wrote them (`Component::serialize`) into a directory of
    // its own, with a header naming the component and the engine's compatibility
    // hash, both of which matched just now, as did the sha256 written beside
    // them, so they are exactly what was written for this component. wasmtime
    // still checks the engine and version recorded inside.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_accepted_only_for_its_own_component_engine_and_checksum() {
        let identity = |sha: &str| {
            let mut id = format!("{sha:0>64.64}").into_bytes();
            id.extend_from_slice(b"0123456789abcdef");
            id
        };
        let (mine, other) = (identity(&"a".repeat(64)), identity(&"b".repeat(64)));
        let artifact = b"machine code";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&mine);
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        assert_eq!(checked(&file, &mine), Some(&artifact[..]));
        assert_eq!(
            checked(&file, &other),
            None,
            "copied under another component's name"
        );
        assert_eq!(checked(&file[..file.len() - 1], &mine), None);
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(checked(&flipped, &mine), None);
        assert_eq!(checked(&file[..HEADER_LEN - 1], &mine), None);
    }
}
