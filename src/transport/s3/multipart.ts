/**
 * Multipart uploads on the byte plane: parts (uploaded, or copied from a range of another
 * object: UploadPartCopy) are staged like uploads and kept under
 * `<dataDir>/tmp/mpu-<uploadId>/`, listed in the database; completing one assembles the
 * listed parts in order into one staged object and stores it like a PutObject (catalog row
 * and jobs in one transaction), with S3's multipart ETag (the MD5 of the parts' MD5s, "-",
 * the part count).
 */
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { BucketRow } from "../../domain/bucket";
import type { Scope } from "../../domain/job";
import { mimeTypeOf } from "../../domain/mime";
import { ObjectTooLarge, type ObjectStore, type StagedObject } from "../../storage/object-store";
import type { Repository } from "../../storage/repository";
import { entityTooLarge, S3Error, xmlEscape } from "../../s3/errors";
import { countParam, isoDate, metadataOf, send, sendXml, XMLNS, type S3Request } from "./protocol";
import { copySourceRange, type CopySource } from "./copy-source";
import type { SigV4Claim } from "../../s3/sigv4";

/** The byte plane's reading and storing steps that multipart reuses. */
export interface S3Io {
  readBody(req: IncomingMessage, max: number): Promise<string>;
  stageChecked(req: IncomingMessage, scope: Scope, claim: SigV4Claim | undefined, signal: AbortSignal): Promise<StagedObject>;
  storeObject(
    res: ServerResponse,
    scope: Scope,
    bucket: BucketRow,
    r: S3Request,
    staged: StagedObject,
    etag: string,
    contentType: string,
    metadata: Record<string, string>,
    xml?: (etag: string) => string,
  ): Promise<void>;
  /** The request's copy source, for UploadPartCopy (copy-source.ts). */
  copySource(): Promise<CopySource>;
}

/** What multipart needs besides the byte plane's steps. */
export interface MultipartDeps {
  repo: Repository;
  objects: ObjectStore;
  maxObjectBytes: number;
  now: () => number;
}

