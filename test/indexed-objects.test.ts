/**
 * A source's indexed objects (GetSource, ListSources, GetSyncStatus): objects whose current
 * version was indexed, kept on the catalog rows (migration 019) instead of joined from the
 * jobs on every call. Exact through completions through the real queue statements, for the
 * current version only, across overwrites, deletes, folds and retention; an external
 * source's too; and a database migrated in place from 018 starts with the right counts.
 */
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "pg";
import type { RunOutcome } from "../src/domain/job";
import type { Source } from "../src/domain/source";
import { MIGRATIONS_DIR, migrate } from "../src/storage/postgres/migrate";
import { PgRepository } from "../src/storage/postgres/repository";
import { createFsObjectStore } from "../src/storage/fs-object-store";
import { createTestDb, type TestDb } from "./helpers/db";
import { insertJob } from "./helpers/factory";
import { within } from "./helpers/wait";

let db: TestDb;
let repo: PgRepository;
const scope = { org: "default", bucket: "kb-indexed" };
const INTERNAL = "src_idx_internal";
const EXTERNAL = "src_idx_external";
const now = Date.now();

beforeAll(async () => {
  db = await createTestDb();
  repo = new PgRepository({ connectionString: db.url });
  await migrate(repo.pool);
  await repo.buckets.bucketInsert({ ...scope, name: scope.bucket, description: "", status: "active", accessMode: "private", storageQuotaBytes: 0, internalSourceId: INTERNAL, createdAt: now, updatedAt: now });
});
afterAll(async () => {
  await repo.close();
  await db.drop();
});

const DONE: RunOutcome = { status: "completed", output: { kind: "none" }, chunksCreated: 0, embeddingsCreated: 0, vectorStatus: "", error: "", errorDetails: "" };

/** Jobs for `keys` (source, object version), claimed and completed in one statement each, as the worker does. */
async function complete(jobs: Array<{ key: string; version: string; sourceId?: string }>): Promise<void> {
  for (const j of jobs) {
    const id = await insertJob(repo.pool, { ...scope, key: j.key, pipelineId: "pipe_idx", status: "pending" });
    await repo.pool.query("UPDATE jobs SET source_id = $2, object_version = $3 WHERE job_id = $1", [id, j.sourceId ?? INTERNAL, j.version]);
  }
  const claimed = await repo.queue.jobClaimAvailable({ owner: "test", limit: 100, leaseMs: 60_000 });
  expect(claimed).toHaveLength(jobs.length);
  const ended = await repo.queue.jobCompleteMany({ items: claimed.map((c) => ({ jobId: c.jobId, threadId: c.threadId, outcome: DONE })) });
  expect(ended.size).toBe(jobs.length);
}

async function totals(sourceId: string): Promise<{ objects: number; indexed: number }> {
  const s = (await repo.sync.sourceGet(scope, sourceId)) as Source;
  const t = await repo.sync.sourceTotals(s);
  return { objects: t.objects, indexed: t.indexed };
}

/** What the old status query counted, for the rows still there: the reference the flags must agree with. */
async function joinedCount(): Promise<number> {
  const { rows } = await repo.pool.query(
    `SELECT count(*)::int AS n FROM objects o WHERE o.org = $1 AND o.bucket = $2 AND EXISTS (
       SELECT 1 FROM jobs j WHERE j.org = $1 AND j.bucket = $2 AND j.object_key = o.object_key AND j.status = 'completed'
         AND j.source_id IN ($3, '') AND j.object_version IN (o.version::text, ''))`,
    [scope.org, scope.bucket, INTERNAL],
  );
  return rows[0].n;
}

/** The bytes' side of a catalog write: a store of its own, holding none of these objects. */
const bytes = createFsObjectStore(mkdtempSync(join(tmpdir(), "k3-indexed-objects-")));

const put = (key: string, version: number) =>
  repo.catalog.objectPut(scope, key, async () => ({ object: { key, size: 10, etag: "e", contentType: "text/plain", metadata: {}, version: BigInt(version), createdAt: now, updatedAt: now }, jobs: [] }), bytes);

