/**
 * Objects live behind this interface so that an S3 store can follow. The filesystem
 * store maps a bucket of the default organization to `<dataDir>/buckets/<bucket>/`, a
 * bucket of organization `o` to `<dataDir>/orgs/<o>/buckets/<bucket>/`, and a key to its
 * path inside. Keys have passed checkObjectKey (no `..`, not absolute); symlinks that
 * lead out of the bucket folder are treated as missing objects.
 */
import { realpath as realpathCb, stat as statCb, type Stats } from "node:fs";
import { join, sep } from "node:path";
import { DEFAULT_ORG } from "../domain/auth";
import type { Scope } from "../domain/job";
import { mimeTypeOf } from "../domain/mime";

/** What the API needs to know about an object. */
export interface ObjectInfo {
  size: number;
  mimeType: string;
}

/** Read access to the objects of buckets. */
export interface ObjectStore {
  /** Returns the object's facts, or undefined when there is no such object. */
  stat(scope: Scope, key: string): Promise<ObjectInfo | undefined>;
  /** The absolute path of an existing object, for readers that stream it. */
  resolve(scope: Scope, key: string): Promise<string | undefined>;
}

// The callback forms cost noticeably less CPU per call than fs/promises on Node 20, and
// TriggerIngest resolves an object on every call.
const realpath = (p: string) =>
  new Promise<string>((resolve, reject) => realpathCb.native(p, (err, r) => (err ? reject(err) : resolve(r))));
const stat = (p: string) => new Promise<Stats>((resolve, reject) => statCb(p, (err, s) => (err ? reject(err) : resolve(s))));

/** The folder of a bucket under the data dir. */
export function bucketDir(dataDir: string, scope: Scope): string {
  return scope.org === DEFAULT_ORG
    ? join(dataDir, "buckets", scope.bucket)
    : join(dataDir, "orgs", scope.org, "buckets", scope.bucket);
}

/** An ObjectStore over the data dir. Keys must already have passed checkObjectKey. */
export function createFsObjectStore(dataDir: string): ObjectStore {
  // The real path of a bucket folder changes rarely; keep it for a moment to save a syscall per object.
  const bucketReal = new Map<string, { path: string; at: number }>();
  async function realBucketDir(dir: string): Promise<string> {
    const hit = bucketReal.get(dir);
    if (hit && Date.now() - hit.at < 2000) return hit.path;
    const path = await realpath(dir);
    if (bucketReal.size > 10_000) bucketReal.clear();
    bucketReal.set(dir, { path, at: Date.now() });
    return path;
  }
  async function resolve(scope: Scope, key: string): Promise<string | undefined> {
    const dir = bucketDir(dataDir, scope);
    let real: string;
    let realBucket: string;
    try {
      [real, realBucket] = await Promise.all([realpath(join(dir, key)), realBucketDir(dir)]);
    } catch {
      return undefined;
    }
    // A symlink that leads out of the bucket is treated as no object at all.
    if (!real.startsWith(realBucket + sep)) return undefined;
    return real;
  }
  async function statInside(scope: Scope, key: string): Promise<ObjectInfo | undefined> {
    const full = join(bucketDir(dataDir, scope), key);
    // stat (which follows links) runs alongside the containment check instead of after it.
    const [path, st] = await Promise.all([resolve(scope, key), stat(full).catch(() => undefined)]);
    if (!path || !st?.isFile()) return undefined;
    return { size: st.size, mimeType: mimeTypeOf(key) };
  }
  return {
    resolve,
    stat: statInside,
  };
}
