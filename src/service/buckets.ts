/**
 * Finding and creating buckets, shared by StorageService and the byte plane. Buckets that
 * existed before buckets had rows — a folder under the data dir, or only their rules,
 * pipelines and jobs — are adopted the first time they are asked for: a row and an
 * internal source are made and the files found on disk are catalogued, nothing lost.
 */
import type { Bucket, BucketFields, BucketRow } from "../domain/bucket";
import { AlreadyExists, NotFound } from "../domain/errors";
import { newId } from "../domain/ids";
import type { Scope } from "../domain/job";
import { quote } from "../domain/validate";
import type { ServiceDeps } from "./deps";

/** Most files catalogued when a folder bucket is adopted. */
const MAX_ADOPTED_FILES = 100_000;

/** Bucket lookups with adoption, and creation. */
export interface Buckets {
  /** The bucket, adopting it first when it exists only as a folder or by its config; NotFound otherwise. */
  get(scope: Scope): Promise<Bucket>;
  /** As get, without the aggregates: the byte plane's lookup on every request. */
  row(scope: Scope): Promise<BucketRow>;
  /** Creates a bucket (adopting a folder of the same name with what it holds); AlreadyExists when it has a row. */
  create(scope: Scope, fields: BucketFields): Promise<Bucket>;
}

/** The bucket helpers over the service dependencies. */
export function createBuckets(deps: ServiceDeps): Buckets {
  const { repo, objects, now } = deps;

  function newRow(scope: Scope, fields: BucketFields): BucketRow {
    const createdAt = now();
    return { org: scope.org, name: scope.bucket, status: "active", internalSourceId: newId("src", createdAt), createdAt, updatedAt: createdAt, ...fields };
  }

  async function get(scope: Scope): Promise<Bucket> {
    const found = await repo.buckets.bucketGet(scope);
    if (found) return found;
    const files = await objects.listFiles(scope, MAX_ADOPTED_FILES);
    const known = files.length > 0 || (await repo.buckets.bucketNamesWithoutRow(scope.org)).includes(scope.bucket);
    if (!known) throw new NotFound(`bucket ${quote(scope.bucket)} not found`);
    await repo.buckets.bucketAdopt(newRow(scope, { description: "", storageQuotaBytes: 0, accessMode: "private" }), files);
    const adopted = await repo.buckets.bucketGet(scope);
    if (!adopted) throw new NotFound(`bucket ${quote(scope.bucket)} not found`);
    return adopted;
  }

  async function row(scope: Scope): Promise<BucketRow> {
    return (await repo.buckets.bucketRowGet(scope)) ?? get(scope);
  }

  async function create(scope: Scope, fields: BucketFields): Promise<Bucket> {
    if (await repo.buckets.bucketGet(scope)) throw new AlreadyExists(`bucket ${quote(scope.bucket)} already exists`);
    await objects.createBucket(scope);
    const row = newRow(scope, fields);
    const files = await objects.listFiles(scope, MAX_ADOPTED_FILES);
    if (files.length > 0) {
      // A folder of an earlier version under the same name: adopt it, with what it holds.
      await repo.buckets.bucketAdopt(row, files, true);
      const adopted = await repo.buckets.bucketUpdate(scope, fields, row.createdAt);
      if (!adopted) throw new NotFound(`bucket ${quote(scope.bucket)} not found`);
      return adopted;
    }
    try {
      return await repo.buckets.bucketInsert(row);
    } catch (err) {
      if (err instanceof AlreadyExists) throw new AlreadyExists(`bucket ${quote(scope.bucket)} already exists`);
      throw err;
    }
  }

  return { get, row, create };
}
