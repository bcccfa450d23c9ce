//! `cargo build-plugins`: builds every plugin crate of the guest workspace
//! (`plugins/Cargo.toml`) into a WebAssembly component at
//! `<repo>/target/plugins/<crate-name>.wasm`.
//!
//! The toolchain (rustup's `wasm32-wasip2`, or Debian's Rust plus the WASI
//! preview1 adapter) is `pulsehost::author::rust`'s, the same that
//! `pulsehost plugin build` uses for an author's own crate.
//!
//! Cargo output goes to `${CARGO_TARGET_DIR:-<repo>/target}/plugins-build`, so
//! a target directory shared between checkouts also caches the plugins.
//!
//! Options: `--locked` (passed to cargo), `-h`/`--help`.

use anyhow::{bail, ensure, Context, Result};
use pulsehost::author::rust::Toolchain;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs [`build`]; reports an error with its causes, without a backtrace.
fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds every plugin, then prints one line per component.
fn build() -> Result<()> {
    let mut locked = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--locked" => locked = true,
            "-h" | "--help" => {
                println!("usage: cargo build-plugins [--locked]\n\nBuilds every plugin under plugins/ into target/plugins/<crate>.wasm.");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: cargo build-plugins [--locked])"),
        }
    }

    let repo = repo_root()?;
    let manifest = repo.join("plugins").join("Cargo.toml");
    ensure!(
        manifest.is_file(),
        "guest workspace {} not found",
        manifest.display()
    );
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => std::path::absolute(&dir)
            .with_context(|| format!("resolving CARGO_TARGET_DIR {}", Path::new(&dir).display()))?,
        _ => repo.join("target"),
    }
    .join("plugins-build");
    let out_dir = repo.join("target").join("plugins");

    let toolchain = Toolchain::prepare()?;
    let plugins = toolchain.cdylibs(&manifest, locked)?;
    ensure!(!plugins.is_empty(), "no cdylib crates in {}", manifest.display());
    toolchain.build(&manifest, &target_dir, locked)?;

    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for plugin in &plugins {
        let component = toolchain.component(&target_dir, plugin)?;
        let out = out_dir.join(format!("{}.wasm", plugin.package));
        if fs::read(&out).ok().as_deref() != Some(component.as_slice()) {
            fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
        }
        let shown = out.strip_prefix(&repo).unwrap_or(&out);
        println!(
            "{:>9.1} KiB  {}",
            component.len() as f64 / 1024.0,
            shown.display()
        );
    }
    Ok(())
}

/// The repository root: two levels above this crate's manifest directory.
fn repo_root() -> Result<PathBuf> {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it, as the
    // binary may have been compiled in another checkout sharing the target dir.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no grandparent directory", crate_dir.display()))
}
