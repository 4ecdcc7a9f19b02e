/**
 * Sources and sync in PostgreSQL: source rows, the checkpoint a discovery compares with
 * (the object catalog for a bucket's internal source, source_objects for an external one),
 * durable discoveries (claimed with a lease, fenced by it, resumed after their last
 * committed key, at most one active per source), the scheduled-poll claim, and the reads
 * behind TriggerIngestion and GetSyncStatus. Shares the repository's pool.
 */
import type { Pool, PoolClient, QueryResultRow } from "pg";
import type { NewJob, Scope } from "../../domain/job";
import type { CheckpointEntry, Discovery, DiscoveryCounts, DiscoveryState, Source } from "../../domain/source";
import { FailedPrecondition } from "../../domain/errors";
import type { Page, PageParams } from "../repository";
import { PgDb } from "./db";
import { forgetOutputs } from "./object-catalog";
import { jobInsertParams, num } from "./rows";
import * as SQL from "./sql";

const SOURCE_COLUMNS = `source_id, org, bucket, provider, name, description, root_path, provider_account, sync_interval_seconds,
  enabled, config, secret_sealed, last_sync_at, last_success_at, last_error, created_at, updated_at`;

const DISCOVERY_COLUMNS = `discovery_id, org, bucket, source_id, state, full_sync, rule_id, checkpoint_key, scanned, new_objects,
  modified, unchanged, deleted, failed, dispatched, attempts, error, created_at, started_at, finished_at`;

export type SourceTotals = { objects: number; bytes: number; indexed: number };

/** The statement of a source's totals: columns object_count, storage_used_bytes, indexed_objects. */
const totalsQuery = (s: Source): { sql: string; params: unknown[] } =>
  s.provider === "internal_s3" ? { sql: SQL.BUCKET_USAGE_GET, params: [s.org, s.bucket] } : { sql: SQL.SOURCE_OBJECTS_TOTALS, params: [s.sourceId] };

function totalsOf(r: QueryResultRow | undefined): SourceTotals {
  return { objects: num(r?.object_count), bytes: num(r?.storage_used_bytes), indexed: num(r?.indexed_objects) };
}

