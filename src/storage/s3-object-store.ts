/**
 * Objects kept in an S3-compatible upstream (AWS S3, MinIO, Ceph …) instead of the data
 * dir, so several API and worker machines share one store. Every object of every
 * organization lives in one upstream bucket under `<org>/<bucket>/<key>`; requests are
 * re-signed with the gateway's own credentials (SigV4). Uploads are staged locally as
 * always (hashed, size-capped, fsynced) and PUT upstream on commit, before the catalog row
 * and the jobs are written; a reader gets the object downloaded to a private temporary file
 * whose descriptor it holds (the file itself is unlinked at once), so parsers and sandboxes
 * read a local descriptor whatever the store.
 */
import { createReadStream } from "node:fs";
import { open, rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { mimeTypeOf } from "../domain/mime";
import type { CatalogEntry } from "../domain/bucket";
import type { Scope } from "../domain/job";
import { uriEncode } from "../domain/uri";
import { isPlainPath, keyPath } from "./key-path";
import { xmlUnescape } from "../s3/errors";
import { signRequest } from "../s3/sigv4";
import { ObjectUnreadable, type ObjectHandle, type ObjectStore } from "./object-store";
import { createStaging } from "./staging";

/** Where the upstream is and how to sign for it. */
export interface S3UpstreamOptions {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Local staging and temporary downloads. */
  dataDir: string;
}

const UNSIGNED = "UNSIGNED-PAYLOAD";
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** An ObjectStore over an S3-compatible upstream. */
export function createS3ObjectStore(o: S3UpstreamOptions): ObjectStore {
  const staging = createStaging(o.dataDir);
  const base = new URL(o.endpoint);
  const creds = { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, region: o.region };
  const upstreamKey = (scope: Scope, key: string) => `${scope.org}/${scope.bucket}/${keyPath(key)}`;

  async function call(
    method: string,
    objectKey: string,
    query = "",
    init: { body?: ReadableStream | Buffer | string; payloadHash?: string; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const path = `/${o.bucket}${objectKey ? `/${objectKey}` : ""}`;
    const headers: Record<string, string> = { host: base.host, ...(init.headers ?? {}) };
    const signed = signRequest({ method, path, rawQuery: query, headers }, creds, init.payloadHash ?? (init.body ? UNSIGNED : EMPTY_SHA256));
    const url = `${base.origin}${uriEncode(path, true)}${query ? `?${query}` : ""}`;
    const res = await fetch(url, { method, headers: { ...headers, ...signed }, body: init.body, signal: init.signal, duplex: "half" } as RequestInit);
    if (res.status >= 500) {
      await res.arrayBuffer().catch(() => undefined);
      throw new Error(`the S3 upstream answered ${res.status} to ${method} ${path}`);
    }
    return res;
  }

  async function listUnder(prefix: string, max: number): Promise<CatalogEntry[]> {
    const out: CatalogEntry[] = [];
    let token = "";
    do {
      const q = [`list-type=2`, `prefix=${uriEncode(prefix, false)}`, ...(token ? [`continuation-token=${uriEncode(token, false)}`] : [])].sort().join("&");
      const res = await call("GET", "", q);
      const xml = await res.text();
      if (res.status !== 200) throw new Error(`the S3 upstream refused to list ${prefix}: ${res.status}`);
      for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        const k = /<Key>([^<]*)<\/Key>/.exec(m[1])?.[1] ?? "";
        const key = xmlUnescape(k).slice(prefix.length);
        const size = Number(/<Size>(\d+)<\/Size>/.exec(m[1])?.[1] ?? 0);
        const modified = Date.parse(/<LastModified>([^<]*)<\/LastModified>/.exec(m[1])?.[1] ?? "") || 0;
        if (!isPlainPath(key)) continue; // kept by hash (the catalog has it), or no key could be read back from it
        out.push({ key, size, contentType: mimeTypeOf(key), version: BigInt(modified) * 1_000_000n });
        if (out.length >= max) return out;
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? (/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] ?? "") : "";
    } while (token);
    return out;
  }

  async function put(scope: Scope, key: string, tmp: string, size: number, sha256: Buffer): Promise<bigint> {
    const res = await call("PUT", upstreamKey(scope, key), "", {
      body: Readable.toWeb(createReadStream(tmp)) as ReadableStream,
      payloadHash: sha256.toString("hex"),
      headers: { "content-length": String(size) },
    });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`the S3 upstream refused the object ${key}: ${res.status}`);
    return BigInt(Date.now()) * 1_000_000n;
  }

  return {
    async stat(scope, key) {
      const res = await call("HEAD", upstreamKey(scope, key));
      if (res.status !== 200) return undefined;
      return { size: Number(res.headers.get("content-length") ?? 0), mimeType: mimeTypeOf(key) };
    },

    async open(scope, key, limits): Promise<ObjectHandle | undefined> {
      const signal = AbortSignal.any([limits.signal, AbortSignal.timeout(limits.timeoutMs)]);
      const res = await call("GET", upstreamKey(scope, key), "", { signal });
      if (res.status === 404) {
        await res.arrayBuffer();
        return undefined;
      }
      if (res.status !== 200 || !res.body) throw new ObjectUnreadable(`object "${key}" could not be read from the S3 upstream (${res.status})`);
      const declared = Number(res.headers.get("content-length") ?? 0);
      if (declared > limits.maxBytes) {
        await res.body.cancel();
        throw new ObjectUnreadable(`object "${key}" is ${declared} bytes; the limit for it is ${limits.maxBytes}`);
      }
      let t;
      try {
        t = await staging.write(Readable.fromWeb(res.body as never), limits.maxBytes, signal);
      } catch (err) {
        if (limits.signal.aborted) throw limits.signal.reason;
        throw new ObjectUnreadable(`object "${key}" could not be read from the S3 upstream: ${(err as Error).message}`);
      }
      const fh = await open(t.tmp, "r");
      await rm(t.tmp, { force: true }); // the descriptor keeps the bytes until it is closed
      const version = BigInt(Date.parse(res.headers.get("last-modified") ?? "") || Date.now()) * 1_000_000n;
      return {
        fd: fh.fd,
        size: t.size,
        version,
        read: (buffer, offset, length, position) => fh.read(buffer, offset, length, position),
        async readAll() {
          const data = Buffer.allocUnsafe(t.size);
          let at = 0;
          while (at < t.size) {
            const { bytesRead } = await fh.read(data, at, t.size - at, at);
            if (bytesRead === 0) break;
            at += bytesRead;
          }
          return data.subarray(0, at);
        },
        close: () => fh.close().catch(() => undefined),
      };
    },

    stage: async (scope, body, maxBytes, signal) => staging.staged(await staging.write(body, maxBytes, signal), (t, key) => put(scope, key, t.tmp, t.size, t.sha256)),
    assemble: async (scope, uploadId, parts, maxBytes, signal) =>
      staging.staged(await staging.write(staging.concatenated(uploadId, parts), maxBytes, signal), (t, key) => put(scope, key, t.tmp, t.size, t.sha256)),
    dropUpload: staging.dropUpload,
    sweepStaging: staging.sweep,

    async remove(scope, key) {
      const res = await call("DELETE", upstreamKey(scope, key));
      await res.arrayBuffer();
      return res.status === 204 || res.status === 200;
    },
    listFiles: (scope, max) => listUnder(`${scope.org}/${scope.bucket}/`, max),
    createBucket: async () => undefined, // a prefix needs no making
    async removeBucket(scope) {
      for (const f of await listUnder(`${scope.org}/${scope.bucket}/`, Number.MAX_SAFE_INTEGER)) {
        const res = await call("DELETE", upstreamKey(scope, f.key));
        await res.arrayBuffer();
      }
    },
  };
}
