/** Buckets: their rows, adoption of buckets that predate rows, listing, update and delete. */
import type { Pool } from "pg";
import type { Scope } from "../../domain/job";
import type { Bucket, BucketFields, BucketRow, CatalogEntry } from "../../domain/bucket";
import type { CorsRule } from "../../domain/cors";
import type { BucketPolicy } from "../../domain/bucket-policy";
import type { Page, PageParams } from "../repository";
import * as SQL from "./sql";
import { PgDb, ROLLBACK_ONLY, setClauses } from "./db";
import { num, toBucket, toBucketRow } from "./rows";
import type { ConfigStore } from "./config-store";

export class BucketStore extends PgDb {
  /** Buckets' own rows, in the configuration's cache (cleared by its invalidation). */
  private readonly rowCache;
  /** The CORS rules of buckets by name alone, every organization's (for preflights, which carry no credentials). */
  private readonly corsCache;
  /** The organizations whose bucket of a name lets anyone in, by name (for requests without credentials). */
  private readonly publicCache;

  /** `config` is told when a bucket's row changes, or a delete takes its pipelines and rules with it. */
  constructor(
    pool: Pool,
    private readonly config: ConfigStore,
  ) {
    super({ connectionString: "", pool });
    this.rowCache = config.cache.kind<BucketRow | undefined>();
    this.corsCache = config.cache.kind<CorsRule[]>();
    this.publicCache = config.cache.kind<string[]>();
  }

  /** Creates a bucket and its internal source; AlreadyExists when the name is taken in the org. */
  async bucketInsert(b: BucketRow): Promise<Bucket> {
    await this.tx(async (client) => {
      await client.query(SQL.BUCKET_NAME_LOCK, [b.org, b.name]);
      await client.query(SQL.BUCKET_UNDELETE, [b.org, b.name]);
      await client.query(SQL.BUCKET_INSERT, [b.org, b.name, b.description, b.status, b.accessMode, b.storageQuotaBytes, b.internalSourceId, b.createdAt]);
      await client.query(SQL.SOURCE_INSERT_INTERNAL, [b.internalSourceId, b.org, b.name, b.createdAt]);
      return true;
    }, false);
    const stored = await this.bucketGet({ org: b.org, bucket: b.name });
    if (!stored) throw new Error(`bucket ${b.name} vanished right after insert`);
    return stored;
  }

  /**
   * Makes the row of a bucket that existed before buckets had rows (a folder, or only its
   * rules, pipelines and jobs), cataloguing the objects found on disk; nothing when it has one
   * — or, unless `creating` it, when a bucket of that name was deleted (deleted_buckets): a
   * folder an upload left or made again as its bucket was deleted is not that bucket back.
   */
  async bucketAdopt(b: BucketRow, found: readonly CatalogEntry[], creating = false): Promise<void> {
    await this.tx(async (client) => {
      await client.query(SQL.BUCKET_NAME_LOCK, [b.org, b.name]);
      if (creating) await client.query(SQL.BUCKET_UNDELETE, [b.org, b.name]);
      else if ((await client.query(SQL.BUCKET_DELETED, [b.org, b.name])).rowCount) return ROLLBACK_ONLY;
      const made = await client.query(SQL.BUCKET_INSERT_IF_NONE, [b.org, b.name, b.description, b.status, b.accessMode, b.storageQuotaBytes, b.internalSourceId, b.createdAt]);
      if (made.rowCount === 0) return ROLLBACK_ONLY;
      await client.query(SQL.SOURCE_INSERT_INTERNAL, [b.internalSourceId, b.org, b.name, b.createdAt]);
      for (let i = 0; i < found.length; i += 1000) {
        const part = found.slice(i, i + 1000);
        await client.query(SQL.OBJECT_CATALOG_MANY, [
          b.org,
          b.name,
          b.createdAt,
          part.map((f) => f.key),
          part.map((f) => f.size),
          part.map((f) => f.contentType),
          part.map((f) => f.version.toString()),
        ]);
      }
      return true;
    }, false);
  }

  /**
   * The bucket's own row, without its aggregates (usage, counts of sources, rules and
   * indexes): what the byte plane needs on every request, so it is cached (config-cache.ts).
   * A write that needs the bucket to exist still checks it in its own statement.
   */
  bucketRowGet(scope: Scope): Promise<BucketRow | undefined> {
    return this.rowCache.get(
      `${scope.org}/${scope.bucket}`,
      async () => {
        const rows = await this.q(SQL.BUCKET_ROW_GET, [scope.org, scope.bucket], scope.signal);
        return rows[0] ? toBucketRow(rows[0]) : undefined;
      },
      (row) => row !== undefined,
    );
  }

  async bucketGet(scope: Scope): Promise<Bucket | undefined> {
    const rows = await this.q(`${SQL.BUCKET_SELECT} WHERE b.org = $1 AND b.name = $2`, [scope.org, scope.bucket], scope.signal);
    return rows[0] ? toBucket(rows[0]) : undefined;
  }

