/**
 * Cross-origin requests from web browsers. A bucket's CORS rules (S3's CORSConfiguration,
 * set with PutBucketCors on the byte plane or StorageService) say which web origins may
 * call its byte plane, with which methods and headers; the API's doors (REST, Connect,
 * gRPC-Web) follow one server-wide list of origins (K3_CORS_ORIGINS). Rules are checked
 * and matched here, as S3 evaluates them: the first rule whose origin, method and
 * requested headers all match answers.
 */
import { InvalidArgument } from "./errors";
import { quote } from "./validate";

/** One CORS rule of a bucket. */
export interface CorsRule {
  id: string;
  /** Origins, each with at most one `*` (`https://*.example.com`, or `*` for any). */
  allowedOrigins: string[];
  /** Of CORS_METHODS. */
  allowedMethods: string[];
  /** Request headers a preflight may ask for, each with at most one `*`. */
  allowedHeaders: string[];
  /** Response headers the browser lets the page read. */
  exposeHeaders: string[];
  /** How long a browser may keep a preflight's answer; absent = the browser's default. */
  maxAgeSeconds?: number;
}

/** Methods a CORS rule may allow (S3's list). */
export const CORS_METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD"] as const;
/** At most this many rules a bucket (S3's limit). */
export const MAX_CORS_RULES = 100;
/** A configuration's size limit (S3's: 64 KB). */
const MAX_CORS_BYTES = 64 * 1024;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** What the fields of a rule are called where they came from (the proto's or the S3 XML's names). */
export interface CorsFieldNames {
  rules: string;
  rule: (i: number) => string;
  id: string;
  allowedOrigins: string;
  allowedMethods: string;
  allowedHeaders: string;
  exposeHeaders: string;
  maxAgeSeconds: string;
}

export const PROTO_CORS_FIELDS: CorsFieldNames = {
  rules: "rules",
  rule: (i) => `rules[${i}]`,
  id: "id",
  allowedOrigins: "allowed_origins",
  allowedMethods: "allowed_methods",
  allowedHeaders: "allowed_headers",
  exposeHeaders: "expose_headers",
  maxAgeSeconds: "max_age_seconds",
};

const stars = (s: string) => s.split("*").length - 1;

/** Checks rules as given (proto or XML names in the errors); InvalidArgument naming the field, the value and what is accepted. */
export function checkCorsRules(rules: readonly CorsRule[], names: CorsFieldNames = PROTO_CORS_FIELDS): CorsRule[] {
  const bad = (field: string, message: string) => new InvalidArgument(`${field}: ${message}`, field);
  if (rules.length === 0) throw bad(names.rules, "no rule given; give at least one (delete the configuration to allow no origin)");
  if (rules.length > MAX_CORS_RULES) throw bad(names.rules, `${rules.length} rules; at most ${MAX_CORS_RULES}`);
  const size = Buffer.byteLength(JSON.stringify(rules));
  if (size > MAX_CORS_BYTES) throw bad(names.rules, `the rules take ${size} bytes; at most ${MAX_CORS_BYTES}`);
  return rules.map((r, i) => {
    const at = (field: string) => `${names.rule(i)}.${field}`;
    if (r.id.length > 255) throw bad(at(names.id), `${quote(r.id)} is ${r.id.length} characters; at most 255`);
    if (r.allowedOrigins.length === 0) throw bad(at(names.allowedOrigins), `none given; give at least one origin, such as "https://app.example.com", "https://*.example.com" or "*"`);
    for (const o of r.allowedOrigins) {
      if (o === "" || o.length > 1024 || /\s/.test(o)) throw bad(at(names.allowedOrigins), `${quote(o)} is not an origin; give one such as "https://app.example.com" (no spaces, at most 1,024 characters)`);
      if (stars(o) > 1) throw bad(at(names.allowedOrigins), `${quote(o)} has ${stars(o)} wildcards; at most one "*", such as "https://*.example.com"`);
    }
    if (r.allowedMethods.length === 0) throw bad(at(names.allowedMethods), `none given; give one or more of ${CORS_METHODS.join(", ")}`);
    for (const m of r.allowedMethods) {
      if (!(CORS_METHODS as readonly string[]).includes(m)) throw bad(at(names.allowedMethods), `${quote(m)} is not one of ${CORS_METHODS.join(", ")} (in capitals)`);
    }
    for (const h of r.allowedHeaders) {
      if (!HEADER_NAME.test(h) || stars(h) > 1) throw bad(at(names.allowedHeaders), `${quote(h)} is not a header name with at most one "*", such as "content-type", "x-amz-*" or "*"`);
    }
    for (const h of r.exposeHeaders) {
      if (!HEADER_NAME.test(h) || h.includes("*")) throw bad(at(names.exposeHeaders), `${quote(h)} is not a header name, such as "etag" (no wildcards)`);
    }
    const age = r.maxAgeSeconds;
    if (age !== undefined && (!Number.isSafeInteger(age) || age < 0 || age > 2 ** 31 - 1)) {
      throw bad(at(names.maxAgeSeconds), `${age} is not a number of seconds from 0 to ${2 ** 31 - 1}`);
    }
    return { id: r.id, allowedOrigins: [...r.allowedOrigins], allowedMethods: [...r.allowedMethods], allowedHeaders: [...r.allowedHeaders], exposeHeaders: [...r.exposeHeaders], ...(age !== undefined ? { maxAgeSeconds: age } : {}) };
  });
}

