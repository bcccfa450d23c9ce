/**
 * Builders for what a plugin describes: the {@link Manifest}, its {@link Task}s
 * and their {@link Retry} policies.
 *
 * @module pulsehost/lib/task
 */

import { bool, copy, each, instance, oneOf, s32, str, strings, u32, u64 } from "./check.js";
import { Exec, Step, limitsToWit, noLimits } from "./exec.js";

/** What to do when a slot is due while the previous run is still going. */
export const Overlap = Object.freeze({
  /** Record a `skipped` run; two runs of the task never run at once (default). */
  Skip: "skip",
  /** Run both. */
  Allow: "allow",
  /** Cancel the running one (its cleanup hook still runs), then start the new one. */
  Replace: "replace",
});

/** What happens when the host's machine cannot give a protection a process asks for. */
export const SandboxPolicy = Object.freeze({
  /** Run without it; a `degraded` event names what is missing (default). */
  BestEffort: "best-effort",
  /** Refuse to run the process; the run fails and says what is missing. */
  Strict: "strict",
});

/** What to do with slots missed while no pulse came. */
export const CatchUp = Object.freeze({
  /** One run for the newest missed slot; older ones are recorded as missed (default). */
  Latest: "latest",
  /** One run per missed slot, up to the host's cap. */
  All: "all",
  /** Record every missed slot as missed and run none. */
  None: "none",
});

/**
 * How a failed run is retried; see {@link Task#retry}.
 *
 * ```js
 * Retry.attempts(3).backoff(30_000).maxBackoff(600_000)
 * ```
 */
export class Retry {
  /** @private Use {@link Retry.attempts}. */
  constructor(maxAttempts) {
    /** @private The WIT `retry-policy`. */
    this.policy = { maxAttempts: u32(maxAttempts, "Retry.attempts()"), backoffMs: 1_000n, maxBackoffMs: 300_000n };
  }

  /**
   * Up to `maxAttempts` attempts in all, including the first (1 means no
   * retry). Default delays: 1 s before the second attempt, doubled for each
   * further one (with jitter), at most 5 minutes.
   * @param {number} maxAttempts
   * @returns {Retry}
   */
  static attempts(maxAttempts) {
    return new Retry(maxAttempts);
  }

  /**
   * Sets the delay before the second attempt.
   * @param {number} ms milliseconds
   * @returns {this}
   */
  backoff(ms) {
    this.policy.backoffMs = u64(ms, "backoff() milliseconds");
    return this;
  }

  /**
   * Sets the upper bound of the delay between attempts.
   * @param {number} ms milliseconds
   * @returns {this}
   */
  maxBackoff(ms) {
    this.policy.maxBackoffMs = u64(ms, "maxBackoff() milliseconds");
    return this;
  }

  /** @returns {object} the WIT `retry-policy`, as jco's bindings take it. */
  toWit() {
    return { ...this.policy };
  }
}

/**
 * One schedulable unit of work: when it is due, how it behaves, and the steps
 * it runs. Create it with {@link Task.cron}, {@link Task.dynamic} or
 * {@link Task.manual} or {@link Task.service}.
 *
 * Defaults: enabled, no description, UTC, the host's default timeout,
 * priority 0, no retry, `"skip"` overlap, `"latest"` catch-up, no starting
 * deadline, no tags or dependencies, no JSON piping, no hooks.
 */
export class Task {
  /** @private Use the static methods. */
  constructor(name, schedule) {
    /** @private The WIT `task`, in jco's representation. */
    this.task = {
      name: str(name, "the task name"),
      description: "",
      schedule,
      enabled: true,
      timeoutMs: undefined,
      priority: 0,
      retry: undefined,
      overlap: Overlap.Skip,
      catchUp: CatchUp.Latest,
      startingDeadlineMs: undefined,
      tags: [],
      dependsOn: [],
      pipeJson: false,
      hooks: { provision: undefined, cleanup: undefined, background: undefined, backgroundMayExit: false },
      steps: [],
      defaultLimits: noLimits(),
      sandboxPolicy: "best-effort",
      reservation: undefined,
      concurrency: undefined,
      alerts: [],
    };
  }

