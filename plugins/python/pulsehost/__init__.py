"""Write pulsehost plugins in Python.

A plugin is a WebAssembly component that *describes* tasks: when they are due
and which processes they run. The host calls the plugin's ``describe`` export
once, when the component is uploaded, then schedules, runs and records the
tasks itself. For tasks with a :meth:`dynamic <Task.dynamic>` schedule it also
asks the plugin, on each pulse, whether the task is due.

This package turns that contract (``wit/plugin.wit``, world
``pulsehost:plugin/plugin``) into a :class:`Plugin` base class, builders with
sensible defaults (:class:`Manifest`, :class:`Task`, :class:`Step`,
:class:`Exec`, :class:`Retry`), a typed :class:`RunContext` and :func:`export`.
A whole plugin (``app.py``)::

    from pulsehost import Manifest, Plugin, Step, Task, export

    class Hello(Plugin):
        def manifest(self):
            return Manifest("hello-py", "0.1.0").task(
                Task.cron("say-hello", "* * * * *").step(Step.shell("greet", "echo hello"))
            )

    WitWorld = export(Hello())

Build it with componentize-py (see ``plugins/python/README.md``)::

    componentize-py -d <repo>/wit -w plugin componentize app \\
        -p <dir of app.py> -p <repo>/plugins/python -o hello.wasm

The builders check types and ranges (a ``TypeError``/``ValueError`` where the
mistake is) but not meaning: the host checks names, cron expressions, paths and
JSON at upload and rejects the component with a readable message. Durations are
``datetime.timedelta``\\ s or numbers of seconds. Pure Python, no dependencies:
it imports componentize-py's generated bindings only when they exist, so the
builders and ``should_run`` also work (and can be tested) in plain CPython.
"""

from .context import RunContext, RunOutcome, RunStatus
from .exec import Exec, Step
from .limits import Limits, SandboxPolicy
from .plugin import Plugin, PluginError, export
from .task import CatchUp, Manifest, Overlap, Retry, Task

__version__ = "0.1.0"

#: The WIT package this SDK targets.
WIT_PACKAGE = "pulsehost:plugin@0.2.0"

__all__ = [
    "CatchUp",
    "Exec",
    "Limits",
    "Manifest",
    "Overlap",
    "Plugin",
    "PluginError",
    "Retry",
    "RunContext",
    "RunOutcome",
    "RunStatus",
    "SandboxPolicy",
    "Step",
    "Task",
    "WIT_PACKAGE",
    "export",
]
