"""The :class:`Plugin` base class and :func:`export`, which turns a plugin into
the ``WitWorld`` class componentize-py looks for in the app module.

This is the only module that touches the bindings componentize-py generates
for the ``pulsehost:plugin/plugin`` world: ``wit_world.imports.types`` (the
records, variants and enums of the ``types`` interface) and
``componentize_py_types.Err`` (raised to return a ``result``'s error).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Optional, Type, Union

from .context import RunContext
from .task import Manifest

try:
    from componentize_py_types import Err as _Err
    from wit_world.imports import types as _types
except ImportError as error:  # plain CPython: the builders still work
    _Err = None
    _types = None
    _BINDINGS_ERROR: Optional[ImportError] = error
else:
    _BINDINGS_ERROR = None

#: Frames in these directories (and frozen modules) are not the plugin's code.
_LIBRARY_DIRS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(traceback.__file__)))


class PluginError(Exception):
    """Raise it from :meth:`Plugin.manifest` to reject the upload with exactly
    this message (any other exception is reported with its type and where it
    was raised)."""


class Plugin:
    """A pulsehost plugin. Subclass it, implement :meth:`manifest` (and
    :meth:`should_run` if the plugin has dynamic tasks), and export an instance
    from the app module with ``WitWorld = export(MyPlugin())``.

    The instance is created when the component is built, and every call the host
    makes starts from that snapshot: state set during a call is not kept.
    """

    def manifest(self) -> Manifest:
        """The plugin's name, version and tasks. Called once, when the component
        is uploaded. An exception rejects the upload: a :class:`PluginError`
        with its message, any other with its type, message and location (the
        full traceback goes to the host's log)."""
        raise NotImplementedError("implement manifest() in your Plugin subclass")

    def should_run(self, ctx: RunContext) -> bool:
        """Whether a task built with :meth:`Task.dynamic <pulsehost.Task.dynamic>`
        is due now. Called on each pulse, at most as often as the task's
        interval; ``ctx.task`` says which task. An exception counts as "not due"
        (its traceback goes to the host's log). The default answers ``False``."""
        return False


def export(plugin: Union[Plugin, Type[Plugin]]) -> type:
    """The class componentize-py calls for the world's exports. Assign it to
    ``WitWorld`` at the top level of the app module::

        WitWorld = export(Hello())

    ``plugin`` is a :class:`Plugin` instance (or a subclass, instantiated with
    no arguments).
    """
    if isinstance(plugin, type):
        plugin = plugin()
    if not isinstance(plugin, Plugin):
        raise TypeError(f"export() takes a pulsehost.Plugin, not {type(plugin).__name__}")
    if _types is None and sys.platform == "wasi":
        # Building a component without the world's bindings: fail the build.
        raise ImportError(
            "the pulsehost:plugin bindings are missing: build with "
            "`componentize-py -d <repo>/wit -w plugin componentize ...` "
            f"and the default world module name ({_BINDINGS_ERROR})"
        )

    class WitWorld:
        """The ``plugin`` world's exports, delegating to the plugin."""

        def describe(self) -> Any:
            """``describe: func() -> result<manifest, string>``."""
            return _describe(plugin)

        def should_run(self, ctx: Any) -> bool:
            """``should-run: func(ctx: run-context) -> bool``."""
            return _should_run(plugin, ctx)

    WitWorld.__qualname__ = f"export({type(plugin).__name__})"
    return WitWorld


def _describe(plugin: Plugin) -> Any:
    """The WIT manifest, or ``Err(message)`` raised (componentize-py's way of
    returning a ``result``'s error)."""
    if _types is None:
        raise RuntimeError(f"describe() runs only inside a component built by componentize-py ({_BINDINGS_ERROR})")
    try:
        manifest = plugin.manifest()
        if not isinstance(manifest, Manifest):
            raise PluginError(f"manifest() must return a pulsehost.Manifest, not {type(manifest).__name__}")
        return manifest._to_wit(_types)
    except Exception as error:  # noqa: BLE001 (every error becomes the upload's message)
        if not isinstance(error, PluginError):
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
        message = _message(error)
    raise _Err(message)


def _should_run(plugin: Plugin, ctx: Any) -> bool:
    """The plugin's answer; ``False`` (and a traceback on stderr) on an exception."""
    try:
        return bool(plugin.should_run(RunContext._from_wit(ctx)))
    except Exception:  # noqa: BLE001 (an error means "not due")
        print(f"pulsehost: should_run({getattr(ctx, 'task', '?')!r}) raised; answering False", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return False


def _message(error: Exception) -> str:
    """The upload error for an exception: a :class:`PluginError`'s own message,
    otherwise ``Type: message (file:line in function)`` at the innermost frame
    of the plugin's code (not this SDK's, not the standard library's)."""
    if isinstance(error, PluginError):
        return str(error)
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if not f.filename.startswith("<") and not f.filename.startswith(_LIBRARY_DIRS)
    ]
    if frames:
        frame = frames[-1]
        text += f" ({os.path.basename(frame.filename)}:{frame.lineno} in {frame.name})"
    return f"manifest() raised {text}"
