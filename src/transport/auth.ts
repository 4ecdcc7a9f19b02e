/**
 * Authentication and authorization, written once as functions of the request headers so
 * that native gRPC, Connect and REST behave the same (services.ts calls them for every
 * door). A token is looked up by its SHA-256 hash; found tokens are cached briefly, and
 * the cache is cleared whenever any instance revokes a token (NOTIFY), so a revoked token
 * stops working at once. Tokens are never logged.
 */
import { timingSafeEqual } from "node:crypto";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { DescMethod } from "@bufbuild/protobuf";
import { allows, DEFAULT_ORG, hashToken, TOKEN_PREFIX, type Caller, type Role, type StoredToken } from "../domain/auth";
import { PermissionDenied, Unauthenticated } from "../domain/errors";
import type { Repository } from "../storage/repository";

/** Identifies the caller of a request from its headers. */
export interface Authenticator {
  authenticate(headers: Headers): Promise<Caller>;
  /** Forgets cached tokens (after a revoke elsewhere). */
  invalidate(): void;
}

/** Methods that administer buckets themselves (and their CORS rules and policy): they need the admin role. */
const ADMIN_METHODS = new Set(["CreateBucket", "UpdateBucket", "DeleteBucket", "PutBucketCors", "DeleteBucketCors", "SetBucketPolicy", "DeleteBucketPolicy"].map((m) => `dodil.k3.storage.v1.StorageService.${m}`));

/**
 * The role a method needs: read-only methods (NO_SIDE_EFFECTS) need reader; changes to
 * buckets themselves (create, update, delete, CORS rules, policy) need admin; every other change writer.
 */
export function requiredRole(method: DescMethod): Role {
  if (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) return "reader";
  return ADMIN_METHODS.has(`${method.parent.typeName}.${method.name}`) ? "admin" : "writer";
}

/** Throws PermissionDenied when the request names an organization other than the caller's. */
export function checkOrganization(caller: Caller, headers: Headers): void {
  const claimed = headers.get("x-organization-id");
  if (claimed !== null && claimed !== caller.org) {
    throw new PermissionDenied(`x-organization-id ${JSON.stringify(claimed)} is not the organization of this token`);
  }
}

/** Throws PermissionDenied unless the caller may use `method` on `bucket`, or sent another org. */
export function authorize(caller: Caller, headers: Headers, bucket: string, method: DescMethod): void {
  checkOrganization(caller, headers);
  const role = requiredRole(method);
  if (!allows(caller, bucket, role)) {
    throw new PermissionDenied(`this token has no ${role} grant for bucket ${JSON.stringify(bucket)} (${method.name} needs ${role})`);
  }
}

/** With auth off (K3_AUTH=off): every caller is an admin of the default organization. */
export function createOpenAuthenticator(): Authenticator {
  const caller: Caller = { org: DEFAULT_ORG, tokenId: "", grants: [{ bucket: "*", role: "admin" }] };
  return { authenticate: async () => caller, invalidate: () => undefined };
}

const CACHE_TTL_MS = 30_000;
const CACHE_MAX = 10_000;

/** Reads the bearer token of the Authorization header, or throws Unauthenticated. */
export function bearerToken(headers: Headers): string {
  const header = headers.get("authorization");
  if (header === null || header.trim() === "") {
    throw new Unauthenticated('missing Authorization header; send "Authorization: Bearer <token>"');
  }
  const m = /^Bearer +([\x21-\x7e]+)$/i.exec(header.trim());
  if (!m) throw new Unauthenticated('malformed Authorization header; expected "Bearer <token>"');
  return m[1];
}

/**
 * Authenticates bearer tokens against the token table. The cache is keyed by the token as
 * presented, so a cached token costs no SHA-256 (2 % of a TriggerIngest's server time);
 * the hash and its constant-time check run when the token is looked up.
 */
export function createTokenAuthenticator(repo: Repository, now: () => number = Date.now): Authenticator {
  const cache = new Map<string, { token: StoredToken | undefined; at: number }>();
  async function lookup(presented: string): Promise<StoredToken | undefined> {
    const hit = cache.get(presented);
    if (hit && now() - hit.at < CACHE_TTL_MS) return hit.token;
    const hash = hashToken(presented);
    const found = presented.startsWith(TOKEN_PREFIX) ? await repo.tokens.tokenFindByHash(hash) : undefined;
    // The lookup is by hash; the constant-time compare guards against any index quirk.
    const token = found && timingSafeEqual(found.secretHash, hash) ? found : undefined;
    if (cache.size >= CACHE_MAX) cache.clear();
    // Unknown tokens are cached too, so guessing cannot turn into database load.
    cache.set(presented, { token, at: now() });
    return token;
  }
  return {
    invalidate: () => cache.clear(),
    async authenticate(headers) {
      const token = await lookup(bearerToken(headers));
      if (!token) throw new Unauthenticated("unknown token");
      if (token.revokedAt > 0) throw new Unauthenticated("this token was revoked");
      if (token.expiresAt > 0 && token.expiresAt <= now()) throw new Unauthenticated("this token has expired");
      return { org: token.org, tokenId: token.tokenId, grants: token.grants };
    },
  };
}
