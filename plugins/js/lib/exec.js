/**
 * Builders for the processes a task runs: {@link Step}s and hook {@link Exec}s.
 *
 * @module pulsehost/lib/exec
 */

import { bool, copy, instance, show, str, strings, u32, u64 } from "./check.js";

/**
 * A WIT `limits` with nothing set: the task's, then the host's, apply.
 * @returns {object}
 */
export function noLimits() {
  return limitsToWit({});
}

/**
 * What one process (with everything it starts) may use, as the WIT `limits`.
 * Fields left out take the task's default limits, then the host's.
 * @param {{memoryBytes?: number|bigint, cpuMillicores?: number, processes?: number,
 *          openFiles?: number|bigint, fileSizeBytes?: number|bigint,
 *          noNetwork?: boolean, privateTmp?: boolean}} limits
 * @returns {object}
 */
export function limitsToWit(limits) {
  if (limits === null || typeof limits !== "object") throw new TypeError(`limits must be an object, got ${show(limits)}`);
  const known = ["memoryBytes", "cpuMillicores", "processes", "openFiles", "fileSizeBytes", "noNetwork", "privateTmp"];
  const unknown = Object.keys(limits).filter((k) => !known.includes(k));
  if (unknown.length) throw new TypeError(`unknown limits: ${unknown.join(", ")} (known: ${known.join(", ")})`);
  const opt = (value, check, what) => (value === undefined ? undefined : check(value, what));
  return {
    memoryBytes: opt(limits.memoryBytes, u64, "memoryBytes"),
    cpuMillicores: opt(limits.cpuMillicores, u32, "cpuMillicores"),
    processes: opt(limits.processes, u32, "processes"),
    openFiles: opt(limits.openFiles, u64, "openFiles"),
    fileSizeBytes: opt(limits.fileSizeBytes, u64, "fileSizeBytes"),
    noNetwork: opt(limits.noNetwork, bool, "noNetwork"),
    privateTmp: opt(limits.privateTmp, bool, "privateTmp"),
  };
}

/**
 * The options {@link Exec} and {@link Step} share. Not constructed directly:
 * use the static methods of `Exec` and `Step`.
 * @abstract
 */
class Process {
  /** @param {{tag: string, val?: unknown}} kind the WIT `step-kind` */
  constructor(kind) {
    /** @private The WIT `exec-spec`, in jco's representation. */
    this.spec = {
      kind,
      args: [],
      envs: [],
      workingDir: undefined,
      timeoutMs: undefined,
      stdinJson: undefined,
      limits: noLimits(),
      resources: [],
      terminalOutput: false,
      stdinSchema: undefined,
      stdoutSchema: undefined,
    };
  }

  /**
   * Appends one argument: one element of `argv`, never split or quoted. A
   * shell script reads its arguments as `$1`, `$2`, … or `"$@"`.
   * @param {string} arg
   * @returns {this}
   */
  arg(arg) {
    this.spec.args.push(str(arg, "arg()"));
    return this;
  }

  /**
   * Appends several arguments; see {@link Process#arg}.
   * @param {Iterable<string>} args
   * @returns {this}
   */
  args(args) {
    this.spec.args.push(...strings(args, "args()"));
    return this;
  }

  /**
   * Sets an environment variable. The process sees only these, a small
   * allow-list of the host's variables (PATH, HOME, LANG, TZ) and the
   * `PULSEHOST_*` run context.
   * @param {string} key
   * @param {string} value
   * @returns {this}
   */
  env(key, value) {
    this.spec.envs.push([str(key, "env() key"), str(value, `env(${show(key)}) value`)]);
    return this;
  }

  /**
   * Sets several environment variables: an object (`{KEY: "value"}`), a `Map`
   * or an iterable of `[key, value]` pairs; see {@link Process#env}.
   * @param {Record<string, string> | Iterable<[string, string]>} envs
   * @returns {this}
   */
  envs(envs) {
    const iterable = envs != null && typeof envs[Symbol.iterator] === "function";
    for (const [key, value] of iterable ? envs : Object.entries(envs ?? {})) this.env(key, value);
    return this;
  }

  /**
   * Runs the process in this absolute directory instead of a fresh scratch
   * directory per run.
   * @param {string} dir
   * @returns {this}
   */
  workingDir(dir) {
    this.spec.workingDir = str(dir, "workingDir()");
    return this;
  }

  /**
   * Limits the process's wall-clock time. Without it the task's timeout (or
   * the host's default) bounds it.
   * @param {number} ms milliseconds
   * @returns {this}
   */
  timeout(ms) {
    this.spec.timeoutMs = u64(ms, "timeout() milliseconds");
    return this;
  }

  /**
   * Writes `value`, serialized with `JSON.stringify`, to the process's stdin,
   * then closes it. A string is sent as a JSON string: to send JSON text you
   * already have, pass `JSON.parse(text)`.
   * @param {unknown} value
   * @returns {this}
   */
  stdinJson(value) {
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError(`stdinJson() needs a JSON value, got ${show(value)}`);
    this.spec.stdinJson = json;
    return this;
  }

  /**
   * A JSON Schema its stdin must satisfy, checked before it starts (its
   * `stdinJson`, JSON piped from the step before, or a manual run's chosen
   * input). A violation fails it with failure type `schema`. The host refuses
   * the plugin at upload if the schema is not valid JSON Schema or refers to a
   * URL or file.
   * @param {object|boolean} schema
   * @returns {this}
   */
  stdinSchema(schema) {
    this.spec.stdinSchema = schemaText(schema, "stdinSchema()");
    return this;
  }

