/**
 * The S3 byte plane on the HTTP port, path-style (`/{bucket}/{key}`): ListBuckets,
 * CreateBucket, HeadBucket, DeleteBucket, ListObjectsV2 (and V1), PutObject, GetObject
 * (with Range), HeadObject, DeleteObject, DeleteObjects, CopyObject, multipart uploads and
 * a bucket's CORS rules with browsers' preflights (bucket-cors.ts) and its policy
 * (bucket-policy.ts), with S3's headers, XML, error codes and conditional requests
 * (conditions.ts). Auth (access.ts): a bearer token (as K3 clients send it) or AWS Signature
 * V4 (header or presigned query) with a token's access key (`tokens create --s3`): the same
 * organization, bucket grants and roles as every other door; the bucket's policy may deny
 * some of that, or allow more, to named tokens or to anyone, credentials or not.
 *
 * An upload (plain or aws-chunked) is staged and checked (upload-body.ts), fsynced and
 * renamed into place; its catalog row and the jobs of the matching rules are committed
 * together before it is acknowledged — in the key's turn, so concurrent uploads of one key
 * leave the bytes of one and its row. A client that goes away mid-upload leaves nothing.
 * Deleting an object removes its outputs and cancels its unfinished jobs.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { visibleBuckets, type Caller, type Role } from "../../domain/auth";
import type { PolicyAction } from "../../domain/bucket-policy";
import type { BucketRow, StoredObject } from "../../domain/bucket";
import { DomainError } from "../../domain/errors";
import type { Scope } from "../../domain/job";
import { mimeTypeOf } from "../../domain/mime";
import { checkBucket, checkObjectKey } from "../../domain/validate";
import type { Logger } from "../../log";
import type { Buckets } from "../../service/buckets";
import { listObjectsXml } from "./list-objects";
import { openCopySource } from "./copy-source";
import { loadRouting, planJobs } from "../../service/upload-jobs";
import { ObjectConflict, ObjectExists, type ObjectHandle, type ObjectStore, type Placed, type StagedObject } from "../../storage/object-store";
import type { Repository } from "../../storage/repository";
import type { SecretBox } from "../../storage/secrets";
import { accessError, createAccess } from "./access";
import type { Authenticator } from "../auth";
import { headersOf } from "../rest";
import { requestIdOf } from "../services";
import { errorXml, S3Error, xmlEscape, xmlUnescape } from "../../s3/errors";
import { listUploadsXml, multipart } from "./multipart";
import { refuseUnserved } from "./subresources";
import { allowOrigin, answerPreflight, bucketCorsCall } from "./bucket-cors";
import { bucketPolicyCall, policyAccess } from "./bucket-policy";
import { objectTaggingCall, taggingAccess } from "./object-tagging";
import { TAGGING_KEY, withTagging } from "../../s3/tagging";
import { readXmlBody, stageUpload } from "./upload-body";
import { httpDate, isoDate, metadataOf, objectHeaders, parseRange, requestTagging, responseOverrides, send, sendXml, XMLNS, type S3Request } from "./protocol";
import type { SigV4Claim } from "../../s3/sigv4";
import { drainedOrGone } from "../drain";
import { preconditionFailed, readConditions, writeConditions, writeRefusal } from "./conditions";

/** What the byte plane needs. */
export interface BytePlaneDeps {
  repo: Repository;
  objects: ObjectStore;
  buckets: Buckets;
  auth: Authenticator;
  secrets: SecretBox;
  log: Logger;
  maxObjectBytes: number;
  readTimeoutMs: number;
  now: () => number;
}

/** The byte plane: `handle` serves one request. */
/** Keys of one DeleteObjects deleted in one transaction (and one turn of them all). */
const DELETE_BATCH = 100;

