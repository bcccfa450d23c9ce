//! Starting a [`ProcessSpec`]: confined processes through the sandbox's own
//! spawn, the others through tokio's. Either way the host gets a child to
//! wait for and signal, and its stdin, stdout and stderr as async streams.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{reaper, sandbox, terminal, ProcessSpec, Program};

/// A started process.
pub(super) enum Child {
    /// Started by tokio (not confined).
    Plain(tokio::process::Child),
    /// Started confined; waiting for it waits for its init.
    Confined(sandbox::Started),
}

impl Child {
    /// Its process group (the child's pid).
    pub fn group(&self) -> Option<i32> {
        match self {
            Child::Plain(child) => child.id().map(|id| id as i32),
            Child::Confined(started) => Some(started.id()),
        }
    }

    /// Whether what it left in its process group is the host's to reap
    /// (not when it lives in a PID namespace of its own, which reaps it).
    pub fn leaves_group_to_host(&self) -> bool {
        match self {
            Child::Plain(_) => true,
            Child::Confined(started) => !started.namespace_reaps(),
        }
    }

    /// Waits for it to end.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Child::Plain(child) => child.wait().await,
            Child::Confined(started) => started.wait().await,
        }
    }
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;

/// A started process with its streams.
pub(super) struct Running {
    pub child: Child,
    pub stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    /// stdout, or the terminal that is both stdout and stderr.
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    /// Keeps the reaper off it until it has been waited for.
    pub _owned: reaper::Owned,
}

/// Starts `spec`; the error says what could not be started and why.
pub(super) fn start(spec: &ProcessSpec) -> Result<Running, String> {
    let cannot = |e: std::io::Error| format!("could not start {}: {e}", describe(&spec.program));
    let (program, argv) = program_and_args(spec);
    match &spec.confinement {
        Some(confinement) => start_confined(spec, confinement, program, argv).map_err(cannot),
        None => start_plain(spec, program, argv).map_err(cannot),
    }
}

fn start_confined(
    spec: &ProcessSpec,
    confinement: &Arc<sandbox::Confinement>,
    program: PathBuf,
    argv: Vec<OsString>,
) -> std::io::Result<Running> {
    let (stdin_child, stdin) = if spec.stdin.is_some() {
        let (read, write) = pipe()?;
        let sender = tokio::net::unix::pipe::Sender::from_owned_fd(write)?;
        (read, Some(Box::new(sender) as Box<dyn AsyncWrite + Unpin + Send>))
    } else {
        (std::fs::File::open("/dev/null")?.into(), None)
    };
    let (stdout_child, stderr_child, stdout, stderr): (OwnedFd, OwnedFd, Reader, Option<Reader>) =
        if spec.terminal {
            let t = terminal::open()?;
            (t.stdout, t.stderr, Box::new(t.primary), None)
        } else {
            let (out_read, out_write) = pipe()?;
            let (err_read, err_write) = pipe()?;
            let out = tokio::net::unix::pipe::Receiver::from_owned_fd(out_read)?;
            let err = tokio::net::unix::pipe::Receiver::from_owned_fd(err_read)?;
            (out_write, err_write, Box::new(out), Some(Box::new(err)))
        };
    let command = sandbox::Command {
        program: search_path(&program, &spec.env),
        argv,
        env: spec.env.clone(),
        working_dir: spec.working_dir.clone(),
        stdio: [stdin_child, stdout_child, stderr_child],
    };
    let (mut started, owned) = reaper::start_owned(|| {
        let started = confinement.start(command)?;
        let pid = started.id();
        Ok((started, pid))
    })?;
    // Outside the reaper's lock: setting a step up may take a while.
    started.await_exec()?;
    Ok(Running {
        child: Child::Confined(started),
        stdin,
        stdout: Some(stdout),
        stderr,
        _owned: owned,
    })
}

fn start_plain(spec: &ProcessSpec, program: PathBuf, argv: Vec<OsString>) -> std::io::Result<Running> {
    let mut command = tokio::process::Command::new(&program);
    let mut args = argv.into_iter();
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .process_group(0)
        .kill_on_drop(true);
    let primary = if spec.terminal {
        let t = terminal::open()?;
        command
            .stdout(Stdio::from(t.stdout))
            .stderr(Stdio::from(t.stderr));
        Some(t.primary)
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    };
    let (mut child, owned) = reaper::start_owned(|| {
        let child = command.spawn()?;
        let pid = child.id().map_or(0, |id| id as i32);
        Ok((child, pid))
    })?;
    // The parent's copies of a terminal's child side close here, so that the
    // capture ends when the process and everything it started have.
    drop(command);
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn AsyncWrite + Unpin + Send>);
    let stdout: Option<Reader> = match primary {
        Some(terminal) => Some(Box::new(terminal)),
        None => child.stdout.take().map(|s| Box::new(s) as Reader),
    };
    let stderr = child.stderr.take().map(|s| Box::new(s) as Reader);
    Ok(Running {
        child: Child::Plain(child),
        stdin,
        stdout,
        stderr,
        _owned: owned,
    })
}

/// The file to execute and its `argv` (`argv[0]` first).
fn program_and_args(spec: &ProcessSpec) -> (PathBuf, Vec<OsString>) {
    let (program, mut argv): (PathBuf, Vec<OsString>) = match &spec.program {
        Program::Shell(script) => (
            "/bin/sh".into(),
            vec!["/bin/sh".into(), "-c".into(), script.into(), "pulsehost".into()],
        ),
        Program::Executable(path) => (path.clone(), vec![path.clone().into()]),
        Program::Binary { path, name } => (path.clone(), vec![name.into()]),
    };
    argv.extend(spec.args.iter().map(OsString::from));
    (program, argv)
}

/// A program named without a `/` is looked up in the process's `PATH` (or
/// the system's default one), as a shell would.
fn search_path(program: &Path, env: &[(String, String)]) -> PathBuf {
    if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        return program.to_path_buf();
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// The program as errors name it.
pub(super) fn describe(program: &Program) -> String {
    match program {
        Program::Shell(_) => "/bin/sh".into(),
        Program::Executable(path) | Program::Binary { path, .. } => path.display().to_string(),
    }
}
