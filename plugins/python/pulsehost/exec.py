"""Builders for the processes a task runs: :class:`Step` and hook :class:`Exec`.

Every option method changes the object and returns it, so calls chain::

    Step.binary("disk-usage", "/usr/bin/du").args(["-sh", "/var/lib"]).timeout(30)
"""

from __future__ import annotations

import json
from typing import Any, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

from . import _check
from ._check import Seconds
from .limits import Limits


_O = TypeVar("_O", bound="_Options")


class _Options:
    """The options :class:`Exec` and :class:`Step` share."""

    def _exec(self) -> "Exec":
        raise NotImplementedError

    def arg(self: _O, arg: str) -> _O:
        """Appends one argument (one element of ``argv``, never split or quoted)."""
        self._exec()._args.append(_check.text(arg, "arg"))
        return self

    def args(self: _O, args: Iterable[str]) -> _O:
        """Appends several arguments, e.g. ``.args(["-sh", "/var/lib"])``."""
        self._exec()._args.extend(_check.texts(args, "args"))
        return self

    def env(self: _O, key: str, value: str) -> _O:
        """Sets an environment variable of the process. The process sees only
        these, a small allow-list of the host's variables (PATH, HOME, LANG, TZ)
        and the ``PULSEHOST_*`` run context."""
        self._exec()._envs.append((_check.text(key, "env key"), _check.text(value, f"env {key}")))
        return self

    def envs(self: _O, envs: Union[Mapping[str, str], Iterable[Tuple[str, str]]]) -> _O:
        """Sets several environment variables, from a mapping or from pairs."""
        pairs = envs.items() if isinstance(envs, Mapping) else envs
        for key, value in pairs:
            self.env(key, value)
        return self

    def working_dir(self: _O, path: str) -> _O:
        """Runs the process in this absolute directory instead of a fresh scratch
        directory per run."""
        self._exec()._working_dir = _check.text(path, "working_dir")
        return self

    def timeout(self: _O, timeout: Seconds) -> _O:
        """Limits the process's wall-clock time (a ``timedelta`` or seconds, sent
        as whole milliseconds). Without it the task's timeout, or the host's
        default, bounds it."""
        self._exec()._timeout_ms = _check.millis(timeout, "timeout")
        return self

    def stdin_json(self: _O, value: Any, *, encoded: bool = False) -> _O:
        """Writes a JSON document to the process's stdin, then closes it.

        ``value`` is serialized with ``json.dumps`` (so a ``dict``, ``list``,
        number, ... and also a ``str``, which becomes a JSON string). With
        ``encoded=True``, ``value`` is JSON text already and is sent as it is;
        the host rejects the plugin at upload if it does not parse."""
        document = _check.text(value, "stdin_json") if encoded else json.dumps(value)
        self._exec()._stdin_json = document
        return self

    def stdin_schema(self: _O, schema: Any, *, encoded: bool = False) -> _O:
        """A JSON Schema its stdin must satisfy, checked before it starts (its
        ``stdin_json``, JSON piped from the step before, or a manual run's
        chosen input). A violation fails it with failure type ``schema``.
        ``schema`` is a ``dict`` (or ``True``/``False``); with ``encoded=True``
        it is JSON text already. The host refuses the plugin at upload if it is
        not a valid JSON Schema or refers to a URL or file."""
        self._exec()._stdin_schema = _schema(schema, encoded, "stdin_schema")
        return self

    def stdout_schema(self: _O, schema: Any, *, encoded: bool = False) -> _O:
        """A JSON Schema its stdout must satisfy as one JSON document, checked
        after it exits 0; a violation fails it with failure type ``schema``."""
        self._exec()._stdout_schema = _schema(schema, encoded, "stdout_schema")
        return self

    def limits(self: _O, limits: Limits) -> _O:
        """Limits this process (and everything it starts); unset fields take the
        task's default limits, then the host's."""
        if not isinstance(limits, Limits):
            raise TypeError(f"limits() takes a Limits, not {type(limits).__name__}")
        self._exec()._limits = limits
        return self

    def resource(self: _O, url: str, sha256: str, dest: str, *, executable: bool = False) -> _O:
        """Fetches ``url`` before the run's first process starts, checks it against
        ``sha256`` (64 hex digits) and places it at ``dest``, relative to the run's
        scratch directory. A failed download or a mismatch fails the run with
        failure type ``resources``."""
        self._exec()._resources.append(
            (_check.text(url, "resource url"), _check.text(sha256, "resource sha256"), _check.text(dest, "resource dest"), _check.flag(executable, "executable"))
        )
        return self

    def terminal_output(self: _O, on: bool = True) -> _O:
        """Runs the process under a pseudo-terminal (for programs that report
        progress only to a terminal): stdout and stderr arrive together as stdout."""
        self._exec()._terminal_output = _check.flag(on, "terminal_output")
        return self

    def requirement(self: _O, requirement: str) -> _O:
        """Adds a pip requirement specifier such as ``requests==2.32.3`` to a
        Python program. ``ValueError`` if the program is not Python."""
        exec_ = self._exec()
        if exec_._kind != "python":
            raise ValueError(f"requirement() applies only to Python programs, not to a {exec_._kind} program")
        exec_._requirements.append(_check.text(requirement, "requirement"))
        return self