  /**
   * A task due on every occurrence of a cron expression, read in UTC unless a
   * {@link Task#timezone timezone} is set: five fields (`minute hour
   * day-of-month month day-of-week`), optionally a leading seconds field, or
   * one of `@yearly @monthly @weekly @daily @hourly`.
   * @param {string} name 1–63 lowercase letters, digits, `-` and `_`
   * @param {string} expression
   * @returns {Task}
   */
  static cron(name, expression) {
    const cron = { expression: str(expression, "the cron expression"), timezone: undefined, jitterMs: undefined };
    return new Task(name, { tag: "cron", val: cron });
  }

  /**
   * A task whose due-ness the plugin decides: on each pulse, at most once per
   * `everySeconds`, the host calls the plugin's `shouldRun`.
   * @param {string} name
   * @param {number} everySeconds whole seconds
   * @returns {Task}
   */
  static dynamic(name, everySeconds) {
    return new Task(name, { tag: "dynamic", val: u32(everySeconds, "Task.dynamic() seconds") });
  }

  /**
   * A task that is never due by itself: only an operator or an API client
   * triggers it.
   * @param {string} name
   * @returns {Task}
   */
  static manual(name) {
    return new Task(name, { tag: "manual" });
  }

  /**
   * A service: its one step is a long-running process the host keeps running
   * on one host of the cluster (hosts in server mode only), restarted when it
   * exits after a delay that doubles from `restartBackoffMs` (default 1000)
   * up to `maxRestartBackoffMs` (60000) and resets once it stayed up
   * `stableAfterMs` (60000). On shutdown it gets SIGTERM, `onShutdown` (an
   * {@link Exec}) runs beside it, and SIGKILL follows after
   * `shutdownGraceMs` (10000).
   * @param {string} name
   * @param {{restartBackoffMs?: number, maxRestartBackoffMs?: number, stableAfterMs?: number, shutdownGraceMs?: number, onShutdown?: Exec}} [options]
   * @returns {Task}
   */
  static service(name, options = {}) {
    const o = options ?? {};
    const ms = (value, fallback, what) => u64(value ?? fallback, `Task.service() ${what}`);
    return new Task(name, {
      tag: "service",
      val: {
        restartBackoffMs: ms(o.restartBackoffMs, 1000, "restartBackoffMs"),
        maxRestartBackoffMs: ms(o.maxRestartBackoffMs, 60000, "maxRestartBackoffMs"),
        stableAfterMs: ms(o.stableAfterMs, 60000, "stableAfterMs"),
        shutdownGraceMs: ms(o.shutdownGraceMs, 10000, "shutdownGraceMs"),
        onShutdown: o.onShutdown === undefined ? undefined : instance(o.onShutdown, Exec, "Task.service() onShutdown").toWit(),
      },
    });
  }

  /**
   * Sets the text shown to operators.
   * @param {string} text
   * @returns {this}
   */
  description(text) {
    this.task.description = str(text, "description()");
    return this;
  }

  /**
   * Starts each occurrence up to `ms` milliseconds late, by an amount the host
   * fixes per task and slot. Throws if the task is not a cron task.
   * @param {number} ms
   * @returns {this}
   */
  jitter(ms) {
    if (this.task.schedule.tag !== "cron") throw new Error(`jitter() applies only to cron tasks (task ${this.task.name})`);
    this.task.schedule.val.jitterMs = u64(ms, "jitter() milliseconds");
    return this;
  }

  /**
   * Sends `events` of this task (`"failure"`, `"recovery"`, `"missed"`,
   * `"paused"`) to `webhook` as signed JSON POSTs.
   * @param {string[]} events
   * @param {string} webhook
   * @returns {this}
   */
  alert(events, webhook) {
    const chosen = strings(events, "alert() events");
    for (const e of chosen) oneOf(e, ["failure", "recovery", "missed", "paused"], "alert() event");
    this.task.alerts.push({ events: chosen, webhook: str(webhook, "alert() webhook") });
    return this;
  }