/** CreateMultipartUpload, UploadPart(Copy), CompleteMultipartUpload, AbortMultipartUpload, ListParts. */
export async function multipart(io: S3Io, deps: MultipartDeps, req: IncomingMessage, res: ServerResponse, scope: Scope, bucket: BucketRow, r: S3Request, claim: SigV4Claim | undefined, signal: AbortSignal): Promise<void> {
  const { repo, objects } = deps;
  const { readBody, stageChecked, storeObject } = io;
  if (r.method === "POST" && r.query.has("uploads")) {
    const uploadId = randomBytes(16).toString("hex");
    await repo.catalog.mpuCreate(scope, { uploadId, key: r.key, contentType: String(req.headers["content-type"] ?? "") || mimeTypeOf(r.key), metadata: metadataOf(req), createdAt: deps.now() });
    sendXml(res, `<InitiateMultipartUploadResult xmlns="${XMLNS}"><Bucket>${xmlEscape(r.bucket)}</Bucket><Key>${xmlEscape(r.key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`, r);
    return;
  }
  const uploadId = r.query.get("uploadId") ?? "";
  const upload = /^[0-9a-f]{32}$/.test(uploadId) ? await repo.catalog.mpuGet(scope, uploadId) : undefined;
  if (!upload || upload.key !== r.key) throw new S3Error("NoSuchUpload", 404, "The specified multipart upload does not exist.");
  if (r.method === "PUT") {
    const n = Number(r.query.get("partNumber"));
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new S3Error("InvalidArgument", 400, "Part number must be an integer between 1 and 10000, inclusive");
    // UploadPartCopy: the part is a range of another object (the AWS CLI and SDKs copy large objects so).
    const source = req.headers["x-amz-copy-source"] ? await io.copySource() : undefined;
    const staged = source
      ? await objects.stage(scope, source.bytes(...copySourceRange(req.headers["x-amz-copy-source-range"] as string | undefined, source.size)), deps.maxObjectBytes, signal).finally(() => source.close())
      : await stageChecked(req, scope, claim, signal);
    await staged.keepAsPart(uploadId, n);
    const etag = staged.md5.toString("hex");
    await repo.catalog.mpuPartPut(uploadId, { partNumber: n, size: staged.size, etag }, deps.now());
    if (source) sendXml(res, `<CopyPartResult xmlns="${XMLNS}"><LastModified>${isoDate(deps.now())}</LastModified><ETag>&quot;${etag}&quot;</ETag></CopyPartResult>`, r);
    else send(res, 200, { etag: `"${etag}"`, "x-amz-request-id": r.requestId });
    return;
  }
  if (r.method === "GET") {
    const parts = (await repo.catalog.mpuParts(uploadId)).map((p) => `<Part><PartNumber>${p.partNumber}</PartNumber><ETag>&quot;${p.etag}&quot;</ETag><Size>${p.size}</Size></Part>`);
    sendXml(res, `<ListPartsResult xmlns="${XMLNS}"><Bucket>${xmlEscape(r.bucket)}</Bucket><Key>${xmlEscape(r.key)}</Key><UploadId>${uploadId}</UploadId><IsTruncated>false</IsTruncated>${parts.join("")}</ListPartsResult>`, r);
    return;
  }
  if (r.method === "DELETE") {
    await repo.catalog.mpuDelete(uploadId);
    await objects.dropUpload(uploadId);
    send(res, 204, { "x-amz-request-id": r.requestId });
    return;
  }
  // POST ?uploadId: CompleteMultipartUpload.
  const wanted = [...(await readBody(req, 1 << 20)).matchAll(/<Part>\s*(?:<PartNumber>(\d+)<\/PartNumber>\s*<ETag>([^<]*)<\/ETag>|<ETag>([^<]*)<\/ETag>\s*<PartNumber>(\d+)<\/PartNumber>)/g)].map((m) => ({
    n: Number(m[1] ?? m[4]),
    etag: (m[2] ?? m[3]).replace(/&quot;|"/g, ""),
  }));
  if (wanted.length === 0) throw new S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema");
  const have = new Map((await repo.catalog.mpuParts(uploadId)).map((p) => [p.partNumber, p]));
  let prev = 0;
  for (const w of wanted) {
    if (w.n <= prev) throw new S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number.");
    prev = w.n;
    if (have.get(w.n)?.etag !== w.etag) throw new S3Error("InvalidPart", 400, `One or more of the specified parts could not be found (part ${w.n}).`);
  }
  const staged = await objects.assemble(scope, uploadId, wanted.map((w) => w.n), deps.maxObjectBytes, signal).catch((err: unknown) => {
    if (err instanceof ObjectTooLarge) throw entityTooLarge(deps.maxObjectBytes);
    throw err;
  });
  // S3's multipart ETag: the MD5 of the parts' binary MD5s, then "-" and the part count.
  const etag = `${createHash("md5").update(Buffer.concat(wanted.map((w) => Buffer.from(w.etag, "hex")))).digest("hex")}-${wanted.length}`;
  await storeObject(res, scope, bucket, r, staged, etag, upload.contentType, upload.metadata, (e) =>
    `<CompleteMultipartUploadResult xmlns="${XMLNS}"><Location>/${xmlEscape(r.bucket)}/${xmlEscape(r.key)}</Location><Bucket>${xmlEscape(r.bucket)}</Bucket><Key>${xmlEscape(r.key)}</Key><ETag>&quot;${e}&quot;</ETag></CompleteMultipartUploadResult>`,
  );
  await repo.catalog.mpuDelete(uploadId);
  await objects.dropUpload(uploadId);
}

/** ListMultipartUploads (`GET /{bucket}?uploads`): uploads in progress, by key then upload id, up to `max-uploads` (1,000). */
export async function listUploadsXml(repo: Repository, scope: Scope, r: S3Request): Promise<string> {
  const prefix = r.query.get("prefix") ?? "";
  const keyMarker = r.query.get("key-marker") ?? "";
  const idMarker = keyMarker ? (r.query.get("upload-id-marker") ?? "") : "";
  const limit = countParam(r.query, "max-uploads", 1000);
  // Past the marker key: its uploads after the id marker, or none of it without one (as S3).
  const found = await repo.catalog.mpuList(scope, { prefix, after: [keyMarker, idMarker || (keyMarker ? "\uffff" : "")], limit: limit + 1 });
  const page = found.slice(0, limit);
  const truncated = found.length > limit;
  const last = page[page.length - 1];
  const uploads = page.map((u) => `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${u.uploadId}</UploadId><StorageClass>STANDARD</StorageClass><Initiated>${isoDate(u.createdAt)}</Initiated></Upload>`);
  const next = truncated && last ? `<NextKeyMarker>${xmlEscape(last.key)}</NextKeyMarker><NextUploadIdMarker>${last.uploadId}</NextUploadIdMarker>` : "";
  return `<ListMultipartUploadsResult xmlns="${XMLNS}"><Bucket>${xmlEscape(scope.bucket)}</Bucket><KeyMarker>${xmlEscape(keyMarker)}</KeyMarker><UploadIdMarker>${xmlEscape(idMarker)}</UploadIdMarker>${next}<Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>${limit}</MaxUploads><IsTruncated>${truncated}</IsTruncated>${uploads.join("")}</ListMultipartUploadsResult>`;
}
