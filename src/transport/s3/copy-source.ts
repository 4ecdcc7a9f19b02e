/**
 * The source of CopyObject and UploadPartCopy: `x-amz-copy-source` (`bucket/key` or
 * `/bucket/key`, percent-encoded; a `?versionId=` is ignored, as there are no versions), in
 * the caller's organization, which must be able to read it; its conditions
 * (`x-amz-copy-source-if-match`, `-if-none-match`, `-if-modified-since`,
 * `-if-unmodified-since`), each failing with 412 PreconditionFailed as S3 does; and for a
 * part, `x-amz-copy-source-range: bytes=first-last`. The object is opened once and read
 * through its descriptor.
 */
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { StoredObject } from "../../domain/bucket";
import type { Scope } from "../../domain/job";
import { S3Error } from "../../s3/errors";
import type { ObjectStore } from "../../storage/object-store";
import type { Repository } from "../../storage/repository";
import { readConditions } from "./conditions";

/** An opened copy source. */
export interface CopySource {
  object: StoredObject;
  size: number;
  /** The bytes from `start` to `end` (inclusive; the whole object by default). */
  bytes(start?: number, end?: number): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

export interface CopySourceDeps {
  repo: Pick<Repository, "catalog">;
  objects: Pick<ObjectStore, "open">;
  maxObjectBytes: number;
  readTimeoutMs: number;
}

/** Opens the request's copy source; `authorizeRead(scope, key)` throws when the caller may not read it. */
export async function openCopySource(deps: CopySourceDeps, req: IncomingMessage, org: string, authorizeRead: (from: Scope, key: string) => Promise<void>, signal: AbortSignal): Promise<CopySource> {
  let source: string;
  try {
    source = decodeURIComponent(String(req.headers["x-amz-copy-source"]).split("?")[0]).replace(/^\//, "");
  } catch {
    throw new S3Error("InvalidArgument", 400, "x-amz-copy-source is not valid percent-encoding");
  }
  const slash = source.indexOf("/");
  const from: Scope = { org, bucket: slash < 0 ? source : source.slice(0, slash), signal };
  const key = slash < 0 ? "" : source.slice(slash + 1);
  await authorizeRead(from, key);
  const o = key ? await deps.repo.catalog.objectGet(from, key) : undefined;
  if (o && readConditions(copySourceConditions(req.headers), o, "x-amz-copy-source-") === "not-modified") {
    throw new S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold (x-amz-copy-source-If-None-Match or -If-Modified-Since)");
  }
  const handle = o && (await deps.objects.open(from, key, { maxBytes: deps.maxObjectBytes, timeoutMs: deps.readTimeoutMs, signal }).catch(() => undefined));
  if (!o || !handle) throw new S3Error("NoSuchKey", 404, "The specified key does not exist.");
  return {
    object: o,
    size: handle.size,
    async *bytes(start = 0, end = handle.size - 1) {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let at = start; at <= end; ) {
        const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, end - at + 1), at);
        if (bytesRead === 0) return;
        at += bytesRead;
        yield Buffer.from(buf.subarray(0, bytesRead));
      }
    },
    close: () => handle.close(),
  };
}

/** The copy source's conditions under the names readConditions reads. */
function copySourceConditions(h: IncomingHttpHeaders): IncomingHttpHeaders {
  const of = (name: string) => h[`x-amz-copy-source-${name}`] as string | undefined;
  return { "if-match": of("if-match"), "if-none-match": of("if-none-match"), "if-modified-since": of("if-modified-since"), "if-unmodified-since": of("if-unmodified-since") };
}

/** `x-amz-copy-source-range: bytes=first-last` against the source's size: [first, last], or the whole object when absent. */
export function copySourceRange(header: string | undefined, size: number): [number, number] {
  if (header === undefined) return [0, size - 1];
  const m = /^bytes=(\d+)-(\d+)$/.exec(header.trim());
  const first = m ? Number(m[1]) : NaN;
  const last = m ? Number(m[2]) : NaN;
  if (!(first <= last && last < size)) {
    throw new S3Error("InvalidArgument", 400, `x-amz-copy-source-range ${JSON.stringify(header)} is not valid for a source object of ${size} bytes: bytes=first-last, with first ≤ last < ${size}`);
  }
  return [first, last];
}
