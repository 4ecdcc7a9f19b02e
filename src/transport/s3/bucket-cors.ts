/**
 * CORS on the byte plane, as S3 answers it: a bucket's CORSConfiguration (GET, PUT and
 * DELETE `/{bucket}?cors`), a browser's preflight (OPTIONS, which carries no credentials:
 * answered from the rules of the buckets of that name), and the headers an allowed
 * origin's actual request is answered with, errors included, so the page can read them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { checkCorsRules, CORS_VARY, corsHeaders, matchCorsRule, requestedHeaders, type CorsFieldNames, type CorsRule } from "../../domain/cors";
import { InvalidArgument } from "../../domain/errors";
import type { Scope } from "../../domain/job";
import { quote } from "../../domain/validate";
import { S3Error, xmlEscape, xmlUnescape } from "../../s3/errors";
import type { Repository } from "../../storage/repository";
import { send, sendXml, XMLNS, type S3Request } from "./protocol";

/** The S3 XML's names of a rule's fields, for errors. */
const XML_FIELDS: CorsFieldNames = {
  rules: "CORSConfiguration",
  rule: (i) => `CORSRule[${i}]`,
  id: "ID",
  allowedOrigins: "AllowedOrigin",
  allowedMethods: "AllowedMethod",
  allowedHeaders: "AllowedHeader",
  exposeHeaders: "ExposeHeader",
  maxAgeSeconds: "MaxAgeSeconds",
};

/** A bucket's rules as GetBucketCors answers them. */
export function corsXml(rules: readonly CorsRule[]): string {
  const el = (name: string, values: readonly string[]) => values.map((v) => `<${name}>${xmlEscape(v)}</${name}>`).join("");
  const body = rules.map(
    (r) =>
      `<CORSRule>${r.id ? el("ID", [r.id]) : ""}${el("AllowedHeader", r.allowedHeaders)}${el("AllowedMethod", r.allowedMethods)}${el("AllowedOrigin", r.allowedOrigins)}` +
      `${el("ExposeHeader", r.exposeHeaders)}${r.maxAgeSeconds !== undefined ? el("MaxAgeSeconds", [String(r.maxAgeSeconds)]) : ""}</CORSRule>`,
  );
  return `<CORSConfiguration xmlns="${XMLNS}">${body.join("")}</CORSConfiguration>`;
}

/** A PutBucketCors body, checked: MalformedXML when it is not a CORSConfiguration, InvalidRequest naming the element otherwise. */
export function parseCorsXml(xml: string): CorsRule[] {
  if (!/<CORSConfiguration[\s>]/.test(xml) || !/<\/CORSConfiguration>/.test(xml)) {
    throw new S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema (a CORSConfiguration of 1 to 100 CORSRule elements)");
  }
  const all = (block: string, name: string) => [...block.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, "g"))].map((m) => xmlUnescape(m[1]).trim());
  const rules = [...xml.matchAll(/<CORSRule>([\s\S]*?)<\/CORSRule>/g)].map((m, i): CorsRule => {
    const age = all(m[1], "MaxAgeSeconds")[0];
    if (age !== undefined && !/^\d{1,10}$/.test(age)) throw new S3Error("InvalidRequest", 400, `CORSRule[${i}].MaxAgeSeconds: ${quote(age)} is not a number of seconds`);
    return {
      id: all(m[1], "ID")[0] ?? "",
      allowedOrigins: all(m[1], "AllowedOrigin"),
      allowedMethods: all(m[1], "AllowedMethod"),
      allowedHeaders: all(m[1], "AllowedHeader"),
      exposeHeaders: all(m[1], "ExposeHeader"),
      ...(age !== undefined ? { maxAgeSeconds: Number(age) } : {}),
    };
  });
  try {
    return checkCorsRules(rules, XML_FIELDS);
  } catch (err) {
    if (err instanceof InvalidArgument) throw new S3Error("InvalidRequest", 400, err.message);
    throw err;
  }
}

/** What the calls on a bucket's settings (?cors, ?policy) need of the byte plane. */
export interface BucketCallIo {
  repo: Repository;
  readBody(): Promise<string>;
  now(): number;
}

/** GetBucketCors, PutBucketCors and DeleteBucketCors on an existing bucket (`row` is its own row). */
export async function bucketCorsCall(io: BucketCallIo, res: ServerResponse, scope: Scope, rules: readonly CorsRule[] | undefined, r: S3Request): Promise<void> {
  switch (r.method) {
    case "GET":
      if (!rules) throw new S3Error("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist");
      sendXml(res, corsXml(rules), r);
      return;
    case "PUT":
      await io.repo.buckets.bucketCorsSet(scope, parseCorsXml(await io.readBody()), io.now());
      send(res, 200, { "x-amz-request-id": r.requestId });
      return;
    case "DELETE":
      await io.repo.buckets.bucketCorsSet(scope, undefined, io.now());
      send(res, 204, { "x-amz-request-id": r.requestId });
      return;
    default:
      throw new S3Error("MethodNotAllowed", 405, `${r.method} is not allowed on ?cors (GET, PUT and DELETE are)`);
  }
}

/** Answers a browser's preflight from the rules of the buckets named: 200 with what is allowed, or 403 saying what was asked. */
export async function answerPreflight(repo: Repository, req: IncomingMessage, res: ServerResponse, r: S3Request): Promise<void> {
  const origin = req.headers.origin;
  const method = req.headers["access-control-request-method"];
  if (!origin) throw new S3Error("BadRequest", 400, "Insufficient information. Origin request header needed.");
  if (!method) throw new S3Error("BadRequest", 400, "Invalid Access-Control-Request-Method: null (a preflight names the method it asks for)");
  const rules = r.bucket === "" ? [] : await repo.buckets.bucketCorsByName(r.bucket);
  if (rules.length === 0) throw new S3Error("AccessForbidden", 403, `CORSResponse: CORS is not enabled for bucket ${quote(r.bucket)} (set its rules with PUT /${r.bucket}?cors or PutBucketCors)`);
  const headers = requestedHeaders(req.headers["access-control-request-headers"]);
  const match = matchCorsRule(rules, origin, method, headers);
  if (!match) {
    const asked = headers.length ? ` with headers ${headers.join(", ")}` : "";
    throw new S3Error("AccessForbidden", 403, `CORSResponse: This CORS request is not allowed: no CORS rule of bucket ${quote(r.bucket)} lets origin ${quote(origin)} ${method}${asked}`);
  }
  send(res, 200, { ...corsHeaders(match, origin, { headers }), "x-amz-request-id": r.requestId });
}

/**
 * Sets the CORS headers of an actual request on `res` when a rule allows its origin and
 * method. A bucket with rules answers `Vary` even without Origin, so that a shared cache
 * keeps a browser's answer apart from a plain client's.
 */
export function allowOrigin(req: IncomingMessage, res: ServerResponse, rules: readonly CorsRule[] | undefined): void {
  const origin = req.headers.origin;
  if (!rules?.length || res.headersSent) return;
  res.setHeader("vary", CORS_VARY);
  if (!origin) return;
  const match = matchCorsRule(rules, origin, req.method ?? "GET");
  if (match) for (const [name, value] of Object.entries(corsHeaders(match, origin))) res.setHeader(name, value);
}
