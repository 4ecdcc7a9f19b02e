/**
 * StorageService: the buckets of an organization, written once as a Connect ServiceImpl
 * and served by every door. Buckets known only from earlier versions are adopted when
 * first asked for (see buckets.ts).
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  BucketAccessMode,
  StorageService,
  type UpdateBucketRequest,
} from "../../gen/dodil/k3/storage/v1/storage_pb";
import { allows, visibleBuckets, type Caller } from "../domain/auth";
import type { BucketFields } from "../domain/bucket";
import type { Scope } from "../domain/job";
import { parseBucketPolicy, policyDecision, type BucketPolicy, type PolicyAction } from "../domain/bucket-policy";
import { checkCorsRules } from "../domain/cors";
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied } from "../domain/errors";
import { checkBucket, checkLength, checkObjectKey, MAX_TEXT, quote } from "../domain/validate";
import { callerKey, scopeOf } from "./caller";
import { bucketToProto, int64ToNumber, objectInfoToProto, storagePagination } from "./convert";
import { continuationToken, listObjectPage, MAX_KEYS } from "./object-listing";
import { presignedPayload } from "./presign";
import { uriEncode } from "../domain/uri";
import type { ServiceDeps } from "./deps";
import { createBuckets } from "./buckets";
import { servePage } from "./paging";

function accessModeOf(mode: BucketAccessMode | undefined): BucketFields["accessMode"] {
  if (mode === undefined || mode === BucketAccessMode.UNSPECIFIED || mode === BucketAccessMode.PRIVATE) return "private";
  throw new InvalidArgument(`access_mode ${mode} is not a known BucketAccessMode (BUCKET_ACCESS_MODE_PRIVATE)`, "access_mode");
}

function quotaOf(value: bigint): number {
  const n = int64ToNumber(value, "storage_quota_bytes");
  if (n < 0) throw new InvalidArgument(`storage_quota_bytes ${n} must not be negative (0 means unlimited)`, "storage_quota_bytes");
  return n;
}

/** Builds the StorageService implementation over the given dependencies. */
export function createStorageService(deps: ServiceDeps): ServiceImpl<typeof StorageService> {
  const { repo, objects, now } = deps;

  const buckets = createBuckets(deps);
  const bucketOf = buckets.get;

  /**
   * Checks that the bucket exists (NotFound) and that its policy does not deny the caller
   * `action` on it or its object `key` (PermissionDenied): the object calls here honour a
   * policy's Deny as the byte plane does.
   */
  async function notDenied(ctx: HandlerContext, scope: Scope, action: PolicyAction, key?: string): Promise<void> {
    const row = await buckets.row(scope);
    const decision = policyDecision(row.policy, ctx.values.get(callerKey)?.tokenId ?? "", action, scope.bucket, key);
    if (decision?.effect === "deny") throw new PermissionDenied(decision.reason);
  }

  /** Adopts every bucket of the caller's org known only by its config or its folder. */
  async function adoptAll(org: string, caller: Caller): Promise<void> {
    for (const name of await repo.buckets.bucketNamesWithoutRow(org)) {
      if (allows(caller, name, "reader")) await bucketOf({ org, bucket: name }).catch(() => undefined);
    }
  }

  return {
    async createBucket(req, ctx) {
      checkBucket(req.name, "name");
      const scope = scopeOf(ctx, req.name);
      checkLength(req.description, MAX_TEXT, "description");
      const fields: BucketFields = { description: req.description, storageQuotaBytes: quotaOf(req.storageQuotaBytes), accessMode: accessModeOf(req.accessMode) };
      return { bucket: bucketToProto(await buckets.create(scope, fields)) };
    },

    async getBucket(req, ctx) {
      return { bucket: bucketToProto(await bucketOf(scopeOf(ctx, req.name))) };
    },

    async listBuckets(req, ctx) {
      const caller = ctx.values.get(callerKey);
      if (!caller) throw new Error("request reached a service without an authenticated caller");
      checkLength(req.search, 200, "search");
      await adoptAll(caller.org, caller);
      // A token with grants on some buckets only sees those.
      const names = visibleBuckets(caller);
      const filter = { org: caller.org, search: req.search, names };
      const page = await servePage(req, { org: caller.org, search: req.search, names: names?.join(",") }, (p) => repo.buckets.bucketList(filter, { ...p, signal: ctx.signal }), (b) => b.name);
      return { buckets: page.items.map(bucketToProto), pagination: storagePagination(page.nextPageToken, page.total) };
    },

    async updateBucket(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      const patch = bucketPatch(req);
      if (patch.description !== undefined) checkLength(patch.description, MAX_TEXT, "description");
      const b = await repo.buckets.bucketUpdate(scope, patch, now());
      if (!b) throw new NotFound(`bucket ${quote(req.name)} not found`);
      return { bucket: bucketToProto(b) };
    },

    async listObjects(req, ctx) {
      const scope = scopeOf(ctx, req.bucket);
      await notDenied(ctx, scope, "s3:ListBucket");
      if (req.maxKeys < 0) throw new InvalidArgument(`max_keys ${req.maxKeys} must not be negative`, "max_keys");
      checkLength(req.prefix, 1024, "prefix");
      checkLength(req.delimiter, 16, "delimiter");
      let after = "";
      if (req.continuationToken !== "") {
        after = continuationToken.decode(req.continuationToken);
        if (!after.startsWith(req.prefix)) throw new InvalidArgument(`continuation_token does not belong to prefix ${quote(req.prefix)}`, "continuation_token");
      }
      const page = await listObjectPage(repo, scope, { prefix: req.prefix, delimiter: req.delimiter, maxKeys: req.maxKeys === 0 ? MAX_KEYS : req.maxKeys, after });
      return {
        objects: page.objects.map((o) => objectInfoToProto(req.bucket, o, [])),
        commonPrefixes: page.prefixes,
        nextContinuationToken: page.truncated ? continuationToken.encode(page.resumeAfter) : "",
        isTruncated: page.truncated,
      };
    },

    async getObjectInfo(req, ctx) {
      const scope = scopeOf(ctx, req.bucket);
      checkObjectKey(req.key, "key");
      await notDenied(ctx, scope, "s3:GetObject", req.key);
      const o = await repo.catalog.objectGet(scope, req.key);
      if (!o) throw new NotFound(`object ${quote(req.key)} not found in bucket ${quote(req.bucket)}`);
      return { object: objectInfoToProto(req.bucket, o, await repo.catalog.objectIndexStatus(scope, req.key)) };
    },

    async deleteObject(req, ctx) {
      const scope = scopeOf(ctx, req.bucket);
      checkObjectKey(req.key, "key");
      await notDenied(ctx, scope, "s3:DeleteObject", req.key);
      if (!(await repo.catalog.objectDelete(scope, req.key, now(), objects))) throw new NotFound(`object ${quote(req.key)} not found in bucket ${quote(req.bucket)}`);
      return {};
    },

    async getObjectUrl(req, ctx) {
      const scope = scopeOf(ctx, req.bucket);
      checkObjectKey(req.key, "key");
      const seconds = int64ToNumber(req.expiresInSeconds, "expires_in_seconds");
      if (!deps.secrets || !deps.publicUrl) throw new Error("presigned URLs need the secret box and the public URL");
      await notDenied(ctx, scope, "s3:GetObject", req.key);
      if (!(await repo.catalog.objectGet(scope, req.key))) throw new NotFound(`object ${quote(req.key)} not found in bucket ${quote(req.bucket)}`);
      const expiresAt = now() + Math.min(seconds === 0 ? 3600 : seconds, 86_400) * 1000;
      const expires = Math.floor(expiresAt / 1000);
      const tokenId = ctx.values.get(callerKey)?.tokenId ?? "";
      const signature = deps.secrets.mac(presignedPayload(scope.org, req.bucket, req.key, expires, tokenId));
      const token = tokenId ? `&X-K3-Token=${encodeURIComponent(tokenId)}` : "";
      const url = `${deps.publicUrl()}/${req.bucket}/${uriEncode(req.key, true)}?X-K3-Org=${encodeURIComponent(scope.org)}&X-K3-Expires=${expires}${token}&X-K3-Signature=${signature}`;
      return { url, expiresAt: BigInt(expires * 1000) };
    },

    async deleteBucket(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      const res = await repo.buckets.bucketDelete(scope, req.force);
      if (res === "not_found") throw new NotFound(`bucket ${quote(req.name)} not found`);
      if (res !== "deleted") {
        throw new FailedPrecondition(`bucket ${quote(req.name)} holds ${res.objects} objects; delete them first, or pass force to delete them with it`);
      }
      await objects.removeBucket(scope);
      return {};
    },

    async putBucketCors(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      const rules = checkCorsRules(req.rules);
      if (!(await repo.buckets.bucketCorsSet(scope, rules, now()))) throw new NotFound(`bucket ${quote(req.name)} not found`);
      return { rules };
    },

    async getBucketCors(req, ctx) {
      const { cors } = await buckets.row(scopeOf(ctx, req.name));
      if (!cors) throw new NotFound(`bucket ${quote(req.name)} has no CORS configuration (set one with PutBucketCors)`);
      return { rules: cors };
    },

    async deleteBucketCors(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      await repo.buckets.bucketCorsSet(scope, undefined, now());
      return {};
    },

    async setBucketPolicy(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      if (!req.policy) throw new InvalidArgument(`policy: missing; give the policy document {"Version": "2012-10-17", "Statement": [...]}`, "policy");
      const policy = parseBucketPolicy(JSON.stringify(req.policy), req.name);
      if (!(await repo.buckets.bucketPolicySet(scope, policy, now()))) throw new NotFound(`bucket ${quote(req.name)} not found`);
      return { policy: policyToProto(req.name, policy) };
    },

    async getBucketPolicy(req, ctx) {
      const { policy } = await buckets.row(scopeOf(ctx, req.name));
      if (!policy) throw new NotFound(`bucket ${quote(req.name)} has no policy (set one with SetBucketPolicy)`);
      return { policy: policyToProto(req.name, policy) };
    },

    async deleteBucketPolicy(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      await repo.buckets.bucketPolicySet(scope, undefined, now());
      return {};
    },
  };
}

function policyToProto(bucket: string, policy: BucketPolicy) {
  return { bucket, document: JSON.parse(policy.text) as JsonObject, public: policy.public };
}

/** The fields an UpdateBucketRequest carries, as a domain patch (absent = untouched). */
function bucketPatch(req: UpdateBucketRequest): Partial<BucketFields> {
  const patch: Partial<BucketFields> = {};
  if (req.description !== undefined) patch.description = req.description;
  if (req.storageQuotaBytes !== undefined) patch.storageQuotaBytes = quotaOf(req.storageQuotaBytes);
  if (req.accessMode !== undefined) patch.accessMode = accessModeOf(req.accessMode);
  return patch;
}
