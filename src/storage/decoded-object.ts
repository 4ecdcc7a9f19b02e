/**
 * Objects read as their content. An object stored with a Content-Encoding (`aws s3 cp
 * --content-encoding gzip`, or an S3 server answering with one) is unpacked before it is
 * indexed; the decoded bytes go to a private temporary file whose descriptor the reader
 * holds (the file itself is unlinked at once), as a download from an S3 store does, so
 * parsers and sandboxes read a local descriptor whatever the store. The read limit applies
 * to the decoded bytes: a small archive that unpacks to gigabytes is refused, not written.
 */
import { createReadStream } from "node:fs";
import { open, rm } from "node:fs/promises";
import { Readable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { ObjectTooLarge, ObjectUnreadable, readWhole, type ObjectHandle, type ReadLimits } from "./object-store";
import type { createStaging } from "./staging";

type Staging = ReturnType<typeof createStaging>;

/** The decoder of a stored Content-Encoding; undefined when it is none, or one not undone here. */
export function decoderFor(encoding: string | undefined): Transform | undefined {
  switch ((encoding ?? "").trim().toLowerCase()) {
    case "gzip":
    case "x-gzip":
      return createGunzip();
    case "deflate":
      return createInflate();
    case "br":
      return createBrotliDecompress();
    default:
      return undefined;
  }
}

/** Bytes of an object's head that mayBeEncoded looks at. */
export const ENCODED_HEAD_BYTES = 64;

/**
 * Whether an object's first bytes may be encoded data, so that its stored encoding is worth
 * looking up: gzip's or zlib's header, or bytes that are not text at all (brotli has no
 * header, and its stream reads as binary from the first bytes). Text, which is what
 * indexing mostly reads, is never looked up; a binary document (a PDF, a DOCX) is, once.
 */
export function mayBeEncoded(head: Buffer): boolean {
  if (head.length < 2) return false;
  if (head[0] === 0x1f && head[1] === 0x8b) return true;
  if ((head[0] & 0x0f) === 8 && head[0] >> 4 <= 7 && ((head[0] << 8) | head[1]) % 31 === 0) return true;
  return !looksLikeText(head);
}

/** No control bytes but tab, line feed, form feed and carriage return, and UTF-8 (a sequence cut at the end aside). */
function looksLikeText(head: Buffer): boolean {
  for (const b of head) if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0c && b !== 0x0d) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(head, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** `body` decoded by `encoding`'s decoder, or as it is. */
export function decodedStream(body: Readable, encoding: string | undefined): Readable {
  const decoder = decoderFor(encoding);
  if (!decoder) return body;
  pipeline(body, decoder).catch(() => undefined); // an error destroys the decoder, which its reader sees
  return decoder;
}

/**
 * Writes `body` (the object `key`'s content) to a private temporary file within the read
 * limits and answers a handle on it; `what` says where it came from, for errors.
 */
export async function temporaryObject(staging: Staging, body: Readable, limits: ReadLimits, key: string, version: bigint, what: string): Promise<ObjectHandle> {
  const signal = AbortSignal.any([limits.signal, AbortSignal.timeout(limits.timeoutMs)]);
  let t;
  try {
    t = await staging.write(body, limits.maxBytes, signal);
  } catch (err) {
    if (limits.signal.aborted) throw limits.signal.reason;
    if (err instanceof ObjectTooLarge) throw new ObjectUnreadable(`object "${key}" is more than ${limits.maxBytes} bytes ${what}; that is the limit for it`);
    throw new ObjectUnreadable(`object "${key}" could not be read ${what}: ${(err as Error).message}`);
  }
  const fh = await open(t.tmp, "r");
  await rm(t.tmp, { force: true }); // the descriptor keeps the bytes until it is closed
  const read: ObjectHandle["read"] = (buffer, offset, length, position) => fh.read(buffer, offset, length, position);
  return { fd: fh.fd, size: t.size, version, read, readAll: () => readWhole(read, t.size), close: () => fh.close().catch(() => undefined) };
}

/** A handle on `object`'s decoded content (`object` is closed); `object` itself when `encoding` is none undone here. */
export async function decodedObject(staging: Staging, object: ObjectHandle, encoding: string, limits: ReadLimits, key: string): Promise<ObjectHandle> {
  if (!decoderFor(encoding)) return object;
  try {
    // The descriptor stays the handle's (closed below); the stream reads it from its start.
    const raw = createReadStream("", { fd: object.fd, start: 0, autoClose: false });
    return await temporaryObject(staging, decodedStream(raw, encoding), limits, key, object.version, `once decoded (Content-Encoding ${encoding})`);
  } finally {
    await object.close();
  }
}
