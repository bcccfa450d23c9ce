"""What a process may use: :class:`Limits`, and the task's :class:`SandboxPolicy`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional

from . import _check


class SandboxPolicy(enum.Enum):
    """What happens when the host's machine cannot give a protection a process asks for."""

    #: Run without it; a ``degraded`` event names what is missing. The default.
    BEST_EFFORT = "best-effort"
    #: Refuse to run the process; the run fails and says what is missing.
    STRICT = "strict"


@dataclass(frozen=True)
class Limits:
    """What one process (with everything it starts) may use. A field left
    ``None`` takes the task's :meth:`~pulsehost.Task.default_limits`, then the
    host's::

        Step.shell("build", "make").limits(Limits(memory_bytes=256 << 20, processes=64, no_network=True))
    """

    #: Memory, bytes; beyond it the run fails with failure type ``memory_limit``.
    memory_bytes: Optional[int] = None
    #: CPU quota in thousandths of a core.
    cpu_millicores: Optional[int] = None
    #: Processes and threads at once.
    processes: Optional[int] = None
    #: Open file descriptors.
    open_files: Optional[int] = None
    #: Largest file it may write, bytes.
    file_size_bytes: Optional[int] = None
    #: ``True``: no network but a loopback interface of its own.
    no_network: Optional[bool] = None
    #: ``True``: an empty ``/tmp`` of its own.
    private_tmp: Optional[bool] = None

    def __post_init__(self) -> None:
        for name, high in (
            ("memory_bytes", _check.U64_MAX),
            ("cpu_millicores", _check.U32_MAX),
            ("processes", _check.U32_MAX),
            ("open_files", _check.U64_MAX),
            ("file_size_bytes", _check.U64_MAX),
        ):
            value = getattr(self, name)
            if value is not None:
                _check.integer(value, name, 0, high)
        for name in ("no_network", "private_tmp"):
            value = getattr(self, name)
            if value is not None:
                _check.flag(value, name)

    def _to_wit(self, w: Any) -> Any:
        """The WIT ``limits``; ``w`` is the generated ``types`` module."""
        return w.Limits(
            memory_bytes=self.memory_bytes,
            cpu_millicores=self.cpu_millicores,
            processes=self.processes,
            open_files=self.open_files,
            file_size_bytes=self.file_size_bytes,
            no_network=self.no_network,
            private_tmp=self.private_tmp,
        )
