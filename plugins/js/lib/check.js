/**
 * Argument checks and conversions shared by the builders. A failed check
 * throws; thrown inside `manifest()`, the error becomes the upload's message.
 * Internal to the SDK.
 *
 * @module pulsehost/lib/check
 */

/** Largest WIT `u64`. */
const U64_MAX = (1n << 64n) - 1n;

/** A short, readable rendering of a value for error messages. */
export function show(value) {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return "a function";
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : `an object (${value.constructor?.name ?? "Object"})`;
}

/** `value`, which must be a string. */
export function str(value, what) {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string, got ${show(value)}`);
  return value;
}

/** A fresh array of the strings of an iterable (not a lone string). */
export function strings(values, what) {
  return each(values, what).map((v) => str(v, `each element of ${what}`));
}

/** `value`, which must be a boolean. */
export function bool(value, what) {
  if (typeof value !== "boolean") throw new TypeError(`${what} must be true or false, got ${show(value)}`);
  return value;
}

/** A non-negative number or BigInt as a whole BigInt (fractions truncated, Infinity saturates). */
function whole(value, what) {
  if (typeof value === "bigint" && value >= 0n) return value;
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative number, got ${show(value)}`);
  }
  return value === Infinity ? U64_MAX : BigInt(Math.trunc(value));
}

/** A WIT `u64` (jco wants a BigInt), saturating like the Rust SDK. */
export function u64(value, what) {
  const n = whole(value, what);
  return n > U64_MAX ? U64_MAX : n;
}

/** A WIT `u32` (a number), saturating. */
export function u32(value, what) {
  const n = whole(value, what);
  return n > 0xffffffffn ? 0xffffffff : Number(n);
}

/** A WIT `s32`: an integer in range. */
export function s32(value, what) {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new RangeError(`${what} must be an integer from -2147483648 to 2147483647, got ${show(value)}`);
  }
  return value;
}

/** `value`, which must be one of the values of the frozen object `cases`. */
export function oneOf(value, cases, what) {
  const allowed = Object.values(cases);
  if (!allowed.includes(value)) {
    throw new RangeError(`${what} must be one of ${allowed.map((c) => JSON.stringify(c)).join(", ")}, got ${show(value)}`);
  }
  return value;
}

/** `value`, which must be an instance of `type`. */
export function instance(value, type, what) {
  if (!(value instanceof type)) throw new TypeError(`${what} must be a ${type.name}, got ${show(value)}`);
  return value;
}

/** A fresh array of the elements of an iterable (not a lone string). */
export function each(values, what) {
  if (values == null || typeof values === "string" || typeof values[Symbol.iterator] !== "function") {
    throw new TypeError(`${what} must be an array (or iterable), got ${show(values)}`);
  }
  return Array.from(values);
}

/** A deep copy of plain data (objects, arrays, strings, numbers, BigInts). */
export function copy(value) {
  if (Array.isArray(value)) return value.map(copy);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, copy(v)]));
}