/**
 * Checks K3_CORS_ORIGINS' entries: `*`, or an origin (`scheme://host[:port]`, no path)
 * with at most one `*` (`https://*.example.com`). Throws naming the entry otherwise.
 */
export function checkCorsOrigins(entries: readonly string[], name = "K3_CORS_ORIGINS"): string[] {
  for (const e of entries) {
    const ok = e === "*" || (/^[a-z][a-z0-9+.-]*:\/\/[^/\s?#]+$/i.test(e) && e.split("*").length <= 2);
    if (!ok) throw new Error(`${name}: ${JSON.stringify(e)} is not an origin; give "*" or origins such as https://app.example.com, http://localhost:3000 or https://*.example.com (no path, at most one "*")`);
  }
  return [...entries];
}

/** `value` against a pattern with at most one `*`, ignoring case. */
export function wildcardMatch(pattern: string, value: string): boolean {
  const p = pattern.toLowerCase();
  const v = value.toLowerCase();
  const star = p.indexOf("*");
  if (star < 0) return p === v;
  const head = p.slice(0, star);
  const tail = p.slice(star + 1);
  return v.length >= head.length + tail.length && v.startsWith(head) && v.endsWith(tail);
}

/** A preflight's requested headers (`Access-Control-Request-Headers`), lower case. */
export function requestedHeaders(value: string | undefined): string[] {
  return (value ?? "").split(",").map((h) => h.trim().toLowerCase()).filter((h) => h !== "");
}

/** The first rule allowing `origin` to use `method` with `headers` (a preflight's requested ones; none for an actual request). */
export function matchCorsRule(rules: readonly CorsRule[], origin: string, method: string, headers: readonly string[] = []): { rule: CorsRule; anyOrigin: boolean } | undefined {
  for (const rule of rules) {
    const pattern = rule.allowedOrigins.find((o) => wildcardMatch(o, origin));
    if (pattern === undefined || !rule.allowedMethods.includes(method)) continue;
    if (!headers.every((h) => rule.allowedHeaders.some((a) => wildcardMatch(a, h)))) continue;
    return { rule, anyOrigin: pattern === "*" };
  }
  return undefined;
}

/** Headers that vary a CORS answer (caches must key on them). */
export const CORS_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

/**
 * The headers S3 answers a matching request with: the origin (or `*` for a rule of any
 * origin), its methods, what the page may read, and for a preflight the headers it may
 * send and how long to keep the answer.
 */
export function corsHeaders(match: { rule: CorsRule; anyOrigin: boolean }, origin: string, preflight?: { headers: readonly string[] }): Record<string, string> {
  const { rule } = match;
  const out: Record<string, string> = {
    "access-control-allow-origin": match.anyOrigin ? "*" : origin,
    "access-control-allow-methods": rule.allowedMethods.join(", "),
    vary: CORS_VARY,
  };
  if (!match.anyOrigin) out["access-control-allow-credentials"] = "true";
  if (rule.exposeHeaders.length) out["access-control-expose-headers"] = rule.exposeHeaders.join(", ");
  if (preflight) {
    if (preflight.headers.length) out["access-control-allow-headers"] = preflight.headers.join(", ");
    if (rule.maxAgeSeconds !== undefined) out["access-control-max-age"] = String(rule.maxAgeSeconds);
  }
  return out;
}