  /** Buckets newest first, filtered by a case-insensitive search and, when given, by name. */
  async bucketList(filter: { org: string; search: string; names?: readonly string[] }, page: PageParams): Promise<Page<Bucket>> {
    const where = ["b.org = $1"];
    const values: unknown[] = [filter.org];
    if (filter.search !== "") {
      values.push(`%${filter.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      where.push(`(b.name ILIKE $${values.length} OR b.description ILIKE $${values.length})`);
    }
    if (filter.names) {
      values.push([...filter.names]);
      where.push(`b.name = ANY($${values.length}::text[])`);
    }
    const countValues = [...values];
    const countText = `SELECT count(*) AS n FROM buckets b WHERE ${where.join(" AND ")}`;
    if (page.after) {
      values.push(page.after.createdAt, page.after.id);
      where.push(`(b.created_at, b.name) < ($${values.length - 1}, $${values.length})`);
    }
    values.push(page.limit + 1);
    const text = `${SQL.BUCKET_SELECT} WHERE ${where.join(" AND ")} ORDER BY b.created_at DESC, b.name DESC LIMIT $${values.length}`;
    const { rows, total } = await this.rowsAndCount([text, values], [countText, countValues], page.signal);
    return { items: rows.slice(0, page.limit).map(toBucket), more: rows.length > page.limit, total };
  }

  async bucketUpdate(scope: Scope, patch: Partial<BucketFields>, nowMs: number): Promise<Bucket | undefined> {
    const columns: Record<keyof BucketFields, string> = { description: "description", storageQuotaBytes: "storage_quota_bytes", accessMode: "access_mode" };
    const values: unknown[] = [scope.org, scope.bucket, nowMs];
    const sets = setClauses(columns, patch, values);
    const rows = await this.q(`UPDATE buckets SET ${[...sets, "updated_at = $3"].join(", ")} WHERE org = $1 AND name = $2 RETURNING name`, values);
    await this.config.configChanged(scope);
    return rows[0] ? this.bucketGet(scope) : undefined;
  }

  /**
   * Deletes a bucket with its sources, rules, pipelines, jobs, outputs and catalog.
   * Refused (returns the object count) while it holds objects, unless forced.
   */
  async bucketDelete(scope: Scope, force: boolean): Promise<"deleted" | "not_found" | { objects: number }> {
    const result = await this.tx<"deleted" | "not_found" | { objects: number }>(async (client) => {
      await client.query(SQL.BUCKET_NAME_LOCK, [scope.org, scope.bucket]);
      // Locks the bucket row, so no upload can catalog an object into it meanwhile.
      const b = await client.query("SELECT name FROM buckets WHERE org = $1 AND name = $2 FOR UPDATE", [scope.org, scope.bucket]);
      if (b.rowCount === 0) return "not_found";
      const usage = await client.query(SQL.BUCKET_USAGE_GET, [scope.org, scope.bucket]);
      const objects = num(usage.rows[0]?.object_count);
      if (objects > 0 && !force) return { objects };
      for (const statement of SQL.BUCKET_DELETE_ALL) await client.query(statement, [scope.org, scope.bucket]);
      return "deleted";
    }, "not_found");
    if (result === "deleted") await this.config.configChanged(scope);
    return result;
  }

  /** Sets (or with undefined, deletes) a bucket's CORS rules; false when there is no such bucket. */
  async bucketCorsSet(scope: Scope, rules: readonly CorsRule[] | undefined, nowMs: number): Promise<boolean> {
    const changed = await this.exec(SQL.BUCKET_CORS_SET, [scope.org, scope.bucket, rules === undefined ? null : JSON.stringify(rules), nowMs]);
    await this.config.configChanged(scope);
    return changed > 0;
  }

  /**
   * The CORS rules of every bucket of this name, whatever its organization: a browser's
   * preflight names the bucket but carries no credentials (with one organization, as most
   * servers have, they are that bucket's rules).
   */
  bucketCorsByName(name: string): Promise<CorsRule[]> {
    return this.corsCache.get(name, async () => (await this.q(SQL.BUCKET_CORS_BY_NAME, [name])).flatMap((r) => r.cors as CorsRule[]));
  }

  /** Sets (or with undefined, deletes) a bucket's policy; false when there is no such bucket. */
  async bucketPolicySet(scope: Scope, policy: BucketPolicy | undefined, nowMs: number): Promise<boolean> {
    const changed = await this.exec(SQL.BUCKET_POLICY_SET, [scope.org, scope.bucket, policy?.text ?? null, policy?.public ?? false, nowMs]);
    await this.config.configChanged(scope);
    return changed > 0;
  }

  /**
   * The organizations whose bucket of this name has a policy that lets anyone in: a request
   * without credentials names the bucket but not its organization.
   */
  bucketPublicOrgs(name: string): Promise<string[]> {
    return this.publicCache.get(name, async () => (await this.q(SQL.BUCKET_PUBLIC_ORGS, [name])).map((r) => r.org as string));
  }

  /** Folds bucket usage deltas into bucket_usage; false when another process is folding them. */
  usageCompact(): Promise<boolean> {
    return this.foldDeltas(SQL.BUCKET_USAGE_LOCK, SQL.BUCKET_USAGE_COMPACT);
  }

  /** Names of buckets the org has config or jobs for but no row yet (to adopt). */
  async bucketNamesWithoutRow(org: string): Promise<string[]> {
    return (await this.q(SQL.BUCKET_NAMES_WITHOUT_ROW, [org])).map((r) => r.bucket as string);
  }
}
