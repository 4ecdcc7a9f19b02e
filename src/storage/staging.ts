/**
 * The local staging area every object store writes uploads through: a private temporary
 * file per upload (hashed while written, size-capped, fsynced), multipart parts kept until
 * their upload completes or is aborted, and a sweep of what a killed process left behind.
 * Where a staged object goes on commit is the store's business.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readdir, rename, rm, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ObjectTooLarge, type StagedObject } from "./object-store";

/** An upload written to a temporary file. */
export interface TempFile {
  tmp: string;
  size: number;
  md5: Buffer;
  sha256: Buffer;
}

/** Removes a file; one that is not there is fine. */
export function removeFile(path: string): Promise<void> {
  return unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}

/** Makes a folder's entries (a rename into it) durable. */
export async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, constants.O_RDONLY);
  await dh.sync().finally(() => dh.close());
}

/** The staging area of a data dir. */
export function createStaging(dataDir: string) {
  const tmpDir = join(dataDir, "tmp");
  const partsDir = (uploadId: string) => join(tmpDir, `mpu-${uploadId}`);

  /** Creates a new private temporary file; the staging folder is made when it is not there (yet, or any more). */
  async function createTemp(): Promise<{ tmp: string; fh: FileHandle }> {
    const tmp = join(tmpDir, `upload-${randomBytes(12).toString("hex")}`);
    const create = () => open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    const fh = await create().catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
      await mkdir(tmpDir, { recursive: true });
      return create();
    });
    return { tmp, fh };
  }

  /** Writes `body` to a new private temporary file, hashing it, within `maxBytes`; fsynced. */
  async function write(body: AsyncIterable<Buffer>, maxBytes: number, signal: AbortSignal): Promise<TempFile> {
    const { tmp, fh } = await createTemp();
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
        await fh.write(chunk);
      }
      signal.throwIfAborted();
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await removeFile(tmp);
      throw err;
    }
    await fh.close();
    return { tmp, size, md5: md5.digest(), sha256: sha.digest() };
  }

  /** A StagedObject over a temporary file; `place` moves it where the store keeps `key` and returns its version. */
  function staged(t: TempFile, place: (t: TempFile, key: string) => Promise<bigint>): StagedObject {
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
      async commit(key) {
        try {
          return await place(t, key);
        } finally {
          await discard(); // gone already when placed by a rename (one unlink that finds nothing)
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
