/**
 * The ObjectStore over the data dir's folders. A bucket of the default organization is
 * `<dataDir>/buckets/<bucket>/`, a bucket of organization `o` `<dataDir>/orgs/<o>/buckets/<bucket>/`,
 * and a key its path inside (key-path.ts: the key itself, or its hash when it is no plain
 * path or clashes with a folder); symlinks that lead out of the bucket folder are treated
 * as missing objects.
 */
import { constants, lstat as lstatCb, lstatSync, realpath as realpathCb, stat as statCb, type Stats } from "node:fs";
import { isUtf8 } from "node:buffer";
import { lstat, mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { fd } from "./fd";
import { stampFile } from "./version-stamp";
import { decodedObject } from "./decoded-object";
import { createStaging, ifGone, removeFile, syncDir, type TempFile } from "./staging";
import { dirname, join, sep } from "node:path";
import { HASHED_DIR, hashedPath, isPlainPath } from "./key-path";
import { DEFAULT_ORG } from "../domain/auth";
import type { Scope } from "../domain/job";
import { NotFound } from "../domain/errors";
import { mimeTypeOf } from "../domain/mime";
import { catalogOf, ObjectConflict, ObjectUnreadable, readWhole, syncWhileFast, type ObjectHandle, type ObjectInfo, type ObjectStore, type Placed, type ReadLimits, type ScanEntry } from "./object-store";

// The callback forms cost noticeably less CPU per call than fs/promises on Node 20, and
// TriggerIngest resolves an object on every call.
const realpath = (p: string) =>
  new Promise<string>((resolve, reject) => realpathCb.native(p, (err, r) => (err ? reject(err) : resolve(r))));
const stat = (p: string) => new Promise<Stats>((resolve, reject) => statCb(p, (err, s) => (err ? reject(err) : resolve(s))));
/** A path's modification time in ns (lstat: a link's own), what an object's version is. */
const mtimeNs = (p: string) => new Promise<bigint>((resolve, reject) => lstatCb(p, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st.mtimeNs))));

/**
 * lstat of an object's path (undefined when nothing is there, or something on the way is
 * not a folder). TriggerIngest makes one per call: through the thread pool it cost a
 * quarter of the REST door's throughput on the bench machine (two thread wake-ups around a
 * 2 µs call, on cores busy with PostgreSQL), so it runs on this thread while it takes under
 * a millisecond; three slower in 32 send lstats to the thread pool for a minute.
 */
const lstatFast = syncWhileFast(
  (p: string) => {
    try {
      return lstatSync(p, { throwIfNoEntry: false });
    } catch {
      return undefined;
    }
  },
  (p: string) => new Promise<Stats | undefined>((resolve) => lstatCb(p, (err, st) => resolve(err ? undefined : st))),
  1,
  60_000,
);

/** The folder of a bucket under the data dir. */
export function bucketDir(dataDir: string, scope: Scope): string {
  return scope.org === DEFAULT_ORG
    ? join(dataDir, "buckets", scope.bucket)
    : join(dataDir, "orgs", scope.org, "buckets", scope.bucket);
}

