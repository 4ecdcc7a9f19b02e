/**
 * A minimal signed client for one bucket of an S3-compatible server (AWS S3, MinIO, Ceph,
 * moto): every request is signed with SigV4, and listings are streamed page by page in
 * key order. The object store's upstream and external sources both talk through it.
 */
import { uriEncode } from "../domain/uri";
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

export type S3Call = (
  method: string,
  objectKey: string,
  query?: string,
  init?: { body?: ReadableStream | Buffer | string; payloadHash?: string; headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<Response>;

/** A signed client for `o`. */
export function createS3Client(o: S3Location) {
  const base = new URL(o.endpoint);
  const creds = { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, region: o.region || "us-east-1" };

  const call: S3Call = async (method, objectKey, query = "", init = {}) => {
    const path = `/${o.bucket}${objectKey ? `/${objectKey}` : ""}`;
    const headers: Record<string, string> = { host: base.host, ...(init.headers ?? {}) };
    const signed = signRequest({ method, path, rawQuery: query, headers }, creds, init.payloadHash ?? (init.body ? UNSIGNED : EMPTY_SHA256));
    const url = `${base.origin}${uriEncode(path, true)}${query ? `?${query}` : ""}`;
    let res: Response;
    try {
      res = await fetch(url, { method, headers: { ...headers, ...signed }, body: init.body, signal: init.signal, duplex: "half" } as RequestInit);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      const c = (err as { cause?: { code?: string; message?: string } }).cause;
      const cause = c?.code ?? c?.message ?? (err as Error).message;
      throw new S3ClientError(`the S3 server could not be reached (${cause})`, 0);
    }
    if (res.status >= 500) {
      await res.arrayBuffer().catch(() => undefined);
      throw new S3ClientError(`the S3 server answered ${res.status} to ${method}`, res.status);
    }
    return res;
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
