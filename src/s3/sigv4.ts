/**
 * AWS Signature Version 4 as S3 checks it, in the Authorization header or in a presigned
 * query string: the canonical request (method, URI-encoded path, sorted query, signed
 * headers, payload hash), the string to sign, and the HMAC chain of the secret over date,
 * region and service. Clock skew is limited to 15 minutes, and a presigned URL to its
 * X-Amz-Expires (at most 7 days), as S3 does. The signature is compared in constant time.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { uriEncode } from "../domain/uri";
import { S3Error } from "./errors";

/** What a signed request claims, read before its key is looked up. */
export interface SigV4Claim {
  accessKeyId: string;
  /** yyyymmdd of the credential scope. */
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
  /** yyyymmddThhmmssZ. */
  amzDate: string;
  /** The x-amz-content-sha256 the client sent, or UNSIGNED-PAYLOAD for a presigned URL. */
  payloadHash: string;
  /** Seconds a presigned URL stays valid; undefined for header auth. */
  expires?: number;
  /** The derived signing key, set once the signature has been verified (aws-chunked bodies chain from it). */
  signingKey?: Buffer;
}

const MAX_SKEW_MS = 15 * 60 * 1000;
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/** True when the request carries a SigV4 signature (header, or query of `url`); cheap enough for every request. */
export function isSigV4(headers: IncomingHttpHeaders, url: string): boolean {
  return String(headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256") || url.includes("X-Amz-Signature=");
}

/**
 * Refuses a request signed with the legacy Signature Version 2 (a presigned URL with
 * AWSAccessKeyId and Signature, or `Authorization: AWS key:signature`), as S3 refuses it
 * for buckets made since 2020 — saying how to sign with V4, which the AWS CLI v1 and
 * boto3 do not by default when they presign.
 */
export function refuseSigV2(headers: IncomingHttpHeaders, query: URLSearchParams): void {
  if ((query.has("AWSAccessKeyId") && query.has("Signature")) || /^AWS [^\s:]+:/.test(String(headers.authorization ?? ""))) {
    throw new S3Error(
      "InvalidRequest",
      400,
      'The authorization mechanism you have provided (Signature Version 2) is not supported. Please use AWS4-HMAC-SHA256: with the AWS CLI, `aws configure set default.s3.signature_version s3v4`; with boto3, Config(signature_version="s3v4")',
    );
  }
}

function parseCredential(credential: string): Pick<SigV4Claim, "accessKeyId" | "date" | "region" | "service"> {
  const parts = credential.split("/");
  if (parts.length !== 5 || parts[4] !== "aws4_request" || !/^\d{8}$/.test(parts[1])) {
    throw new S3Error("AuthorizationHeaderMalformed", 400, `the credential ${JSON.stringify(credential)} is not <key>/<yyyymmdd>/<region>/<service>/aws4_request`);
  }
  return { accessKeyId: parts[0], date: parts[1], region: parts[2], service: parts[3] };
}

/** Reads the signature a request claims; throws S3Error when it is malformed. */
export function readClaim(headers: IncomingHttpHeaders, query: URLSearchParams): SigV4Claim {
  const auth = String(headers.authorization ?? "");
  if (auth.startsWith("AWS4-HMAC-SHA256")) {
    const fields = Object.fromEntries(
      auth
        .slice("AWS4-HMAC-SHA256".length)
        .split(",")
        .map((p) => p.trim().split("=", 2) as [string, string]),
    );
    if (!fields.Credential || !fields.SignedHeaders || !fields.Signature) {
      throw new S3Error("AuthorizationHeaderMalformed", 400, "the Authorization header needs Credential, SignedHeaders and Signature");
    }
    const amzDate = String(headers["x-amz-date"] ?? "");
    const payloadHash = String(headers["x-amz-content-sha256"] ?? "");
    if (!/^\d{8}T\d{6}Z$/.test(amzDate)) throw new S3Error("AccessDenied", 403, "x-amz-date is missing or not yyyymmddThhmmssZ");
    if (!payloadHash) throw new S3Error("InvalidRequest", 400, "x-amz-content-sha256 is required with AWS4-HMAC-SHA256");
    return { ...parseCredential(fields.Credential), signedHeaders: fields.SignedHeaders.split(";"), signature: fields.Signature, amzDate, payloadHash };
  }
  if (query.get("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256") {
    throw new S3Error("AuthorizationQueryParametersError", 400, "X-Amz-Algorithm must be AWS4-HMAC-SHA256");
  }
  const amzDate = query.get("X-Amz-Date") ?? "";
  const expires = Number(query.get("X-Amz-Expires") ?? "");
  if (!/^\d{8}T\d{6}Z$/.test(amzDate)) throw new S3Error("AuthorizationQueryParametersError", 400, "X-Amz-Date must be yyyymmddThhmmssZ");
  if (!Number.isInteger(expires) || expires < 1 || expires > MAX_PRESIGN_SECONDS) {
    throw new S3Error("AuthorizationQueryParametersError", 400, `X-Amz-Expires must be from 1 to ${MAX_PRESIGN_SECONDS} seconds`);
  }
  return {
    ...parseCredential(query.get("X-Amz-Credential") ?? ""),
    signedHeaders: (query.get("X-Amz-SignedHeaders") ?? "").split(";"),
    signature: query.get("X-Amz-Signature") ?? "",
    amzDate,
    payloadHash: "UNSIGNED-PAYLOAD",
    expires,
  };
}

function amzDateMs(amzDate: string): number {
  return Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
}

const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data, "utf8").digest();

/** The canonical query string: every parameter (but a presigned URL's signature) encoded and sorted. */
function canonicalQuery(rawQuery: string, presigned: boolean): string {
  return rawQuery
    .split("&")
    .filter((p) => p !== "")
    .map((p) => {
      const i = p.indexOf("=");
      return [decodeURIComponent(i < 0 ? p : p.slice(0, i)), i < 0 ? "" : decodeURIComponent(p.slice(i + 1))] as [string, string];
    })
    .filter(([k]) => !presigned || k !== "X-Amz-Signature")
    .map(([k, v]) => [uriEncode(k, false), uriEncode(v, false)] as [string, string])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

/** The SigV4 signature of a request under `secret`, for the claim's scope, date and signed headers. */
function signature(claim: Omit<SigV4Claim, "signature" | "accessKeyId">, req: { method: string; path: string; rawQuery: string; headers: IncomingHttpHeaders }, secret: string): Buffer {
  const headerLines = claim.signedHeaders.map((name) => {
    const raw = req.headers[name];
    const value = Array.isArray(raw) ? raw.join(",") : (raw ?? "");
    return `${name}:${String(value).trim().replace(/\s+/g, " ")}\n`;
  });
  const canonical = [req.method, uriEncode(req.path, true), canonicalQuery(req.rawQuery, claim.expires !== undefined), headerLines.join(""), claim.signedHeaders.join(";"), claim.payloadHash].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", claim.amzDate, credentialScope(claim), createHash("sha256").update(canonical, "utf8").digest("hex")].join("\n");
  return createHmac("sha256", signingKey(claim, secret)).update(toSign, "utf8").digest();
}

/** `<yyyymmdd>/<region>/<service>/aws4_request`. */
export const credentialScope = (c: Pick<SigV4Claim, "date" | "region" | "service">) => `${c.date}/${c.region}/${c.service}/aws4_request`;

/** The HMAC chain of the secret over date, region and service. */
const signingKey = (c: Pick<SigV4Claim, "date" | "region" | "service">, secret: string) =>
  hmac(hmac(hmac(hmac(`AWS4${secret}`, c.date), c.region), c.service), "aws4_request");

/**
 * Signs an outgoing request (the gateway re-signing upstream): returns the headers to add
 * (x-amz-date, x-amz-content-sha256, authorization). `headers` must hold host and any other
 * header to sign, lower-cased.
 */
export function signRequest(
  req: { method: string; path: string; rawQuery: string; headers: Record<string, string> },
  creds: { accessKeyId: string; secretAccessKey: string; region: string },
  payloadHash: string,
  now = Date.now(),
): Record<string, string> {
  const amzDate = new Date(now).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const headers = { ...req.headers, "x-amz-date": amzDate, "x-amz-content-sha256": payloadHash };
  const signedHeaders = Object.keys(headers).sort();
  const claim = { date: amzDate.slice(0, 8), region: creds.region, service: "s3", signedHeaders, amzDate, payloadHash };
  const sig = signature(claim, { ...req, headers }, creds.secretAccessKey).toString("hex");
  return {
    "x-amz-date": amzDate,
    "x-amz-content-sha256": payloadHash,
    authorization: `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${claim.date}/${creds.region}/s3/aws4_request, SignedHeaders=${signedHeaders.join(";")}, Signature=${sig}`,
  };
}

/**
 * Checks the claim against the secret: throws SignatureDoesNotMatch, RequestTimeTooSkewed
 * or an expired-request AccessDenied as S3 would, and sets the claim's signing key. `path`
 * is the decoded path, `rawQuery` the query string as sent.
 */
export function verifySigV4(claim: SigV4Claim, req: { method: string; path: string; rawQuery: string; headers: IncomingHttpHeaders }, secret: string, now = Date.now()): void {
  const signedAt = amzDateMs(claim.amzDate);
  if (claim.expires !== undefined) {
    if (now > signedAt + claim.expires * 1000) throw new S3Error("AccessDenied", 403, "Request has expired");
    if (signedAt - now > MAX_SKEW_MS) throw new S3Error("RequestTimeTooSkewed", 403, "the request was signed too far in the future");
  } else if (Math.abs(now - signedAt) > MAX_SKEW_MS) {
    throw new S3Error("RequestTimeTooSkewed", 403, "the difference between the request time and the server's time is too large (15 minutes at most)");
  }
  if (claim.date !== claim.amzDate.slice(0, 8)) throw new S3Error("SignatureDoesNotMatch", 403, "the credential date is not the date of the request");
  const expected = signature(claim, req, secret);
  const given = Buffer.from(claim.signature, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new S3Error("SignatureDoesNotMatch", 403, "The request signature we calculated does not match the signature you provided. Check your key and signing method.");
  }
  claim.signingKey = signingKey(claim, secret);
}
