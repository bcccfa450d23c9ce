//! Rust plugins: a `cdylib` crate built into a component.
//!
//! * With rustup's `wasm32-wasip2` target installed, `cargo build --target
//!   wasm32-wasip2` already yields components.
//! * Otherwise Debian's Rust (`rustc-web`, `cargo-web`, `rust-web-src`,
//!   `wasi-libc`, `lld-19`) builds core modules for `wasm32-wasip1` with
//!   `-Zbuild-std` ([`super::debian`]), and each is wrapped into a component
//!   here with the WASI preview1 reactor adapter matching the host's wasmtime
//!   (wit-component lives only in this module).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::debian;

/// How Rust plugins are compiled on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's toolchain with the `wasm32-wasip2` target: components directly.
    Wasip2,
    /// Debian's Rust with `-Zbuild-std` for `wasm32-wasip1`: core modules.
    Debian,
}

/// One plugin crate: a `cdylib` target.
#[derive(Debug, Clone)]
pub struct Cdylib {
    /// The package name, which names the component file.
    pub package: String,
    /// The library target's name, which names the compiled module.
    pub lib_name: String,
}

impl Toolchain {
    /// The toolchain this machine offers, installing Debian's when it is
    /// missing and we are root (or saying how to).
    pub fn prepare() -> Result<Self> {
        if has_wasip2_target() {
            return Ok(Self::Wasip2);
        }
        debian::prepare()?;
        Ok(Self::Debian)
    }

    /// The rustc target triple.
    pub fn target(self) -> &'static str {
        match self {
            Self::Wasip2 => "wasm32-wasip2",
            Self::Debian => "wasm32-wasip1",
        }
    }

    /// A `cargo` command of this toolchain, with a clean environment.
    pub fn cargo(self) -> Command {
        match self {
            // `cargo run` sets CARGO to the very cargo (and toolchain) running us.
            Self::Wasip2 => {
                let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                cargo.env_remove("CARGO_TARGET_DIR");
                cargo
            }
            Self::Debian => debian::cargo(),
        }
    }

    /// `cargo build --release` of `manifest` for this target into `target_dir`.
    pub fn build(self, manifest: &Path, target_dir: &Path, locked: bool) -> Result<()> {
        let mut build = self.cargo();
        build.arg("build").arg("--release");
        if self == Self::Debian {
            build.arg("-Zbuild-std=std,panic_abort");
        }
        build
            .args(["--target", self.target(), "--manifest-path"])
            .arg(manifest)
            .arg("--target-dir")
            .arg(target_dir);
        if locked {
            build.arg("--locked");
        }
        run(&mut build)
    }

    /// The component of `crate_` after [`Toolchain::build`] into `target_dir`.
    pub fn component(self, target_dir: &Path, crate_: &Cdylib) -> Result<Vec<u8>> {
        let module = target_dir
            .join(self.target())
            .join("release")
            .join(format!("{}.wasm", crate_.lib_name.replace('-', "_")));
        let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        if is_core_module(&bytes) {
            componentize(&bytes).with_context(|| format!("making a component of {}", module.display()))
        } else {
            Ok(bytes)
        }
    }

    /// The `cdylib` crates of `manifest` (a package or a workspace), by package name.
    pub fn cdylibs(self, manifest: &Path, locked: bool) -> Result<Vec<Cdylib>> {
        let mut cmd = self.cargo();
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest);
        if locked {
            cmd.arg("--locked");
        }
        let out = cmd.output().context("running cargo metadata")?;
        ensure!(
            out.status.success(),
            "cargo metadata failed for {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let metadata: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
        let mut found = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let name = package["name"].as_str().context("package without a name")?;
            for target in package["targets"].as_array().into_iter().flatten() {
                let cdylib = target["crate_types"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t == "cdylib");
                if let (true, Some(lib_name)) = (cdylib, target["name"].as_str()) {
                    found.push(Cdylib {
                        package: name.to_string(),
                        lib_name: lib_name.to_string(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.package.cmp(&b.package));
        Ok(found)
    }
}

/// Builds the crate in `dir` (`[lib] crate-type = ["cdylib"]`) into
/// `<dir>/<package>.wasm`. Cargo output goes to `CARGO_TARGET_DIR` when set,
/// else `<dir>/target`.
pub fn build_project(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => std::path::absolute(d)?,
        None => dir.join("target"),
    };
    let toolchain = Toolchain::prepare()?;
    if toolchain == Toolchain::Debian {
        prefetch(&manifest);
    }
    let crates = toolchain.cdylibs(&manifest, false)?;
    let crate_ = match crates.as_slice() {
        [one] => one.clone(),
        [] => anyhow::bail!(
            "{} has no cdylib target: add `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        ),
        _ => anyhow::bail!(
            "{} has several cdylib crates ({}); build each from its own directory",
            manifest.display(),
            crates
                .iter()
                .map(|c| c.package.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    toolchain.build(&manifest, &target_dir, false)?;
    let component = toolchain.component(&target_dir, &crate_)?;
    let out = dir.join(format!("{}.wasm", crate_.package));
    std::fs::write(&out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// Debian's cargo (1.96) cannot fetch git sources (its libgit2 refuses the
/// proxy options it is given), but it builds them once fetched: rustup's
/// cargo, when there is one, fetches the dependencies first. Best effort: a
/// failure here shows again, explained, in the build.
fn prefetch(manifest: &Path) {
    let fetched = Command::new("cargo")
        .args(["fetch", "--manifest-path"])
        .arg(manifest)
        .env_remove("CARGO_TARGET_DIR")
        .status();
    if !fetched.is_ok_and(|s| s.success()) {
        eprintln!("note: `cargo fetch` with rustup's cargo did not succeed; Debian's cargo fetches (git sources need rustup's cargo)");
    }
}

/// Whether rustup reports the `wasm32-wasip2` target as installed.
fn has_wasip2_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == "wasm32-wasip2")
        })
        .unwrap_or(false)
}

/// Whether `bytes` is a core WebAssembly module (version 1) rather than a
/// component (which has a different version/layer field).
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm") && bytes.get(4..8) == Some(&[1, 0, 0, 0])
}

/// Wraps a wasip1 core module (with the component type wit-bindgen embedded in
/// it) into a component, adapting its WASI imports with the reactor adapter.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
}

/// Runs a command with inherited output; fails with the command line if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    ensure!(status.success(), "{} failed ({status})", describe(cmd));
    Ok(())
}

/// A command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut words: Vec<OsString> = vec![cmd.get_program().to_owned()];
    words.extend(cmd.get_args().map(ToOwned::to_owned));
    words
        .iter()
        .map(|w| w.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
