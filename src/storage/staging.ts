/**
 * The local staging area every object store writes uploads through: a private temporary
 * file per upload (hashed while written, size-capped, fsynced), multipart parts kept until
 * their upload completes or is aborted, and a sweep of what a killed process left behind.
 * Where a staged object goes on commit is the store's business.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readdir, rename, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { fd } from "./fd";
import { ObjectTooLarge, type Placed, type StagedObject } from "./object-store";

/** An upload written to a temporary file. */
export interface TempFile {
  tmp: string;
  size: number;
  md5: Buffer;
  sha256: Buffer;
}

/** Removes a file; one that is not there is fine. */
export function removeFile(path: string): Promise<void> {
  return unlink(path).catch(ifGone(undefined));
}

/** A rejection handler: `value` when the error is that the path is not there (ENOENT), else the error again. */
export function ifGone<T>(value: T): (err: NodeJS.ErrnoException) => T {
  return (err) => {
    if (err.code !== "ENOENT") throw err;
    return value;
  };
}

/** Folder syncs under way, and the one queued after each. */
const dirSyncs = new Map<string, { current: Promise<void>; next?: Promise<void> }>();
/** How many folder syncs this process has started (what the coalescing saves shows here). */
export const dirSyncCount = { started: 0 };
const ignore = () => undefined;

/**
 * Makes a folder's entries (a rename into it) durable. While a sync of the folder is under
 * way — it may have started before the caller's rename — the caller shares the next one,
 * which starts when it ends: uploads into one folder at once make a few syncs, not one each.
 */
export function syncDir(dir: string): Promise<void> {
  const s = dirSyncs.get(dir);
  if (!s) return startDirSync(dir);
  return (s.next ??= s.current.then(ignore, ignore).then(() => startDirSync(dir)));
}

function startDirSync(dir: string): Promise<void> {
  dirSyncCount.started++;
  const current = (async () => {
    const n = await fd.open(dir, constants.O_RDONLY);
    try {
      await fd.fsync(n);
    } finally {
      await fd.close(n);
    }
  })();
  const entry: { current: Promise<void>; next?: Promise<void> } = { current };
  dirSyncs.set(dir, entry);
  const done = () => {
    if (dirSyncs.get(dir) === entry && !entry.next) dirSyncs.delete(dir);
  };
  current.then(done, done);
  return current;
}

/** The staging area of a data dir. */
export function createStaging(dataDir: string) {
  const tmpDir = join(dataDir, "tmp");
  const partsDir = (uploadId: string) => join(tmpDir, `mpu-${uploadId}`);

  /** Creates a new private temporary file; the staging folder is made when it is not there (yet, or any more). */
  async function createTemp(): Promise<{ tmp: string; n: number }> {
    const tmp = join(tmpDir, `upload-${randomBytes(12).toString("hex")}`);
    const create = () => fd.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
    const n = await create().catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
      await mkdir(tmpDir, { recursive: true });
      return create();
    });
    return { tmp, n };
  }

  /** Writes `body` to a new private temporary file, hashing it, within `maxBytes`; fsynced. */
  async function write(body: AsyncIterable<Buffer>, maxBytes: number, signal: AbortSignal): Promise<TempFile> {
    const { tmp, n } = await createTemp();
    const md5 = createHash("md5");
    const sha = createHash("sha256");
    let size = 0;
    try {
      for await (const chunk of body) {
        signal.throwIfAborted();
        size += chunk.length;
        if (size > maxBytes) throw new ObjectTooLarge(maxBytes);
        md5.update(chunk);
        sha.update(chunk);
        await fd.writeAll(n, chunk);
      }
      signal.throwIfAborted();
      await fd.fsync(n);
    } catch (err) {
      await fd.close(n).catch(() => undefined);
      await removeFile(tmp);
      throw err;
    }
    await fd.close(n);
    return { tmp, size, md5: md5.digest(), sha256: sha.digest() };
  }

  /**
   * A StagedObject over a temporary file; `place` puts it where the store keeps `key` and
   * answers what was placed (Placed). `placeMoves`: a placement renames the file away (the local store),
   * so only a failed one leaves it to remove; otherwise (a copy elsewhere) it is removed after.
   */
  function staged(t: TempFile, place: (t: TempFile, key: string, ifAbsent: boolean) => Promise<Placed>, placeMoves = false): StagedObject {
    const discard = () => removeFile(t.tmp);
    return {
      size: t.size,
      md5: t.md5,
      sha256: t.sha256,
      discard,
      async keepAsPart(uploadId, partNumber) {
        await mkdir(partsDir(uploadId), { recursive: true });
        await rename(t.tmp, join(partsDir(uploadId), String(partNumber)));
        await syncDir(partsDir(uploadId));
      },
      async commit(key, opts) {
        let placed = false;
        try {
          const done = await place(t, key, opts?.ifAbsent ?? false);
          placed = true;
          return done;
        } finally {
          if (!placed || !placeMoves) await discard();
        }
      },
    };
  }

  /** The parts of a multipart upload, in the order given, as one stream. */
  async function* concatenated(uploadId: string, parts: readonly number[]): AsyncIterable<Buffer> {
    for (const n of parts) {
      const fh = await open(join(partsDir(uploadId), String(n)), constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          yield Buffer.from(buf.subarray(0, bytesRead));
        }
      } finally {
        await fh.close();
      }
    }
  }

  return {
    write,
    staged,
    concatenated,
    dropUpload: (uploadId: string) => rm(partsDir(uploadId), { recursive: true, force: true }),
    /** Removes staged uploads older than this (left by a killed process); multipart parts stay. */
    async sweep(olderThanMs: number): Promise<void> {
      const cutoff = Date.now() - olderThanMs;
      for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
        if (!name.startsWith("upload-")) continue; // multipart parts live as long as their upload
        const path = join(tmpDir, name);
        const st = await lstat(path).catch(() => undefined);
        if (st && st.mtimeMs < cutoff) await rm(path, { recursive: true, force: true });
      }
    },
  };
}
