"""Builders for what a plugin describes: the :class:`Manifest`, its
:class:`Task`\\ s and their :class:`Retry` policies.

Every option method changes the object and returns it, so calls chain::

    Manifest("reports", "1.2.0", description="Weekly reports.").task(
        Task.cron("weekly", "0 6 * * 1", timezone="Europe/Berlin")
        .timeout(timedelta(minutes=10))
        .retry(Retry(3))
        .step(Step.shell("render", "make report"))
    )
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Tuple

from . import _check
from ._check import Seconds
from .exec import Exec, Step
from .limits import Limits, SandboxPolicy


class Overlap(enum.Enum):
    """What to do when a slot is due while the previous run is still going."""

    #: Record a ``skipped`` run (``previous_instance_running``). The default.
    SKIP = "skip"
    #: Run both.
    ALLOW = "allow"
    #: Cancel the running one (its cleanup hook still runs), then start the new one.
    REPLACE = "replace"


class CatchUp(enum.Enum):
    """What to do with slots missed while no pulse came."""

    #: One run for the newest missed slot; older ones are recorded as missed. The default.
    LATEST = "latest"
    #: One run per missed slot, up to the host's cap (the newest ones).
    ALL = "all"
    #: Record every missed slot as missed and run none of them.
    NONE = "none"


@dataclass
class Retry:
    """How a failed run is retried; see :meth:`Task.retry`.

    ``attempts`` counts all attempts including the first (1 means no retry).
    ``backoff`` is the delay before the second attempt, doubled for each further
    one (with jitter) up to ``max_backoff``; both are ``timedelta``\\ s or seconds
    (defaults 1 s and 5 min), sent as whole milliseconds::

        Retry(3, backoff=30, max_backoff=timedelta(minutes=10))
    """

    attempts: int
    backoff: Seconds = 1
    max_backoff: Seconds = 300

    def __post_init__(self) -> None:
        self._fields()  # raise here, where the mistake is, not in describe()

    def _fields(self) -> Tuple[int, int, int]:
        return (
            _check.integer(self.attempts, "Retry attempts", 0, _check.U32_MAX),
            _check.millis(self.backoff, "Retry backoff"),
            _check.millis(self.max_backoff, "Retry max_backoff"),
        )

    def _to_wit(self, w: Any) -> Any:
        """The WIT ``retry-policy``; ``w`` is the generated ``types`` module."""
        attempts, backoff_ms, max_backoff_ms = self._fields()
        return w.RetryPolicy(max_attempts=attempts, backoff_ms=backoff_ms, max_backoff_ms=max_backoff_ms)


class Task:
    """One schedulable unit of work: when it is due, how it behaves, and the
    steps it runs. Build one with :meth:`cron`, :meth:`dynamic`, :meth:`manual`
    or :meth:`service`.

    Defaults: enabled, no description, UTC, the host's default timeout, priority
    0, no retry, :attr:`Overlap.SKIP`, :attr:`CatchUp.LATEST`, no starting
    deadline, no tags or dependencies, no JSON piping, no hooks.
    """

    def __init__(self, name: str, schedule: Tuple[Any, ...]) -> None:
        """Prefer :meth:`cron`, :meth:`dynamic` and :meth:`manual`."""
        self._name = _check.text(name, "task name")
        self._schedule = schedule
        self._description = ""
        self._enabled = True
        self._timeout_ms: Optional[int] = None
        self._priority = 0
        self._retry: Optional[Retry] = None
        self._overlap = Overlap.SKIP
        self._catch_up = CatchUp.LATEST
        self._starting_deadline_ms: Optional[int] = None
        self._tags: List[str] = []
        self._depends_on: List[str] = []
        self._pipe_json = False
        self._hooks: dict = {"provision": None, "cleanup": None, "background": None}
        self._background_may_exit = False
        self._steps: List[Step] = []
        self._default_limits = Limits()
        self._sandbox_policy = SandboxPolicy.BEST_EFFORT
        self._reservation: Optional[Tuple[int, int]] = None
        self._concurrency: Optional[Tuple[str, int]] = None
        self._jitter_ms: Optional[int] = None
        self._alerts: List[Tuple[List[str], str]] = []

    @classmethod
    def cron(cls, name: str, expression: str, timezone: Optional[str] = None) -> "Task":
        """A task due on every occurrence of a cron expression: five fields
        (``minute hour day-of-month month day-of-week``, Sunday is 0 or 7),
        optionally a leading seconds field, or one of ``@yearly @monthly @weekly
        @daily @hourly``. Read in ``timezone`` (IANA, e.g. ``Europe/Berlin``),
        UTC by default."""
        task = cls(name, ("cron", _check.text(expression, "cron expression"), None))
        return task if timezone is None else task.timezone(timezone)

    @classmethod
    def dynamic(cls, name: str, every_seconds: Seconds) -> "Task":
        """A task whose due-ness the plugin decides: on each pulse, at most once
        per ``every_seconds`` (seconds or a ``timedelta``, whole seconds), the
        host calls :meth:`Plugin.should_run <pulsehost.Plugin.should_run>`."""
        return cls(name, ("dynamic", _check.whole_seconds(every_seconds, "dynamic interval")))

    @classmethod
    def manual(cls, name: str) -> "Task":
        """A task that is never due by itself: only an operator or an API client
        triggers it."""
        return cls(name, ("manual",))

    @classmethod
    def service(
        cls,
        name: str,
        restart_backoff: Seconds = 1,
        max_restart_backoff: Seconds = 60,
        stable_after: Seconds = 60,
        shutdown_grace: Seconds = 10,
        on_shutdown: Optional[Exec] = None,
    ) -> "Task":
        """A service: its one step is a long-running process the host keeps
        running on one host of the cluster (hosts in server mode only). When
        it exits it is restarted after ``restart_backoff``, doubled for each
        further restart up to ``max_restart_backoff``, back to the first once
        it stayed up ``stable_after``. On shutdown it gets SIGTERM,
        ``on_shutdown`` runs beside it, and SIGKILL follows after
        ``shutdown_grace``. Durations are ``timedelta``\\ s or seconds."""
        if on_shutdown is not None and not isinstance(on_shutdown, Exec):
            raise TypeError(f"on_shutdown takes an Exec, not {type(on_shutdown).__name__}")
        spec = (
            _check.millis(restart_backoff, "restart_backoff"),
            _check.millis(max_restart_backoff, "max_restart_backoff"),
            _check.millis(stable_after, "stable_after"),
            _check.millis(shutdown_grace, "shutdown_grace"),
            on_shutdown,
        )
        return cls(name, ("service", spec))

    def description(self, description: str) -> "Task":
        """Sets the text shown to operators."""
        self._description = _check.text(description, "task description")
        return self

    def timezone(self, timezone: str) -> "Task":
        """Reads the cron expression in this IANA time zone, e.g.
        ``Europe/Berlin``. ``ValueError`` if the task is not a cron task."""
        if self._schedule[0] != "cron":
            raise ValueError(f"timezone() applies only to cron tasks, not to {self._schedule[0]} task {self._name!r}")
        self._schedule = ("cron", self._schedule[1], _check.text(timezone, "timezone"))
        return self

    def jitter(self, jitter: Seconds) -> "Task":
        """Starts each occurrence up to this late (a ``timedelta`` or seconds),
        by an amount the host fixes per task and slot. Cron tasks only."""
        if self._schedule[0] != "cron":
            raise ValueError(f"jitter() applies only to cron tasks, not to {self._schedule[0]} task {self._name!r}")
        self._jitter_ms = _check.millis(jitter, "jitter")
        return self

    def alert(self, events: Iterable[str], webhook: str) -> "Task":
        """Sends ``events`` of this task (``"failure"``, ``"recovery"``,
        ``"missed"``, ``"paused"``) to ``webhook`` as signed JSON POSTs."""
        chosen = [str(e) for e in events]
        for event in chosen:
            if event not in ("failure", "recovery", "missed", "paused"):
                raise ValueError(f"alert event {event!r}: use failure, recovery, missed or paused")
        self._alerts.append((chosen, _check.text(webhook, "webhook")))
        return self

    def enabled(self, enabled: bool) -> "Task":
        """``False`` registers the task but never makes it due by its schedule,
        until a new version of the plugin enables it. Tasks are enabled by default."""
        self._enabled = _check.flag(enabled, "enabled")
        return self

    def timeout(self, timeout: Seconds) -> "Task":
        """Limits the wall-clock time of a whole run, hooks and steps (a
        ``timedelta`` or seconds, sent as whole milliseconds). Without it the
        host's default applies."""
        self._timeout_ms = _check.millis(timeout, "timeout")
        return self

    def priority(self, priority: int) -> "Task":
        """Higher runs first when more runs wait than the host may run at once.
        Default 0; a 32-bit signed integer."""
        self._priority = _check.integer(priority, "priority", _check.S32_MIN, _check.S32_MAX)
        return self

    def retry(self, retry: Retry) -> "Task":
        """Retries failed runs, e.g. ``.retry(Retry(3))``. Without it a failed run
        is not retried."""
        if not isinstance(retry, Retry):
            raise TypeError(f"retry() takes a Retry, not {type(retry).__name__}")
        self._retry = retry
        return self

    def overlap(self, overlap: Overlap) -> "Task":
        """What to do when a slot is due while the previous run is still going
        (an :class:`Overlap`, or its value such as ``"allow"``). Default
        :attr:`Overlap.SKIP`."""
        self._overlap = Overlap(overlap)
        return self

    def catch_up(self, catch_up: CatchUp) -> "Task":
        """What to do with slots missed while no pulse came (a :class:`CatchUp`,
        or its value such as ``"all"``). Default :attr:`CatchUp.LATEST`."""
        self._catch_up = CatchUp(catch_up)
        return self

    def starting_deadline(self, deadline: Seconds) -> "Task":
        """Records a slot as missed if it cannot start within this long of its
        time (a ``timedelta`` or seconds, sent as whole milliseconds)."""
        self._starting_deadline_ms = _check.millis(deadline, "starting_deadline")
        return self

    def tag(self, tag: str) -> "Task":
        """Adds a label for filtering history."""
        self._tags.append(_check.text(tag, "tag"))
        return self

    def tags(self, tags: Iterable[str]) -> "Task":
        """Adds several labels, e.g. ``.tags(["nightly", "db"])``."""
        self._tags.extend(_check.texts(tags, "tags"))
        return self

    def depends_on(self, *tasks: str) -> "Task":
        """Names one or more tasks of the same plugin whose runs in the same
        pulse must succeed before this one starts."""
        self._depends_on.extend(_check.texts(tasks, "depends_on"))
        return self

    def pipe_json(self, pipe_json: bool = True) -> "Task":
        """When ``True``, a step whose stdout is JSON hands it to the next step's
        stdin (unless that step sets its own ``stdin_json``)."""
        self._pipe_json = _check.flag(pipe_json, "pipe_json")
        return self

    def provision(self, exec: Exec) -> "Task":
        """Runs this process before the steps. If it fails, the steps are
        skipped and the run fails with failure type ``provision``."""
        return self._hook("provision", exec)

    def cleanup(self, exec: Exec) -> "Task":
        """Runs this process last, always: after success, failure, timeout or
        cancellation."""
        return self._hook("cleanup", exec)

    def background(self, exec: Exec) -> "Task":
        """Starts this process before the steps and stops it (its whole process
        group) after them. If it exits early the run fails with failure type
        ``background``, unless :meth:`background_may_exit`."""
        return self._hook("background", exec)

    def default_limits(self, limits: Limits) -> "Task":
        """Limits of every process of the task that sets none of its own."""
        if not isinstance(limits, Limits):
            raise TypeError(f"default_limits() takes a Limits, not {type(limits).__name__}")
        self._default_limits = limits
        return self

    def sandbox_policy(self, policy: SandboxPolicy) -> "Task":
        """What happens when the host's machine cannot give a protection a
        process asks for: run degraded (the default) or refuse."""
        self._sandbox_policy = SandboxPolicy(policy)
        return self

    def reservation(self, memory_bytes: int, cpu_millicores: int) -> "Task":
        """What a run needs of its host: it is admitted only where this fits."""
        self._reservation = (
            _check.integer(memory_bytes, "memory_bytes", 0, _check.U64_MAX),
            _check.integer(cpu_millicores, "cpu_millicores", 0, _check.U32_MAX),
        )
        return self

    def concurrency(self, key: str, limit: int) -> "Task":
        """At most ``limit`` runs of the tasks naming ``key`` run at once, across the cluster."""
        self._concurrency = (_check.text(key, "concurrency key"), _check.integer(limit, "limit", 0, _check.U32_MAX))
        return self

    def background_may_exit(self, may_exit: bool = True) -> "Task":
        """When ``True``, a background process that exits early is recorded but
        does not fail the run."""
        self._background_may_exit = _check.flag(may_exit, "background_may_exit")
        return self

    def step(self, step: Step) -> "Task":
        """Appends a step. Steps run in order; a task needs at least one."""
        if not isinstance(step, Step):
            hint = " (wrap it: Step(name, exec))" if isinstance(step, Exec) else ""
            raise TypeError(f"step() takes a Step, not {type(step).__name__}{hint}")
        self._steps.append(step)
        return self

    def steps(self, steps: Iterable[Step]) -> "Task":
        """Appends several steps."""
        for step in steps:
            self.step(step)
        return self

    def _hook(self, which: str, exec: Exec) -> "Task":
        if not isinstance(exec, Exec):
            hint = " (hooks have no name: use Exec.shell/python/binary)" if isinstance(exec, Step) else ""
            raise TypeError(f"{which}() takes an Exec, not {type(exec).__name__}{hint}")
        self._hooks[which] = exec
        return self

    def _to_wit(self, w: Any) -> Any:
        """The WIT ``task``; ``w`` is the generated ``types`` module."""
        kind = self._schedule[0]
        if kind == "cron":
            schedule = w.Schedule_Cron(w.CronSchedule(expression=self._schedule[1], timezone=self._schedule[2], jitter_ms=self._jitter_ms))
        elif kind == "dynamic":
            schedule = w.Schedule_Dynamic(self._schedule[1])
        elif kind == "service":
            first, most, stable, grace, on_shutdown = self._schedule[1]
            schedule = w.Schedule_Service(w.ServiceSpec(
                restart_backoff_ms=first,
                max_restart_backoff_ms=most,
                stable_after_ms=stable,
                shutdown_grace_ms=grace,
                on_shutdown=on_shutdown._to_wit(w) if on_shutdown is not None else None,
            ))
        else:
            schedule = w.Schedule_Manual()
        hook = {k: (v._to_wit(w) if v is not None else None) for k, v in self._hooks.items()}
        return w.Task(
            name=self._name,
            description=self._description,
            schedule=schedule,
            enabled=self._enabled,
            timeout_ms=self._timeout_ms,
            priority=self._priority,
            retry=self._retry._to_wit(w) if self._retry is not None else None,
            overlap=w.Overlap[self._overlap.name],
            catch_up=w.CatchUp[self._catch_up.name],
            starting_deadline_ms=self._starting_deadline_ms,
            tags=list(self._tags),
            depends_on=list(self._depends_on),
            pipe_json=self._pipe_json,
            hooks=w.ExecHooks(background_may_exit=self._background_may_exit, **hook),
            steps=[step._to_wit(w) for step in self._steps],
            default_limits=self._default_limits._to_wit(w),
            sandbox_policy=w.SandboxPolicy[self._sandbox_policy.name],
            reservation=w.Reservation(*self._reservation) if self._reservation else None,
            concurrency=w.Concurrency(*self._concurrency) if self._concurrency else None,
            alerts=[
                w.AlertRule(events=[w.AlertEvent[e.upper()] for e in events], webhook=url)
                for events, url in self._alerts
            ],
        )

    def __repr__(self) -> str:
        return f"Task({self._name!r}, {self._schedule!r}, steps={self._steps!r})"


