/**
 * Write pulsehost plugins in JavaScript.
 *
 * A plugin is a WebAssembly component of the `pulsehost:plugin/plugin` world
 * (`wit/plugin.wit`) that *describes* tasks: when they are due and which
 * processes they run. The host calls the component's `describe` export once,
 * when it is uploaded, then schedules, runs and records the tasks itself. For
 * tasks built with {@link Task.dynamic} it also calls `should-run` on each
 * pulse.
 *
 * This module (plain ES modules, no dependencies; componentize-js builds them
 * into the component) turns that contract into builders with the defaults of
 * the Rust SDK ({@link Manifest}, {@link Task}, {@link Step}, {@link Exec},
 * {@link Retry}) and the {@link plugin} entry point:
 *
 * ```js
 * import { plugin, Manifest, Task, Step } from "./pulsehost.js";
 *
 * export const { describe, shouldRun } = plugin({
 *   manifest: () =>
 *     new Manifest("hello", "0.1.0").task(
 *       Task.cron("say-hello", "* * * * *").step(Step.shell("greet", "echo hello")),
 *     ),
 * });
 * ```
 *
 * Durations are numbers of milliseconds (whole seconds for `Task.dynamic`);
 * the SDK sends them as the WIT `u64`s (BigInts) jco expects, and turns the
 * run context's `s64` instants into `Date`s: plugin code never sees a BigInt.
 * The builders check argument types and enum values, throwing inside
 * `manifest()` so that the mistake becomes the upload's error message; names,
 * cron expressions, paths and JSON are checked by the host at upload.
 *
 * @module pulsehost
 */

import { show } from "./lib/check.js";
import { Manifest } from "./lib/task.js";

export { Exec, Step } from "./lib/exec.js";
export { CatchUp, Manifest, Overlap, Retry, SandboxPolicy, Task } from "./lib/task.js";

/** How an earlier run ended: the values of {@link RunOutcome#status}. */
export const RunStatus = Object.freeze({
  /** Every step succeeded. */
  Succeeded: "succeeded",
  /** A hook or step failed. */
  Failed: "failed",
  /** The run or one of its processes hit its timeout. */
  TimedOut: "timed-out",
  /** An operator or an overlap policy cancelled it. */
  Cancelled: "cancelled",
  /** It never ran: overlap, dependency or deadline (a missed slot counts as skipped). */
  Skipped: "skipped",
});

/** A WIT `s64` of milliseconds since the Unix epoch (a BigInt from jco) as a `Date`. */
const instant = (ms) => new Date(Number(ms));

/** The outcome of the latest finished run of a task: {@link RunContext#previous}. */
export class RunOutcome {
  /** @param {object} outcome the WIT `run-outcome`, as jco's bindings give it */
  constructor(outcome) {
    /** @type {"succeeded" | "failed" | "timed-out" | "cancelled" | "skipped"} How it ended; see {@link RunStatus}. */
    this.status = outcome.status;
    /** @type {Date} When it ended. */
    this.finishedAt = instant(outcome.finishedAtMs);
    /** @type {number | null} The failing process's exit code, if one failed with an exit code. */
    this.exitCode = outcome.exitCode ?? null;
    /** @type {string | null} A short reason when it did not succeed. */
    this.error = outcome.error ?? null;
  }

  /** @returns {boolean} whether the run succeeded. */
  get succeeded() {
    return this.status === RunStatus.Succeeded;
  }
}

/** What the host tells `shouldRun`: the task, the candidate slot and the previous run. */
export class RunContext {
  /** @param {object} ctx the WIT `run-context`, as jco's bindings give it */
  constructor(ctx) {
    /** @type {string} The task's name. */
    this.task = ctx.task;
    /** @type {string} The candidate slot, `<task id>@<slot time, RFC 3339>`: duplicate pulses ask about the same slot. */
    this.slotId = ctx.slotId;
    /** @type {Date} The candidate slot's time. */
    this.scheduledFor = instant(ctx.scheduledForMs);
    /** @type {Date} The pulse's instant (the database's clock): use it instead of `new Date()`. */
    this.now = instant(ctx.nowMs);
    /** @type {number} Always 1: a question is asked about a slot before it has any run. */
    this.attempt = ctx.attempt;
    /** @type {RunOutcome | null} The latest finished run of this task, or `null` if it never ran. */
    this.previous = ctx.previous == null ? null : new RunOutcome(ctx.previous);
  }

