/**
 * PostgreSQL implementation of the Repository through `pg`. How statements run (pool,
 * deadlines, transactions, listings) is in db.ts, row mapping in rows.ts, pipeline output
 * in destinations.ts; this class holds the operations, by entity.
 */
import type { PoolClient, QueryResultRow } from "pg";
import type { Job, JobCounters, JobFilter, JobProgress, JobStatus, NewJob, RunOutcome, Scope } from "../../domain/job";
import type { StoredToken } from "../../domain/auth";
import type { Bucket, BucketFields, BucketRow, CatalogEntry, MultipartUpload, ObjectIndexStatus, StoredObject, UploadedPart } from "../../domain/bucket";
import type { BoundRule, Pipeline, PipelineFields, Rule, RuleFields } from "../../domain/pipeline";
import type { Page, PageParams, PipelineDeleted, PipelineDeleteOptions, PipelineFilter, Repository, RuleFilter } from "../repository";
import { DomainError, NotFound } from "../../domain/errors";
import { isConnectionError } from "./pg-errors";
import * as SQL from "./sql";
import { PgDb, ROLLBACK_ONLY } from "./db";
import { NO_WRITES, writeOutput, type WriteCounters } from "./destinations";
import { SyncStore } from "./sync-store";
import { VectorStore } from "./vector-store";
import { EventStore } from "./event-store";
import { jobInsertParams, num, toBucket, toJob, toObject, toPipeline, toRule, toToken } from "./rows";

/** Column names the partial updates may write, by domain field. */
const RULE_UPDATE_COLUMNS: Readonly<Record<keyof RuleFields, string>> = {
  sourceId: "source_id",
  pipelineId: "pipeline_id",
  name: "name",
  description: "description",
  includePatterns: "include_patterns",
  excludePatterns: "exclude_patterns",
  includeMimeTypes: "include_mime_types",
  excludeMimeTypes: "exclude_mime_types",
  minSizeBytes: "min_size_bytes",
  maxSizeBytes: "max_size_bytes",
  enabled: "enabled",
  priority: "priority",
};

const PIPELINE_UPDATE_COLUMNS: Readonly<Record<keyof PipelineFields, string>> = {
  name: "name",
  description: "description",
  template: "template",
  options: "options",
  storeEntityId: "store_entity_id",
  storeEntityKind: "store_entity_kind",
};

/** Largest number of jobs one insert statement carries. */
const MAX_INSERT_BATCH = 512;
/** Insert statements in flight at once; later callers join the next batch. */
const MAX_INSERTS_IN_FLIGHT = 2;

interface PendingInsert {
  job: NewJob;
  resolve: (r: { job: Job; created: boolean }) => void;
  reject: (err: unknown) => void;
}

/** How long pipelines and rule sets stay cached for TriggerIngest (see invalidateConfig). */
const CONFIG_CACHE_TTL_MS = 5_000;

/** The PostgreSQL repository. */
export class PgRepository extends PgDb implements Repository {
  /**
   * TriggerIngest reads a pipeline (or a bucket's rules) per call. They change rarely, so
   * they are cached briefly; every write here clears the cache and NOTIFYs the other
   * instances (CHANNEL_CONFIG), whose listeners call invalidateConfig().
   */
  private readonly pipelineCache = new Map<string, { value: Pipeline; at: number }>();
  private readonly rulesCache = new Map<string, { value: BoundRule[]; at: number }>();
  private readonly inserts: PendingInsert[] = [];
  readonly sync = new SyncStore(this.pool);
  readonly vector = new VectorStore(this.pool);
  readonly events = new EventStore(this.pool);
  private insertsInFlight = 0;

  /**
   * Group commit: concurrent inserts share one statement and one commit. A caller whose
   * insert finds no statement in flight goes at once, so a lone request waits for nothing;
   * under load, callers that arrive while statements are in flight join the next batch.
   * Each caller is answered only after the commit that holds its row.
   */
  jobInsert(job: NewJob): Promise<{ job: Job; created: boolean }> {
    return new Promise((resolve, reject) => {
      this.inserts.push({ job, resolve, reject });
      this.flushInserts();
    });
  }

