/**
 * Who may do what. A bearer token belongs to one organization and carries grants: a
 * bucket (or "*") and a role. Roles nest: reader (Get/List) < writer (also Trigger,
 * Cancel and rule/pipeline writes) < admin (also token management).
 */
import { createHash, randomBytes } from "node:crypto";
import { InvalidArgument } from "./errors";

/** A role, weakest first. */
export type Role = "reader" | "writer" | "admin";
export const ROLES: readonly Role[] = ["reader", "writer", "admin"];

/** Access to one bucket (or every bucket: "*") with a role. */
export interface Grant {
  bucket: string;
  role: Role;
}

/** The authenticated caller of one request. */
export interface Caller {
  org: string;
  /** The token's public id; empty when auth is off. */
  tokenId: string;
  grants: readonly Grant[];
}

/** A token as stored: only the hash of its secret is kept. */
export interface StoredToken {
  tokenId: string;
  org: string;
  secretHash: Buffer;
  name: string;
  grants: Grant[];
  createdAt: number;
  /** 0: never. */
  expiresAt: number;
  /** 0: not revoked. */
  revokedAt: number;
  /** The S3 access key id of the token, when it has one (SigV4 on the byte plane). */
  accessKeyId?: string;
  /** Its secret access key, sealed (see storage/secrets.ts). */
  secretSealed?: Buffer;
}

/** The organization of objects and rows when auth is off, and of the first admin token. */
export const DEFAULT_ORG = "default";

const ORG = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Checks an organization name: 1-63 lower-case letters, digits and hyphens. */
export function checkOrg(org: string, field = "org"): void {
  if (!ORG.test(org)) {
    throw new InvalidArgument(`${field} ${JSON.stringify(org)} must be 1-63 lower-case letters, digits and hyphens`, field);
  }
}

/** Checks a role name. */
export function checkRole(role: string, field = "role"): asserts role is Role {
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new InvalidArgument(`${field} ${JSON.stringify(role)} must be one of ${ROLES.join(", ")}`, field);
  }
}

/** True when one of the caller's grants covers the bucket with at least the role. */
export function allows(caller: Caller, bucket: string, needed: Role): boolean {
  const rank = ROLES.indexOf(needed);
  return caller.grants.some((g) => (g.bucket === "*" || g.bucket === bucket) && ROLES.indexOf(g.role) >= rank);
}

/** The buckets a caller may list: undefined when a grant covers every bucket ("*"). */
export function visibleBuckets(caller: Caller): string[] | undefined {
  return caller.grants.some((g) => g.bucket === "*") ? undefined : caller.grants.map((g) => g.bucket);
}

/** Recognisable prefix of our bearer tokens (helps secret scanners and humans). */
export const TOKEN_PREFIX = "k3t_";

/** SHA-256 of a token: what the database stores and looks tokens up by. */
export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/** A new random token (256 bits) with its public id and hash; the token is shown once. */
export function newToken(): { token: string; tokenId: string; secretHash: Buffer } {
  const token = TOKEN_PREFIX + randomBytes(32).toString("base64url");
  return { token, tokenId: `tok_${randomBytes(8).toString("hex")}`, secretHash: hashToken(token) };
}

/** Parses a duration like "30d", "12h", "15m", "90s" into milliseconds. */
export function parseDuration(text: string, field = "expires"): number {
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  if (!m) throw new InvalidArgument(`${field} ${JSON.stringify(text)} must look like 30d, 12h, 15m or 90s`, field);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

/** A new S3 access key pair: an id (`K3AK` + 16 upper-case characters) and a 40-character secret. */
export function newAccessKey(): { accessKeyId: string; secret: string } {
  const id = randomBytes(10).toString("hex").toUpperCase().slice(0, 16);
  return { accessKeyId: `K3AK${id}`, secret: randomBytes(30).toString("base64url") };
}
