/**
 * StorageService: the buckets of an organization, written once as a Connect ServiceImpl
 * and served by every door. Buckets that existed before buckets had rows — a folder under
 * the data dir, or only their rules, pipelines and jobs — are adopted the first time they
 * are asked for (GetBucket, ListBuckets, UpdateBucket, DeleteBucket): a row and an internal
 * source are made and the files found on disk are catalogued, nothing lost.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import {
  BucketAccessMode,
  StorageService,
  type UpdateBucketRequest,
} from "../../gen/dodil/k3/storage/v1/storage_pb";
import { allows, type Caller } from "../domain/auth";
import type { BucketFields, BucketRow } from "../domain/bucket";
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound } from "../domain/errors";
import { newId } from "../domain/ids";
import type { Scope } from "../domain/job";
import { checkBucket, checkLength, MAX_TEXT, quote } from "../domain/validate";
import { callerKey, scopeOf } from "./caller";
import { bucketToProto, int64ToNumber, storagePagination } from "./convert";
import type { ServiceDeps } from "./deps";
import { servePage } from "./paging";

/** Most files catalogued when a folder bucket is adopted. */
const MAX_ADOPTED_FILES = 100_000;

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

  function newRow(scope: Scope, fields: BucketFields): BucketRow {
    const createdAt = now();
    return { org: scope.org, name: scope.bucket, status: "active", internalSourceId: newId("src", createdAt), createdAt, updatedAt: createdAt, ...fields };
  }

  /** The bucket, adopting it first when it exists only as a folder or by its config. */
  async function bucketOf(scope: Scope) {
    const found = await repo.bucketGet(scope);
    if (found) return found;
    const files = await objects.listFiles(scope, MAX_ADOPTED_FILES);
    const known = files.length > 0 || (await repo.bucketNamesWithoutRow(scope.org)).includes(scope.bucket);
    if (!known) throw new NotFound(`bucket ${quote(scope.bucket)} not found`);
    await repo.bucketAdopt(newRow(scope, { description: "", storageQuotaBytes: 0, accessMode: "private" }), files);
    const adopted = await repo.bucketGet(scope);
    if (!adopted) throw new NotFound(`bucket ${quote(scope.bucket)} not found`);
    return adopted;
  }

  /** Adopts every bucket of the caller's org known only by its config or its folder. */
  async function adoptAll(org: string, caller: Caller): Promise<void> {
    for (const name of await repo.bucketNamesWithoutRow(org)) {
      if (allows(caller, name, "reader")) await bucketOf({ org, bucket: name }).catch(() => undefined);
    }
  }

  return {
    async createBucket(req, ctx) {
      checkBucket(req.name, "name");
      const scope = scopeOf(ctx, req.name);
      checkLength(req.description, MAX_TEXT, "description");
      const fields: BucketFields = { description: req.description, storageQuotaBytes: quotaOf(req.storageQuotaBytes), accessMode: accessModeOf(req.accessMode) };
      if (await repo.bucketGet(scope)) throw new AlreadyExists(`bucket ${quote(req.name)} already exists`);
      await objects.createBucket(scope);
      const row = newRow(scope, fields);
      const files = await objects.listFiles(scope, MAX_ADOPTED_FILES);
      // A folder of an earlier version under the same name: adopt it, with what it holds.
      if (files.length > 0) {
        await repo.bucketAdopt(row, files);
        const adopted = await repo.bucketUpdate(scope, fields, row.createdAt);
        if (!adopted) throw new NotFound(`bucket ${quote(req.name)} not found`);
        return { bucket: bucketToProto(adopted) };
      }
      try {
        return { bucket: bucketToProto(await repo.bucketInsert(row)) };
      } catch (err) {
        if (err instanceof AlreadyExists) throw new AlreadyExists(`bucket ${quote(req.name)} already exists`);
        throw err;
      }
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
      const names = caller.grants.some((g) => g.bucket === "*") ? undefined : caller.grants.map((g) => g.bucket);
      const filter = { org: caller.org, search: req.search, names };
      const page = await servePage(req, { org: caller.org, search: req.search, names: names?.join(",") }, (p) => repo.bucketList(filter, { ...p, signal: ctx.signal }), (b) => b.name);
      return { buckets: page.items.map(bucketToProto), pagination: storagePagination(page.nextPageToken, page.total) };
    },

    async updateBucket(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      const patch = bucketPatch(req);
      if (patch.description !== undefined) checkLength(patch.description, MAX_TEXT, "description");
      const b = await repo.bucketUpdate(scope, patch, now());
      if (!b) throw new NotFound(`bucket ${quote(req.name)} not found`);
      return { bucket: bucketToProto(b) };
    },

    async deleteBucket(req, ctx) {
      const scope = scopeOf(ctx, req.name);
      await bucketOf(scope);
      const res = await repo.bucketDelete(scope, req.force);
      if (res === "not_found") throw new NotFound(`bucket ${quote(req.name)} not found`);
      if (res !== "deleted") {
        throw new FailedPrecondition(`bucket ${quote(req.name)} holds ${res.objects} objects; delete them first, or pass force to delete them with it`);
      }
      await objects.removeBucket(scope);
      return {};
    },
  };
}

/** The fields an UpdateBucketRequest carries, as a domain patch (absent = untouched). */
function bucketPatch(req: UpdateBucketRequest): Partial<BucketFields> {
  const patch: Partial<BucketFields> = {};
  if (req.description !== undefined) patch.description = req.description;
  if (req.storageQuotaBytes !== undefined) patch.storageQuotaBytes = quotaOf(req.storageQuotaBytes);
  if (req.accessMode !== undefined) patch.accessMode = accessModeOf(req.accessMode);
  return patch;
}