test("the internal source: flagged when a job for the current version completes, cleared by a new version, kept after retention", async () => {
  await put("a.txt", 1);
  await put("b.txt", 1);
  await put("c.txt", 1);
  expect(await totals(INTERNAL)).toEqual({ objects: 3, indexed: 0 });

  // A job of the current version, and a TriggerIngest job (no version: what is there).
  await complete([{ key: "a.txt", version: "1" }, { key: "b.txt", version: "" }]);
  expect(await totals(INTERNAL)).toEqual({ objects: 3, indexed: 2 });
  expect(await joinedCount()).toBe(2);

  // A new version of a.txt is not indexed; a late job of its old version does not change that.
  await put("a.txt", 2);
  expect(await totals(INTERNAL)).toEqual({ objects: 3, indexed: 1 });
  await complete([{ key: "a.txt", version: "1" }]);
  expect(await totals(INTERNAL)).toEqual({ objects: 3, indexed: 1 });
  expect(await joinedCount()).toBe(1);
  // Another source's job for the key does not index the bucket's object either.
  await complete([{ key: "c.txt", version: "1", sourceId: "src_someone_else" }]);
  expect(await totals(INTERNAL)).toEqual({ objects: 3, indexed: 1 });
  await complete([{ key: "a.txt", version: "2" }, { key: "a.txt", version: "2" }]);
  expect(await totals(INTERNAL)).toEqual({ objects: 3, indexed: 2 });

  expect(await repo.catalog.objectDelete(scope, "b.txt", now, bytes)).toBe(true);
  expect(await totals(INTERNAL)).toEqual({ objects: 2, indexed: 1 });
  expect(await repo.buckets.usageCompact()).toBe(true);
  expect(await totals(INTERNAL)).toEqual({ objects: 2, indexed: 1 });

  // Retention deletes the jobs; the object's output is still there, and so is its flag.
  expect(await repo.jobs.jobPruneFinished(Date.now() + 1000, 1000)).toBeGreaterThan(0);
  expect(await totals(INTERNAL)).toEqual({ objects: 2, indexed: 1 });
});

test("an external source counts its own catalog's flags, per version", async () => {
  await repo.sync.sourceInsert(
    { sourceId: EXTERNAL, org: scope.org, bucket: scope.bucket, provider: "external_s3", name: "ext", description: "", rootPath: "", providerAccount: "", syncIntervalSeconds: 0, enabled: true, secretSealed: "", lastSyncAt: 0, lastSuccessAt: 0, lastError: "", createdAt: now, updatedAt: now },
    0,
  );
  await repo.pool.query(
    `INSERT INTO source_objects (source_id, object_key, size, version, updated_at) VALUES ($1, 'x.txt', 5, 'v1', 1), ($1, 'y.txt', 7, 'v1', 1), ($1, 'z.txt', 9, 'v1', 1)`,
    [EXTERNAL],
  );
  expect(await totals(EXTERNAL)).toEqual({ objects: 3, indexed: 0 });
  await complete([{ key: "x.txt", version: "v1", sourceId: EXTERNAL }, { key: "y.txt", version: "v0", sourceId: EXTERNAL }, { key: "z.txt", version: "v1", sourceId: INTERNAL }]);
  expect(await totals(EXTERNAL)).toEqual({ objects: 3, indexed: 1 });
  // The internal source's count did not move for the external source's keys.
  expect(await totals(INTERNAL)).toEqual({ objects: 2, indexed: 1 });
});

