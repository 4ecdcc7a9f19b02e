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
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { mimeTypeOf } from "../domain/mime";
import type { Scope } from "../domain/job";
import { HASHED_DIR, isPlainPath, keyPath } from "./key-path";
import { decodedObject, decodedStream, temporaryObject } from "./decoded-object";
import { catalogOf, ObjectExists, ObjectUnreadable, type ObjectHandle, type ObjectStore, type Placed, type ScanEntry } from "./object-store";
import type { UrlPolicy } from "../domain/url-policy";
import { createS3Client, withRetries, type S3Location } from "./s3-client";
import { createStaging } from "./staging";
import { nextStampMicros } from "./version-stamp";

/** The user metadata an upload's bytes are marked with upstream (ObjectCatalog.objectPut asks for it). */
const UPLOAD_MARK = "x-amz-meta-k3-upload";

/** Where the upstream is and how to sign for it. */
export interface S3UpstreamOptions extends S3Location {
  /** Local staging and temporary downloads. */
  dataDir: string;
  /**
   * The upstream prefix of a bucket's objects: `<org>/<bucket>/` unless given (an external
   * source reads its own bucket under its root path).
   */
  prefixOf?: (scope: Scope) => string;
  /** Where it may connect (an external source's K3_SOURCE_ALLOW); anywhere when absent (the operator's upstream). */
  endpoints?: UrlPolicy;
}

/** An ObjectStore over an S3-compatible upstream. */
export function createS3ObjectStore(o: S3UpstreamOptions): ObjectStore {
  const staging = createStaging(o.dataDir);
  const { call, list } = createS3Client(o);
  const prefixOf = o.prefixOf ?? ((scope: Scope) => `${scope.org}/${scope.bucket}/`);
  const upstreamKey = (scope: Scope, key: string) => `${prefixOf(scope)}${o.prefixOf ? key : keyPath(key)}`;

  /** The bucket's objects after `after` in key order (keys kept by hash are in the catalog, not here). */
  async function* scan(scope: Scope, after: string): AsyncGenerator<ScanEntry> {
    const prefix = prefixOf(scope);
    for await (const e of list(prefix, after ? prefix + after : "", scope.signal)) {
      const key = e.key.slice(prefix.length);
      if (key === "" || (!o.prefixOf && (key.startsWith(`${HASHED_DIR}/`) || !isPlainPath(key)))) continue;
      yield { key, size: e.size, etag: e.etag, version: String(BigInt(e.modifiedMs) * 1_000_000n) };
    }
  }

  async function put(scope: Scope, key: string, tmp: string, size: number, sha256: Buffer, ifAbsent: boolean): Promise<Placed> {
    // Each upload marks its bytes, so that it can tell later whether they are still the
    // key's or another instance's upload has replaced them.
    const mark = randomBytes(12).toString("hex");
    const stillPlaced = async () => {
      const head = await call("HEAD", upstreamKey(scope, key));
      return head.status === 200 && head.headers.get(UPLOAD_MARK) === mark;
    };
    const res = await withRetries(() =>
      call("PUT", upstreamKey(scope, key), "", {
        body: Readable.toWeb(createReadStream(tmp)) as ReadableStream,
        payloadHash: sha256.toString("hex"),
        // Conditional across instances: each checked the catalog alone, the upstream decides.
        headers: { "content-length": String(size), [UPLOAD_MARK]: mark, ...(ifAbsent ? { "if-none-match": "*" } : {}) },
      }),
    );
    await res.arrayBuffer();
    // A 412 to a retry whose first try landed after all is this upload's success.
    if (res.status === 412 && !(await stillPlaced())) throw new ObjectExists(key);
    else if (res.status !== 200 && res.status !== 412) throw new Error(`the S3 upstream refused the object ${key}: ${res.status}`);
    // Durable upstream once it answered; taken back only while still this upload's bytes.
    const undo = async () => {
      if (await stillPlaced()) await (await call("DELETE", upstreamKey(scope, key))).arrayBuffer();
    };
    return { version: BigInt(nextStampMicros()) * 1000n, durable: async () => undefined, undo, stillPlaced };
  }

  return {
    placesQuickly: false, // a commit is the upload to the upstream
    catalogVersions: false,
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
      const version = BigInt(Date.parse(res.headers.get("last-modified") ?? "") || Date.now()) * 1_000_000n;
      const body = decodedStream(Readable.fromWeb(res.body as never), res.headers.get("content-encoding") ?? "");
      return temporaryObject(staging, body, limits, key, version, "from the S3 store");
    },

    stage: async (scope, body, maxBytes, signal) => staging.staged(await staging.write(body, maxBytes, signal), (t, key, ifAbsent) => put(scope, key, t.tmp, t.size, t.sha256, ifAbsent)),
    assemble: async (scope, uploadId, parts, maxBytes, signal) =>
      staging.staged(await staging.write(staging.concatenated(uploadId, parts), maxBytes, signal), (t, key, ifAbsent) => put(scope, key, t.tmp, t.size, t.sha256, ifAbsent)),
    decoded: (object, encoding, limits, key) => decodedObject(staging, object, encoding, limits, key),
    dropUpload: staging.dropUpload,
    sweepStaging: staging.sweep,

    async remove(scope, key) {
      const res = await call("DELETE", upstreamKey(scope, key));
      await res.arrayBuffer();
      return res.status === 204 || res.status === 200;
    },
    listFiles: (scope, max) => catalogOf(scan(scope, ""), max),
    scan,
    createBucket: async () => undefined, // a prefix needs no making
    async removeBucket(scope) {
      // Every upstream key under the prefix, those kept by hash included.
      for await (const e of list(prefixOf(scope))) {
        const res = await call("DELETE", e.key);
        await res.arrayBuffer();
      }
    },
  };
}
