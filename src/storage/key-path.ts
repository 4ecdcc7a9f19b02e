/**
 * Where an object key lives inside its bucket, in either store. A key is any UTF-8 of up
 * to 1,024 bytes without NUL, so it may hold `..`, empty segments, control characters or
 * segments longer than a file name may be. A key that is also a plain relative path is
 * kept as that path (folders stay browsable, files dropped in by hand are found); any
 * other key — and, in the folder store, a key that clashes with a folder (`a` beside
 * `a/b`) — is kept under the reserved folder `.k3-keys/` by the SHA-256 of the key, which
 * can name nothing outside the bucket. The catalog remembers every key, so nothing has to
 * be read back from a hashed name.
 */
import { createHash } from "node:crypto";

/** The reserved top folder of a bucket for keys kept by hash; never a key's own path. */
export const HASHED_DIR = ".k3-keys";

/** The longest file name (one path segment) in bytes on the file systems we run on. */
const MAX_SEGMENT_BYTES = 255;

/** True when the key can be kept as the path it spells. */
export function isPlainPath(key: string): boolean {
  if (key === "" || key.includes("\0")) return false;
  const segments = key.split("/");
  if (segments[0] === HASHED_DIR) return false;
  for (const s of segments) {
    if (s === "" || s === "." || s === "..") return false;
    if (s.length > MAX_SEGMENT_BYTES / 4 && Buffer.byteLength(s, "utf8") > MAX_SEGMENT_BYTES) return false;
  }
  return true;
}

/** The key's path kept by hash: `.k3-keys/<sha256 hex>`. */
export function hashedPath(key: string): string {
  return `${HASHED_DIR}/${createHash("sha256").update(key, "utf8").digest("hex")}`;
}

/** The relative path a key is kept at when nothing clashes with it. */
export function keyPath(key: string): string {
  return isPlainPath(key) ? key : hashedPath(key);
}