  /**
   * Milliseconds since the previous run finished (`Infinity` if it never ran).
   * @returns {number}
   */
  get sincePrevious() {
    return this.previous === null ? Infinity : this.now - this.previous.finishedAt;
  }
}

/** An error (or anything thrown) as one readable line. */
function message(error) {
  if (error instanceof Error) return error.name === "Error" ? error.message : `${error.name}: ${error.message}`;
  return typeof error === "string" ? error : `uncaught exception: ${show(error)}`;
}

/** An error with its stack, for stderr (SpiderMonkey's stack lists only the frames, V8's starts with the message). */
function report(error) {
  const stack = error instanceof Error && typeof error.stack === "string" ? error.stack.trimEnd() : "";
  if (!stack) return message(error);
  return error.message && stack.includes(error.message) ? stack : `${message(error)}\n${stack}`;
}

/**
 * The plugin's exports, from its manifest and (for dynamic tasks) its
 * `shouldRun` answer. Use it once, in the module componentize-js builds:
 *
 * ```js
 * export const { describe, shouldRun } = plugin({
 *   manifest() { return new Manifest("reports", "1.0.0").task(...); },
 *   shouldRun(ctx) { return ctx.previous === null || ctx.sincePrevious > 3_600_000; },
 * });
 * ```
 *
 * - `manifest()` is called once, when the component is uploaded. Anything it
 *   throws rejects the upload with the error's message (also printed, with
 *   its stack, to stderr, which the host logs).
 * - `shouldRun(ctx)` gets a {@link RunContext} and answers whether the task
 *   `ctx.task` is due now. Its result is converted with `Boolean`. If it
 *   throws, the error is printed to stderr and the answer is `false` (not
 *   due). Without `shouldRun`, dynamic tasks are never due.
 *
 * Either may be `async`: the component waits for the promise.
 *
 * @param {object} handlers
 * @param {() => Manifest | Promise<Manifest>} handlers.manifest
 * @param {(ctx: RunContext) => boolean | Promise<boolean>} [handlers.shouldRun]
 * @returns {{describe: () => Promise<object>, shouldRun: (ctx: object) => Promise<boolean>}}
 *   the world's exports, to be exported under exactly these names
 */
export function plugin({ manifest, shouldRun } = {}) {
  if (typeof manifest !== "function") {
    throw new TypeError(`plugin() needs a manifest() function, got ${show(manifest)}`);
  }
  if (shouldRun !== undefined && typeof shouldRun !== "function") {
    throw new TypeError(`plugin(): shouldRun must be a function, got ${show(shouldRun)}`);
  }
  return {
    // `result<manifest, string>` in jco's bindings: the value returned is the
    // `ok` case; a thrown object with an own `payload` is the `err` case (a
    // thrown `Error` without one would trap). Returning `{tag: "err", val}`
    // only works from componentize-js 0.23 on: 0.22 wraps it in `ok`.
    async describe() {
      let built;
      try {
        built = await manifest();
        if (!(built instanceof Manifest)) {
          throw new TypeError(`manifest() must return a Manifest (new Manifest(name, version)), got ${show(built)}`);
        }
      } catch (error) {
        console.error(`pulsehost: manifest() failed: ${report(error)}`);
        throw { payload: message(error) };
      }
      return built.toWit();
    },

    async shouldRun(ctx) {
      if (shouldRun === undefined) return false;
      try {
        return Boolean(await shouldRun(new RunContext(ctx)));
      } catch (error) {
        console.error(`pulsehost: shouldRun(${ctx.task}) failed, answering "not due": ${report(error)}`);
        return false;
      }
    },
  };
}
