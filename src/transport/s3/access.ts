/**
 * Who a byte-plane request comes from, and whether it may do what it asks. A request
 * carries a bearer token, an AWS Signature V4 (header or presigned query) made with a
 * token's access key, a GetObjectUrl link's signature — or nothing, which reaches a
 * bucket only when its policy lets anyone in (bucket-policy.ts in domain).
 *
 * Each operation is one S3 action (`s3:GetObject`, `s3:ListBucket`, …) and needs a role; it
 * is refused when the bucket's policy denies the action to the caller (a matching Deny wins),
 * and otherwise let through when the caller's token grants the role or the policy allows the
 * action. An admin may always read, replace and delete the policy itself.
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { allows, type Caller, type Role } from "../../domain/auth";
import { policyDecision, POLICY_OWN_ACTIONS, resourceArn, type PolicyAction } from "../../domain/bucket-policy";
import type { BucketRow } from "../../domain/bucket";
import type { Scope } from "../../domain/job";
import { presignedPayload } from "../../service/presign";
import type { Repository } from "../../storage/repository";
import type { SecretBox } from "../../storage/secrets";
import { S3Error } from "../../s3/errors";
import { isSigV4, readClaim, refuseSigV2, verifySigV4, type SigV4Claim } from "../../s3/sigv4";
import type { Authenticator } from "../auth";
import { headersOf } from "../rest";
import type { S3Request } from "./protocol";

export interface AccessDeps {
  repo: Repository;
  auth: Authenticator;
  secrets: SecretBox;
  now: () => number;
}

/** Why `caller` may not run `action` (needing `role`) on the bucket `row` (or object `key` of it); undefined when it may. */
export function accessError(caller: Caller, bucket: string, row: BucketRow | undefined, role: Role, action: PolicyAction, key?: string): S3Error | undefined {
  const decision = policyDecision(row?.policy, caller.tokenId, action, bucket, key);
  if (decision?.effect === "deny" && !(POLICY_OWN_ACTIONS.includes(action) && allows(caller, bucket, "admin"))) {
    return new S3Error("AccessDenied", 403, `Access Denied: ${decision.reason}`);
  }
  if (allows(caller, bucket, role) || decision?.effect === "allow") return undefined;
  if (caller.grants.length === 0) {
    return new S3Error("AccessDenied", 403, `Access Denied: the policy of bucket "${bucket}" does not let anyone ${action} ${resourceArn(bucket, key)}; send a bearer token or sign the request (AWS Signature V4)`);
  }
  return new S3Error("AccessDenied", 403, `Access Denied: this key has no ${role} grant for bucket "${bucket}"${row?.policy ? `, and the bucket's policy does not allow it ${action}` : ""}`);
}

export function createAccess(deps: AccessDeps) {
  const { repo } = deps;

  /** A request without credentials: anyone, in the one organization whose bucket of that name lets anyone in. */
  async function anonymous(r: S3Request, why: string): Promise<Caller> {
    const orgs = r.bucket ? await repo.buckets.bucketPublicOrgs(r.bucket) : [];
    if (orgs.length === 1) return { org: orgs[0], tokenId: "", grants: [] };
    if (orgs.length > 1) throw new S3Error("AccessDenied", 403, `Access Denied: buckets named "${r.bucket}" are public in ${orgs.length} organizations; sign the request or send a bearer token so that the organization is known`);
    throw new S3Error("AccessDenied", 403, `Access Denied: ${why}`);
  }

  return {
    /** The caller of a request and, when it was signed with SigV4, the signature's claim. */
    async authenticate(req: IncomingMessage, r: S3Request): Promise<{ caller: Caller; claim?: SigV4Claim }> {
      if (r.query.has("X-K3-Signature")) {
        // A URL from GetObjectUrl: it lets its holder GET (or HEAD) one object until it expires.
        const org = r.query.get("X-K3-Org") ?? "";
        const expires = Number(r.query.get("X-K3-Expires"));
        const tokenId = r.query.get("X-K3-Token") ?? "";
        const given = Buffer.from(r.query.get("X-K3-Signature") ?? "", "hex");
        const expected = Buffer.from(deps.secrets.mac(presignedPayload(org, r.bucket, r.key, expires, tokenId)), "hex");
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new S3Error("SignatureDoesNotMatch", 403, "The request signature we calculated does not match the signature you provided.");
        if (!Number.isFinite(expires) || expires * 1000 < deps.now()) throw new S3Error("AccessDenied", 403, "Request has expired");
        if (r.method !== "GET" && r.method !== "HEAD") throw new S3Error("AccessDenied", 403, "a presigned URL only reads its object");
        if (tokenId) {
          // The link lives no longer than the token that made it, and answers to policies naming it.
          const token = await repo.tokens.tokenFindById(tokenId);
          if (!token || token.org !== org || token.revokedAt > 0) throw new S3Error("AccessDenied", 403, `Access Denied: the token that made this URL (${tokenId}) was revoked`);
          if (token.expiresAt > 0 && token.expiresAt <= deps.now()) throw new S3Error("AccessDenied", 403, `Access Denied: the token that made this URL (${tokenId}) has expired`);
        }
        return { caller: { org, tokenId, grants: [{ bucket: r.bucket, role: "reader" }] } };
      }
      refuseSigV2(req.headers, r.query);
      if (isSigV4(req.headers, r.rawQuery)) {
        const claim = readClaim(req.headers, r.query);
        const token = await repo.tokens.tokenFindByAccessKey(claim.accessKeyId);
        if (!token?.secretSealed) throw new S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.");
        if (token.revokedAt > 0) throw new S3Error("InvalidAccessKeyId", 403, "this access key was revoked");
        if (token.expiresAt > 0 && token.expiresAt <= deps.now()) throw new S3Error("ExpiredToken", 400, "this access key has expired");
        verifySigV4(claim, { method: r.method, path: r.path, rawQuery: r.rawQuery, headers: req.headers }, deps.secrets.open(token.secretSealed), deps.now());
        return { caller: { org: token.org, tokenId: token.tokenId, grants: token.grants }, claim };
      }
      try {
        return { caller: await deps.auth.authenticate(headersOf(req)) };
      } catch (err) {
        if (req.headers.authorization) throw new S3Error("AccessDenied", 403, `Access Denied: ${(err as Error).message}`);
        return { caller: await anonymous(r, "send a bearer token or sign the request (AWS Signature V4)") };
      }
    },

    /** Throws AccessDenied unless `caller` may run `action` (needing `role`) on the bucket of `scope` (or its object `key`). */
    async permit(caller: Caller, scope: Scope, role: Role, action: PolicyAction, key?: string): Promise<void> {
      const row = scope.bucket ? await repo.buckets.bucketRowGet(scope) : undefined;
      const refused = accessError(caller, scope.bucket || "*", row, role, action, key);
      if (refused) throw refused;
    },
  };
}
