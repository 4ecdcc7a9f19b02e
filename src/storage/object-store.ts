/**
 * Objects live behind this interface: the data dir's folders (fs-object-store.ts) or an S3
 * upstream (s3-object-store.ts).
 */
import type { CatalogEntry } from "../domain/bucket";
import type { Scope } from "../domain/job";
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

/**
 * Reads an object's `size` bytes from its start through `read`, a MiB at a time, calling
 * `check` before each (a deadline, a signal); fewer when the file was truncated meanwhile.
 */
export async function readWhole(read: ObjectHandle["read"], size: number, check: () => void = () => undefined): Promise<Buffer> {
  const data = Buffer.allocUnsafe(size);
  let at = 0;
  while (at < size) {
    check();
    const { bytesRead } = await read(data, at, Math.min(size - at, 1 << 20), at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return at === size ? data : data.subarray(0, at);
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
   * `ifAbsent`: only where the key holds nothing (a store that places without the key's
   * lock held, the S3 store, has its upstream decide; ObjectExists when it holds something).
   */
  commit(key: string, opts?: { ifAbsent?: boolean }): Promise<Placed>;
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
  undo: () => Promise<void>;
  /**
   * Where placing is the whole upload (an S3 store), too long to hold the key's lock
   * through: whether the key's bytes are still these — asked under the lock, before the
   * row is written. Absent where the lock is held while placing.
   */
  stillPlaced?: () => Promise<boolean>;
}

/** Why an upload could not be stored under its key. */
export class ObjectConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ObjectConflict";
  }
}

/** A conditional upload (`ifAbsent`) found the key holding an object. */
export class ObjectExists extends Error {
  constructor(key: string) {
    super(`object "${key}" exists`);
    this.name = "ObjectExists";
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
  /** Why this entry cannot be an object (a file name that is not UTF-8); its key is then the name with U+FFFD's, for the report only. */
  unreadable?: string;
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
   * A handle on the decoded content of `object` (the object `key`, stored with the
   * Content-Encoding `encoding`), read within `limits`; `object` is closed. `object` itself
   * when the encoding is none undone here (gzip, deflate, br are).
   */
  decoded(object: ObjectHandle, encoding: string, limits: ReadLimits, key: string): Promise<ObjectHandle>;
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

/** The first `max` objects of a scan as catalog entries (what adopting a bucket records); both stores list through it. */
export async function catalogOf(scan: AsyncIterable<ScanEntry>, max: number): Promise<CatalogEntry[]> {
  const out: CatalogEntry[] = [];
  for await (const e of scan) {
    if (e.unreadable) continue;
    out.push({ key: e.key, size: e.size, contentType: mimeTypeOf(e.key), version: BigInt(e.version) });
    if (out.length >= max) break;
  }
  return out;
}