  /**
   * Reads the cron expression in this IANA time zone, e.g. `Europe/Berlin`.
   * Throws if the task is not a cron task.
   * @param {string} zone
   * @returns {this}
   */
  timezone(zone) {
    if (this.task.schedule.tag !== "cron") throw new Error(`timezone() applies only to cron tasks (task ${this.task.name})`);
    this.task.schedule.val.timezone = str(zone, "timezone()");
    return this;
  }

  /**
   * `false`: registered but never due by its schedule until a new version of
   * the plugin enables it (an operator can still trigger it). Default `true`.
   * @param {boolean} enabled
   * @returns {this}
   */
  enabled(enabled) {
    this.task.enabled = bool(enabled, "enabled()");
    return this;
  }

  /**
   * Limits the wall-clock time of the provision hook, the background hook and
   * the steps together. Without it the host's default applies.
   * @param {number} ms milliseconds
   * @returns {this}
   */
  timeout(ms) {
    this.task.timeoutMs = u64(ms, "timeout() milliseconds");
    return this;
  }

  /**
   * Higher runs first when more runs wait than the host may run at once.
   * Default 0.
   * @param {number} priority a 32-bit signed integer
   * @returns {this}
   */
  priority(priority) {
    this.task.priority = s32(priority, "priority()");
    return this;
  }

  /**
   * Retries failed runs. Without it a failed run is not retried.
   * @param {Retry} retry
   * @returns {this}
   */
  retry(retry) {
    this.task.retry = instance(retry, Retry, "retry()").toWit();
    return this;
  }

  /**
   * What to do when a slot is due while the previous run is still going:
   * `"skip"` (default), `"allow"` or `"replace"`; see {@link Overlap}.
   * @param {"skip" | "allow" | "replace"} policy
   * @returns {this}
   */
  overlap(policy) {
    this.task.overlap = oneOf(policy, Overlap, "overlap()");
    return this;
  }

  /**
   * What to do with slots missed while no pulse came: `"latest"` (default),
   * `"all"` or `"none"`; see {@link CatchUp}.
   * @param {"latest" | "all" | "none"} policy
   * @returns {this}
   */
  catchUp(policy) {
    this.task.catchUp = oneOf(policy, CatchUp, "catchUp()");
    return this;
  }

  /**
   * Records a slot as missed if it cannot start within this long of its time.
   * @param {number} ms milliseconds
   * @returns {this}
   */
  startingDeadline(ms) {
    this.task.startingDeadlineMs = u64(ms, "startingDeadline() milliseconds");
    return this;
  }

  /**
   * Adds a label for filtering history.
   * @param {string} tag
   * @returns {this}
   */
  tag(tag) {
    this.task.tags.push(str(tag, "tag()"));
    return this;
  }

  /**
   * Adds several labels; see {@link Task#tag}.
   * @param {Iterable<string>} tags
   * @returns {this}
   */
  tags(tags) {
    this.task.tags.push(...strings(tags, "tags()"));
    return this;
  }

  /**
   * Names tasks of the same plugin whose runs in the same pulse must succeed
   * before this one starts.
   * @param {...string} tasks
   * @returns {this}
   */
  dependsOn(...tasks) {
    this.task.dependsOn.push(...strings(tasks, "dependsOn()"));
    return this;
  }

  /**
   * `true`: a step whose stdout is JSON hands it to the next step's stdin
   * (unless that step sets its own `stdinJson`).
   * @param {boolean} [pipe=true]
   * @returns {this}
   */
  pipeJson(pipe = true) {
    this.task.pipeJson = bool(pipe, "pipeJson()");
    return this;
  }

  /**
   * Runs this process before the steps. If it fails, the steps are skipped and
   * the run fails with failure type `provision`.
   * @param {Exec} exec
   * @returns {this}
   */
  provision(exec) {
    this.task.hooks.provision = instance(exec, Exec, "provision()").toWit();
    return this;
  }

  /**
   * Runs this process last, always: after success, failure, timeout or
   * cancellation.
   * @param {Exec} exec
   * @returns {this}
   */
  cleanup(exec) {
    this.task.hooks.cleanup = instance(exec, Exec, "cleanup()").toWit();
    return this;
  }

