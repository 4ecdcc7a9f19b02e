/**
 * Objects live behind this interface so that an S3 store can follow. The filesystem
 * store maps a bucket of the default organization to `<dataDir>/buckets/<bucket>/`, a
 * bucket of organization `o` to `<dataDir>/orgs/<o>/buckets/<bucket>/`, and a key to its
 * path inside (key-path.ts: the key itself, or its hash when it is no plain path or clashes
 * with a folder); symlinks that lead out of the bucket folder are treated as missing objects.
 */
import { constants, lstat as lstatCb, lstatSync, realpath as realpathCb, stat as statCb, type Stats } from "node:fs";
import { lstat, mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { fd } from "./fd";
import { stampFile } from "./version-stamp";
import { createStaging, removeFile, syncDir, type TempFile } from "./staging";
import type { CatalogEntry } from "../domain/bucket";
import { dirname, join, sep } from "node:path";
import { HASHED_DIR, hashedPath, isPlainPath } from "./key-path";
import { DEFAULT_ORG } from "../domain/auth";
import type { Scope } from "../domain/job";
import { NotFound } from "../domain/errors";
import { mimeTypeOf } from "../domain/mime";

/** What the API needs to know about an object. */
export interface ObjectInfo {
  size: number;
  mimeType: string;
}

/**
 * An object opened once and checked on its descriptor. Readers read it through this
 * handle (or pass `fd` to a sandbox process), never by path again, so a file swapped
 * after the checks is never what they read.
 */
export interface ObjectHandle {
  /** The open descriptor (read-only). */
  fd: number;
  size: number;
  /** A version stamp of what was opened (modification time in ns), to order re-ingests. */
  version: bigint;
  /** Reads the whole object within the read limits. */
  readAll(): Promise<Buffer>;
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`. */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** An upload written to a temporary file, not yet visible. */
export interface StagedObject {
  size: number;
  md5: Buffer;
  sha256: Buffer;
  /**
   * Puts it in place under the key (atomically replacing an older object): readers see it
   * at once; it survives a crash once `durable()` has resolved (the caller records it in the
   * catalog in between, so an object's lock is not held for the folder's fsync).
   */
  commit(key: string): Promise<Placed>;
  /** Keeps it as part `partNumber` of a multipart upload. */
  keepAsPart(uploadId: string, partNumber: number): Promise<void>;
  discard(): Promise<void>;
}

/** A staged object put in place: its version (mtime, ns) and the wait for it to be durable. */
export interface Placed {
  version: bigint;
  durable(): Promise<void>;
  /**
   * Takes the bytes back out of place — their row could not be written (the bucket went
   * away meanwhile) — unless another upload has put its own there since.
   */
  undo(): Promise<void>;
}

/** Why an upload could not be stored under its key. */
export class ObjectConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ObjectConflict";
  }
}

/** An upload larger than allowed. */
export class ObjectTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`the object is larger than ${limit} bytes (K3_MAX_OBJECT_BYTES)`);
    this.name = "ObjectTooLarge";
  }
}

/** Why an object could not be read; the worker turns it into a permanent failure. */
export class ObjectUnreadable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ObjectUnreadable";
  }
}

/** Limits of one object read. */
export interface ReadLimits {
  maxBytes: number;
  timeoutMs: number;
  signal: AbortSignal;
}

/** One object found by a scan of a store. */
export interface ScanEntry {
  key: string;
  size: number;
  /** The store's etag, '' when it keeps none (a folder). */
  etag: string;
  /** Modification time in ns, as a decimal string. */
  version: string;
}

/** Read access to the objects of buckets. */
export interface ObjectStore {
  /** Returns the object's facts, or undefined when there is no such object. */
  stat(scope: Scope, key: string): Promise<ObjectInfo | undefined>;
  /**
   * Opens the object once: without following a final link and without blocking (a FIFO
   * or device is refused), checked on the open descriptor to be a regular file inside its
   * bucket and within `maxBytes`. Undefined when there is no such object;
   * ObjectUnreadable when it exists but may not or cannot be read. The caller closes it.
   */
  open(scope: Scope, key: string, limits: ReadLimits): Promise<ObjectHandle | undefined>;
  /**
   * Streams an upload to a private temporary file (hashing it, refusing more than
   * `maxBytes`, honouring `signal`) and fsyncs it. Nothing is visible under the key until
   * commit(), which renames it into place atomically; discard() removes it.
   */
  stage(scope: Scope, body: AsyncIterable<Buffer>, maxBytes: number, signal: AbortSignal): Promise<StagedObject>;
  /** Stages the concatenation of a multipart upload's parts (kept by StagedObject.keepAsPart), in order. */
  assemble(scope: Scope, uploadId: string, parts: readonly number[], maxBytes: number, signal: AbortSignal): Promise<StagedObject>;
  /** Removes the parts of a multipart upload. */
  dropUpload(uploadId: string): Promise<void>;
  /** Removes staged uploads older than this (left by a killed process); multipart parts stay. */
  sweepStaging(olderThanMs: number): Promise<void>;
  /** Removes an object's bytes (and empty folders above it); false when there were none. */
  remove(scope: Scope, key: string): Promise<boolean>;
  /**
   * Whether a commit and a remove are quick (a rename, an unlink): then uploads and deletes
   * of a key hold its lock across instances for them (ObjectCatalog.objectPut). An upstream
   * store's commit is the upload itself and holds no database connection that long.
   */
  readonly placesQuickly: boolean;
  /**
   * Whether a handle's version is the one the catalog records for the same bytes (the local
   * store: the file's mtime), so a reader can tell a row from another upload; an upstream's
   * handles carry its Last-Modified instead.
   */
  readonly catalogVersions: boolean;
  /** The regular files of a bucket folder (links and anything outside are skipped), for adoption. */
  listFiles(scope: Scope, max: number): Promise<CatalogEntry[]>;
  /**
   * The bucket's objects with keys after `after`, in key (byte) order, streamed: what a
   * discovery compares with its checkpoint. Keys kept by hash are not listed (the catalog
   * holds them).
   */
  scan(scope: Scope, after: string): AsyncIterable<ScanEntry>;
  /** Makes the bucket's folder. */
  createBucket(scope: Scope): Promise<void>;
  /** Removes the bucket's folder and everything in it. */
  removeBucket(scope: Scope): Promise<void>;
}

// The callback forms cost noticeably less CPU per call than fs/promises on Node 20, and
// TriggerIngest resolves an object on every call.
const realpath = (p: string) =>
  new Promise<string>((resolve, reject) => realpathCb.native(p, (err, r) => (err ? reject(err) : resolve(r))));
const stat = (p: string) => new Promise<Stats>((resolve, reject) => statCb(p, (err, s) => (err ? reject(err) : resolve(s))));
/** A path's modification time in ns (lstat: a link's own), what an object's version is. */
const mtimeNs = (p: string) => new Promise<bigint>((resolve, reject) => lstatCb(p, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st.mtimeNs))));

/**
 * A call made synchronously while it stays fast, and through its asynchronous form for
 * `pauseMs` once calls are slow: for file-system calls that take microseconds on a local
 * disk with a warm cache, where the thread pool's round trip costs more than the call, but
 * that must never hold the event loop (which serves every tenant) on a cold or remote disk.
 * Slow means three calls over `maxMs` within 32: a single one is the machine pausing this
 * thread (a busy core, a virtual CPU descheduled), which under load happens every few
 * seconds and would otherwise keep the calls on the thread pool for good; a slow disk is
 * slow on every call and is caught within three.
 */
export function syncWhileFast<A, R>(sync: (a: A) => R, async: (a: A) => Promise<R>, maxMs: number, pauseMs: number): (a: A) => R | Promise<R> {
  let asyncUntil = 0;
  let calls = 0;
  const slow: number[] = []; // call numbers of the last SLOW_CALLS slow calls
  return (a) => {
    if (asyncUntil > 0 && Date.now() < asyncUntil) return async(a);
    const t = performance.now();
    const out = sync(a);
    calls++;
    if (performance.now() - t > maxMs) {
      slow.push(calls);
      if (slow.length > SLOW_CALLS) slow.shift();
      if (slow.length === SLOW_CALLS && calls - slow[0] < SLOW_WINDOW) {
        asyncUntil = Date.now() + pauseMs;
        slow.length = 0;
      }
    }
    return out;
  };
}

/** Slow calls within SLOW_WINDOW calls that send syncWhileFast's calls to the thread pool. */
const SLOW_CALLS = 3;
const SLOW_WINDOW = 32;

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

/** The first `max` objects of a scan as catalog entries (what adopting a bucket records); both stores list through it. */
export async function catalogOf(scan: AsyncIterable<ScanEntry>, max: number): Promise<CatalogEntry[]> {
  const out: CatalogEntry[] = [];
  for await (const e of scan) {
    out.push({ key: e.key, size: e.size, contentType: mimeTypeOf(e.key), version: BigInt(e.version) });
    if (out.length >= max) break;
  }
  return out;
}

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
        async readAll() {
          const data = Buffer.allocUnsafe(size);
          const deadline = Date.now() + limits.timeoutMs;
          let at = 0;
          while (at < size) {
            limits.signal.throwIfAborted();
            if (Date.now() > deadline) throw new ObjectUnreadable(`object "${key}" could not be read within ${limits.timeoutMs} ms`);
            const { bytesRead } = await read(data, at, Math.min(size - at, 1 << 20), at);
            if (bytesRead === 0) break; // truncated meanwhile
            at += bytesRead;
          }
          return at === size ? data : data.subarray(0, at);
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
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      const named = entries
        .filter((e) => e.isDirectory() || e.isFile())
        .map((e) => ({ e, key: Buffer.from(prefix + e.name + (e.isDirectory() ? "/" : "")) }))
        .sort((x, y) => Buffer.compare(x.key, y.key));
      for (const { e, key } of named) {
        scope.signal?.throwIfAborted();
        const k = key.toString();
        if (k === `${HASHED_DIR}/`) continue; // keys kept by hash are in the catalog already
        if (e.isDirectory()) {
          // Every key in it starts with k: skip it when they all sort at or before `after`.
          if (after && Buffer.compare(key, afterBytes) <= 0 && !after.startsWith(k)) continue;
          yield* walk(join(dir, e.name), k);
        } else if (!after || Buffer.compare(key, afterBytes) > 0) {
          const st = await lstat(join(dir, e.name), { bigint: true }).catch(() => undefined);
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
    try {
      const existing = await lstatFast(target);
      if (existing && !existing.isFile()) return undefined;
      await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
        // The key's folder is not there yet (most uploads go to folders that are) — or went
        // with its bucket while this was made (removeBucket moves it aside): then the bucket
        // is gone, and the upload says so rather than failing.
        for (let attempt = 1; ; attempt++) {
          try {
            await mkdir(dirname(target), { recursive: true });
            return await rename(tmp, target);
          } catch (again) {
            if ((again as NodeJS.ErrnoException).code !== "ENOENT") throw again;
            if (attempt === 3) throw new NotFound(`the bucket was removed while ${JSON.stringify(target.slice(dataDir.length))} was placed`);
          }
        }
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTDIR" || code === "EEXIST" || code === "EISDIR" || code === "ENAMETOOLONG") return undefined;
      throw err;
    }
    const version = await mtimeNs(target).catch((err: NodeJS.ErrnoException) => {
      // Moved away right after the rename: its bucket was removed, bytes and all.
      throw err.code === "ENOENT" ? new NotFound(`the bucket was removed while ${JSON.stringify(target.slice(dataDir.length))} was placed`) : err;
    });
    const undo = async () => {
      if ((await mtimeNs(target).catch(() => undefined)) === version) await removeFile(target);
    };
    // A folder gone by the time it is synced went with its bucket (removeBucket), bytes and all.
    const durable = () => syncDir(dirname(target)).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : Promise.reject(err)));
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
      const moved = await rename(bucketDir(dataDir, scope), aside).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return false;
          throw err;
        },
      );
      if (moved) await rm(aside, { recursive: true, force: true });
    },
    stat: statInside,
  };
}