class Manifest:
    """Everything a plugin describes: its name, version, description and tasks.

    ``name`` (1 to 63 lowercase letters, digits, ``-`` and ``_``) identifies the
    plugin: uploading a component with the same name makes a new version of it.
    ``version`` is shown to operators::

        Manifest("reports", "1.2.0", description="Weekly reports.").task(Task.manual("rebuild").step(...))
    """

    def __init__(self, name: str, version: str, description: str = "") -> None:
        """A manifest with no tasks."""
        self._name = _check.text(name, "plugin name")
        self._version = _check.text(version, "plugin version")
        self._description = _check.text(description, "plugin description")
        self._tasks: List[Task] = []

    def description(self, description: str) -> "Manifest":
        """Sets the text shown to operators."""
        self._description = _check.text(description, "plugin description")
        return self

    def task(self, task: Task) -> "Manifest":
        """Adds a task. Task names must be unique within the plugin."""
        if not isinstance(task, Task):
            raise TypeError(f"task() takes a Task, not {type(task).__name__}")
        self._tasks.append(task)
        return self

    def tasks(self, tasks: Iterable[Task]) -> "Manifest":
        """Adds several tasks."""
        for task in tasks:
            self.task(task)
        return self

    def _to_wit(self, w: Any) -> Any:
        """The WIT ``manifest``; ``w`` is the generated ``types`` module."""
        return w.Manifest(
            name=self._name,
            version=self._version,
            description=self._description,
            tasks=[task._to_wit(w) for task in self._tasks],
        )

    def __repr__(self) -> str:
        return f"Manifest({self._name!r}, {self._version!r}, tasks={self._tasks!r})"

