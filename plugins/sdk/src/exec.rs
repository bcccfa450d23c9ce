//! Builders for the processes a task runs: [`Step`]s and hook [`Exec`]s.

use crate::{millis, wit, Duration};

/// A process the host runs for a task's hook (provision, background or cleanup):
/// a shell script, a Python program or an executable, with its arguments and
/// environment.
///
/// ```
/// use pulsehost_sdk::prelude::*;
/// let provision = Exec::shell(r#"mkdir -p "$1""#).arg("/var/tmp/backup");
/// ```
#[derive(Debug, Clone)]
pub struct Exec(wit::ExecSpec);

/// One named step of a task: a process, like [`Exec`], with a name that is
/// unique within the task. Steps run in order; the first failure ends the run.
///
/// ```
/// use pulsehost_sdk::prelude::*;
/// let step = Step::binary("disk-usage", "/usr/bin/du").args(["-sh", "/var/lib"]);
/// ```
#[derive(Debug, Clone)]
pub struct Step(wit::Step);

impl Exec {
    /// A shell script, run as `/bin/sh -c <script> pulsehost <args…>`: the script
    /// reads its [arguments](Exec::arg) as `$1`, `$2`, … (or `"$@"`).
    pub fn shell(script: impl Into<String>) -> Self {
        Self::of(wit::StepKind::Shell(script.into()))
    }

    /// A Python program, run by the host's interpreter in a cached virtual
    /// environment with its [requirements](Exec::requirement) installed.
    pub fn python(source: impl Into<String>) -> Self {
        Self::of(wit::StepKind::Python(wit::PythonStep {
            source: source.into(),
            requirements: Vec::new(),
        }))
    }

    /// An executable, run directly (never through a shell): an absolute path to
    /// an existing file under a directory the host allows.
    pub fn binary(path: impl Into<String>) -> Self {
        Self::of(wit::StepKind::Binary(path.into()))
    }

    fn of(kind: wit::StepKind) -> Self {
        Self(wit::ExecSpec {
            kind,
            args: Vec::new(),
            envs: Vec::new(),
            working_dir: None,
            timeout_ms: None,
            stdin_json: None,
            limits: crate::Limits::new().into(),
            resources: Vec::new(),
            terminal_output: false,
            stdin_schema: None,
            stdout_schema: None,
        })
    }

    fn spec(&mut self) -> &mut wit::ExecSpec {
        &mut self.0
    }
}

impl Step {
    /// A step running a shell script; see [`Exec::shell`].
    pub fn shell(name: impl Into<String>, script: impl Into<String>) -> Self {
        Self::new(name, Exec::shell(script))
    }

    /// A step running a Python program; see [`Exec::python`].
    pub fn python(name: impl Into<String>, source: impl Into<String>) -> Self {
        Self::new(name, Exec::python(source))
    }

    /// A step running an executable; see [`Exec::binary`].
    pub fn binary(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(name, Exec::binary(path))
    }

    /// A step running any [`Exec`].
    pub fn new(name: impl Into<String>, exec: Exec) -> Self {
        Self(wit::Step {
            name: name.into(),
            exec: exec.0,
        })
    }

    fn spec(&mut self) -> &mut wit::ExecSpec {
        &mut self.0.exec
    }
}

