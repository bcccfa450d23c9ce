//! The Debian path for Rust plugins: Debian's Rust (1.96, with its library source) compiles the
//! plugins and their `std` for `wasm32-wasip1`, linked by `wasm-ld-19` against
//! Debian's wasi-libc. `plugins/README.md` describes the setup.

use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages that provide everything below.
const PACKAGES: [&str; 5] = ["rustc-web", "cargo-web", "rust-web-src", "wasi-libc", "lld-19"];
/// Debian's cargo (rustup's stays first on PATH, so it is named explicitly).
const CARGO: &str = "/usr/bin/cargo";
/// Debian's rustc.
const RUSTC: &str = "/usr/bin/rustc";
/// The oldest rustc that builds the plugins' dependencies.
const MIN_RUSTC: (u32, u32) = (1, 96);
/// The WebAssembly linker.
const LINKER: &str = "wasm-ld-19";
/// Where wasi-libc installs its objects and archives.
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

/// Environment that `cargo run` (or rustup, or the caller's host build) sets and
/// that must not reach Debian's cargo: it would select rustup's toolchain, the
/// host's target directory or host-only flags.
const LEAKING_VARS: [&str; 17] = [
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PRIMARY_PACKAGE",
];

/// Checks the Debian toolchain, installs it when missing and we are root, and
/// links wasi-libc where rustc looks for its self-contained objects.
pub fn prepare() -> Result<()> {
    let missing = missing();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "building plugins needs rustup's wasm32-wasip2 target or Debian's Rust toolchain; missing:\n  - {}\n\
                 install them with:\n  sudo apt-get install -y {}\n\
                 (or, where rustup can download it: rustup target add wasm32-wasip2)",
                missing.join("\n  - "),
                PACKAGES.join(" ")
            );
        }
        eprintln!(
            "installing {} with apt-get (missing: {})",
            PACKAGES.join(" "),
            missing.join("; ")
        );
        apt_get(&["update"])?;
        let mut install = vec!["install", "-y", "--no-install-recommends"];
        install.extend(PACKAGES);
        apt_get(&install)?;
        let still = self::missing();
        ensure!(
            still.is_empty(),
            "still missing after apt-get install: {}",
            still.join("; ")
        );
    }
    link_self_contained()
}

/// Debian's `cargo`, with the environment cleaned and the linker configured.
pub fn cargo() -> Command {
    let mut cmd = Command::new(CARGO);
    for (key, _) in std::env::vars_os() {
        let leaks = key.to_str().is_some_and(|k| {
            LEAKING_VARS.contains(&k)
                || k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_")
                || k == "CARGO_CRATE_NAME"
        });
        if leaks {
            cmd.env_remove(&key);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(PathBuf::from("/usr/bin")).chain(std::env::split_paths(&path));
    if let Ok(path) = std::env::join_paths(dirs) {
        cmd.env("PATH", path);
    }
    cmd.env("RUSTC", RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_WASM32_WASIP1_LINKER", LINKER);
    cmd
}

/// What is missing, each with the package that provides it.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CARGO).is_file() {
        missing.push(format!("{CARGO} (cargo-web)"));
    }
    match rustc_version() {
        None => missing.push(format!("{RUSTC} (rustc-web)")),
        Some(found) if found < MIN_RUSTC => missing.push(format!(
            "rustc >= {}.{} at {RUSTC}, found {}.{} (rustc-web)",
            MIN_RUSTC.0, MIN_RUSTC.1, found.0, found.1
        )),
        Some(_) => {}
    }
    let library = sysroot().join("lib/rustlib/src/rust/library/Cargo.lock");
    if !library.is_file() {
        missing.push(format!("{} (rust-web-src)", library.display()));
    }
    if !Path::new(WASI_LIBC).join("libc.a").is_file() {
        missing.push(format!("{WASI_LIBC}/libc.a (wasi-libc)"));
    }
    if !Path::new("/usr/bin").join(LINKER).is_file() {
        missing.push(format!("/usr/bin/{LINKER} (lld-19)"));
    }
    missing
}

/// `(major, minor)` of Debian's rustc, if it runs.
fn rustc_version() -> Option<(u32, u32)> {
    let out = Command::new(RUSTC)
        .arg("--version")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    // "rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"
    let mut parts = text.split_whitespace().nth(1)?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Debian rustc's sysroot (`/usr`).
fn sysroot() -> PathBuf {
    Command::new(RUSTC)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|| PathBuf::from("/usr"))
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `apt-get <args>` non-interactively.
fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("starting apt-get")?;
    ensure!(status.success(), "apt-get {} failed ({status})", args.join(" "));
    Ok(())
}

/// rustc links wasm32-wasip1 programs against the "self-contained" C runtime
/// in its sysroot, which Debian does not ship; wasi-libc provides the same
/// files elsewhere. Symlinks them into place (only those not already there).
fn link_self_contained() -> Result<()> {
    let dir = sysroot().join("lib/rustlib/wasm32-wasip1/lib/self-contained");
    let entries = fs::read_dir(WASI_LIBC).with_context(|| format!("listing {WASI_LIBC}"))?;
    let mut pending = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {WASI_LIBC}"))?;
        let (source, link) = (entry.path(), dir.join(entry.file_name()));
        if fs::read_link(&link).ok().as_deref() != Some(source.as_path()) {
            pending.push((source, link));
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let hint = || {
        format!(
            "linking wasi-libc into {0} (as root: mkdir -p {0} && ln -sf {WASI_LIBC}/* {0}/)",
            dir.display()
        )
    };
    fs::create_dir_all(&dir).with_context(hint)?;
    for (source, link) in pending {
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).with_context(hint)?;
        }
        std::os::unix::fs::symlink(&source, &link).with_context(hint)?;
    }
    Ok(())
}
