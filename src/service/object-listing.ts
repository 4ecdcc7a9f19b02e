/**
 * S3-style listing of the object catalog, shared by the byte plane (ListObjectsV2/V1) and
 * StorageService.ListObjects: keys in byte order under a prefix, keys that continue past a
 * delimiter folded into common prefixes (each counted once against max-keys, and the keys
 * under it skipped by the next query rather than read), and a resume point.
 */
import type { StoredObject } from "../domain/bucket";
import type { Scope } from "../domain/job";
import type { Repository } from "../storage/repository";

/** Past every key with a given prefix, in byte order (U+10FFFF encodes as F4 8F BF BF). */
const AFTER_PREFIX = "\u{10FFFF}";

/** Most entries one page holds. */
export const MAX_KEYS = 1000;

/** One page of a listing. */
export interface ObjectPage {
  objects: StoredObject[];
  prefixes: string[];
  truncated: boolean;
  /** Where the next page starts (after this), when truncated. */
  resumeAfter: string;
}

/** Lists up to `maxKeys` entries (objects and common prefixes) after `after`. */
export async function listObjectPage(repo: Repository, scope: Scope, p: { prefix: string; delimiter: string; maxKeys: number; after: string }): Promise<ObjectPage> {
  const limit = Math.min(p.maxKeys, MAX_KEYS);
  const objects: StoredObject[] = [];
  const prefixes: string[] = [];
  let after = p.after;
  let truncated = false;
  let resumeAfter = "";
  const batch = Math.min(1000, limit + 1);
  outer: for (let round = 0; round < 1000; round++) {
    const rows = await repo.catalog.objectList(scope, { prefix: p.prefix, after, limit: batch });
    for (const o of rows) {
      if (objects.length + prefixes.length === limit) {
        truncated = true;
        break outer;
      }
      const rest = o.key.slice(p.prefix.length);
      const cut = p.delimiter ? rest.indexOf(p.delimiter) : -1;
      if (cut >= 0) {
        const cp = p.prefix + rest.slice(0, cut + p.delimiter.length);
        prefixes.push(cp);
        resumeAfter = after = cp + AFTER_PREFIX;
        continue outer; // everything under the common prefix is skipped by the next query
      }
      objects.push(o);
      resumeAfter = after = o.key;
    }
    if (rows.length < batch) break;
  }
  return { objects, prefixes, truncated, resumeAfter };
}

/** The opaque continuation token of a resume point, and back. */
export const continuationToken = {
  encode: (after: string) => Buffer.from(after, "utf8").toString("base64url"),
  decode: (token: string) => Buffer.from(token, "base64url").toString("utf8"),
};
