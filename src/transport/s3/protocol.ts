/**
 * Pieces of the S3 protocol with no state: the XML namespace, dates as S3 writes them,
 * user metadata, object response headers, Range parsing, the parsed request, and answers.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { STORED_HEADER_PREFIX, type StoredObject } from "../../domain/bucket";
import { parseTaggingHeader, TAGGING_KEY, taggingHeader, tagsOf, withTagging } from "../../s3/tagging";
import { S3Error } from "../../s3/errors";

/** The namespace of S3's XML documents. */
export const XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";

/** An answer with `body`, or none (Content-Length: 0, as S3 says it, rather than an empty chunked body). */
export function send(res: ServerResponse, status: number, headers: Record<string, string | number>, body?: string | Buffer): void {
  const length = body !== undefined ? Buffer.byteLength(body) : status === 204 || status === 304 ? undefined : 0;
  res.writeHead(status, length === undefined ? headers : { "content-length": length, ...headers });
  res.end(body);
}

/** A 200 with an XML document. */
export function sendXml(res: ServerResponse, xml: string, r: S3Request): void {
  send(res, 200, { "content-type": "application/xml", "x-amz-request-id": r.requestId }, `<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
}

/** One parsed byte-plane request. */
export interface S3Request {
  method: string;
  path: string;
  rawQuery: string;
  query: URLSearchParams;
  bucket: string;
  key: string;
  requestId: string;
}

/** An HTTP date (Last-Modified). */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** An ISO 8601 date, as S3 writes it in XML. */
export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

/** The tags an upload's `x-amz-tagging` header gives, in their stored form (checked; undefined for none). */
export function requestTagging(req: IncomingMessage): string | undefined {
  const header = req.headers["x-amz-tagging"];
  return typeof header === "string" ? taggingHeader(parseTaggingHeader(header)) : undefined;
}

/** User metadata of a request: its `x-amz-meta-*` headers, names without the prefix, its kept standard headers and its tags. */
export function metadataOf(req: IncomingMessage): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith("x-amz-meta-")) metadata[name.slice("x-amz-meta-".length)] = Array.isArray(value) ? value.join(",") : String(value);
  }
  for (const name of STORED_HEADERS) {
    let value = req.headers[name];
    // aws-chunked is how the body travelled, not how the object is encoded.
    if (name === "content-encoding" && typeof value === "string") value = value.split(",").map((v) => v.trim()).filter((v) => v && v !== "aws-chunked").join(", ");
    if (typeof value === "string" && value !== "") metadata[`${STORED_HEADER_PREFIX}${name}`] = value;
  }
  return withTagging(metadata, requestTagging(req));
}

/**
 * The standard headers S3 keeps with an object and sends back with it, stored in its
 * metadata (StoredObject.metadata) and left out where user metadata is listed.
 */
const STORED_HEADERS = ["content-encoding", "content-disposition", "content-language", "cache-control", "expires"] as const;

/** GetObject's `response-*` query parameters: the header each sets in the answer. */
const RESPONSE_OVERRIDES = ["content-type", "content-language", "expires", "cache-control", "content-disposition", "content-encoding"] as const;

/** The headers a signed GET asks to be answered with (`response-content-disposition=…`), as S3 serves them. */
export function responseOverrides(query: URLSearchParams): Record<string, string> {
  const h: Record<string, string> = {};
  for (const name of RESPONSE_OVERRIDES) {
    const value = query.get(`response-${name}`);
    if (value !== null) h[name] = value;
  }
  return h;
}

/** The headers of an object in a GET or HEAD answer. */
export function objectHeaders(o: StoredObject): Record<string, string> {
  const h: Record<string, string> = {
    etag: `"${o.etag}"`,
    "content-type": o.contentType || "application/octet-stream",
    "last-modified": httpDate(o.updatedAt),
    "accept-ranges": "bytes",
    // Objects are served from the origin of the web console: an uploaded HTML page opened in
    // a browser (a presigned URL, say) renders as a unique origin with no scripts, and the
    // browser never guesses an active type from the bytes.
    "content-security-policy": "sandbox",
    "x-content-type-options": "nosniff",
  };
  for (const [k, v] of Object.entries(o.metadata)) {
    if (k === TAGGING_KEY) h["x-amz-tagging-count"] = String(tagsOf(o.metadata).length);
    else h[k.startsWith(STORED_HEADER_PREFIX) ? k.slice(STORED_HEADER_PREFIX.length) : `x-amz-meta-${k}`] = v;
  }
  return h;
}

/** Parses a Range header against a size: [start, end] inclusive, or undefined for the whole object. */
export function parseRange(header: string | undefined, size: number): [number, number] | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined; // S3 ignores ranges it cannot parse
  let start: number;
  let end: number;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0) throw new S3Error("InvalidRange", 416, "The requested range is not satisfiable");
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) throw new S3Error("InvalidRange", 416, "The requested range is not satisfiable");
  return [start, end];
}

/** A listing's count parameter (`max-keys`, `max-uploads`): `max` when absent, at most `max`; 400 unless a whole number. */
export function countParam(query: URLSearchParams, name: string, max: number): number {
  const raw = query.get(name);
  const n = raw === null ? max : Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new S3Error("InvalidArgument", 400, `${name} ${JSON.stringify(raw)} must be an integer from 0 to ${max}`);
  return Math.min(n, max);
}