test("a database migrated in place from 018 starts with the flags and counts the join gave", async () => {
  const old = await createTestDb();
  const dir = mkdtempSync(join(tmpdir(), "k3-migrations-018-"));
  const pool = new Pool({ connectionString: old.url });
  const upgraded = new PgRepository({ connectionString: old.url });
  try {
    for (const f of readdirSync(MIGRATIONS_DIR).filter((f) => f < "019")) cpSync(join(MIGRATIONS_DIR, f), join(dir, f));
    await migrate(pool, dir);
    await pool.query(
      `INSERT INTO buckets (org, name, description, status, access_mode, storage_quota_bytes, internal_source_id, created_at, updated_at) VALUES ('default', 'kb-old', '', 'active', 'private', 0, 'src_old', 1, 1);
       INSERT INTO sources (source_id, org, bucket, provider, name, created_at, updated_at) VALUES ('src_old', 'default', 'kb-old', 'internal_s3', 'internal', 1, 1);
       INSERT INTO objects (org, bucket, object_key, size, version, created_at, updated_at)
         SELECT 'default', 'kb-old', 'k' || i, 1, i, 1, 1 FROM generate_series(1, 40) i`,
    );
    // Completed jobs: ten of the current version, five with no version, five of an old version; pending ones for the rest.
    const job = (i: number, status: string, version: string) =>
      pool.query(
        `INSERT INTO jobs (job_id, org, bucket, object_key, status, pipeline_id, source_id, object_version, created_at, updated_at, finished_at)
         VALUES ($1, 'default', 'kb-old', $2, $3, 'pipe_old', 'src_old', $4, 1, 1, $5)`,
        [`job_old_${i}_${status}_${version}`, `k${i}`, status, version, status === "completed" ? 2 : 0],
      );
    for (let i = 1; i <= 10; i++) await job(i, "completed", String(i));
    for (let i = 11; i <= 15; i++) await job(i, "completed", "");
    for (let i = 16; i <= 20; i++) await job(i, "completed", String(i - 1));
    for (let i = 21; i <= 40; i++) await job(i, "pending", String(i));
    expect((await migrate(pool))[0]).toBe("019_indexed_objects.sql"); // and those after it
    const s = (await upgraded.sync.sourceGet({ org: "default", bucket: "kb-old" }, "src_old")) as Source;
    expect(await upgraded.sync.sourceTotals(s)).toEqual({ objects: 40, bytes: 40, indexed: 15 });
    expect((await pool.query("SELECT count(*)::int AS n FROM objects WHERE indexed")).rows[0].n).toBe(15);
  } finally {
    await upgraded.close();
    await pool.end();
    rmSync(dir, { recursive: true, force: true });
    await old.drop();
  }
});

test("a completion never waits for an object's row: a delete of the object mid-way cannot deadlock with it", async () => {
  await put("d.txt", 7);
  const id = await insertJob(repo.pool, { ...scope, key: "d.txt", pipelineId: "pipe_idx", status: "pending" });
  await repo.pool.query("UPDATE jobs SET source_id = $2, object_version = '7' WHERE job_id = $1", [id, INTERNAL]);
  const [claimed] = await repo.queue.jobClaimAvailable({ owner: "test", limit: 100, leaseMs: 60_000 });
  expect(claimed.jobId).toBe(id);
  // An object delete, as objectDelete runs it: the catalog row first, then the object's jobs.
  const del = await repo.pool.connect();
  try {
    await del.query("BEGIN");
    await del.query("DELETE FROM objects WHERE org = $1 AND bucket = $2 AND object_key = 'd.txt'", [scope.org, scope.bucket]);
    // The completion goes through while the delete holds the row (it waited for it before, and
    // the delete's next statement, waiting for the job's row, made a deadlock of it).
    const ended = await within(repo.queue.jobCompleteMany({ items: [{ jobId: id, threadId: claimed.threadId, outcome: DONE }] }), 5000, "still waiting for the object's row after 5 s");
    expect(ended).toEqual(new Set([id]));
    await del.query("UPDATE jobs SET cancel_requested = true WHERE job_id = $1 AND status IN ('pending', 'processing')", [id]);
    await del.query("COMMIT");
  } finally {
    del.release();
  }
  expect(await totals(INTERNAL)).toEqual({ objects: 2, indexed: 1 });
});
