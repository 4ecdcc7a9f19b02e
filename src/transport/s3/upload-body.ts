/**
 * The body of an upload (PutObject, UploadPart), staged and checked: plain or aws-chunked
 * (signed chunks, signed or unsigned trailers), size-capped while it streams, then
 * Content-MD5, x-amz-content-sha256, x-amz-decoded-content-length and any
 * x-amz-checksum-* (header or trailer) compared with what arrived. Whatever fails, the
 * staged file is discarded: nothing becomes visible. Small XML bodies are read and checked
 * the same way (readXmlBody).
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Scope } from "../../domain/job";
import { decodeAwsChunked, type ChunkedResult } from "../../s3/aws-chunked";
import { algorithmOf, checkChecksum, newChecksum, type Checksum, type ChecksumAlgorithm } from "../../s3/checksums";
import { entityTooLarge, S3Error } from "../../s3/errors";
import { credentialScope, type SigV4Claim } from "../../s3/sigv4";
import { ObjectTooLarge, type ObjectStore, type StagedObject } from "../../storage/object-store";

const SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const SIGNED_CHUNKS_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
const UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/** The checksum the request announces: as a header (with its value) or as a trailer (value at the end). */
function announcedChecksum(req: IncomingMessage): { algorithm: ChecksumAlgorithm; header?: string } | undefined {
  const trailer = req.headers["x-amz-trailer"];
  if (trailer !== undefined) {
    const algorithm = algorithmOf(String(trailer));
    if (!algorithm) throw new S3Error("InvalidRequest", 400, `x-amz-trailer ${JSON.stringify(String(trailer))} must name an x-amz-checksum-* trailer`);
    return { algorithm };
  }
  for (const [name, value] of Object.entries(req.headers)) {
    const algorithm = name.startsWith("x-amz-checksum-") && name !== "x-amz-checksum-type" ? algorithmOf(name) : undefined;
    if (algorithm) return { algorithm, header: String(value) };
  }
  return undefined;
}

/** Passes bytes through while a checksum runs over them. */
async function* tapped(body: AsyncIterable<Buffer>, sum: Checksum): AsyncIterable<Buffer> {
  for await (const b of body) {
    sum.update(b);
    yield b;
  }
}

/** A request body as it arrives: plain, or aws-chunked decoded, with the checksum it announces running over it. */
interface Body {
  bytes: AsyncIterable<Buffer>;
  payload: string;
  chunked: boolean;
  decodedHeader: string | string[] | undefined;
  checksum?: { algorithm: ChecksumAlgorithm; header?: string };
  sum?: Checksum;
  result: ChunkedResult;
}

function bodyOf(req: IncomingMessage, claim: SigV4Claim | undefined): Body {
  const payload = claim?.payloadHash ?? "";
  const chunked = payload.startsWith("STREAMING-") || String(req.headers["content-encoding"] ?? "").includes("aws-chunked");
  if (payload.startsWith("STREAMING-") && ![SIGNED_CHUNKS, SIGNED_CHUNKS_TRAILER, UNSIGNED_TRAILER].includes(payload)) {
    throw new S3Error("NotImplemented", 501, `x-amz-content-sha256 ${payload} (Signature V4A) is not supported; sign with AWS4-HMAC-SHA256`);
  }
  const checksum = announcedChecksum(req);
  const sum = checksum && newChecksum(checksum.algorithm);
  const result: ChunkedResult = { decodedBytes: 0, trailers: new Map() };
  let bytes: AsyncIterable<Buffer> = req;
  if (chunked) {
    const signing = payload === SIGNED_CHUNKS || payload === SIGNED_CHUNKS_TRAILER
      ? { key: claim?.signingKey as Buffer, amzDate: claim?.amzDate ?? "", scope: credentialScope(claim as SigV4Claim), seed: claim?.signature ?? "" }
      : undefined;
    bytes = decodeAwsChunked(req, { signing, signedTrailer: payload === SIGNED_CHUNKS_TRAILER }, result);
  }
  if (sum) bytes = tapped(bytes, sum);
  return { bytes, payload, chunked, decodedHeader: req.headers["x-amz-decoded-content-length"], checksum, sum, result };
}

/** Compares what arrived with the digests and lengths the request sent. */
function checkArrived(req: IncomingMessage, claim: SigV4Claim | undefined, b: Body, got: { md5: Buffer; sha256: Buffer; size: number }): void {
  const md5 = req.headers["content-md5"];
  if (md5 !== undefined && Buffer.from(String(md5), "base64").toString("hex") !== got.md5.toString("hex")) {
    throw new S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.");
  }
  if (claim && /^[0-9a-f]{64}$/.test(b.payload) && b.payload !== got.sha256.toString("hex")) {
    throw new S3Error("XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  if (b.chunked && b.decodedHeader !== undefined && Number(b.decodedHeader) !== got.size) {
    throw new S3Error("IncompleteBody", 400, `x-amz-decoded-content-length says ${b.decodedHeader} bytes; the chunks held ${got.size}`);
  }
  if (b.checksum && b.sum) {
    const sent = b.checksum.header ?? b.result.trailers.get(`x-amz-checksum-${b.checksum.algorithm}`);
    if (sent === undefined) throw new S3Error("InvalidRequest", 400, `the x-amz-checksum-${b.checksum.algorithm} trailer announced by x-amz-trailer never came`);
    checkChecksum(b.checksum.algorithm, sent, b.sum.digest());
  }
}

/** Streams an upload's body to a staged file within `maxBytes` and checks it. */
export async function stageUpload(objects: ObjectStore, maxBytes: number, req: IncomingMessage, scope: Scope, claim: SigV4Claim | undefined, signal: AbortSignal): Promise<StagedObject> {
  const b = bodyOf(req, claim);
  const declared = Number(b.chunked && b.decodedHeader !== undefined ? b.decodedHeader : (req.headers["content-length"] ?? "0"));
  if (declared > maxBytes) throw entityTooLarge(maxBytes);
  let staged: StagedObject;
  try {
    staged = await objects.stage(scope, b.bytes, maxBytes, signal);
  } catch (err) {
    if (err instanceof ObjectTooLarge) throw entityTooLarge(maxBytes);
    throw err;
  }
  try {
    checkArrived(req, claim, b, staged);
  } catch (err) {
    await staged.discard();
    throw err;
  }
  return staged;
}

/**
 * A request's small XML body (DeleteObjects, CompleteMultipartUpload, PutBucketCors) read
 * whole as UTF-8, within `maxBytes`, checked as an upload is (Content-MD5, the signed
 * payload hash, x-amz-checksum-*; plain or aws-chunked).
 */
export async function readXmlBody(req: IncomingMessage, claim: SigV4Claim | undefined, maxBytes: number): Promise<string> {
  const b = bodyOf(req, claim);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of b.bytes) {
    size += chunk.length;
    if (size > maxBytes) throw new S3Error("MalformedXML", 400, `The XML you provided was too large (at most ${maxBytes} bytes)`);
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  checkArrived(req, claim, b, { md5: createHash("md5").update(body).digest(), sha256: createHash("sha256").update(body).digest(), size });
  return body.toString("utf8");
}