/// The options [`Exec`] and [`Step`] share, as inherent methods of both.
macro_rules! exec_options {
    ($ty:ty) => {
        impl $ty {
            /// Appends one argument (one element of `argv`, never split or quoted).
            pub fn arg(mut self, arg: impl Into<String>) -> Self {
                self.spec().args.push(arg.into());
                self
            }

            /// Appends several arguments.
            pub fn args<I, S>(mut self, args: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: Into<String>,
            {
                self.spec().args.extend(args.into_iter().map(Into::into));
                self
            }

            /// Sets an environment variable of the process. The process sees only
            /// these, a small allow-list of the host's variables and the
            /// `PULSEHOST_*` run context.
            pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
                self.spec().envs.push((key.into(), value.into()));
                self
            }

            /// Sets several environment variables; see [`env`](Self::env).
            pub fn envs<I, K, V>(mut self, envs: I) -> Self
            where
                I: IntoIterator<Item = (K, V)>,
                K: Into<String>,
                V: Into<String>,
            {
                self.spec()
                    .envs
                    .extend(envs.into_iter().map(|(k, v)| (k.into(), v.into())));
                self
            }

            /// Runs the process in this absolute directory instead of a fresh
            /// scratch directory per run.
            pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
                self.spec().working_dir = Some(dir.into());
                self
            }

            /// Limits the process's wall-clock time (whole milliseconds). Without
            /// it the task's timeout, or the host's default, bounds it.
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.spec().timeout_ms = Some(millis(timeout));
                self
            }

            /// Writes this JSON document to the process's stdin, then closes it.
            /// The host rejects the plugin if it does not parse as JSON.
            pub fn stdin_json(mut self, json: impl Into<String>) -> Self {
                self.spec().stdin_json = Some(json.into());
                self
            }

            /// A JSON Schema (as JSON text) its stdin must satisfy, checked
            /// before it starts: its `stdin_json`, JSON piped from the step
            /// before, or a manual run's chosen input. A violation fails it with
            /// failure type `schema` and each violation's place. The host
            /// refuses the plugin at upload if the schema is not valid JSON
            /// Schema, refers to a URL or file, or its own `stdin_json` breaks it.
            pub fn stdin_schema(mut self, schema: impl Into<String>) -> Self {
                self.spec().stdin_schema = Some(schema.into());
                self
            }

            /// A JSON Schema its stdout must satisfy as one JSON document,
            /// checked after it exits 0; a violation fails it with failure type
            /// `schema`.
            pub fn stdout_schema(mut self, schema: impl Into<String>) -> Self {
                self.spec().stdout_schema = Some(schema.into());
                self
            }

            /// Limits this process (and everything it starts); unset fields
            /// take the task's [`default_limits`](crate::Task::default_limits),
            /// then the host's.
            pub fn limits(mut self, limits: crate::Limits) -> Self {
                self.spec().limits = limits.into();
                self
            }

            /// Runs the process under a pseudo-terminal, for programs that
            /// report progress only to a terminal: stdout and stderr then
            /// arrive together as stdout, with the same cap.
            pub fn terminal_output(mut self) -> Self {
                self.spec().terminal_output = true;
                self
            }

            /// Fetches `url` before the run's first process starts, checks it
            /// against `sha256` (64 hex digits) and places it at `dest`, relative
            /// to the run's scratch directory (so this process keeps it as its
            /// working directory). A failed download or a mismatch fails the run
            /// with failure type `resources`.
            pub fn resource(
                mut self,
                url: impl Into<String>,
                sha256: impl Into<String>,
                dest: impl Into<String>,
            ) -> Self {
                self.spec().resources.push(wit::RemoteFile {
                    url: url.into(),
                    sha256: sha256.into(),
                    dest: dest.into(),
                    executable: false,
                });
                self
            }

            /// Like [`resource`](Self::resource), made executable.
            pub fn executable_resource(
                mut self,
                url: impl Into<String>,
                sha256: impl Into<String>,
                dest: impl Into<String>,
            ) -> Self {
                self = self.resource(url, sha256, dest);
                if let Some(file) = self.spec().resources.last_mut() {
                    file.executable = true;
                }
                self
            }

            /// Adds a pip requirement specifier such as `requests==2.32.3` to a
            /// Python program.
            ///
            /// # Panics
            ///
            /// If the program is not Python: a plugin bug, reported by the
            /// upload failing.
            pub fn requirement(mut self, requirement: impl Into<String>) -> Self {
                match &mut self.spec().kind {
                    wit::StepKind::Python(python) => python.requirements.push(requirement.into()),
                    _ => panic!("requirement() applies only to Python programs"),
                }
                self
            }
        }
    };
}

exec_options!(Exec);
exec_options!(Step);

impl From<Exec> for wit::ExecSpec {
    fn from(exec: Exec) -> Self {
        exec.0
    }
}

impl From<Step> for wit::Step {
    fn from(step: Step) -> Self {
        step.0
    }
}
