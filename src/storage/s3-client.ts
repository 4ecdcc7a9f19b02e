/**
 * A minimal signed client for one bucket of an S3-compatible server (AWS S3, MinIO, Ceph,
 * moto): every request is signed with SigV4, and listings are streamed page by page in
 * key order. The object store's upstream and external sources both talk through it, over
 * node:http(s) so that a source's connections can be held to K3_SOURCE_ALLOW's policy.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as delay } from "node:timers/promises";
import { uriEncode } from "../domain/uri";
import { guardedLookup, type UrlPolicy } from "../domain/url-policy";
import { xmlUnescape } from "../s3/errors";
import { signRequest } from "../s3/sigv4";

/** Where the bucket is and how to sign for it. */
export interface S3Location {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** One listed object. */
export interface S3Listed {
  /** The full key in the bucket. */
  key: string;
  size: number;
  /** Without quotes. */
  etag: string;
  /** Unix epoch milliseconds. */
  modifiedMs: number;
}

export const UNSIGNED = "UNSIGNED-PAYLOAD";
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Why a request to the S3 server failed, without its URL or credentials. */
export class S3ClientError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "S3ClientError";
  }
}

/** Answers of an S3 server worth sending the request again for (InternalError, SlowDown, …). */
const RETRY_STATUSES = new Set([500, 502, 503, 504]);
const RETRY_DELAYS_MS = [100, 400];

/**
 * Runs `send` again, twice at most (after 100 and 400 ms), while the S3 server answers 5xx
 * — as AWS asks of clients; moto answers 500 to some concurrent writes of one key.
 */
export async function withRetries<T>(send: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof S3ClientError) || !RETRY_STATUSES.has(err.status) || attempt >= RETRY_DELAYS_MS.length || signal?.aborted) throw err;
      await delay(RETRY_DELAYS_MS[attempt]);
    }
  }
}

export type S3Call = (
  method: string,
  objectKey: string,
  query?: string,
  init?: { body?: ReadableStream | Buffer | string; payloadHash?: string; headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<Response>;

/** A signed client for `o`; with `endpoints`, it connects only to addresses that policy accepts. */
export function createS3Client(o: S3Location & { endpoints?: UrlPolicy }) {
  const base = new URL(o.endpoint);
  const creds = { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, region: o.region || "us-east-1" };
  const send = base.protocol === "https:" ? httpsRequest : httpRequest;
  // Connections are reused; an idle one is closed after 30 s.
  const agent = new (base.protocol === "https:" ? HttpsAgent : HttpAgent)({ keepAlive: true, timeout: 30_000 });

  /** A request, sent again on a 5xx unless its body is a stream (which cannot be sent twice; its caller retries). */
  const call: S3Call = (method, objectKey, query = "", init = {}) => {
    const replayable = init.body === undefined || typeof init.body === "string" || Buffer.isBuffer(init.body);
    return replayable ? withRetries(() => once(method, objectKey, query, init), init.signal) : once(method, objectKey, query, init);
  };

  const once: S3Call = async (method, objectKey, query = "", init = {}) => {
    const path = `/${o.bucket}${objectKey ? `/${objectKey}` : ""}`;
    const headers: Record<string, string> = { host: base.host, ...(init.headers ?? {}) };
    const signed = signRequest({ method, path, rawQuery: query, headers }, creds, init.payloadHash ?? (init.body ? UNSIGNED : EMPTY_SHA256));
    const url = `${base.origin}${uriEncode(path, true)}${query ? `?${query}` : ""}`;
    let res: IncomingMessage;
    try {
      const lookup = o.endpoints ? guardedLookup(base, o.endpoints) : undefined;
      res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = send(url, { method, headers: { ...headers, ...signed }, agent, lookup, signal: init.signal }, resolve);
        req.on("error", reject);
        const body = init.body;
        if (body === undefined || typeof body === "string" || Buffer.isBuffer(body)) req.end(body);
        else pipeline(Readable.fromWeb(body as never), req).catch(reject);
      });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      const e = err as NodeJS.ErrnoException;
      throw new S3ClientError(`the S3 server could not be reached (${e.code ?? e.message})`, 0);
    }
    const status = res.statusCode ?? 0;
    if (status >= 500) {
      res.resume();
      throw new S3ClientError(`the S3 server answered ${status} to ${method}`, status);
    }
    const answer = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) answer.append(name, v);
    }
    const bodyless = method === "HEAD" || status === 204 || status === 304 || status < 200;
    if (bodyless) res.resume();
    return new Response(bodyless ? null : (Readable.toWeb(res) as ReadableStream), { status: Math.max(status, 200), headers: answer });
  };

  /** Every object under `prefix` after `startAfter`, in key order, a page (≤ 1,000) at a time. */
  async function* list(prefix: string, startAfter = "", signal?: AbortSignal): AsyncGenerator<S3Listed> {
    let token = "";
    for (;;) {
      const params = [`list-type=2`, `prefix=${uriEncode(prefix, false)}`];
      if (token) params.push(`continuation-token=${uriEncode(token, false)}`);
      else if (startAfter) params.push(`start-after=${uriEncode(startAfter, false)}`);
      const res = await call("GET", "", params.sort().join("&"), { signal });
      const xml = await res.text();
      if (res.status !== 200) {
        const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1] ?? "";
        throw new S3ClientError(`the S3 server refused to list the bucket: ${res.status}${code ? ` ${code}` : ""}`, res.status);
      }
      for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        yield {
          key: xmlUnescape(/<Key>([^<]*)<\/Key>/.exec(m[1])?.[1] ?? ""),
          size: Number(/<Size>(\d+)<\/Size>/.exec(m[1])?.[1] ?? 0),
          etag: xmlUnescape(/<ETag>([^<]*)<\/ETag>/.exec(m[1])?.[1] ?? "").replaceAll('"', ""),
          modifiedMs: Date.parse(/<LastModified>([^<]*)<\/LastModified>/.exec(m[1])?.[1] ?? "") || 0,
        };
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? xmlUnescape(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] ?? "") : "";
      if (!token) return;
    }
  }

  return { call, list };
}