  private flushInserts(): void {
    while (this.insertsInFlight < MAX_INSERTS_IN_FLIGHT && this.inserts.length > 0) {
      const batch = this.inserts.splice(0, MAX_INSERT_BATCH);
      this.insertsInFlight++;
      // The batch serves several calls, so no single caller's deadline cancels it.
      void this.insertBatch(batch).finally(() => {
        this.insertsInFlight--;
        this.flushInserts();
      });
    }
  }

  private async insertBatch(batch: PendingInsert[]): Promise<void> {
    let rows: QueryResultRow[];
    try {
      rows = await this.q(SQL.JOB_INSERT_BATCH, jobInsertParams(batch.map((p) => p.job)));
    } catch (err) {
      // One bad row must not fail its neighbours: retry each alone, unless the database is gone.
      if (batch.length > 1 && !isConnectionError(err) && !(err instanceof DomainError && err.kind === "unavailable")) {
        await Promise.all(batch.map((p) => this.insertBatch([p])));
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    const inserted = new Map(rows.map((r) => [r.job_id as string, toJob(r)]));
    for (const p of batch) {
      const job = inserted.get(p.job.jobId);
      if (job) {
        p.resolve({ job, created: true });
        continue;
      }
      // Lost the request_id race (in this batch or to an earlier one): answer with the winner.
      this.jobGetByRequestId(p.job, p.job.requestId).then(
        (existing) =>
          existing ? p.resolve({ job: existing, created: false }) : p.reject(new Error("job insert conflicted but no job holds the request_id")),
        p.reject,
      );
    }
  }

  async jobGetById(scope: Scope, jobId: string): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_GET_BY_ID, [scope.org, scope.bucket, jobId], scope.signal);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  jobList(filter: JobFilter, page: PageParams): Promise<Page<Job>> {
    return this.list(
      {
        select: SQL.JOB_COLUMNS,
        from: "jobs",
        countFromCounters: true,
        alias: "",
        idColumn: "job_id",
        filters: [
          ["org", filter.org],
          ["bucket", filter.bucket],
          ["status", filter.status],
          ["pipeline_id", filter.pipelineId],
          ["rule_id", filter.ruleId],
          ["source_id", filter.sourceId],
        ],
        ...(filter.keyPrefix ? { prefix: ["object_key", filter.keyPrefix] as [string, string] } : {}),
      },
      page,
      toJob,
    );
  }

  async jobGetByRequestId(scope: Scope, requestId: string): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_GET_BY_REQUEST_ID, [scope.org, scope.bucket, requestId], scope.signal);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async jobCancel(
    scope: Scope,
    jobId: string,
    nowMs: number,
  ): Promise<{ job: Job; changed: boolean } | undefined> {
    const rows = await this.q(SQL.JOB_CANCEL, [scope.org, scope.bucket, jobId, nowMs], scope.signal);
    if (rows[0]) {
      const job = toJob(rows[0]);
      // Tell the owning worker at once; the heartbeat would find out within a third of a lease.
      if (job.status === "processing") await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CANCEL, job.jobId]);
      return { job, changed: true };
    }
    const job = await this.jobGetById(scope, jobId);
    return job && { job, changed: false };
  }

  async jobClaimAvailable(p: { owner: string; limit: number; leaseMs: number }): Promise<Job[]> {
    const rows = await this.q(SQL.JOB_CLAIM, [p.owner, p.limit, p.leaseMs]);
    return rows.map(toJob).sort((a, b) => a.createdAt - b.createdAt || (a.jobId < b.jobId ? -1 : 1));
  }

  async jobHeartbeat(p: { threadIds: string[]; leaseMs: number }): Promise<Array<{ jobId: string; threadId: string; cancelRequested: boolean }>> {
    const rows = await this.q(SQL.JOB_HEARTBEAT, [p.threadIds, p.leaseMs]);
    return rows.map((r) => ({ jobId: r.job_id as string, threadId: r.thread_id as string, cancelRequested: r.cancel_requested as boolean }));
  }

  async jobRecordProgress(p: { jobId: string; threadId: string; counters: Pick<JobCounters, "chunksCreated" | "embeddingsCreated">; progress?: JobProgress }): Promise<boolean> {
    const s = p.progress ?? { stage: "", done: 0, total: 0, unit: "" };
    const changed = await this.exec(SQL.JOB_PROGRESS, [p.jobId, p.threadId, p.counters.chunksCreated, p.counters.embeddingsCreated, s.stage, s.done, s.total, s.unit]);
    return changed > 0;
  }

  async jobComplete(p: { job: Job; outcome: RunOutcome; sourceVersion: bigint }): Promise<Job | undefined> {
    const { job, outcome: o } = p;
    const complete = (client: PoolClient, w: WriteCounters, errorDetails = o.errorDetails) =>
      client.query(SQL.JOB_COMPLETE, [
        job.jobId,
        job.threadId,
        o.status,
        o.chunksCreated,
        o.embeddingsCreated,
        w.rowsWritten,
        w.outputSize,
        w.batchesReceived,
        w.embeddingsWritten,
        o.vectorStatus,
        o.error,
        errorDetails,
      ]);
    if (o.output.kind === "none") {
      const { rows } = await this.withClient((client) => complete(client, NO_WRITES));
      return rows[0] ? toJob(rows[0]) : undefined;
    }
    const output = o.output;
    const key = [job.org, job.bucket, job.pipelineId, job.key];
    // One final write at a time per object: the lock is the object's, not the job row's,
    // so heartbeats and cancels of this job never wait for the write; the job row is
    // locked only by the guarded UPDATE at the very end.
    return this.tx<Job | undefined>(async (client) => {
      await client.query(SQL.OBJECT_OUTPUT_LOCK, key);
      if ((await client.query(SQL.JOB_ATTEMPT_LIVE, [job.jobId, job.threadId])).rowCount === 0) return ROLLBACK_ONLY;
      const current = (await client.query(SQL.OBJECT_OUTPUT_GET, key)).rows[0];
      if (current && BigInt(current.source_version as string) > p.sourceVersion) {
        // The output of a newer version of the object is already current: keep it.
        const note = `superseded: job ${current.job_id as string} had already indexed a newer version of the object; this run's output was discarded`;
        const { rows } = await complete(client, NO_WRITES, note);
        return rows[0] ? toJob(rows[0]) : ROLLBACK_ONLY;
      }
      const w = await writeOutput(client, job, output);
      await client.query(SQL.OBJECT_OUTPUT_SET, [...key, job.jobId, p.sourceVersion.toString()]);
      const { rows } = await complete(client, w);
      // Cancelled or taken away while writing: nothing of this attempt stays.
      return rows[0] ? toJob(rows[0]) : ROLLBACK_ONLY;
    }, undefined);
  }

  async jobCompleteMany(p: { items: Array<{ jobId: string; threadId: string; outcome: RunOutcome }> }): Promise<Set<string>> {
    const col = <T>(f: (o: RunOutcome) => T) => p.items.map((i) => f(i.outcome));
    const rows = await this.q(SQL.JOB_COMPLETE_MANY, [
      p.items.map((i) => i.jobId),
      p.items.map((i) => i.threadId),
      col((o) => o.status),
      col((o) => o.chunksCreated),
      col((o) => o.embeddingsCreated),
      col((o) => o.vectorStatus),
      col((o) => o.error),
      col((o) => o.errorDetails),
    ]);
    return new Set(rows.map((r) => r.job_id as string));
  }

  async jobFailAttempt(p: { jobId: string; threadId: string; error: string; errorDetails: string; retryDelayMs?: number; permanent?: boolean }): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_FAIL_ATTEMPT, [p.jobId, p.threadId, p.error, p.errorDetails, p.retryDelayMs ?? 0, p.permanent ?? false]);
    if (rows[0]?.status === "pending") await this.q("SELECT pg_notify($1, '')", [SQL.CHANNEL_JOBS]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async jobCancelRunning(p: { jobId: string; threadId: string }): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_CANCEL_RUNNING, [p.jobId, p.threadId]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async jobRelease(p: { threadIds: string[] }): Promise<number> {
    if (p.threadIds.length === 0) return 0;
    const released = await this.exec(SQL.JOB_RELEASE, [p.threadIds]);
    if (released > 0) await this.q("SELECT pg_notify($1, '')", [SQL.CHANNEL_JOBS]);
    return released;
  }

  async jobRescueExpired(p: { maxAttempts: number; maxLostAttempts: number }): Promise<Array<{ jobId: string; status: string }>> {
    const rows = await this.q(SQL.JOB_RESCUE, [p.maxAttempts, p.maxLostAttempts]);
    if (rows.some((r) => r.status === "pending")) await this.q("SELECT pg_notify($1, '')", [SQL.CHANNEL_JOBS]);
    return rows.map((r) => ({ jobId: r.job_id as string, status: r.status as string }));
  }

  async ruleInsert(rule: Rule): Promise<BoundRule> {
    await this.q(SQL.RULE_INSERT, [
      rule.ruleId,
      rule.bucket,
      rule.sourceId,
      rule.pipelineId,
      rule.name,
      rule.description,
      rule.includePatterns,
      rule.excludePatterns,
      rule.includeMimeTypes,
      rule.excludeMimeTypes,
      rule.minSizeBytes,
      rule.maxSizeBytes,
      rule.enabled,
      rule.priority,
      rule.createdAt,
      rule.org,
    ]);
    await this.configChanged(rule);
    const stored = await this.ruleGetById(rule, rule.ruleId);
    if (!stored) throw new Error(`rule ${rule.ruleId} vanished right after insert`);
    return stored;
  }

  async ruleGetById(scope: Scope, ruleId: string): Promise<BoundRule | undefined> {
    const rows = await this.q(SQL.RULE_GET_BY_ID, [scope.org, scope.bucket, ruleId], scope.signal);
    return rows[0] ? toRule(rows[0]) : undefined;
  }

  ruleList(filter: RuleFilter, page: PageParams): Promise<Page<BoundRule>> {
    return this.list(
      {
        select: SQL.RULE_COLUMNS,
        from: SQL.RULE_FROM,
        alias: "r.",
        idColumn: "rule_id",
        filters: [
          ["org", filter.org],
          ["bucket", filter.bucket],
          ["source_id", filter.sourceId],
          ["pipeline_id", filter.pipelineId],
        ],
      },
      page,
      toRule,
    );
  }

  async ruleListEnabledForDirect(scope: Scope): Promise<BoundRule[]> {
    const key = `${scope.org}/${scope.bucket}`;
    const hit = this.rulesCache.get(key);
    if (hit && Date.now() - hit.at < CONFIG_CACHE_TTL_MS) return hit.value;
    const value = (await this.q(SQL.RULE_LIST_ENABLED_DIRECT, [scope.org, scope.bucket], scope.signal)).map(toRule);
    this.rulesCache.set(key, { value, at: Date.now() });
    return value;
  }

  /** Forgets cached pipelines and rules (a write here or a NOTIFY from another instance). */
  invalidateConfig(): void {
    this.pipelineCache.clear();
    this.rulesCache.clear();
  }

  private async configChanged(scope: Scope): Promise<void> {
    this.invalidateConfig();
    await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CONFIG, `${scope.org}/${scope.bucket}`]).catch(() => undefined);
  }

  async ruleUpdate(
    scope: Scope,
    ruleId: string,
    patch: Partial<RuleFields>,
    nowMs: number,
  ): Promise<BoundRule | undefined> {
    const sets: string[] = [];
    const values: unknown[] = [scope.org, scope.bucket, ruleId, nowMs];
    for (const [field, column] of Object.entries(RULE_UPDATE_COLUMNS) as Array<[keyof RuleFields, string]>) {
      if (patch[field] === undefined) continue;
      values.push(patch[field]);
      sets.push(`${column} = $${values.length}`);
    }
    const rows = await this.q(
      `UPDATE rules SET ${[...sets, "updated_at = $4"].join(", ")} WHERE org = $1 AND bucket = $2 AND rule_id = $3 RETURNING rule_id`,
      values,
    );
    await this.configChanged(scope);
    return rows[0] ? this.ruleGetById(scope, ruleId) : undefined;
  }

  async ruleDelete(scope: Scope, ruleId: string): Promise<boolean> {
    const rows = await this.q(`${SQL.RULE_DELETE} RETURNING rule_id`, [scope.org, scope.bucket, ruleId], scope.signal);
    await this.configChanged(scope);
    return rows.length > 0;
  }

  async ruleBucketUsage(scope: Scope, exceptRuleId = ""): Promise<{ rules: number; globChars: number }> {
    const rows = await this.q(SQL.RULE_BUCKET_USAGE, [scope.org, scope.bucket, exceptRuleId], scope.signal);
    return { rules: num(rows[0]?.rules), globChars: num(rows[0]?.glob_chars) };
  }

  async pipelineInsert(pipeline: Pipeline): Promise<Pipeline> {
    const rows = await this.q(SQL.PIPELINE_INSERT, [
      pipeline.pipelineId,
      pipeline.bucket,
      pipeline.name,
      pipeline.description,
      pipeline.template,
      JSON.stringify(pipeline.options),
      pipeline.storeEntityId,
      pipeline.storeEntityKind,
      pipeline.createdAt,
      pipeline.org,
    ]);
    return toPipeline(rows[0]);
  }

  async pipelineGetById(scope: Scope, pipelineId: string): Promise<Pipeline | undefined> {
    const key = `${scope.org}/${scope.bucket}/${pipelineId}`;
    const hit = this.pipelineCache.get(key);
    if (hit && Date.now() - hit.at < CONFIG_CACHE_TTL_MS) return hit.value;
    const rows = await this.q(SQL.PIPELINE_GET_BY_ID, [scope.org, scope.bucket, pipelineId], scope.signal);
    const p = rows[0] ? toPipeline(rows[0]) : undefined;
    if (p) {
      if (this.pipelineCache.size > 10_000) this.pipelineCache.clear();
      this.pipelineCache.set(key, { value: p, at: Date.now() });
    }
    return p;
  }

  pipelineList(filter: PipelineFilter, page: PageParams): Promise<Page<Pipeline>> {
    return this.list(
      {
        select: SQL.PIPELINE_COLUMNS,
        from: "pipelines",
        alias: "",
        idColumn: "pipeline_id",
        filters: [
          ["org", filter.org],
          ["bucket", filter.bucket],
          ["store_entity_kind", filter.storeEntityKind],
          ["store_entity_id", filter.storeEntityId],
        ],
      },
      page,
      toPipeline,
    );
  }

  async pipelineUpdate(
    scope: Scope,
    pipelineId: string,
    patch: Partial<PipelineFields>,
    nowMs: number,
  ): Promise<Pipeline | undefined> {
    const sets: string[] = [];
    const values: unknown[] = [scope.org, scope.bucket, pipelineId, nowMs];
    for (const [field, column] of Object.entries(PIPELINE_UPDATE_COLUMNS) as Array<[keyof PipelineFields, string]>) {
      const v = patch[field];
      if (v === undefined) continue;
      values.push(field === "options" ? JSON.stringify(v) : v);
      sets.push(`${column} = $${values.length}`);
    }
    const rows = await this.q(
      `UPDATE pipelines SET ${[...sets, "updated_at = $4"].join(", ")} WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 RETURNING ${SQL.PIPELINE_COLUMNS}`,
      values,
    );
    await this.configChanged(scope);
    return rows[0] ? toPipeline(rows[0]) : undefined;
  }

  async pipelineDelete(scope: Scope, pipelineId: string, how: PipelineDeleteOptions): Promise<PipelineDeleted | "not_found" | string[]> {
    let answer: PipelineDeleted | "not_found" | string[] = "not_found";
    const args = [scope.org, scope.bucket, pipelineId];
    await this.tx(async (client) => {
      const counts = (await client.query(SQL.PIPELINE_OUTPUT_COUNTS, args)).rows[0];
      const found: PipelineDeleted = { jobs: num(counts.jobs), chunks: num(counts.chunks), rows: num(counts.rows), kept: how.keepOutputs };
      if (!how.keepOutputs && !how.validateOnly) for (const sql of SQL.PIPELINE_DELETE_OUTPUTS) await client.query(sql, args);
      // Last, and only while no rule binds it (checked in the same statement).
      if ((await client.query(SQL.PIPELINE_DELETE, args)).rowCount === 0) {
        const exists = (await client.query("SELECT 1 FROM pipelines WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", args)).rowCount;
        answer = exists ? (await client.query(SQL.PIPELINE_BINDING_RULES, args)).rows.map((r) => r.rule_id as string) : "not_found";
        return ROLLBACK_ONLY;
      }
      answer = found;
      return how.validateOnly ? ROLLBACK_ONLY : true;
    }, false);
    if (typeof answer === "object" && !Array.isArray(answer) && !how.validateOnly) await this.configChanged(scope);
    return answer;
  }

  async bucketInsert(b: BucketRow): Promise<Bucket> {
    await this.tx(async (client) => {
      await client.query(SQL.BUCKET_INSERT, [b.org, b.name, b.description, b.status, b.accessMode, b.storageQuotaBytes, b.internalSourceId, b.createdAt]);
      await client.query(SQL.SOURCE_INSERT_INTERNAL, [b.internalSourceId, b.org, b.name, b.createdAt]);
      return true;
    }, false);
    const stored = await this.bucketGet({ org: b.org, bucket: b.name });
    if (!stored) throw new Error(`bucket ${b.name} vanished right after insert`);
    return stored;
  }

  async bucketAdopt(b: BucketRow, found: readonly CatalogEntry[]): Promise<void> {
    await this.tx(async (client) => {
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

  async bucketGet(scope: Scope): Promise<Bucket | undefined> {
    const rows = await this.q(`${SQL.BUCKET_SELECT} WHERE b.org = $1 AND b.name = $2`, [scope.org, scope.bucket], scope.signal);
    return rows[0] ? toBucket(rows[0]) : undefined;
  }

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
    const [rows, count] = await Promise.all([this.q(text, values, page.signal), this.q(countText, countValues, page.signal)]);
    return { items: rows.slice(0, page.limit).map(toBucket), more: rows.length > page.limit, total: num(count[0]?.n) };
  }

  async bucketUpdate(scope: Scope, patch: Partial<BucketFields>, nowMs: number): Promise<Bucket | undefined> {
    const columns: Record<keyof BucketFields, string> = { description: "description", storageQuotaBytes: "storage_quota_bytes", accessMode: "access_mode" };
    const sets: string[] = [];
    const values: unknown[] = [scope.org, scope.bucket, nowMs];
    for (const [field, column] of Object.entries(columns) as Array<[keyof BucketFields, string]>) {
      if (patch[field] === undefined) continue;
      values.push(patch[field]);
      sets.push(`${column} = $${values.length}`);
    }
    const rows = await this.q(`UPDATE buckets SET ${[...sets, "updated_at = $3"].join(", ")} WHERE org = $1 AND name = $2 RETURNING name`, values);
    return rows[0] ? this.bucketGet(scope) : undefined;
  }

  async bucketDelete(scope: Scope, force: boolean): Promise<"deleted" | "not_found" | { objects: number }> {
    const result = await this.tx<"deleted" | "not_found" | { objects: number }>(async (client) => {
      // Locks the bucket row, so no upload can catalog an object into it meanwhile.
      const b = await client.query("SELECT name FROM buckets WHERE org = $1 AND name = $2 FOR UPDATE", [scope.org, scope.bucket]);
      if (b.rowCount === 0) return "not_found";
      const usage = await client.query("SELECT objects FROM bucket_usage WHERE org = $1 AND bucket = $2", [scope.org, scope.bucket]);
      const objects = num(usage.rows[0]?.objects);
      if (objects > 0 && !force) return { objects };
      for (const statement of SQL.BUCKET_DELETE_ALL) await client.query(statement, [scope.org, scope.bucket]);
      return "deleted";
    }, "not_found");
    if (result === "deleted") await this.configChanged(scope);
    return result;
  }

  async objectGet(scope: Scope, key: string): Promise<StoredObject | undefined> {
    const rows = await this.q(SQL.OBJECT_GET, [scope.org, scope.bucket, key], scope.signal);
    return rows[0] ? toObject(rows[0]) : undefined;
  }

  async objectPut(scope: Scope, o: StoredObject, jobs: readonly NewJob[]): Promise<Job[]> {
    return this.tx<Job[]>(async (client) => {
      // Shares the bucket row with other uploads; a bucket delete (FOR UPDATE) waits for them, and they for it.
      const b = await client.query("SELECT 1 FROM buckets WHERE org = $1 AND name = $2 FOR SHARE", [scope.org, scope.bucket]);
      if (b.rowCount === 0) throw new NotFound(`bucket ${JSON.stringify(scope.bucket)} not found`);
      await client.query(SQL.OBJECT_UPSERT, [scope.org, scope.bucket, o.key, o.size, o.etag, o.contentType, JSON.stringify(o.metadata), o.version.toString(), o.updatedAt]);
      if (jobs.length === 0) return [];
      const { rows } = await client.query(SQL.JOB_INSERT_BATCH, jobInsertParams(jobs));
      return rows.map(toJob);
    }, []);
  }

  async objectList(scope: Scope, p: { prefix: string; after: string; limit: number }): Promise<StoredObject[]> {
    return (await this.q(SQL.OBJECT_LIST, [scope.org, scope.bucket, p.after, p.prefix, p.limit], scope.signal)).map(toObject);
  }

  async objectDelete(scope: Scope, key: string, nowMs: number): Promise<boolean> {
    const { found, running } = await this.tx(async (client) => {
      const del = await client.query("DELETE FROM objects WHERE org = $1 AND bucket = $2 AND object_key = $3", [scope.org, scope.bucket, key]);
      for (const statement of SQL.OBJECT_DELETE_OUTPUTS) await client.query(statement, [scope.org, scope.bucket, key]);
      const jobs = await client.query(SQL.OBJECT_CANCEL_JOBS, [scope.org, scope.bucket, key, nowMs]);
      const running = jobs.rows.filter((r) => r.status === "processing").map((r) => r.job_id as string);
      for (const id of running) await client.query("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CANCEL, id]);
      return { found: (del.rowCount ?? 0) > 0, running };
    }, { found: false, running: [] as string[] });
    return found || running.length > 0;
  }

  async jobsWithCurrentOutput(scope: Scope, jobs: readonly Job[]): Promise<Set<string>> {
    if (jobs.length === 0) return new Set();
    const rows = await this.q(SQL.JOBS_WITH_CURRENT_OUTPUT, [scope.org, scope.bucket, jobs.map((j) => j.pipelineId), jobs.map((j) => j.key), jobs.map((j) => j.jobId)], scope.signal);
    return new Set(rows.map((r) => r.job_id as string));
  }

  async objectIndexStatus(scope: Scope, key: string): Promise<ObjectIndexStatus[]> {
    const rows = await this.q(SQL.OBJECT_INDEX_STATUS, [scope.org, scope.bucket, key], scope.signal);
    return rows.map((r) => ({ pipelineId: r.pipeline_id, pipelineName: r.pipeline_name, jobId: r.job_id, status: r.status as JobStatus, updatedAt: num(r.updated_at), error: r.error }));
  }

  async mpuCreate(scope: Scope, u: MultipartUpload): Promise<void> {
    await this.q(
      "INSERT INTO multipart_uploads (upload_id, org, bucket, object_key, content_type, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
      [u.uploadId, scope.org, scope.bucket, u.key, u.contentType, JSON.stringify(u.metadata), u.createdAt],
    );
  }

  async mpuGet(scope: Scope, uploadId: string): Promise<MultipartUpload | undefined> {
    const rows = await this.q("SELECT upload_id, object_key, content_type, metadata, created_at FROM multipart_uploads WHERE upload_id = $1 AND org = $2 AND bucket = $3", [uploadId, scope.org, scope.bucket]);
    const r = rows[0];
    return r ? { uploadId: r.upload_id, key: r.object_key, contentType: r.content_type, metadata: r.metadata ?? {}, createdAt: num(r.created_at) } : undefined;
  }

  async mpuPartPut(uploadId: string, part: UploadedPart, nowMs: number): Promise<void> {
    await this.q(
      `INSERT INTO multipart_parts (upload_id, part_number, size, etag, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (upload_id, part_number) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, updated_at = EXCLUDED.updated_at`,
      [uploadId, part.partNumber, part.size, part.etag, nowMs],
    );
  }

  async mpuParts(uploadId: string): Promise<UploadedPart[]> {
    const rows = await this.q("SELECT part_number, size, etag FROM multipart_parts WHERE upload_id = $1 ORDER BY part_number", [uploadId]);
    return rows.map((r) => ({ partNumber: r.part_number as number, size: num(r.size), etag: r.etag as string }));
  }

  async mpuDelete(uploadId: string): Promise<boolean> {
    return (await this.exec("DELETE FROM multipart_uploads WHERE upload_id = $1", [uploadId])) > 0;
  }

  async ruleListEnabledForSource(scope: Scope, sourceId: string): Promise<BoundRule[]> {
    return (await this.q(SQL.RULE_LIST_ENABLED_FOR_SOURCE, [scope.org, scope.bucket, sourceId], scope.signal)).map(toRule);
  }

  async bucketNamesWithoutRow(org: string): Promise<string[]> {
    return (await this.q(SQL.BUCKET_NAMES_WITHOUT_ROW, [org])).map((r) => r.bucket as string);
  }

  async tokenInsert(t: StoredToken): Promise<void> {
    await this.q(SQL.TOKEN_INSERT, [t.tokenId, t.org, t.secretHash, t.name, JSON.stringify(t.grants), t.createdAt, t.expiresAt, t.accessKeyId ?? null, t.secretSealed ?? null]);
    // API instances cache unknown tokens briefly; tell them this one exists now.
    await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_TOKENS, t.tokenId]);
  }

  async tokenFindByHash(secretHash: Buffer): Promise<StoredToken | undefined> {
    const rows = await this.q(SQL.TOKEN_FIND_BY_HASH, [secretHash]);
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  async tokenFindByAccessKey(accessKeyId: string): Promise<StoredToken | undefined> {
    const rows = await this.q(SQL.TOKEN_FIND_BY_ACCESS_KEY, [accessKeyId]);
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  async tokenList(org?: string): Promise<StoredToken[]> {
    const rows = await this.q(
      `SELECT ${SQL.TOKEN_COLUMNS} FROM api_tokens ${org ? "WHERE org = $1" : ""} ORDER BY org, created_at, token_id`,
      org ? [org] : [],
    );
    return rows.map(toToken);
  }

  async tokenRevoke(tokenId: string, now: number): Promise<boolean> {
    const rows = await this.q(SQL.TOKEN_REVOKE, [tokenId, now]);
    if (rows.length > 0) await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_TOKENS, tokenId]);
    return rows.length > 0;
  }

  async tokenInsertIfNone(t: StoredToken): Promise<boolean> {
    return this.tx(async (client) => {
      await client.query(SQL.TOKEN_BOOTSTRAP_LOCK);
      const { rows } = await client.query("SELECT EXISTS (SELECT 1 FROM api_tokens) AS any");
      if (rows[0].any) return ROLLBACK_ONLY;
      await client.query(SQL.TOKEN_INSERT, [t.tokenId, t.org, t.secretHash, t.name, JSON.stringify(t.grants), t.createdAt, t.expiresAt, null, null]);
      return true;
    }, false);
  }

  /** An organization's jobs by status across its buckets, from the maintained counters. */
  async jobCountsByStatus(org: string): Promise<Record<string, number>> {
    const rows = await this.q(
      `SELECT status, sum(n)::bigint AS n FROM (SELECT status, n FROM job_counts WHERE org = $1 UNION ALL SELECT status, n FROM job_count_deltas WHERE org = $1) AS c GROUP BY status`,
      [org],
    );
    return Object.fromEntries(rows.map((r) => [r.status as string, Number(r.n)]));
  }

  /** created_at of an organization's oldest PENDING job (a walk of the pending index). */
  async oldestPendingCreatedAt(org: string): Promise<number | undefined> {
    const rows = await this.q("SELECT created_at FROM jobs WHERE status = 'pending' AND org = $1 ORDER BY created_at, job_id LIMIT 1", [org]);
    return rows[0] ? num(rows[0].created_at) : undefined;
  }

  /** Deletes up to `limit` jobs that finished before `before`; returns how many. */
  async jobPruneFinished(before: number, limit: number): Promise<number> {
    return this.exec(SQL.JOB_PRUNE, [before, limit]);
  }

  /** Folds count deltas into job_counts; false when another process is compacting. */
  async jobCountsCompact(): Promise<boolean> {
    return this.tx(async (client) => {
      const { rows } = await client.query(SQL.JOB_COUNTS_LOCK);
      if (!rows[0].locked) return false;
      await client.query(SQL.JOB_COUNTS_COMPACT);
      return true;
    }, false);
  }

  async ping(): Promise<void> {
    await this.q("SELECT 1");
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
