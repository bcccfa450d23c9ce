//! The plugin author's side, with no server: `pulsehost plugin new` scaffolds
//! a project of one's own in Rust, Python or JavaScript, `pulsehost plugin
//! build` turns it into a component with that language's toolchain, and
//! `pulsehost plugin check` runs its `describe()` locally.
//!
//! The WIT contract and the Python and JavaScript SDKs are part of this
//! binary: a build writes them into the project's `.pulsehost/` directory, so
//! what a plugin is built against always matches the pulsehost that builds it.
//! The Rust SDK is a crate (`plugins/sdk`), used as a path or git dependency.

mod check;
pub mod debian;
mod guest;
pub mod rust;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use check::{check, Report};

/// The WIT contract plugins are built against.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// The languages a plugin may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A `cdylib` crate over the `pulsehost-sdk` crate.
    Rust,
    /// A module over the bundled Python SDK, built with componentize-py.
    Python,
    /// An ES module over the bundled JavaScript SDK, built with jco (componentize-js).
    Js,
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        })
    }
}

impl Lang {
    /// The language of the project in `dir`, from the file that defines it.
    pub fn of(dir: &Path) -> Result<Lang> {
        let found = [
            (Lang::Rust, "Cargo.toml"),
            (Lang::Python, guest::PYTHON_ENTRY),
            (Lang::Js, guest::JS_ENTRY),
        ]
        .into_iter()
        .find(|(_, file)| dir.join(file).is_file());
        match found {
            Some((lang, _)) => Ok(lang),
            None => bail!(
                "{} holds no plugin project: expected Cargo.toml (Rust), {} (Python) or {} (JavaScript); \
                 `pulsehost plugin new NAME --lang rust|python|js` creates one",
                dir.display(),
                guest::PYTHON_ENTRY,
                guest::JS_ENTRY
            ),
        }
    }
}

/// What `plugin new` suggests pushing.
pub fn output_hint(name: &str) -> String {
    format!("{name}.wasm")
}

/// Creates a project for plugin `name` in `dir` (which must not exist or be
/// empty). `sdk`: for Rust, where the `pulsehost-sdk` crate comes from.
pub fn scaffold(name: &str, lang: Lang, dir: &Path, sdk: Option<&str>) -> Result<()> {
    if let Some(problem) = crate::plugin::validate::name_problem(name) {
        bail!("plugin name: {problem}");
    }
    if lang == Lang::Rust && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("plugin name {name:?}: a Rust crate name must start with a letter");
    }
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not an empty directory", dir.display());
    }
    let (entry, files) = match lang {
        Lang::Rust => ("src/lib.rs", rust_files(name, sdk)?),
        Lang::Python => (guest::PYTHON_ENTRY, guest::python_files(name)),
        Lang::Js => (guest::JS_ENTRY, guest::js_files(name)),
    };
    let readme = include_str!("templates/README.md.tmpl")
        .replace("{lang_name}", lang_name(lang))
        .replace("{entry}", entry)
        .replace("{sdk_note}", sdk_note(lang))
        .replace("{name}", name);
    let gitignore = include_str!("templates/gitignore.tmpl").to_string();
    let all = files.into_iter().chain([
        ("README.md".to_string(), readme),
        (".gitignore".to_string(), gitignore),
    ]);
    for (path, text) in all {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if lang != Lang::Rust {
        guest::materialize(dir)?;
    }
    Ok(())
}

/// Builds the project in `dir` into a component; its path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    match Lang::of(&dir)? {
        Lang::Rust => rust::build_project(&dir),
        Lang::Python => guest::build_python(&dir),
        Lang::Js => guest::build_js(&dir),
    }
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

fn sdk_note(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "The `pulsehost-sdk` crate's builders (`Manifest`, `Task`, `Step`, `Exec`, `Retry`) describe them.",
        Lang::Python => {
            "The `pulsehost` module (in `.pulsehost/python/`, written by the build) gives the builders \
             (`Manifest`, `Task`, `Step`, `Exec`, `Retry`) and a typed `RunContext`. Building needs \
             componentize-py (`pip install componentize-py==0.25.1`)."
        }
        Lang::Js => {
            "The `pulsehost.js` module (in `.pulsehost/js/`, written by the build) gives the builders \
             (`Manifest`, `Task`, `Step`, `Exec`, `Retry`) and a typed run context without BigInts. \
             Building needs Node.js and jco (`npm install -g @bytecodealliance/jco @bytecodealliance/componentize-js`)."
        }
    }
}

/// `Cargo.toml` and `src/lib.rs` of a Rust plugin.
fn rust_files(name: &str, sdk: Option<&str>) -> Result<Vec<(String, String)>> {
    let sdk = match sdk {
        Some(s) if s.contains("://") || s.starts_with("git@") => format!("{{ git = {s:?} }}"),
        Some(path) => format!(
            "{{ path = {:?} }}",
            std::path::absolute(path)?.display().to_string()
        ),
        None => {
            let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
            let checkout = checkout.canonicalize().with_context(|| {
                "this pulsehost was not built from a checkout that still exists: name the SDK with \
                 --sdk PATH (a pulsehost checkout's plugins/sdk) or --sdk GIT-URL"
                    .to_string()
            })?;
            format!("{{ path = {:?} }}", checkout.display().to_string())
        }
    };
    let crate_name = name.replace('-', "_");
    Ok(vec![
        (
            "Cargo.toml".into(),
            include_str!("templates/rust/Cargo.toml.tmpl")
                .replace("{sdk}", &sdk)
                .replace("{name}", name),
        ),
        (
            "src/lib.rs".into(),
            include_str!("templates/rust/lib.rs.tmpl")
                .replace("{crate}", &crate_name)
                .replace("{name}", name),
        ),
    ])
}
