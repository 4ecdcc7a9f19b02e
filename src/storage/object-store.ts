/**
 * Objects live behind this interface so that an S3 store can follow. The filesystem
 * store maps bucket `b` to the folder `<root>/b/` and a key to its path inside.
 */
import { realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import { mimeTypeOf } from "../domain/mime";

/** What the API needs to know about an object. */
export interface ObjectInfo {
  size: number;
  mimeType: string;
}

/** Read access to the objects of buckets. */
export interface ObjectStore {
  /** Returns the object's facts, or undefined when there is no such object. */
  stat(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /** The absolute path of an existing object, for readers that stream it. */
  resolve(bucket: string, key: string): Promise<string | undefined>;
}

/** An ObjectStore over a local folder. Keys must already have passed checkObjectKey. */
export function createFsObjectStore(root: string): ObjectStore {
  async function resolve(bucket: string, key: string): Promise<string | undefined> {
    const bucketDir = join(root, bucket);
    let real: string;
    let realBucket: string;
    try {
      [real, realBucket] = await Promise.all([realpath(join(bucketDir, key)), realpath(bucketDir)]);
    } catch {
      return undefined;
    }
    // A symlink that leads out of the bucket is treated as no object at all.
    if (!real.startsWith(realBucket + sep)) return undefined;
    return real;
  }
  return {
    resolve,
    async stat(bucket, key) {
      const path = await resolve(bucket, key);
      if (!path) return undefined;
      const st = await stat(path).catch(() => undefined);
      if (!st?.isFile()) return undefined;
      return { size: st.size, mimeType: mimeTypeOf(key) };
    },
  };
}