  /**
   * A JSON Schema its stdout must satisfy as one JSON document, checked after
   * it exits 0; a violation fails it with failure type `schema`.
   * @param {object|boolean} schema
   * @returns {this}
   */
  stdoutSchema(schema) {
    this.spec.stdoutSchema = schemaText(schema, "stdoutSchema()");
    return this;
  }

  /**
   * Limits this process (and everything it starts); fields left out take the
   * task's default limits, then the host's.
   * @param {object} limits e.g. `{ memoryBytes: 256 * 2 ** 20, processes: 64, noNetwork: true }`
   * @returns {this}
   */
  limits(limits) {
    this.spec.limits = limitsToWit(limits);
    return this;
  }

  /**
   * Fetches `url` before the run's first process starts, checks it against
   * `sha256` (64 hex digits) and places it at `dest`, relative to the run's
   * scratch directory. A failed download or a mismatch fails the run with
   * failure type `resources`.
   * @param {string} url
   * @param {string} sha256
   * @param {string} dest
   * @param {{executable?: boolean}} [options]
   * @returns {this}
   */
  resource(url, sha256, dest, { executable = false } = {}) {
    this.spec.resources.push({
      url: str(url, "resource() url"),
      sha256: str(sha256, "resource() sha256"),
      dest: str(dest, "resource() dest"),
      executable: bool(executable, "resource() executable"),
    });
    return this;
  }

  /**
   * Runs the process under a pseudo-terminal (for programs that report
   * progress only to a terminal): stdout and stderr arrive together as stdout.
   * @param {boolean} [on]
   * @returns {this}
   */
  terminalOutput(on = true) {
    this.spec.terminalOutput = bool(on, "terminalOutput()");
    return this;
  }

  /**
   * Adds a pip requirement specifier such as `requests==2.32.3` to a Python
   * program. Throws for other kinds of process.
   * @param {string} requirement
   * @returns {this}
   */
  requirement(requirement) {
    if (this.spec.kind.tag !== "python") throw new Error("requirement() applies only to Python programs");
    this.spec.kind.val.requirements.push(str(requirement, "requirement()"));
    return this;
  }

  /** @returns {object} a copy of the WIT `exec-spec`, as jco's bindings take it. */
  toWit() {
    return copy(this.spec);
  }
}

/**
 * A process run by a task's hook (provision, background or cleanup): a shell
 * script, a Python program or an executable, with its arguments and environment.
 *
 * ```js
 * Exec.shell('mkdir -p "$1"').arg("/var/tmp/backup")
 * ```
 */
export class Exec extends Process {
  /**
   * A shell script, run as `/bin/sh -c <script> pulsehost <args…>`.
   * @param {string} script
   * @returns {Exec}
   */
  static shell(script) {
    return new Exec({ tag: "shell", val: str(script, "the shell script") });
  }

  /**
   * A Python program, run by the host's interpreter in a cached virtual
   * environment with its {@link Process#requirement requirements} installed.
   * @param {string} source
   * @returns {Exec}
   */
  static python(source) {
    return new Exec({ tag: "python", val: { source: str(source, "the Python source"), requirements: [] } });
  }

  /**
   * An executable, run directly (never through a shell): an absolute path to
   * an existing file under a directory the host allows.
   * @param {string} path
   * @returns {Exec}
   */
  static binary(path) {
    return new Exec({ tag: "binary", val: str(path, "the binary path") });
  }
}

/**
 * One named step of a task: a process, like {@link Exec}, with a name unique
 * within the task. Steps run in order; the first failure ends the run.
 *
 * ```js
 * Step.binary("disk-usage", "/usr/bin/du").args(["-sh", "/var/lib"])
 * ```
 */
export class Step extends Process {
  /**
   * A step running any {@link Exec} (copied: changing `exec` later does not
   * change the step).
   * @param {string} name
   * @param {Exec} exec
   */
  constructor(name, exec) {
    super(instance(exec, Exec, "new Step(name, exec): exec").spec.kind);
    this.spec = exec.toWit();
    /** @private */
    this.name = str(name, "the step name");
  }

  /**
   * A step running a shell script; see {@link Exec.shell}.
   * @param {string} name
   * @param {string} script
   * @returns {Step}
   */
  static shell(name, script) {
    return new Step(name, Exec.shell(script));
  }

  /**
   * A step running a Python program; see {@link Exec.python}.
   * @param {string} name
   * @param {string} source
   * @returns {Step}
   */
  static python(name, source) {
    return new Step(name, Exec.python(source));
  }

  /**
   * A step running an executable; see {@link Exec.binary}.
   * @param {string} name
   * @param {string} path
   * @returns {Step}
   */
  static binary(name, path) {
    return new Step(name, Exec.binary(path));
  }

  /** @returns {object} the WIT `step`, as jco's bindings take it. */
  toWit() {
    return { name: this.name, exec: super.toWit() };
  }
}

/** A JSON Schema (an object, or true or false) as JSON text. */
function schemaText(schema, what) {
  const isObject = schema !== null && typeof schema === "object" && !Array.isArray(schema);
  if (!isObject && typeof schema !== "boolean") {
    throw new TypeError(`${what} needs a JSON Schema object (or true or false), got ${show(schema)}`);
  }
  return JSON.stringify(schema);
}
