/**
 * hello-js: an example pulsehost plugin written in JavaScript.
 *
 * - `say-hello` runs every minute and echoes a line.
 * - `check-in` is dynamic: every 30 s the host asks `shouldRun`, which answers
 *   from the run context — due if the task never ran, if its last run did not
 *   succeed, or if that run finished more than two minutes ago.
 *
 * Build it with `../build-example.sh` (see ../README.md).
 */

import { plugin, Manifest, Retry, Step, Task } from "../pulsehost.js";

/** How long after a successful check-in the next one is due. */
const CHECK_IN_EVERY_MS = 120_000;

export const { describe, shouldRun } = plugin({
  manifest() {
    return new Manifest("hello-js", "0.1.0")
      .description("Says hello every minute, and checks in when it is time to.")
      .task(
        Task.cron("say-hello", "* * * * *")
          .description("Echoes a greeting.")
          .timeout(10_000)
          .tag("example")
          .step(Step.shell("greet", 'echo "hello from a JavaScript plugin, slot $PULSEHOST_SCHEDULED_FOR"')),
      )
      .task(
        Task.dynamic("check-in", 30)
          .description("Due when the last check-in failed or is more than two minutes old.")
          .timeout(10_000)
          .retry(Retry.attempts(2).backoff(5_000))
          .step(Step.shell("check-in", 'echo "checking in: $1"').arg("hello-js")),
      );
  },

  shouldRun(ctx) {
    if (ctx.task !== "check-in") return false;
    const { previous } = ctx;
    const due = previous === null || previous.status !== "succeeded" || ctx.now - previous.finishedAt > CHECK_IN_EVERY_MS;
    console.log(
      `shouldRun(${ctx.task}) slot=${ctx.slotId} now=${ctx.now.toISOString()} ` +
        `previous=${previous ? `${previous.status}@${previous.finishedAt.toISOString()}` : "none"} -> ${due}`,
    );
    return due;
  },
});