  /**
   * Starts this process before the steps and stops it (its process group)
   * after them. If it exits early the run fails with failure type
   * `background`, unless {@link Task#backgroundMayExit}.
   * @param {Exec} exec
   * @returns {this}
   */
  background(exec) {
    this.task.hooks.background = instance(exec, Exec, "background()").toWit();
    return this;
  }

  /**
   * Limits of every process of the task that sets none of its own; see
   * {@link Exec#limits}.
   * @param {object} limits
   * @returns {this}
   */
  defaultLimits(limits) {
    this.task.defaultLimits = limitsToWit(limits);
    return this;
  }

  /**
   * What happens when the machine cannot give a protection: `"best-effort"`
   * (default) or `"strict"`; see {@link SandboxPolicy}.
   * @param {"best-effort" | "strict"} policy
   * @returns {this}
   */
  sandboxPolicy(policy) {
    this.task.sandboxPolicy = oneOf(policy, SandboxPolicy, "sandboxPolicy()");
    return this;
  }

  /**
   * What a run needs of its host: it is admitted only where this fits.
   * @param {number|bigint} memoryBytes
   * @param {number} cpuMillicores
   * @returns {this}
   */
  reservation(memoryBytes, cpuMillicores) {
    this.task.reservation = {
      memoryBytes: u64(memoryBytes, "reservation() memoryBytes"),
      cpuMillicores: u32(cpuMillicores, "reservation() cpuMillicores"),
    };
    return this;
  }

  /**
   * At most `limit` runs of the tasks naming `key` run at once, across the cluster.
   * @param {string} key
   * @param {number} limit
   * @returns {this}
   */
  concurrency(key, limit) {
    this.task.concurrency = { key: str(key, "concurrency() key"), limit: u32(limit, "concurrency() limit") };
    return this;
  }

  /**
   * `true`: a background process that exits early is recorded but does not
   * fail the run.
   * @param {boolean} [mayExit=true]
   * @returns {this}
   */
  backgroundMayExit(mayExit = true) {
    this.task.hooks.backgroundMayExit = bool(mayExit, "backgroundMayExit()");
    return this;
  }

  /**
   * Appends a step. Steps run in order; a task needs at least one.
   * @param {Step} step
   * @returns {this}
   */
  step(step) {
    this.task.steps.push(instance(step, Step, "step()").toWit());
    return this;
  }

  /**
   * Appends several steps.
   * @param {Iterable<Step>} steps
   * @returns {this}
   */
  steps(steps) {
    for (const step of each(steps, "steps()")) this.step(step);
    return this;
  }

  /** @returns {object} the WIT `task`, as jco's bindings take it. */
  toWit() {
    return copy(this.task);
  }
}

/**
 * Everything a plugin describes: its name, version, description and tasks.
 *
 * ```js
 * new Manifest("reports", "1.2.0")
 *   .description("Weekly reports for the finance team.")
 *   .task(Task.cron("weekly", "0 6 * * 1").step(Step.shell("render", "make report")))
 * ```
 */
export class Manifest {
  /**
   * A manifest with no tasks.
   * @param {string} name identifies the plugin (1–63 lowercase letters,
   *   digits, `-` and `_`): uploading a component with the same name makes a
   *   new version of it
   * @param {string} version shown to operators, e.g. `1.2.0`
   */
  constructor(name, version) {
    /** @private The WIT `manifest`, in jco's representation. */
    this.manifest = { name: str(name, "the plugin name"), version: str(version, "the plugin version"), description: "", tasks: [] };
  }

  /**
   * Sets the text shown to operators.
   * @param {string} text
   * @returns {this}
   */
  description(text) {
    this.manifest.description = str(text, "description()");
    return this;
  }

  /**
   * Adds a task. Task names must be unique within the plugin.
   * @param {Task} task
   * @returns {this}
   */
  task(task) {
    this.manifest.tasks.push(instance(task, Task, "task()").toWit());
    return this;
  }

  /**
   * Adds several tasks.
   * @param {Iterable<Task>} tasks
   * @returns {this}
   */
  tasks(tasks) {
    for (const task of each(tasks, "tasks()")) this.task(task);
    return this;
  }

  /** @returns {object} the WIT `manifest`, as jco's bindings take it. */
  toWit() {
    return copy(this.manifest);
  }
}
