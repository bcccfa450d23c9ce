"""What the host tells :meth:`Plugin.should_run <pulsehost.Plugin.should_run>`,
as plain Python values: times are timezone-aware UTC ``datetime``\\ s, statuses
an enum.

These are ordinary dataclasses, so ``should_run`` can be tested with plain
CPython, outside any component::

    ctx = RunContext(task="sync", slot_id="7@2025-01-01T00:00:00Z",
                     scheduled_for=datetime.now(timezone.utc),
                     now=datetime.now(timezone.utc), attempt=1, previous=None)
    assert MyPlugin().should_run(ctx)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def from_millis(ms: int) -> datetime:
    """The UTC ``datetime`` of milliseconds since the Unix epoch."""
    return _EPOCH + timedelta(milliseconds=ms)


class RunStatus(enum.Enum):
    """How an earlier run ended."""

    #: Every step succeeded.
    SUCCEEDED = "succeeded"
    #: A hook or step failed.
    FAILED = "failed"
    #: The run or one of its processes hit its timeout.
    TIMED_OUT = "timed-out"
    #: An operator or an overlap policy cancelled it.
    CANCELLED = "cancelled"
    #: It never ran: overlap, dependency or deadline (a missed slot counts as skipped).
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RunOutcome:
    """The outcome of the latest finished run of a task."""

    #: How it ended.
    status: RunStatus
    #: When it ended (UTC).
    finished_at: datetime
    #: The failing process's exit code, if one failed with an exit code.
    exit_code: Optional[int] = None
    #: A short reason when it did not succeed.
    error: Optional[str] = None

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded."""
        return self.status is RunStatus.SUCCEEDED

    @classmethod
    def _from_wit(cls, outcome: Any) -> "RunOutcome":
        return cls(
            status=RunStatus[outcome.status.name],
            finished_at=from_millis(outcome.finished_at_ms),
            exit_code=outcome.exit_code,
            error=outcome.error,
        )


@dataclass(frozen=True)
class RunContext:
    """What the host tells ``should_run`` about the task it asks for."""

    #: The task's name.
    task: str
    #: The candidate slot's identifier, ``<task id>@<slot time, RFC 3339>``:
    #: duplicate pulses within one interval ask about the same slot.
    slot_id: str
    #: The candidate slot's time (UTC).
    scheduled_for: datetime
    #: The pulse's instant, by the database's clock (UTC).
    now: datetime
    #: Always 1: a question is asked about a slot before it has any run.
    attempt: int
    #: The latest finished run of this task, if any.
    previous: Optional[RunOutcome] = None

    @property
    def since_previous(self) -> Optional[timedelta]:
        """How long ago the previous run finished (``None`` if there was none)."""
        return None if self.previous is None else self.now - self.previous.finished_at

    @classmethod
    def _from_wit(cls, ctx: Any) -> "RunContext":
        return cls(
            task=ctx.task,
            slot_id=ctx.slot_id,
            scheduled_for=from_millis(ctx.scheduled_for_ms),
            now=from_millis(ctx.now_ms),
            attempt=ctx.attempt,
            previous=None if ctx.previous is None else RunOutcome._from_wit(ctx.previous),
        )