function toSource(r: QueryResultRow): Source {
  const c = r.config ?? {};
  return {
    sourceId: r.source_id,
    org: r.org,
    bucket: r.bucket,
    provider: r.provider,
    name: r.name,
    description: r.description,
    rootPath: r.root_path,
    providerAccount: r.provider_account,
    syncIntervalSeconds: num(r.sync_interval_seconds),
    enabled: r.enabled,
    external: r.provider === "external_s3" ? { endpoint: c.endpoint ?? "", bucket: c.bucket ?? "", region: c.region ?? "", accessKeyId: c.access_key_id ?? "", ...(c.credential_id ? { credentialId: c.credential_id } : {}) } : undefined,
    secretSealed: r.secret_sealed,
    lastSyncAt: num(r.last_sync_at),
    lastSuccessAt: num(r.last_success_at),
    lastError: r.last_error,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toDiscovery(r: QueryResultRow): Discovery {
  return {
    discoveryId: r.discovery_id,
    org: r.org,
    bucket: r.bucket,
    sourceId: r.source_id,
    state: r.state as DiscoveryState,
    fullSync: r.full_sync,
    ruleId: r.rule_id,
    checkpointKey: r.checkpoint_key,
    scanned: num(r.scanned),
    newObjects: num(r.new_objects),
    modified: num(r.modified),
    unchanged: num(r.unchanged),
    deleted: num(r.deleted),
    failed: num(r.failed),
    dispatched: num(r.dispatched),
    attempts: r.attempts,
    error: r.error,
    createdAt: num(r.created_at),
    startedAt: num(r.started_at),
    finishedAt: num(r.finished_at),
  };
}

const configOf = (s: Pick<Source, "external">) =>
  JSON.stringify(s.external ? { endpoint: s.external.endpoint, bucket: s.external.bucket, region: s.external.region, access_key_id: s.external.accessKeyId, ...(s.external.credentialId ? { credential_id: s.external.credentialId } : {}) } : {});

/** A discovery that lost its lease (another worker took it over, or it was cancelled). */
export class LostLease extends Error {
  constructor(id: string) {
    super(`discovery ${id} is no longer held by this worker`);
    this.name = "LostLease";
  }
}

/** What one batch of a discovery writes. */
export interface DiscoveryBatch {
  /** Listed objects that are new or changed: written to the checkpoint (guarded by what was read). */
  upserts: Array<CheckpointEntry & { previousVersion?: string }>;
  /** Checkpoint rows whose objects are gone (key and the version read). */
  deletions: Array<{ key: string; version: string }>;
  /** Jobs to create, per key; only created when the key's checkpoint write (if any) landed. */
  jobs: NewJob[];
  /** Keys whose jobs need their checkpoint write to land (new and modified ones). */
  guarded: Set<string>;
  counts: DiscoveryCounts;
  checkpointKey: string;
}

export class SyncStore extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  // --- sources ---

  /** Inserts a source; false when the credential its config names was deleted meanwhile (nothing inserted). */
  async sourceInsert(s: Source, nextSyncAt: number): Promise<boolean> {
    const inserted = await this.exec(
      `INSERT INTO sources (source_id, org, bucket, provider, name, description, root_path, provider_account, sync_interval_seconds,
         enabled, config, secret_sealed, created_at, updated_at, next_sync_at)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $13, $14 WHERE ${SQL.credentialHeld("$2", "$11")}`,
      [s.sourceId, s.org, s.bucket, s.provider, s.name, s.description, s.rootPath, s.providerAccount, s.syncIntervalSeconds, s.enabled, configOf(s), s.secretSealed, s.createdAt, nextSyncAt],
    );
    return inserted > 0;
  }

  async sourceGet(scope: Scope, sourceId: string): Promise<Source | undefined> {
    const rows = await this.q(`SELECT ${SOURCE_COLUMNS} FROM sources WHERE org = $1 AND bucket = $2 AND source_id = $3`, [scope.org, scope.bucket, sourceId], scope.signal);
    return rows[0] ? toSource(rows[0]) : undefined;
  }

  /** The sources of `org` that sign with the stored credential `credentialId`. */
  async sourcesUsingCredential(org: string, credentialId: string): Promise<string[]> {
    const rows = await this.q(SQL.SOURCES_USING_CREDENTIAL, [org, credentialId]);
    return rows.map((r) => r.source_id as string);
  }

  async sourceById(sourceId: string): Promise<Source | undefined> {
    const rows = await this.q(`SELECT ${SOURCE_COLUMNS} FROM sources WHERE source_id = $1`, [sourceId]);
    return rows[0] ? toSource(rows[0]) : undefined;
  }

  /** Oldest first (the internal source, made with the bucket, leads). */
  async sourceList(scope: Scope, page: PageParams): Promise<Page<Source>> {
    const values: unknown[] = [scope.org, scope.bucket];
    let after = "";
    if (page.after) {
      values.push(page.after.createdAt, page.after.id);
      after = "AND (created_at, source_id) > ($3, $4)";
    }
    values.push(page.limit + 1);
    const { rows, total } = await this.rowsAndCount(
      [`SELECT ${SOURCE_COLUMNS} FROM sources WHERE org = $1 AND bucket = $2 ${after} ORDER BY created_at, source_id LIMIT $${values.length}`, values],
      [`SELECT count(*) AS n FROM sources WHERE org = $1 AND bucket = $2`, [scope.org, scope.bucket]],
      page.signal,
    );
    return { items: rows.slice(0, page.limit).map(toSource), more: rows.length > page.limit, total };
  }

  /** Updates a source; false when it is gone or the credential its config names was deleted meanwhile (nothing changed). */
  async sourceUpdate(scope: Scope, s: Source, now: number): Promise<boolean> {
    const updated = await this.exec(
      `UPDATE sources SET name = $4, description = $5, root_path = $6, sync_interval_seconds = $7, enabled = $8, config = $9::jsonb,
         secret_sealed = $10, updated_at = $11,
         next_sync_at = CASE WHEN sync_interval_seconds <> $7 OR NOT enabled THEN $11 + $7 * 1000 ELSE next_sync_at END
       WHERE org = $1 AND bucket = $2 AND source_id = $3 AND ${SQL.credentialHeld("$1", "$9")}`,
      [scope.org, scope.bucket, s.sourceId, s.name, s.description, s.rootPath, s.syncIntervalSeconds, s.enabled, configOf(s), s.secretSealed, now],
    );
    return updated > 0;
  }

  /**
   * Deletes an external source: cancels its discovery and unfinished jobs, removes the
   * outputs of its objects and its checkpoint. Refused while rules are bound to it.
   */
  async sourceDelete(scope: Scope, sourceId: string, now: number): Promise<{ found: boolean; running: string[] }> {
    return this.tx(async (client) => {
      const rules = await client.query("SELECT rule_id FROM rules WHERE org = $1 AND bucket = $2 AND source_id = $3 ORDER BY created_at LIMIT 20", [scope.org, scope.bucket, sourceId]);
      if (rules.rowCount) {
        throw new FailedPrecondition(`source ${JSON.stringify(sourceId)} is bound by rules ${rules.rows.map((r) => r.rule_id).join(", ")}; delete or rebind them first`);
      }
      await client.query("UPDATE discoveries SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, finished_at = $2, error = 'the source was deleted' WHERE source_id = $1 AND state IN ('pending', 'running')", [sourceId, now]);
      const keys = `SELECT object_key FROM source_objects WHERE source_id = $3`;
      for (const table of ["vector_chunks", "warehouse_rows", "object_outputs"]) {
        await client.query(`DELETE FROM ${table} WHERE org = $1 AND bucket = $2 AND object_key IN (${keys}) AND ${SQL.FROM_OBJECTS}`, [scope.org, scope.bucket, sourceId]);
      }
      const jobs = await client.query(
        `UPDATE jobs SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
           finished_at = CASE WHEN status = 'pending' THEN $4::bigint ELSE finished_at END,
           error = CASE WHEN status = 'pending' THEN 'cancelled: the source was deleted' ELSE error END,
           cancel_requested = true, updated_at = $4
         WHERE org = $1 AND bucket = $2 AND source_id = $3 AND status IN ('pending', 'processing') RETURNING job_id, status`,
        [scope.org, scope.bucket, sourceId, now],
      );
      const running = jobs.rows.filter((r) => r.status === "processing").map((r) => r.job_id as string);
      for (const id of running) await client.query("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CANCEL, id]);
      const del = await client.query("DELETE FROM sources WHERE org = $1 AND bucket = $2 AND source_id = $3 AND provider <> 'internal_s3'", [scope.org, scope.bucket, sourceId]);
      return { found: (del.rowCount ?? 0) > 0, running };
    }, { found: false, running: [] });
  }

  /**
   * Objects, bytes and indexed objects (current version indexed, migration 019) of a source:
   * the internal source's from its bucket's usage, an external one's in one pass over its
   * catalog rows.
   */
  async sourceTotals(s: Source, signal?: AbortSignal): Promise<SourceTotals> {
    const t = totalsQuery(s);
    return totalsOf((await this.q(t.sql, t.params, signal))[0]);
  }

  /**
   * A source's totals and its jobs by status (exact, from the counters), read by one
   * statement: at one snapshot, so a job that completes meanwhile is in both or in neither
   * (two reads on two connections once showed 1,000 completed jobs and 999 indexed objects).
   */
  async sourceStatusCounts(s: Source, signal?: AbortSignal): Promise<{ totals: SourceTotals; jobs: Record<string, number> }> {
    const t = totalsQuery(s);
    const [org, bucket, ids] = [t.params.length + 1, t.params.length + 2, t.params.length + 3];
    const where = `WHERE org = $${org} AND bucket = $${bucket} AND source_id = ANY($${ids}::text[])`;
    const rows = await this.q(
      `SELECT t.*, (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
         SELECT status, sum(n) AS n FROM (SELECT status, n FROM job_counts ${where} UNION ALL SELECT status, n FROM job_count_deltas ${where}) AS c
         GROUP BY status HAVING sum(n) <> 0) AS j) AS job_counts
       FROM (${t.sql}) AS t`,
      [...t.params, s.org, s.bucket, s.provider === "internal_s3" ? [s.sourceId, ""] : [s.sourceId]],
      signal,
    );
    const jobs = Object.fromEntries(Object.entries((rows[0]?.job_counts ?? {}) as Record<string, unknown>).map(([status, n]) => [status, num(n)]));
    return { totals: totalsOf(rows[0]), jobs };
  }

  // --- discoveries ---

  /** Creates a pending discovery, or returns the active one of the source (created false). */
  async discoveryCreate(d: Pick<Discovery, "discoveryId" | "org" | "bucket" | "sourceId" | "fullSync" | "ruleId" | "createdAt">): Promise<{ discovery: Discovery; created: boolean }> {
    const rows = await this.q(
      `INSERT INTO discoveries (discovery_id, org, bucket, source_id, full_sync, rule_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (source_id) WHERE state IN ('pending', 'running') DO NOTHING RETURNING ${DISCOVERY_COLUMNS}`,
      [d.discoveryId, d.org, d.bucket, d.sourceId, d.fullSync, d.ruleId, d.createdAt],
    );
    if (rows[0]) return { discovery: toDiscovery(rows[0]), created: true };
    const active = await this.discoveryActive(d.sourceId);
    if (active) return { discovery: active, created: false };
    return this.discoveryCreate(d); // it ended meanwhile
  }

  async discoveryActive(sourceId: string): Promise<Discovery | undefined> {
    const rows = await this.q(`SELECT ${DISCOVERY_COLUMNS} FROM discoveries WHERE source_id = $1 AND state IN ('pending', 'running')`, [sourceId]);
    return rows[0] ? toDiscovery(rows[0]) : undefined;
  }

  async discoveryLastEnded(sourceId: string): Promise<Discovery | undefined> {
    const rows = await this.q(
      `SELECT ${DISCOVERY_COLUMNS} FROM discoveries WHERE source_id = $1 AND state NOT IN ('pending', 'running') ORDER BY created_at DESC, discovery_id DESC LIMIT 1`,
      [sourceId],
    );
    return rows[0] ? toDiscovery(rows[0]) : undefined;
  }

  /** Claims the oldest pending discovery (or one whose lease expired) for `owner`. */
  async discoveryClaim(owner: string, leaseMs: number, now: number): Promise<Discovery | undefined> {
    const rows = await this.q(
      `WITH next AS (
         SELECT discovery_id FROM discoveries
         WHERE state = 'pending' OR (state = 'running' AND lease_expires_at < $2)
         ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED
       ), claimed AS (
         UPDATE discoveries d SET state = 'running', lease_owner = $1, lease_expires_at = $2 + $3::bigint, attempts = attempts + 1,
           started_at = CASE WHEN started_at = 0 THEN $2 ELSE started_at END
         FROM next WHERE d.discovery_id = next.discovery_id RETURNING d.*
       ), touched AS (
         UPDATE sources s SET last_sync_at = $2 FROM claimed WHERE s.source_id = claimed.source_id AND claimed.attempts = 1
       )
       SELECT ${DISCOVERY_COLUMNS} FROM claimed`,
      [owner, now, leaseMs],
    );
    return rows[0] ? toDiscovery(rows[0]) : undefined;
  }

  /** Extends the lease; false when it is no longer held. */
  async discoveryHeartbeat(id: string, owner: string, leaseMs: number, now: number): Promise<boolean> {
    return (await this.exec("UPDATE discoveries SET lease_expires_at = $3 + $4::bigint WHERE discovery_id = $1 AND lease_owner = $2 AND state = 'running'", [id, owner, now, leaseMs])) > 0;
  }

  /** The checkpoint rows with keys in (after, upTo] (upTo undefined: to the end), in key order. */
  async checkpointRange(s: Source, after: string, upTo: string | undefined, limit: number): Promise<CheckpointEntry[]> {
    const internal = s.provider === "internal_s3";
    const owner = internal ? [s.org, s.bucket] : [s.sourceId];
    const values: unknown[] = [...owner, after, ...(upTo === undefined ? [] : [upTo])];
    const n = owner.length;
    const where = `object_key > $${n + 1}${upTo === undefined ? "" : ` AND object_key <= $${n + 2}`}`;
    const rows = internal
      ? await this.q(`SELECT object_key, size, etag, content_type, version::text AS version FROM objects WHERE org = $1 AND bucket = $2 AND ${where} ORDER BY object_key LIMIT ${limit}`, values)
      : await this.q(`SELECT object_key, size, etag, content_type, version FROM source_objects WHERE source_id = $1 AND ${where} ORDER BY object_key LIMIT ${limit}`, values);
    return rows.map((r) => ({ key: r.object_key, size: num(r.size), etag: r.etag, version: r.version, contentType: r.content_type }));
  }

  /**
   * Commits one batch of a discovery in one transaction, fenced by its lease: checkpoint
   * writes (each guarded by the version read, so a concurrent upload wins), deletions with
   * their outputs and unfinished jobs, the jobs of the keys whose writes landed, and the
   * discovery's counts and checkpoint key. Returns the jobs created.
   */
  async discoveryCommit(d: Discovery, owner: string, s: Source, b: DiscoveryBatch, leaseMs: number, now: number): Promise<number> {
    return this.tx(async (client) => {
      const held = await client.query("SELECT 1 FROM discoveries WHERE discovery_id = $1 AND lease_owner = $2 AND state = 'running' FOR UPDATE", [d.discoveryId, owner]);
      if (held.rowCount === 0) throw new LostLease(d.discoveryId);
      const landed = await this.writeCheckpoint(client, s, b, now);
      const gone = await this.deleteGone(client, s, b.deletions, now);
      const jobs = b.jobs.filter((j) => !b.guarded.has(j.key) || landed.has(j.key));
      if (jobs.length) await client.query(SQL.JOB_INSERT_BATCH, jobInsertParams(jobs));
      const c = b.counts;
      await client.query(
        `UPDATE discoveries SET checkpoint_key = $3, scanned = scanned + $4, new_objects = new_objects + $5, modified = modified + $6,
           unchanged = unchanged + $7, deleted = deleted + $8, failed = failed + $9, dispatched = dispatched + $10, lease_expires_at = $11 + $12::bigint
         WHERE discovery_id = $1 AND lease_owner = $2`,
        [d.discoveryId, owner, b.checkpointKey, c.scanned, c.newObjects, c.modified, c.unchanged, gone, c.failed, jobs.length, now, leaseMs],
      );
      return jobs.length;
    }, 0);
  }

  private async writeCheckpoint(client: PoolClient, s: Source, b: DiscoveryBatch, now: number): Promise<Set<string>> {
    if (b.upserts.length === 0) return new Set();
    const u = b.upserts;
    const col = <T>(f: (x: DiscoveryBatch["upserts"][number]) => T) => u.map(f);
    const res =
      s.provider === "internal_s3"
        ? await client.query(
            `INSERT INTO objects AS o (org, bucket, object_key, size, etag, content_type, version, created_at, updated_at)
             SELECT $1, $2, k, sz, e, ct, v::numeric, $3, $3 FROM unnest($4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[]) AS x(k, sz, e, ct, v)
             ON CONFLICT (org, bucket, object_key) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
               ${SQL.KEEP_INDEXED("o")}
               WHERE o.version::text = (SELECT pv FROM unnest($4::text[], $9::text[]) AS p(pk, pv) WHERE pk = o.object_key)
             RETURNING object_key`,
            [s.org, s.bucket, now, col((x) => x.key), col((x) => x.size), col((x) => x.etag), col((x) => x.contentType), col((x) => x.version), col((x) => x.previousVersion ?? "")],
          )
        : await client.query(
            `INSERT INTO source_objects AS o (source_id, object_key, size, etag, content_type, version, updated_at)
             SELECT $1, k, sz, e, ct, v, $2 FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[]) AS x(k, sz, e, ct, v)
             ON CONFLICT (source_id, object_key) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, content_type = EXCLUDED.content_type,
               version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, ${SQL.KEEP_INDEXED("o")}
             RETURNING object_key`,
            [s.sourceId, now, col((x) => x.key), col((x) => x.size), col((x) => x.etag), col((x) => x.contentType), col((x) => x.version)],
          );
    return new Set(res.rows.map((r) => r.object_key as string));
  }

  /** Deletes gone objects from the checkpoint (if unchanged since read), their outputs and unfinished jobs; returns how many. */
  private async deleteGone(client: PoolClient, s: Source, gone: DiscoveryBatch["deletions"], now: number): Promise<number> {
    if (gone.length === 0) return 0;
    const keys = gone.map((g) => g.key);
    const del =
      s.provider === "internal_s3"
        ? await client.query(
            `DELETE FROM objects o USING unnest($3::text[], $4::text[]) AS g(k, v) WHERE o.org = $1 AND o.bucket = $2 AND o.object_key = g.k AND o.version::text = g.v RETURNING o.object_key`,
            [s.org, s.bucket, keys, gone.map((g) => g.version)],
          )
        : await client.query(`DELETE FROM source_objects WHERE source_id = $1 AND object_key = ANY($2::text[]) RETURNING object_key`, [s.sourceId, keys]);
    if (del.rows.length > 0) await forgetOutputs(client, s, del.rows.map((r) => r.object_key as string), now);
    return del.rowCount ?? 0;
  }

  /** Ends a discovery (fenced by its lease) and records the outcome on its source. */
  async discoveryFinish(d: Discovery, owner: string, state: "completed" | "failed", error: string, now: number): Promise<boolean> {
    if (state === "completed") await this.analyzeWhenStale(d.discoveryId);
    return this.tx(async (client) => {
      const res = await client.query(
        "UPDATE discoveries SET state = $3, error = $4, finished_at = $5, lease_owner = NULL, lease_expires_at = NULL WHERE discovery_id = $1 AND lease_owner = $2 AND state = 'running'",
        [d.discoveryId, owner, state, error, now],
      );
      if (res.rowCount === 0) return false;
      if (state === "completed") await client.query("UPDATE sources SET last_success_at = $2, last_error = '' WHERE source_id = $1", [d.sourceId, now]);
      else await client.query("UPDATE sources SET last_error = $2 WHERE source_id = $1", [d.sourceId, error]);
      return true;
    }, false);
  }

  /**
   * Before a discovery is reported done: analyzes its catalog table and jobs when it saw
   * more entries than the planner's statistics know the table holds. A bucket filled at
   * once looks nearly empty until autovacuum gets to it, and the statements that follow
   * (the jobs' completions flagging their objects, listings, the next discovery) are
   * planned for an empty table; a source's status once took 30 s a call that way.
   * ANALYZE samples a fixed number of rows, about a second at millions; a role that may
   * not analyze skips it.
   */
  private async analyzeWhenStale(discoveryId: string): Promise<void> {
    const [r] = await this.q(
      `SELECT d.scanned, s.provider = 'internal_s3' AS internal,
         (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = (CASE WHEN s.provider = 'internal_s3' THEN 'objects' ELSE 'source_objects' END)::regclass) AS known
       FROM discoveries d JOIN sources s ON s.source_id = d.source_id WHERE d.discovery_id = $1`,
      [discoveryId],
    );
    if (!r || num(r.scanned) < 1000 || num(r.known) * 2 >= num(r.scanned)) return;
    await this.q(`ANALYZE ${r.internal ? "objects" : "source_objects"}, jobs`).catch(() => undefined);
  }

  /** Hands a discovery back (SIGTERM): pending again, resumed after its checkpoint by whoever claims it. */
  async discoveryRelease(id: string, owner: string): Promise<void> {
    await this.q("UPDATE discoveries SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL WHERE discovery_id = $1 AND lease_owner = $2 AND state = 'running'", [id, owner]);
  }

  /**
   * Scheduled polls: moves each due source's next_sync_at one period on and returns it, so
   * that whichever instance gets there first (and only it) starts that period's discovery.
   */
  async sourcesDue(now: number): Promise<Source[]> {
    const rows = await this.q(
      // Periods stay aligned to the schedule (not to when a poll got there), unless behind.
      `UPDATE sources s SET next_sync_at = CASE WHEN s.next_sync_at + s.sync_interval_seconds * 1000 > $1
                                                THEN s.next_sync_at + s.sync_interval_seconds * 1000
                                                ELSE $1 + s.sync_interval_seconds * 1000 END
       FROM (SELECT source_id FROM sources WHERE enabled AND sync_interval_seconds > 0 AND next_sync_at <= $1
             ORDER BY next_sync_at LIMIT 20 FOR UPDATE SKIP LOCKED) AS due
       WHERE s.source_id = due.source_id RETURNING ${SOURCE_COLUMNS.split(",").map((c) => `s.${c.trim()}`).join(", ")}`,
      [now],
    );
    return rows.map(toSource);
  }

  // --- TriggerIngestion ---

  /** Checkpoint rows after `after` in key order (with content type), for dispatch. */
  async checkpointPage(s: Source, after: string, limit: number, only?: string): Promise<CheckpointEntry[]> {
    const op = only === undefined ? ">" : "=";
    const rows =
      s.provider === "internal_s3"
        ? await this.q(`SELECT object_key, size, etag, content_type, version::text AS version FROM objects WHERE org = $1 AND bucket = $2 AND object_key ${op} $3 ORDER BY object_key LIMIT ${limit}`, [s.org, s.bucket, only ?? after])
        : await this.q(`SELECT object_key, size, etag, content_type, version FROM source_objects WHERE source_id = $1 AND object_key ${op} $2 ORDER BY object_key LIMIT ${limit}`, [s.sourceId, only ?? after]);
    return rows.map((r) => ({ key: r.object_key, size: num(r.size), etag: r.etag, version: r.version, contentType: r.content_type }));
  }

  /** Per (key, pipeline), the latest job of the source's objects `keys`. */
  async latestJobs(s: Source, keys: string[]): Promise<Map<string, { jobId: string; status: string; objectVersion: string }>> {
    const ids = s.provider === "internal_s3" ? [s.sourceId, ""] : [s.sourceId];
    const rows = await this.q(
      `SELECT DISTINCT ON (object_key, pipeline_id) object_key, pipeline_id, job_id, status, object_version FROM jobs
       WHERE org = $1 AND bucket = $2 AND object_key = ANY($3::text[]) AND source_id = ANY($4::text[])
       ORDER BY object_key, pipeline_id, created_at DESC, job_id DESC`,
      [s.org, s.bucket, keys, ids],
    );
    return new Map(rows.map((r) => [`${r.pipeline_id}\u0000${r.object_key}`, { jobId: r.job_id, status: r.status, objectVersion: r.object_version }]));
  }

  async jobsInsert(jobs: NewJob[]): Promise<number> {
    if (jobs.length === 0) return 0;
    return (await this.q(SQL.JOB_INSERT_BATCH, jobInsertParams(jobs))).length;
  }
}

