//! Python and JavaScript plugins: their project files, the SDK and WIT this
//! binary carries (written into the project's `.pulsehost/` at every build),
//! and the tools that make components of them: componentize-py for Python,
//! componentize-js (jco's engine) for JavaScript. A missing tool is installed
//! into pulsehost's cache directory (`~/.cache/pulsehost`) from PyPI or npm,
//! or named by `PULSEHOST_COMPONENTIZE_PY` / `PULSEHOST_JS_TOOLS`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::rust::{describe, run};

/// The Python module componentize-py makes a component of.
pub const PYTHON_ENTRY: &str = "app.py";
/// The JavaScript module componentize-js makes a component of.
pub const JS_ENTRY: &str = "app.js";

/// The componentize-py release the Python SDK is tested with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The npm packages the JavaScript SDK is tested with.
const JS_TOOLS: [&str; 2] = [
    "@bytecodealliance/jco@1.35.0",
    "@bytecodealliance/componentize-js@0.23.0",
];

/// The Python SDK, as `.pulsehost/python/<path>`.
const PYTHON_SDK: [(&str, &str); 7] = [
    (
        "pulsehost/__init__.py",
        include_str!("../../../plugins/python/pulsehost/__init__.py"),
    ),
    (
        "pulsehost/_check.py",
        include_str!("../../../plugins/python/pulsehost/_check.py"),
    ),
    (
        "pulsehost/context.py",
        include_str!("../../../plugins/python/pulsehost/context.py"),
    ),
    (
        "pulsehost/exec.py",
        include_str!("../../../plugins/python/pulsehost/exec.py"),
    ),
    (
        "pulsehost/limits.py",
        include_str!("../../../plugins/python/pulsehost/limits.py"),
    ),
    (
        "pulsehost/plugin.py",
        include_str!("../../../plugins/python/pulsehost/plugin.py"),
    ),
    (
        "pulsehost/task.py",
        include_str!("../../../plugins/python/pulsehost/task.py"),
    ),
];

/// The JavaScript SDK, as `.pulsehost/js/<path>`.
const JS_SDK: [(&str, &str); 4] = [
    ("pulsehost.js", include_str!("../../../plugins/js/pulsehost.js")),
    ("lib/check.js", include_str!("../../../plugins/js/lib/check.js")),
    ("lib/exec.js", include_str!("../../../plugins/js/lib/exec.js")),
    ("lib/task.js", include_str!("../../../plugins/js/lib/task.js")),
];

/// The files of a new Python plugin.
pub fn python_files(name: &str) -> Vec<(String, String)> {
    vec![
        (
            PYTHON_ENTRY.into(),
            include_str!("templates/app.py.tmpl").replace("{name}", name),
        ),
        (
            "pyproject.toml".into(),
            include_str!("templates/pyproject.toml.tmpl").replace("{name}", name),
        ),
    ]
}

/// The files of a new JavaScript plugin.
pub fn js_files(name: &str) -> Vec<(String, String)> {
    vec![
        (
            JS_ENTRY.into(),
            include_str!("templates/app.js.tmpl").replace("{name}", name),
        ),
        (
            "package.json".into(),
            include_str!("templates/package.json.tmpl").replace("{name}", name),
        ),
    ]
}

/// Writes the WIT contract and both SDKs into `<dir>/.pulsehost/`.
pub fn materialize(dir: &Path) -> Result<()> {
    let root = dir.join(".pulsehost");
    let files = std::iter::once(("wit/plugin.wit".to_string(), super::WIT))
        .chain(PYTHON_SDK.iter().map(|(p, t)| (format!("python/{p}"), *t)))
        .chain(JS_SDK.iter().map(|(p, t)| (format!("js/{p}"), *t)));
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The component's path: `<dir>/<directory name>.wasm`.
fn output(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable directory name", dir.display()))?;
    Ok(dir.join(format!("{name}.wasm")))
}

/// Builds `<dir>/app.py` with componentize-py.
pub fn build_python(dir: &Path) -> Result<PathBuf> {
    materialize(dir)?;
    let out = output(dir)?;
    let mut cmd = Command::new(componentize_py()?);
    cmd.current_dir(dir)
        .args([
            "-d",
            ".pulsehost/wit",
            "-w",
            "plugin",
            "componentize",
            "app",
            "-p",
            ".",
            "-p",
        ])
        .arg(".pulsehost/python")
        .arg("-o")
        .arg(&out);
    run(&mut cmd)?;
    Ok(out)
}

/// Builds `<dir>/app.js` with componentize-js, without the `http` and
/// `fetch-event` features (the host provides no `wasi:http`).
pub fn build_js(dir: &Path) -> Result<PathBuf> {
    materialize(dir)?;
    let out = output(dir)?;
    let mut cmd = Command::new(js_tool("componentize-js")?);
    cmd.current_dir(dir)
        .arg(JS_ENTRY)
        .args([
            "--wit",
            ".pulsehost/wit",
            "--world-name",
            "plugin",
            "--disable",
            "http",
            "fetch-event",
            "-o",
        ])
        .arg(&out);
    run(&mut cmd)?;
    Ok(out)
}

/// Where pulsehost installs the tools it fetches.
fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context(
            "neither XDG_CACHE_HOME nor HOME is set: cannot pick a directory to install build tools into",
        )?;
    Ok(base.join("pulsehost"))
}

/// componentize-py: `PULSEHOST_COMPONENTIZE_PY`, on PATH, or installed into
/// a venv in the cache directory.
fn componentize_py() -> Result<PathBuf> {
    if let Some(named) = std::env::var_os("PULSEHOST_COMPONENTIZE_PY").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(named));
    }
    if let Some(found) = on_path("componentize-py") {
        return Ok(found);
    }
    let venv = cache_dir()?.join("componentize-py");
    let tool = venv.join("bin/componentize-py");
    if !tool.is_file() {
        eprintln!(
            "componentize-py not found: installing {COMPONENTIZE_PY} into {}",
            venv.display()
        );
        let python = std::env::var("PULSEHOST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut create = Command::new(&python);
        create.args(["-m", "venv"]).arg(&venv);
        run(&mut create).context("creating a venv for componentize-py (needs python3 with venv)")?;
        let mut install = Command::new(venv.join("bin/pip"));
        install.args(["install", "--quiet", COMPONENTIZE_PY]);
        run(&mut install)
            .with_context(|| format!("installing it yourself: pip install {COMPONENTIZE_PY}"))?;
    }
    Ok(tool)
}

/// A tool of the npm packages: `PULSEHOST_JS_TOOLS/node_modules/.bin`, the
/// project's own `node_modules`, PATH, or installed into the cache directory.
fn js_tool(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PULSEHOST_JS_TOOLS").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("node_modules/.bin").join(name));
    }
    if let Some(found) = on_path(name) {
        return Ok(found);
    }
    let tools = cache_dir()?.join("js-tools");
    let tool = tools.join("node_modules/.bin").join(name);
    if !tool.is_file() {
        if on_path("npm").is_none() {
            bail!("{name} not found and npm is missing: install Node.js 20 or newer with npm, then run the build again");
        }
        eprintln!(
            "{name} not found: installing {} into {}",
            JS_TOOLS.join(" "),
            tools.display()
        );
        let mut install = Command::new("npm");
        install
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&tools)
            .args(JS_TOOLS);
        run(&mut install).with_context(|| {
            format!(
                "{} (or install them yourself and set PULSEHOST_JS_TOOLS)",
                describe(&install)
            )
        })?;
    }
    Ok(tool)
}

/// The first `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
