//! `cargo build-plugins`: builds every plugin crate of the guest workspace
//! (`plugins/Cargo.toml`) into a WebAssembly component at
//! `<repo>/target/plugins/<crate-name>.wasm`.
//!
//! * With rustup's `wasm32-wasip2` target installed, `cargo build --target
//!   wasm32-wasip2` already yields components.
//! * Otherwise Debian's Rust (`rustc-web`, `cargo-web`, `rust-web-src`,
//!   `wasi-libc`, `lld-19`) builds core modules for `wasm32-wasip1` with
//!   `-Zbuild-std`, and each is wrapped into a component here with the WASI
//!   preview1 reactor adapter matching the host's wasmtime.
//!
//! Cargo output goes to `${CARGO_TARGET_DIR:-<repo>/target}/plugins-build`, so
//! a target directory shared between checkouts also caches the plugins.
//!
//! Options: `--locked` (passed to cargo), `-h`/`--help`.

use anyhow::{bail, ensure, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod debian;

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

    let toolchain = if has_wasip2_target() {
        Toolchain::Wasip2
    } else {
        Toolchain::Debian
    };
    if toolchain == Toolchain::Debian {
        debian::prepare()?;
    }

    let plugins = discover(&toolchain, &manifest, locked)?;
    ensure!(!plugins.is_empty(), "no cdylib crates in {}", manifest.display());

    let mut build = toolchain.cargo();
    build
        .arg("build")
        .arg("--release")
        .args(toolchain.build_args())
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    if locked {
        build.arg("--locked");
    }
    run(&mut build)?;

    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let release = target_dir.join(toolchain.target()).join("release");
    for plugin in &plugins {
        let module = release.join(format!("{}.wasm", plugin.lib_name.replace('-', "_")));
        let bytes = fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        let component = if is_core_module(&bytes) {
            componentize(&bytes).with_context(|| format!("making a component of {}", module.display()))?
        } else {
            bytes
        };
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

/// How the plugins are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Toolchain {
    /// rustup's toolchain with the `wasm32-wasip2` target: components directly.
    Wasip2,
    /// Debian's Rust 1.96 with `-Zbuild-std` for `wasm32-wasip1`: core modules.
    Debian,
}

impl Toolchain {
    /// The rustc target triple.
    fn target(self) -> &'static str {
        match self {
            Self::Wasip2 => "wasm32-wasip2",
            Self::Debian => "wasm32-wasip1",
        }
    }

    /// Arguments of `cargo build` besides the common ones.
    fn build_args(self) -> Vec<&'static str> {
        match self {
            Self::Wasip2 => vec!["--target", self.target()],
            Self::Debian => vec!["-Zbuild-std=std,panic_abort", "--target", self.target()],
        }
    }

    /// A `cargo` command of this toolchain, with a clean environment.
    fn cargo(self) -> Command {
        match self {
            // `cargo run` set CARGO to the very cargo (and toolchain) running us.
            Self::Wasip2 => {
                let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                cargo.env_remove("CARGO_TARGET_DIR");
                cargo
            }
            Self::Debian => debian::cargo(),
        }
    }
}

/// One plugin crate: a `cdylib` target of the guest workspace.
#[derive(Debug)]
struct Plugin {
    /// The package name, which names the component file.
    package: String,
    /// The library target's name, which names the compiled module.
    lib_name: String,
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

/// The `cdylib` crates of the guest workspace, from `cargo metadata`.
fn discover(toolchain: &Toolchain, manifest: &Path, locked: bool) -> Result<Vec<Plugin>> {
    let mut cmd = toolchain.cargo();
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
    let mut plugins = Vec::new();
    for package in metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?
    {
        let name = package["name"].as_str().context("package without a name")?;
        for target in package["targets"].as_array().into_iter().flatten() {
            let cdylib = target["crate_types"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t == "cdylib");
            if let (true, Some(lib_name)) = (cdylib, target["name"].as_str()) {
                plugins.push(Plugin {
                    package: name.to_string(),
                    lib_name: lib_name.to_string(),
                });
            }
        }
    }
    plugins.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(plugins)
}

/// Whether `bytes` is a core WebAssembly module (version 1) rather than a
/// component (which has a different version/layer field).
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm") && bytes.get(4..8) == Some(&[1, 0, 0, 0])
}

/// Wraps a wasip1 core module (with the component type wit-bindgen embedded in
/// it) into a component, adapting its WASI imports with the reactor adapter.
fn componentize(module: &[u8]) -> Result<Vec<u8>> {
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
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    ensure!(status.success(), "{} failed ({status})", describe(cmd));
    Ok(())
}

/// A command line for messages.
fn describe(cmd: &Command) -> String {
    let mut words: Vec<OsString> = vec![cmd.get_program().to_owned()];
    words.extend(cmd.get_args().map(ToOwned::to_owned));
    words
        .iter()
        .map(|w| w.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