class Exec(_Options):
    """A process the host runs for a task's hook (provision, background or
    cleanup): a shell script, a Python program or an executable, with its
    arguments and environment. Build one with :meth:`shell`, :meth:`python` or
    :meth:`binary`::

        Exec.shell('mkdir -p "$1"').arg("/var/tmp/backup")
    """

    def __init__(self, kind: str, program: str) -> None:
        """Prefer :meth:`shell`, :meth:`python` and :meth:`binary`."""
        if kind not in ("shell", "python", "binary"):
            raise ValueError(f"kind must be 'shell', 'python' or 'binary', not {kind!r}")
        self._kind = kind
        self._program = _check.text(program, f"the {kind} program")
        self._requirements: List[str] = []
        self._args: List[str] = []
        self._envs: List[Tuple[str, str]] = []
        self._working_dir: Optional[str] = None
        self._timeout_ms: Optional[int] = None
        self._stdin_json: Optional[str] = None
        self._limits = Limits()
        self._resources: List[Tuple[str, str, str, bool]] = []
        self._terminal_output = False
        self._stdin_schema: Optional[str] = None
        self._stdout_schema: Optional[str] = None

    @classmethod
    def shell(cls, script: str) -> "Exec":
        """A shell script, run as ``/bin/sh -c <script> pulsehost <args...>``: the
        script reads its :meth:`arg`\\ s as ``$1``, ``$2``, ... (or ``"$@"``); they
        are never pasted into its text."""
        return cls("shell", script)

    @classmethod
    def python(cls, source: str) -> "Exec":
        """A Python program (its source text), run by the host's interpreter in a
        cached virtual environment with its :meth:`requirement`\\ s installed."""
        return cls("python", source)

    @classmethod
    def binary(cls, path: str) -> "Exec":
        """An executable, run directly (never through a shell): an absolute path
        to an existing file under a directory the host allows."""
        return cls("binary", path)

    def _exec(self) -> "Exec":
        return self

    def _to_wit(self, w: Any) -> Any:
        """The WIT ``exec-spec``; ``w`` is the generated ``types`` module."""
        if self._kind == "shell":
            kind = w.StepKind_Shell(self._program)
        elif self._kind == "python":
            kind = w.StepKind_Python(w.PythonStep(source=self._program, requirements=list(self._requirements)))
        else:
            kind = w.StepKind_Binary(self._program)
        return w.ExecSpec(
            kind=kind,
            args=list(self._args),
            envs=list(self._envs),
            working_dir=self._working_dir,
            timeout_ms=self._timeout_ms,
            stdin_json=self._stdin_json,
            limits=self._limits._to_wit(w),
            resources=[
                w.RemoteFile(url=url, sha256=sha, dest=dest, executable=executable)
                for url, sha, dest, executable in self._resources
            ],
            terminal_output=self._terminal_output,
            stdin_schema=self._stdin_schema,
            stdout_schema=self._stdout_schema,
        )

    def __repr__(self) -> str:
        return f"Exec.{self._kind}({self._program!r})"


class Step(_Options):
    """One named step of a task: a process, like :class:`Exec`, with a name that
    is unique within the task. Steps run in order; the first failure ends the
    run::

        Step.python("render", SOURCE).requirement("jinja2==3.1.4").env("OUT", "/srv/reports")
    """

    def __init__(self, name: str, exec: Exec) -> None:
        """A step running any :class:`Exec` (the option methods of this step
        change that ``Exec``)."""
        if not isinstance(exec, Exec):
            raise TypeError(f"a step runs an Exec, not {type(exec).__name__}")
        self._name = _check.text(name, "step name")
        self._process = exec

    @classmethod
    def shell(cls, name: str, script: str) -> "Step":
        """A step running a shell script; see :meth:`Exec.shell`."""
        return cls(name, Exec.shell(script))

    @classmethod
    def python(cls, name: str, source: str) -> "Step":
        """A step running a Python program; see :meth:`Exec.python`."""
        return cls(name, Exec.python(source))

    @classmethod
    def binary(cls, name: str, path: str) -> "Step":
        """A step running an executable; see :meth:`Exec.binary`."""
        return cls(name, Exec.binary(path))

    def _exec(self) -> Exec:
        return self._process

    def _to_wit(self, w: Any) -> Any:
        """The WIT ``step``; ``w`` is the generated ``types`` module."""
        return w.Step(name=self._name, exec=self._process._to_wit(w))

    def __repr__(self) -> str:
        return f"Step({self._name!r}, {self._process!r})"


def _schema(schema: Any, encoded: bool, what: str) -> str:
    """A JSON Schema as JSON text: ``schema`` serialized, or checked as text."""
    if encoded:
        return _check.text(schema, what)
    if not isinstance(schema, (dict, bool)):
        raise TypeError(f"{what} must be a dict (or True or False), not {type(schema).__name__}")
    return json.dumps(schema)
