"""hello-py: an example pulsehost plugin written in Python.

* ``say-hello`` runs every minute and echoes a line.
* ``catch-up`` is dynamic: the host asks every 30 s, and :meth:`should_run`
  answers from the typed run context: due if it never ran, if the last run did
  not succeed, or if the last run finished more than two minutes ago.

Build it with ``../build-example.sh`` (see ``../README.md``).
"""

from datetime import timedelta

from pulsehost import Manifest, Plugin, RunContext, RunStatus, Step, Task, export

#: How long after a successful run ``catch-up`` is due again.
CATCH_UP_EVERY = timedelta(minutes=2)


class Hello(Plugin):
    """Says hello every minute, and catches up every two minutes."""

    def manifest(self) -> Manifest:
        """Two tasks: a cron one and a dynamic one."""
        return Manifest("hello-py", "0.1.0", description="Example plugin written in Python.").tasks(
            [
                Task.cron("say-hello", "* * * * *")
                .description("Echoes a line every minute.")
                .timeout(10)
                .tag("example")
                .step(Step.shell("greet", 'echo "hello from python, slot $PULSEHOST_SCHEDULED_FOR"')),
                Task.dynamic("catch-up", every_seconds=30)
                .description("Due when the last run failed or is older than two minutes.")
                .timeout(timedelta(seconds=30))
                .step(Step.shell("report", 'echo "catching up: $1"').arg("previous run was long ago or failed")),
            ]
        )

    def should_run(self, ctx: RunContext) -> bool:
        """Due when ``catch-up`` never ran, its last run did not succeed, or it
        finished more than :data:`CATCH_UP_EVERY` ago."""
        if ctx.task != "catch-up":
            return False
        previous = ctx.previous
        due = (
            previous is None
            or previous.status is not RunStatus.SUCCEEDED
            or ctx.now - previous.finished_at > CATCH_UP_EVERY
        )
        print(f"should_run({ctx.task}): previous={previous}, now={ctx.now.isoformat()} -> {due}")
        return due


WitWorld = export(Hello())