export function createBytePlane(deps: BytePlaneDeps) {
  const { repo, objects, buckets, log } = deps;

  const access = createAccess(deps);
  const permit = access.permit;

  async function bucketOf(scope: Scope): Promise<BucketRow> {
    try {
      return await buckets.row(scope);
    } catch (err) {
      if (err instanceof DomainError && err.kind === "not_found") throw new S3Error("NoSuchBucket", 404, "The specified bucket does not exist");
      throw err;
    }
  }

  async function listBuckets(res: ServerResponse, caller: Caller, r: S3Request): Promise<void> {
    const page = await repo.buckets.bucketList({ org: caller.org, search: "", names: visibleBuckets(caller) }, { limit: 1000 });
    const items = page.items.map((b) => `<Bucket><Name>${xmlEscape(b.name)}</Name><CreationDate>${isoDate(b.createdAt)}</CreationDate></Bucket>`);
    sendXml(res, `<ListAllMyBucketsResult xmlns="${XMLNS}"><Owner><ID>${xmlEscape(caller.org)}</ID><DisplayName>${xmlEscape(caller.org)}</DisplayName></Owner><Buckets>${items.join("")}</Buckets></ListAllMyBucketsResult>`, r);
  }

  /** Streams a request body to a staged file within the size limit, and checks its digests (upload-body.ts). */
  const stageChecked = (req: IncomingMessage, scope: Scope, claim: SigV4Claim | undefined, signal: AbortSignal) =>
    stageUpload(objects, deps.maxObjectBytes, req, scope, claim, signal);

  /** The request's copy source (copy-source.ts), which `caller` must be able to read. */
  const copySource = (req: IncomingMessage, caller: Caller, scope: Scope, signal: AbortSignal) =>
    openCopySource(deps, req, scope.org, (from, key) => permit(caller, from, "reader", "s3:GetObject", key), signal);

  /** CopyObject: the source is staged like an upload. */
  async function copyObject(req: IncomingMessage, res: ServerResponse, caller: Caller, scope: Scope, bucket: BucketRow, r: S3Request, signal: AbortSignal): Promise<void> {
    const replace = String(req.headers["x-amz-metadata-directive"] ?? "COPY").toUpperCase() === "REPLACE";
    const replaceTags = String(req.headers["x-amz-tagging-directive"] ?? "COPY").toUpperCase() === "REPLACE";
    const given = replace ? metadataOf(req) : undefined; // checked (its tags) before the copy is staged
    const givenTags = replaceTags ? requestTagging(req) : undefined;
    const source = await copySource(req, caller, scope, signal);
    const o = source.object;
    const staged = await objects.stage(scope, source.bytes(), deps.maxObjectBytes, signal).finally(() => source.close());
    // Tags follow their own directive, as in S3: the source's unless REPLACE gives the request's.
    const metadata = withTagging(given ?? o.metadata, replaceTags ? givenTags : o.metadata[TAGGING_KEY]);
    const contentType = replace ? String(req.headers["content-type"] ?? "") || mimeTypeOf(r.key) : o.contentType;
    await storeObject(res, scope, bucket, r, staged, staged.md5.toString("hex"), contentType, metadata, (etag) =>
      `<CopyObjectResult xmlns="${XMLNS}"><LastModified>${isoDate(deps.now())}</LastModified><ETag>&quot;${etag}&quot;</ETag></CopyObjectResult>`,
    );
  }

  /** DeleteObjects (`POST /{bucket}?delete`): up to 1,000 keys in one request, DELETE_BATCH at a time. */
  async function deleteObjects(req: IncomingMessage, res: ServerResponse, scope: Scope, r: S3Request, claim: SigV4Claim | undefined, refuse: (key: string) => S3Error | undefined): Promise<void> {
    const body = await readXmlBody(req, claim, 2 << 20);
    const keys = [...body.matchAll(/<Object>\s*<Key>([^<]*)<\/Key>/g)].map((m) => xmlUnescape(m[1]));
    if (keys.length === 0 || keys.length > 1000) throw new S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema (1 to 1000 objects)");
    const quiet = /<Quiet>\s*true\s*<\/Quiet>/i.test(body);
    const refusals = keys.map((key): S3Error | undefined => {
      try {
        checkObjectKey(key, "Key");
      } catch (err) {
        return new S3Error("InvalidArgument", 400, (err as Error).message);
      }
      return refuse(key);
    });
    // The valid keys DELETE_BATCH at a time, each batch in one turn of its keys and one transaction.
    const valid = keys.filter((_, i) => refusals[i] === undefined);
    const failed = new Set<string>();
    for (let at = 0; at < valid.length; at += DELETE_BATCH) {
      const batch = valid.slice(at, at + DELETE_BATCH);
      await repo.catalog.objectDeleteMany(scope, batch, deps.now(), objects).catch((err: Error) => {
        log.warn("deleting objects of DeleteObjects failed", { bucket: scope.bucket, keys: batch.length, err: err.message });
        for (const key of batch) failed.add(key);
      });
    }
    const error = (key: string, code: string, message: string) => `<Error><Key>${xmlEscape(key)}</Key><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error>`;
    const results = keys.map((key, i) => {
      const refused = refusals[i];
      if (refused !== undefined) return error(key, refused.code, refused.message);
      if (failed.has(key)) return error(key, "InternalError", "We encountered an internal error. Please try again.");
      return quiet ? "" : `<Deleted><Key>${xmlEscape(key)}</Key></Deleted>`;
    });
    sendXml(res, `<DeleteResult xmlns="${XMLNS}">${results.join("")}</DeleteResult>`, r);
  }

  async function putObject(req: IncomingMessage, res: ServerResponse, scope: Scope, bucket: BucketRow, r: S3Request, claim: SigV4Claim | undefined, signal: AbortSignal): Promise<void> {
    const metadata = metadataOf(req); // checked (its tags) before the body is read
    const staged = await stageChecked(req, scope, claim, signal);
    const contentType = String(req.headers["content-type"] ?? "") || mimeTypeOf(r.key);
    await storeObject(res, scope, bucket, r, staged, staged.md5.toString("hex"), contentType, metadata);
  }

  /**
   * Puts a staged object in place, records it and creates its jobs in one transaction,
   * and answers once all of it is durable; shared by PutObject, CopyObject and
   * CompleteMultipartUpload.
   */
  async function storeObject(res: ServerResponse, scope: Scope, bucket: BucketRow, r: S3Request, staged: StagedObject, etag: string, contentType: string, metadata: Record<string, string>, xml?: (etag: string) => string): Promise<void> {
    // Bytes and row in one turn of the key (ObjectCatalog.objectPut); durable after it, before the answer.
    let placed: Placed | undefined;
    const jobs = await (async () => {
      const conditions = writeConditions(res.req.headers);
      if (bucket.storageQuotaBytes > 0) {
        // Checked before the bytes take the key's place (concurrent uploads may overshoot by what is in flight).
        const replaced = (await repo.catalog.objectGet(scope, r.key))?.size ?? 0;
        const after = (await repo.buckets.bucketGet(scope))?.storageUsedBytes ?? 0;
        if (after - replaced + staged.size > bucket.storageQuotaBytes) {
          throw new S3Error("QuotaExceeded", 403, `this upload would take bucket "${r.bucket}" past its storage quota of ${bucket.storageQuotaBytes} bytes (storageQuotaBytes)`);
        }
      }
      const routing = await loadRouting(repo, scope, bucket.internalSourceId);
      const facts = { key: r.key, mimeType: contentType.split(";")[0].trim().toLowerCase(), size: staged.size };
      const place = async (current: () => Promise<StoredObject | undefined>) => {
        const refused = conditions && writeRefusal(conditions, await current());
        if (refused) throw refused;
        const { version } = (placed = await staged.commit(r.key, { ifAbsent: conditions?.absent }).catch((err) => {
          if (err instanceof ObjectExists) throw preconditionFailed("If-None-Match"); // another instance's upload landed first
          throw err instanceof ObjectConflict ? new S3Error("InvalidArgument", 409, err.message) : err;
        }));
        const now = deps.now();
        const object = { key: r.key, size: staged.size, etag, contentType, metadata, version, createdAt: now, updatedAt: now };
        return { object, jobs: planJobs(routing, facts, { objectVersion: version.toString(), traceId: r.requestId, now }), undo: placed.undo, stillPlaced: placed.stillPlaced };
      };
      // A conditional write holds the key's lock through its placement whatever the store: its
      // check and its placement are one step across instances (an upstream may check If-None-Match racily).
      return repo.catalog.objectPut(scope, r.key, place, { placesQuickly: objects.placesQuickly || conditions !== undefined });
    })()
      .catch(async (err) => {
        // Refused or failed before the bytes took their place: the staged file goes (once
        // placed, it is the object's, or its commit removed it already).
        if (!placed) await staged.discard();
        throw err instanceof DomainError && err.kind === "not_found" ? new S3Error("NoSuchBucket", 404, "The specified bucket does not exist") : err;
      })
      .finally(() => placed?.durable());
    const headers = { etag: `"${etag}"`, "x-amz-request-id": r.requestId, ...(jobs.length ? { "x-k3-jobs": jobs.map((j) => j.jobId).join(",") } : {}) };
    if (xml) send(res, 200, { ...headers, "content-type": "application/xml" }, `<?xml version="1.0" encoding="UTF-8"?>\n${xml(etag)}`);
    else send(res, 200, headers);
  }

  /**
   * The object's row and its bytes opened, from the same upload where versions can be
   * compared: an upload that renamed its bytes into place between the row's read and the
   * open writes its row right after, in its turn, so on a mismatch both are read again once
   * this process's writes of the key have ended (and after a short wait, for another
   * instance's), four times at most.
   */
  async function openObject(scope: Scope, key: string, signal: AbortSignal, first: StoredObject): Promise<{ o: StoredObject | undefined; handle: ObjectHandle | undefined }> {
    let o: StoredObject | undefined = first;
    for (let attempt = 1; ; attempt++) {
      const handle = o && (await objects.open(scope, key, { maxBytes: Number.MAX_SAFE_INTEGER, timeoutMs: deps.readTimeoutMs, signal }).catch(() => undefined));
      if (!o || !handle || !objects.catalogVersions || o.version === handle.version || attempt === 4) return { o, handle };
      await handle.close();
      await repo.catalog.writesEnded(scope, key);
      await new Promise((resolve) => setTimeout(resolve, attempt * 2));
      o = await repo.catalog.objectGet(scope, key);
    }
  }

  async function getObject(req: IncomingMessage, res: ServerResponse, caller: Caller, scope: Scope, r: S3Request, head: boolean, signal: AbortSignal): Promise<void> {
    const first = await repo.catalog.objectGet(scope, r.key);
    // Conditions before the open: a 304 or 412 needs only the row (conditions.ts).
    const notModified = (row: StoredObject) => send(res, 304, { etag: `"${row.etag}"`, "last-modified": httpDate(row.updatedAt), "x-amz-request-id": r.requestId });
    if (first && readConditions(req.headers, first) === "not-modified") return notModified(first);
    const { o, handle } = first ? await openObject(scope, r.key, signal, first) : { o: undefined, handle: undefined };
    if (!o || !handle) throw new S3Error("NoSuchKey", 404, "The specified key does not exist.");
    try {
      if (o !== first && readConditions(req.headers, o) === "not-modified") return notModified(o);
      // GetObject's partNumber: an object is one part here (parts are not kept once assembled).
      const part = r.query.get("partNumber");
      if (part !== null && part !== "1") throw new S3Error("InvalidPartNumber", 416, `partNumber ${JSON.stringify(part)}: this object is one part, partNumber 1`);
      const range = head ? undefined : part && handle.size > 0 ? ([0, handle.size - 1] as [number, number]) : parseRange(req.headers.range, handle.size);
      // response-* overrides: for signed requests only (a GetObjectUrl link does not sign them), as S3.
      const overrides = r.query.has("X-K3-Signature") ? {} : responseOverrides(r.query);
      if (caller.grants.length === 0 && Object.keys(overrides).length > 0) {
        throw new S3Error("InvalidRequest", 400, "Request specific response headers cannot be used for anonymous GET requests.");
      }
      const headers: Record<string, string | number> = { ...objectHeaders(o), ...overrides, "x-amz-request-id": r.requestId };
      if (head) {
        send(res, 200, { ...headers, "content-length": handle.size });
        return;
      }
      const [start, end] = range ?? [0, handle.size - 1];
      const length = handle.size === 0 ? 0 : end - start + 1;
      res.writeHead(range ? 206 : 200, { ...headers, "content-length": length, ...(range ? { "content-range": `bytes ${start}-${end}/${handle.size}` } : {}) });
      const buf = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(1, length)));
      for (let at = start; at <= end && length > 0; ) {
        const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, end - at + 1), at);
        if (bytesRead === 0) break;
        if (!res.write(buf.subarray(0, bytesRead))) await drainedOrGone(res);
        if (res.destroyed) break;
        at += bytesRead;
      }
      res.end();
    } finally {
      await handle.close();
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse, r: S3Request, signal: AbortSignal): Promise<void> {
    if (r.method === "OPTIONS") return answerPreflight(repo, req, res, r);
    refuseUnserved(r.method, r.key, r.query, req.headers);
    const { caller, claim } = await access.authenticate(req, r);
    if (r.bucket === "") {
      if (r.method !== "GET") throw new S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.");
      await listBuckets(res, caller, r);
      return;
    }
    try {
      checkBucket(r.bucket);
    } catch {
      throw new S3Error("InvalidBucketName", 400, "The specified bucket is not valid.");
    }
    const scope: Scope = { org: caller.org, bucket: r.bucket, signal };
    // The bucket's own row, read once (cached): its CORS rules, its policy, and that it exists.
    const own = await repo.buckets.bucketRowGet(scope);
    allowOrigin(req, res, own?.cors);
    const allow = (role: Role, action: PolicyAction, key?: string) => {
      const refused = accessError(caller, r.bucket, own, role, action, key);
      if (refused) throw refused;
    };
    /** The bucket's row, NoSuchBucket when there is none (a bucket known only from an earlier version is adopted). */
    const existing = async () => own ?? (await bucketOf(scope));
    if (r.key === "") {
      const io = { repo, now: deps.now, readBody: () => readXmlBody(req, claim, 1 << 20) };
      if (r.query.has("cors")) {
        allow(r.method === "GET" ? "reader" : "admin", r.method === "GET" ? "s3:GetBucketCORS" : "s3:PutBucketCORS");
        await bucketCorsCall(io, res, scope, (await existing()).cors, r);
        return;
      }
      if (r.query.has("policy") || r.query.has("policyStatus")) {
        allow(...policyAccess(r));
        await bucketPolicyCall(io, res, scope, await existing(), r);
        return;
      }
      switch (r.method) {
        case "PUT": {
          allow("admin", "s3:CreateBucket");
          if (await repo.buckets.bucketGet(scope)) throw new S3Error("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it.");
          await buckets.create(scope, { description: "", storageQuotaBytes: 0, accessMode: "private" });
          send(res, 200, { location: `/${r.bucket}`, "x-amz-request-id": r.requestId });
          return;
        }
        case "HEAD":
          allow("reader", "s3:ListBucket");
          await existing();
          send(res, 200, { "x-amz-bucket-region": "us-east-1", "x-amz-request-id": r.requestId });
          return;
        case "GET": {
          const action = r.query.has("location") ? "s3:GetBucketLocation" : r.query.has("versioning") ? "s3:GetBucketVersioning" : r.query.has("uploads") ? "s3:ListBucketMultipartUploads" : "s3:ListBucket";
          allow("reader", action);
          await existing();
          if (r.query.has("location")) sendXml(res, `<LocationConstraint xmlns="${XMLNS}"></LocationConstraint>`, r);
          else if (r.query.has("versioning")) sendXml(res, `<VersioningConfiguration xmlns="${XMLNS}"/>`, r); // never enabled
          else if (r.query.has("uploads")) sendXml(res, await listUploadsXml(repo, scope, r), r);
          else sendXml(res, await listObjectsXml(repo, scope, r), r);
          return;
        }
        case "POST": {
          if (!r.query.has("delete")) throw new S3Error("MethodNotAllowed", 405, "POST on a bucket is DeleteObjects (?delete) only");
          const row = await existing();
          // Without a policy the answer is the same for every key: refused before the body is read.
          if (!row.policy) allow("writer", "s3:DeleteObject");
          await deleteObjects(req, res, scope, r, claim, (key) => accessError(caller, r.bucket, row, "writer", "s3:DeleteObject", key));
          return;
        }
        case "DELETE": {
          allow("admin", "s3:DeleteBucket");
          await existing();
          const result = await repo.buckets.bucketDelete(scope, false);
          if (typeof result === "object") throw new S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty");
          await objects.removeBucket(scope);
          send(res, 204, { "x-amz-request-id": r.requestId });
          return;
        }
        default:
          throw new S3Error("MethodNotAllowed", 405, `${r.method} is not allowed on a bucket here`);
      }
    }
    try {
      checkObjectKey(r.key, "key");
    } catch (err) {
      throw new S3Error(Buffer.byteLength(r.key) > 1024 ? "KeyTooLongError" : "InvalidArgument", 400, (err as Error).message);
    }
    if (r.query.has("tagging")) {
      allow(...taggingAccess(r.method), r.key);
      await existing();
      await objectTaggingCall({ repo, readBody: () => readXmlBody(req, claim, 1 << 20) }, res, scope, r);
      return;
    }
    if (r.query.has("uploads") || r.query.has("uploadId")) {
      const [role, action] = r.method === "GET" ? (["reader", r.query.has("uploadId") ? "s3:ListMultipartUploadParts" : "s3:ListBucketMultipartUploads"] as const)
        : r.method === "DELETE" ? (["writer", "s3:AbortMultipartUpload"] as const) : (["writer", "s3:PutObject"] as const);
      allow(role, action, r.key);
      const io = { readBody: (body: IncomingMessage, max: number) => readXmlBody(body, claim, max), stageChecked, storeObject, copySource: () => copySource(req, caller, scope, signal) };
      await multipart(io, deps, req, res, scope, await existing(), r, claim, signal);
      return;
    }
    switch (r.method) {
      case "PUT": {
        allow("writer", "s3:PutObject", r.key);
        const bucket = await existing();
        if (req.headers["x-amz-copy-source"]) await copyObject(req, res, caller, scope, bucket, r, signal);
        else await putObject(req, res, scope, bucket, r, claim, signal);
        return;
      }
      case "GET":
      case "HEAD":
        allow("reader", "s3:GetObject", r.key);
        await existing();
        await getObject(req, res, caller, scope, r, r.method === "HEAD", signal);
        return;
      case "DELETE":
        allow("writer", "s3:DeleteObject", r.key);
        await existing();
        await repo.catalog.objectDelete(scope, r.key, deps.now(), objects);
        send(res, 204, { "x-amz-request-id": r.requestId });
        return;
      default:
        throw new S3Error("MethodNotAllowed", 405, `${r.method} is not allowed on an object`);
    }
  }

  return {
    /** Serves one byte-plane request, answering S3 errors as S3 does. */
    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const url = req.url ?? "/";
      const q = url.indexOf("?");
      const rawPath = q < 0 ? url : url.slice(0, q);
      const rawQuery = q < 0 ? "" : url.slice(q + 1);
      const requestId = requestIdOf(headersOf(req));
      const abort = new AbortController();
      const onClose = () => {
        if (!res.writableFinished) abort.abort(new Error("client disconnected"));
      };
      res.on("close", onClose);
      let r: S3Request | undefined;
      try {
        let path: string;
        try {
          path = decodeURIComponent(rawPath);
        } catch {
          throw new S3Error("InvalidURI", 400, "Couldn't parse the specified URI.");
        }
        const slash = path.indexOf("/", 1);
        r = {
          method: req.method ?? "GET",
          path,
          rawQuery,
          query: new URLSearchParams(rawQuery),
          bucket: slash < 0 ? path.slice(1) : path.slice(1, slash),
          key: slash < 0 ? "" : path.slice(slash + 1),
          requestId,
        };
        await route(req, res, r, abort.signal);
      } catch (err) {
        if (abort.signal.aborted) {
          log.debug("byte-plane client went away", { path: rawPath });
          return;
        }
        let e: S3Error;
        if (err instanceof S3Error) e = err;
        else if (err instanceof DomainError && err.kind === "unavailable") e = new S3Error("ServiceUnavailable", 503, err.message);
        else if (err instanceof DomainError && err.kind === "already_exists") e = new S3Error("BucketAlreadyOwnedByYou", 409, err.message);
        else {
          log.error("byte plane request failed", { err, requestId });
          e = new S3Error("InternalError", 500, "We encountered an internal error. Please try again.");
        }
        if (res.headersSent) {
          res.destroy();
          return;
        }
        // Refused before the caller's bucket was known (its credentials): the rules of the buckets of that name.
        if (req.headers.origin && r?.bucket && !res.hasHeader("access-control-allow-origin")) {
          allowOrigin(req, res, await repo.buckets.bucketCorsByName(r.bucket).catch(() => []));
        }
        const headOnly = req.method === "HEAD";
        const body = headOnly ? undefined : errorXml(e, rawPath, requestId);
        send(res, e.status, { "content-type": "application/xml", "x-amz-request-id": requestId, ...(e.status === 413 ? { connection: "close" } : {}) }, body);
        // An unread upload body is dropped with the connection rather than read.
        if (!req.readableEnded && req.method === "PUT") req.resume();
      } finally {
        res.off("close", onClose);
      }
    },
  };
}
