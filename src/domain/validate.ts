/** Input checks shared by every RPC. Each throws InvalidArgument naming the field and value. */
import { InvalidArgument } from "./errors";

/** Largest page a list call returns, and the size used when the caller sends 0. */
export const MAX_PAGE_SIZE = 1000;
export const DEFAULT_PAGE_SIZE = 50;

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;

/** Shows a user string in a message without letting it flood the log or the reply. */
export function quote(value: string, max = 80): string {
  const shown = value.length > max ? `${value.slice(0, max)}…` : value;
  return JSON.stringify(shown);
}

/** Checks a bucket name against the S3 naming rules. */
export function checkBucket(bucket: string, field = "bucket"): void {
  if (bucket === "") throw new InvalidArgument(`${field} is required`, field);
  if (!BUCKET.test(bucket) || bucket.includes("..") || IPV4.test(bucket)) {
    throw new InvalidArgument(
      `${field} ${quote(bucket)} is not a valid bucket name (3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit)`,
      field,
    );
  }
}

/**
 * Checks an object key as S3 does: non-empty, at most 1024 bytes of valid UTF-8, and no
 * NUL. Anything else is a key (`..`, `a//b`, control characters); the object stores keep
 * such keys where they cannot name anything outside the bucket (storage/key-path.ts).
 */
export function checkObjectKey(key: string, field = "object.key"): void {
  if (key === "") throw new InvalidArgument(`${field} is required`, field);
  if (Buffer.byteLength(key, "utf8") > 1024) {
    throw new InvalidArgument(`${field} ${quote(key)} is longer than 1024 bytes`, field);
  }
  if (!key.isWellFormed()) {
    throw new InvalidArgument(`${field} ${quote(key)} is not valid UTF-8`, field);
  }
  const nul = key.indexOf("\0");
  if (nul >= 0) {
    throw new InvalidArgument(`${field} ${quote(key.replaceAll("\0", "\uFFFD"))} contains NUL at position ${nul}; any other UTF-8 is accepted`, field);
  }
}

/** Resolves a requested page size: 0 means the default, above the maximum is capped. */
export function resolvePageSize(pageSize: number, field = "page_size"): number {
  if (pageSize < 0) {
    throw new InvalidArgument(`${field} ${pageSize} must not be negative`, field);
  }
  if (pageSize === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(pageSize, MAX_PAGE_SIZE);
}

/** Checks that a required string field is present. */
export function checkRequired(value: string, field: string): void {
  if (value.trim() === "") throw new InvalidArgument(`${field} is required`, field);
}

/** Checks the shape of an ID with a type prefix (`job_…`). */
export function checkId(value: string, prefix: string, field: string): void {
  checkRequired(value, field);
  if (!value.startsWith(`${prefix}_`) || value.length > 128) {
    throw new InvalidArgument(
      `${field} ${quote(value)} is not a valid ID (expected "${prefix}_…")`,
      field,
    );
  }
}

/** Most entries of an options map (a pipeline's or a trigger's). */
export const MAX_OPTIONS = 64;
/** Largest key plus value of one option, in bytes. */
export const MAX_OPTION_BYTES = 4096;
/** Largest options map in all (keys plus values), in bytes; a job carries both maps. */
export const MAX_OPTIONS_TOTAL_BYTES = 16 * 1024;
/** Longest free text (descriptions), in characters. */
export const MAX_TEXT = 4096;

/** Checks an options map: entry count, key and value sizes, and total size. */
export function checkOptionMap(options: Readonly<Record<string, string>>, field = "options"): void {
  const keys = Object.keys(options);
  if (keys.length > MAX_OPTIONS) {
    throw new InvalidArgument(`${field} has ${keys.length} entries; at most ${MAX_OPTIONS} are allowed`, field);
  }
  let total = 0;
  for (const k of keys) {
    if (k === "") throw new InvalidArgument(`${field} has an empty key`, field);
    const bytes = Buffer.byteLength(k) + Buffer.byteLength(options[k]);
    if (bytes > MAX_OPTION_BYTES) {
      throw new InvalidArgument(`${field}[${quote(k, 40)}] is ${bytes} bytes (key plus value); at most ${MAX_OPTION_BYTES} are allowed`, `${field}.${k}`);
    }
    total += bytes;
  }
  if (total > MAX_OPTIONS_TOTAL_BYTES) {
    throw new InvalidArgument(`${field} holds ${total} bytes in all; at most ${MAX_OPTIONS_TOTAL_BYTES} are allowed`, field);
  }
}

/** Checks the length of a free-text field. */
export function checkLength(value: string, max: number, field: string): void {
  if (value.length > max) {
    throw new InvalidArgument(`${field} is ${value.length} characters long; at most ${max} are allowed`, field);
  }
}