/** An ObjectStore over the data dir. Keys must already have passed checkObjectKey. */
export function createFsObjectStore(dataDir: string): ObjectStore {
  // The real path of a folder (a bucket's, or one inside it) changes rarely; keep it for a
  // moment to save the walk of its components on every object. Only a check: readers open
  // the object without following links and check the descriptor (openPath).
  const folderReal = new Map<string, { path: string; at: number }>();
  async function realDir(dir: string): Promise<string> {
    const hit = folderReal.get(dir);
    if (hit && Date.now() - hit.at < 2000) return hit.path;
    const path = await realpath(dir);
    if (folderReal.size > 10_000) folderReal.clear();
    folderReal.set(dir, { path, at: Date.now() });
    return path;
  }
  /** The real path of `rel` when it exists inside the bucket (links leading out count as missing). */
  async function resolve(scope: Scope, rel: string): Promise<string | undefined> {
    const dir = bucketDir(dataDir, scope);
    let real: string;
    let realBucket: string;
    try {
      [real, realBucket] = await Promise.all([realpath(join(dir, rel)), realDir(dir)]);
    } catch {
      return undefined;
    }
    if (!real.startsWith(realBucket + sep)) return undefined;
    return real;
  }
  async function statPath(scope: Scope, rel: string): Promise<Stats | undefined> {
    // The common case, a plain file: lstat it, and check that its folder lies inside the
    // bucket (both folders' real paths cached) — no walk of the path per call.
    const dir = bucketDir(dataDir, scope);
    const full = join(dir, rel);
    const [own, folder, bucket] = await Promise.all([lstatFast(full), realDir(dirname(full)).catch(() => undefined), realDir(dir).catch(() => undefined)]);
    if (!own || !folder || !bucket) return undefined;
    if (!own.isSymbolicLink()) return own.isFile() && (folder === bucket || folder.startsWith(bucket + sep)) ? own : undefined;
    // A link: where it leads decides (stat follows it alongside the containment check).
    const [path, st] = await Promise.all([resolve(scope, rel), stat(full).catch(() => undefined)]);
    return path && st?.isFile() ? st : undefined;
  }
  async function statInside(scope: Scope, key: string): Promise<ObjectInfo | undefined> {
    const st = (isPlainPath(key) ? await statPath(scope, key) : undefined) ?? (await statPath(scope, hashedPath(key)));
    return st && { size: st.size, mimeType: mimeTypeOf(key) };
  }
  async function openObject(scope: Scope, key: string, limits: ReadLimits): Promise<ObjectHandle | undefined> {
    if (isPlainPath(key)) {
      const plain = await openPath(scope, key, key, limits);
      if (plain !== undefined && plain !== "folder") return plain;
    }
    const hashed = await openPath(scope, hashedPath(key), key, limits);
    return hashed === "folder" ? undefined : hashed;
  }
  /** Opens the object `key` kept at `rel`; "folder" when a folder stands there (the key may be kept by hash). */
  async function openPath(scope: Scope, rel: string, key: string, limits: ReadLimits): Promise<ObjectHandle | undefined | "folder"> {
    const dir = bucketDir(dataDir, scope);
    let n: number | undefined;
    try {
      // O_NOFOLLOW: a link swapped in as the object is not followed; O_NONBLOCK: opening a
      // FIFO returns at once instead of parking a libuv thread until a writer appears.
      n = await fd.open(join(dir, rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR" || code === "ENAMETOOLONG") return undefined;
      if (code === "ELOOP") throw new ObjectUnreadable(`object "${key}" is a symbolic link; links are not read`);
      throw new ObjectUnreadable(`object "${key}" cannot be opened (${code ?? "error"})`);
    }
    try {
      const st = await fd.stat(n);
      if (st.isDirectory()) return "folder";
      if (!st.isFile()) throw new ObjectUnreadable(`object "${key}" is not a regular file`);
      // Where the descriptor really points: a directory swapped for a link on the way is caught here.
      const real = await fd.target(n).catch(() => realpath(join(dir, rel)));
      const realBucket = await realDir(dir).catch(() => "");
      if (!realBucket || !real.startsWith(realBucket + sep)) {
        throw new ObjectUnreadable(`object "${key}" leads outside its bucket; it is not read`);
      }
      if (st.size > BigInt(limits.maxBytes)) {
        throw new ObjectUnreadable(
          `object "${key}" is ${st.size} bytes; the limit for it is ${limits.maxBytes} (K3_MAX_OBJECT_BYTES, and four bytes per character of K3_MAX_TEXT_CHARS for text)`,
        );
      }
      const size = Number(st.size);
      const own = n;
      n = undefined; // the handle owns it now, and closes it once
      let closed: Promise<void> | undefined;
      const read = (buffer: Buffer, offset: number, length: number, position: number) => fd.read(own, buffer, offset, length, position);
      return {
        fd: own,
        size,
        version: st.mtimeNs,
        close: () => (closed ??= fd.close(own).catch(() => undefined)),
        read,
        readAll() {
          const deadline = Date.now() + limits.timeoutMs;
          return readWhole(read, size, () => {
            limits.signal.throwIfAborted();
            if (Date.now() > deadline) throw new ObjectUnreadable(`object "${key}" could not be read within ${limits.timeoutMs} ms`);
          });
        },
      };
    } finally {
      if (n !== undefined) await fd.close(n).catch(() => undefined);
    }
  }
  /**
   * Walks the bucket folder depth-first with each folder's entries ordered by name, a
   * folder's name taken with its trailing "/": that visits keys in byte order ("a-c"
   * before "a/b"). Folders wholly at or before `after` are skipped unread.
   */
  async function* scan(scope: Scope, after: string): AsyncGenerator<ScanEntry> {
    const afterBytes = Buffer.from(after);
    async function* walk(dir: string, prefix: string): AsyncGenerator<ScanEntry> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true, encoding: "buffer" });
      } catch {
        return;
      }
      const named = entries
        .filter((e) => e.isDirectory() || e.isFile())
        .map((e) => ({ e, key: Buffer.concat([Buffer.from(prefix), e.name, Buffer.from(e.isDirectory() ? "/" : "")]) }))
        .sort((x, y) => Buffer.compare(x.key, y.key));
      for (const { e, key } of named) {
        scope.signal?.throwIfAborted();
        const k = key.toString();
        if (k === `${HASHED_DIR}/`) continue; // keys kept by hash are in the catalog already
        if (!isUtf8(e.name)) {
          // A key is UTF-8: a name in another encoding (a Latin-1 archive) is reported, not skipped unseen.
          if (!after || Buffer.compare(key, afterBytes) > 0) {
            yield { key: k, size: 0, etag: "", version: "0", unreadable: `its ${e.isDirectory() ? "folder's " : ""}name is not UTF-8 (${JSON.stringify(e.name.toString("latin1"))} read as Latin-1)` };
          }
          continue;
        }
        const name = e.name.toString();
        if (e.isDirectory()) {
          // Every key in it starts with k: skip it when they all sort at or before `after`.
          if (after && Buffer.compare(key, afterBytes) <= 0 && !after.startsWith(k)) continue;
          yield* walk(join(dir, name), k);
        } else if (!after || Buffer.compare(key, afterBytes) > 0) {
          const st = await lstat(join(dir, name), { bigint: true }).catch(() => undefined);
          if (st?.isFile()) yield { key: k, size: Number(st.size), etag: "", version: st.mtimeNs.toString() };
        }
      }
    }
    yield* walk(bucketDir(dataDir, scope), "");
  }
  const staging = createStaging(dataDir);

  /**
   * Renames a staged file to the key's path (atomically replacing an older object): the
   * key's own path when it is a plain one and no folder or object stands in the way, else
   * its hashed path. Whichever copy is not current is removed afterwards (a crash in between
   * leaves the plain one, which readers try first, current). Durable once the folder is
   * synced (Placed.durable).
   */
  async function place(t: TempFile, key: string, scope: Scope): Promise<Placed> {
    const root = bucketDir(dataDir, scope);
    await stampFile(t.tmp); // its version (version-stamp.ts), read back from the placed file
    if (isPlainPath(key)) {
      const placed = await renameInto(t.tmp, join(root, key));
      if (placed !== undefined) {
        // An older copy under the hashed path, rarely there: looked for without an unlink
        // that fails (and builds an error) on nearly every upload.
        const hashed = join(root, hashedPath(key));
        if (await lstatFast(hashed)) await removeFile(hashed);
        return placed;
      }
    }
    const placed = await renameInto(t.tmp, join(root, hashedPath(key)));
    if (placed === undefined) throw new ObjectConflict(`key "${key.slice(0, 80)}" cannot be stored in this bucket folder`);
    return placed;
  }
  /** Renames `tmp` to `target`; undefined when a folder or file stands in the way. */
  async function renameInto(tmp: string, target: string): Promise<Placed | undefined> {
    // The folder, or the placed file, gone under it: its bucket was removed meanwhile
    // (removeBucket moves the folder aside), and the upload says so rather than failing.
    const bucketRemoved = () => new NotFound(`the bucket was removed while ${JSON.stringify(target.slice(dataDir.length))} was placed`);
    try {
      const existing = await lstatFast(target);
      if (existing && !existing.isFile()) return undefined;
      await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
        // The key's folder is not there yet (most uploads go to folders that are), or went
        // with its bucket while this was made.
        for (let attempt = 1; ; attempt++) {
          try {
            await mkdir(dirname(target), { recursive: true });
            return await rename(tmp, target);
          } catch (again) {
            if ((again as NodeJS.ErrnoException).code !== "ENOENT") throw again;
            if (attempt === 3) throw bucketRemoved();
          }
        }
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTDIR" || code === "EEXIST" || code === "EISDIR" || code === "ENAMETOOLONG") return undefined;
      throw err;
    }
    const version = await mtimeNs(target).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "ENOENT" ? bucketRemoved() : err;
    });
    const undo = async () => {
      if ((await mtimeNs(target).catch(() => undefined)) === version) await removeFile(target);
    };
    // A folder gone by the time it is synced went with its bucket (removeBucket), bytes and all.
    const durable = () => syncDir(dirname(target)).catch(ifGone(undefined));
    return { version, durable, undo };
  }

  async function remove(scope: Scope, key: string): Promise<boolean> {
    const root = bucketDir(dataDir, scope);
    const hashed = await rm(join(root, hashedPath(key))).then(() => true, () => false);
    if (!isPlainPath(key)) return hashed;
    const gone = await rm(join(root, key)).then(() => true, () => false);
    // Prunes folders the object leaves empty, up to the bucket.
    for (let dir = dirname(join(root, key)); dir.startsWith(root + sep); dir = dirname(dir)) {
      if (!(await rmdir(dir).then(() => true, () => false))) break;
    }
    return gone || hashed;
  }
  return {
    placesQuickly: true,
    catalogVersions: true,
    open: openObject,
    stage: async (scope, body, maxBytes, signal) => staging.staged(await staging.write(body, maxBytes, signal), (t, key) => place(t, key, scope), true),
    assemble: async (scope, uploadId, parts, maxBytes, signal) =>
      staging.staged(await staging.write(staging.concatenated(uploadId, parts), maxBytes, signal), (t, key) => place(t, key, scope), true),
    decoded: (object, encoding, limits, key) => decodedObject(staging, object, encoding, limits, key),
    dropUpload: staging.dropUpload,
    sweepStaging: staging.sweep,
    remove,
    listFiles: (scope, max) => catalogOf(scan(scope, ""), max),
    scan,
    createBucket: async (scope) => void (await mkdir(bucketDir(dataDir, scope), { recursive: true })),
    async removeBucket(scope) {
      // Moved aside first, in one rename: an upload still placing its bytes then makes a new
      // folder rather than racing the removal (which failed with ENOTEMPTY), and takes its
      // bytes back out when it finds the bucket gone (Placed.undo).
      const aside = join(dataDir, "tmp", `removed-${randomBytes(8).toString("hex")}`);
      await mkdir(dirname(aside), { recursive: true });
      const moved = await rename(bucketDir(dataDir, scope), aside).then(() => true, ifGone(false));
      if (moved) await rm(aside, { recursive: true, force: true });
    },
    stat: statInside,
  };
}
