/** Migrations under concurrency, and how the repository reports database trouble. */
import { Pool } from "pg";
import { Unavailable } from "../src/domain/errors";
import { migrate, migrationsDone } from "../src/storage/postgres/migrate";
import { PgRepository } from "../src/storage/postgres/repository";
import { createFsObjectStore } from "../src/storage/fs-object-store";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ATTEMPT_OUTPUT, outputBatches } from "../src/storage/postgres/destinations";
import { vectorOf } from "../src/storage/postgres/vector-bytes";
import { createTestDb, type TestDb } from "./helpers/db";
import { insertJob } from "./helpers/factory";
import { within } from "./helpers/wait";

let db: TestDb;
/** The bytes' side of the catalog writes below: a store of its own, holding none of their objects. */
const bytes = createFsObjectStore(mkdtempSync(join(tmpdir(), "k3-storage-test-")));
beforeAll(async () => {
  db = await createTestDb();
});
afterAll(() => db.drop());

test("two instances migrating at once apply each migration exactly once", async () => {
  const pools = [new Pool({ connectionString: db.url }), new Pool({ connectionString: db.url }), new Pool({ connectionString: db.url })];
  try {
    const results = await Promise.all(pools.map((p) => migrate(p)));
    const applied = results.flat();
    expect(applied).toContain("001_init.sql");
    // Each file applied by exactly one of the racers.
    expect(new Set(applied).size).toBe(applied.length);
    const { rows } = await pools[0].query("SELECT name, count(*) OVER (PARTITION BY version) AS n FROM k3_migrations");
    expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
    expect(await migrationsDone(pools[0])).toBe(true);
    // Running again is a no-op.
    expect(await migrate(pools[1])).toEqual([]);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

test("the CHECK constraints back the job state invariants", async () => {
  const pool = new Pool({ connectionString: db.url });
  try {
    await migrate(pool);
    const insert = (status: string, lease: string | null, finished: number) =>
      pool.query(
        `INSERT INTO jobs (job_id, org, bucket, object_key, status, pipeline_id, lease_owner, created_at, updated_at, finished_at)
         VALUES ($1, 'default', 'kb', 'k', $2, 'pipe_x', $3, 1, 1, $4)`,
        [`job_${status}_${lease}_${finished}`, status, lease, finished],
      );
    await expect(insert("processing", null, 0)).rejects.toThrow(/jobs_lease_iff_processing/);
    await expect(insert("pending", "w1", 0)).rejects.toThrow(/jobs_lease_iff_processing/);
    await expect(insert("completed", null, 0)).rejects.toThrow(/jobs_finished_iff_terminal/);
    await expect(insert("bogus", null, 0)).rejects.toThrow(/check constraint/);
    await expect(insert("completed", null, 5)).resolves.toBeDefined();
  } finally {
    await pool.end();
  }
});

test("an unreachable database is UNAVAILABLE, quickly", async () => {
  const repo = new PgRepository({ connectionString: "postgres://postgres@127.0.0.1:1/none", connectTimeoutMs: 2000 });
  try {
    const started = Date.now();
    await expect(repo.jobs.jobGetById({ org: "default", bucket: "kb" }, "job_x")).rejects.toBeInstanceOf(Unavailable);
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    await repo.close();
  }
});

test("an attempt whose lease was taken over — even by the same worker — cannot write anything", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  try {
    await migrate(repo.pool);
    const { job } = await repo.jobs.jobInsert({
      jobId: "job_takeover",
      org: "default",
      bucket: "kb",
      key: "a.txt",
      pipelineId: "pipe_x",
      pipelineName: "x",
      pipelineKind: "vector",
      template: "text_embedding_index",
      ruleId: "",
      options: {},
      requestId: "",
      traceId: "",
      createdAt: 1000,
    });
    const [a] = await repo.queue.jobClaimAvailable({ owner: "worker-a", limit: 10, leaseMs: 50 });
    expect(a.jobId).toBe(job.jobId);
    expect(a.attempts).toBe(1);
    // A stalls; its lease expires (by the database's clock) and the job goes back to PENDING,
    // then to the same worker again: a new attempt.
    await new Promise((r) => setTimeout(r, 120));
    expect(await repo.queue.jobRescueExpired({ maxAttempts: 5, maxLostAttempts: 5 })).toEqual([{ jobId: job.jobId, status: "pending" }]);
    const [b] = await repo.queue.jobClaimAvailable({ owner: "worker-a", limit: 10, leaseMs: 10_000 });
    expect(b).toMatchObject({ jobId: job.jobId, attempts: 2 });
    expect(b.threadId).not.toBe(a.threadId);

    const outcome = {
      status: "completed" as const,
      output: { kind: "vector" as const, chunks: [{ index: 0, text: "stale", vector: [1, 0] }], batchSize: 10 },
      chunksCreated: 1,
      embeddingsCreated: 1,
      vectorStatus: "success",
      error: "",
      errorDetails: "",
    };
    const stale = { jobId: job.jobId, threadId: a.threadId };
    // Everything the stale attempt tries now is refused and writes nothing.
    expect(await repo.queue.jobHeartbeat({ threadIds: [a.threadId], leaseMs: 100 })).toEqual([]);
    expect(await repo.queue.jobComplete({ job: a, outcome, sourceVersion: 1n })).toBeUndefined();
    expect(await repo.queue.jobFailAttempt({ ...stale, error: "x", errorDetails: "", retryDelayMs: 10 })).toBeUndefined();
    expect(await repo.queue.jobRecordProgress({ ...stale, counters: { chunksCreated: 9, embeddingsCreated: 9 } })).toBe(false);
    expect(await repo.queue.jobCompleteMany({ items: [{ ...stale, outcome: { ...outcome, output: { kind: "none" } } }] })).toEqual(new Set());
    expect(await repo.queue.jobRelease({ threadIds: [a.threadId] })).toBe(0);
    expect((await repo.pool.query("SELECT count(*)::int AS n FROM vector_chunks")).rows[0].n).toBe(0);
    expect((await repo.pool.query("SELECT status, attempts FROM jobs WHERE job_id = $1", [job.jobId])).rows[0]).toEqual({ status: "processing", attempts: 2 });

    const done = await repo.queue.jobComplete({ job: b, outcome: { ...outcome, output: { ...outcome.output, chunks: [{ index: 0, text: "fresh", vector: [0, 1] }] } }, sourceVersion: 1n });
    expect(done).toMatchObject({ status: "completed", embeddingsWritten: 1, batchesReceived: 1, outputSize: 5 + 8, attempts: 2 });
    const rows = (await repo.pool.query("SELECT content, embedding, job_id FROM vector_chunks")).rows;
    expect(rows.map((r) => ({ ...r, embedding: Array.from(vectorOf(r.embedding)) }))).toEqual([{ content: "fresh", embedding: [0, 1], job_id: job.jobId }]);
    // A finished job cannot be claimed, rescued or cancelled-running again.
    expect(await repo.queue.jobClaimAvailable({ owner: "worker-a", limit: 10, leaseMs: 100 })).toEqual([]);
    expect(await repo.queue.jobCancelRunning({ jobId: job.jobId, threadId: b.threadId })).toBeUndefined();
  } finally {
    await repo.close();
  }
});

test("the output of an older object version never replaces a newer one; the older job completes as superseded", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  try {
    await migrate(repo.pool);
    const base = { org: "default", bucket: "kb-ver", key: "v.txt", pipelineId: "pipe_v", pipelineName: "v", pipelineKind: "vector", template: "text_embedding_index", ruleId: "", options: {}, requestId: "", traceId: "" };
    await repo.jobs.jobInsert({ ...base, jobId: "job_ver_old", createdAt: 2000 });
    await repo.jobs.jobInsert({ ...base, jobId: "job_ver_new", createdAt: 2001 });
    const claimed = await repo.queue.jobClaimAvailable({ owner: "w", limit: 10, leaseMs: 10_000 });
    const byId = new Map(claimed.map((j) => [j.jobId, j]));
    const out = (text: string) => ({ status: "completed" as const, output: { kind: "vector" as const, chunks: [{ index: 0, text, vector: [1] }], batchSize: 10 }, chunksCreated: 1, embeddingsCreated: 1, vectorStatus: "success", error: "", errorDetails: "" });
    // The job that read the newer file finishes first; the one that read the older file after it.
    expect(await repo.queue.jobComplete({ job: byId.get("job_ver_new")!, outcome: out("new"), sourceVersion: 200n })).toMatchObject({ status: "completed", embeddingsWritten: 1 });
    const old = await repo.queue.jobComplete({ job: byId.get("job_ver_old")!, outcome: out("old"), sourceVersion: 100n });
    expect(old).toMatchObject({ status: "completed", embeddingsWritten: 0, rowsWritten: 0 });
    expect(old?.errorDetails).toMatch(/^superseded: job job_ver_new had already indexed a newer version of the object/);
    const rows = (await repo.pool.query("SELECT content, job_id FROM vector_chunks WHERE bucket = 'kb-ver'")).rows;
    expect(rows).toEqual([{ content: "new", job_id: "job_ver_new" }]);
  } finally {
    await repo.close();
  }
});

test("an output of several batches replaces the previous one whole; an attempt cancelled between batches writes nothing", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  try {
    await migrate(repo.pool);
    const base = { org: "default", bucket: "kb-multi", key: "m.txt", pipelineId: "pipe_m", pipelineName: "m", pipelineKind: "vector", template: "text_embedding_index", ruleId: "", options: {}, requestId: "", traceId: "" };
    const chunks = (n: number, text: string) => Array.from({ length: n }, (_, i) => ({ index: i, text: `${text}${i}`, vector: [i, 1] }));
    const out = (n: number, text: string) => ({ status: "completed" as const, output: { kind: "vector" as const, chunks: chunks(n, text), batchSize: 2 }, chunksCreated: n, embeddingsCreated: n, vectorStatus: "success", error: "", errorDetails: "" });
    const contents = async () => (await repo.pool.query("SELECT content FROM vector_chunks WHERE bucket = 'kb-multi' ORDER BY chunk_index")).rows.map((r) => r.content);

    await repo.jobs.jobInsert({ ...base, jobId: "job_multi_1", createdAt: 3000 });
    const [first] = await repo.queue.jobClaimAvailable({ owner: "w", limit: 10, leaseMs: 10_000 });
    expect(await repo.queue.jobComplete({ job: first, outcome: out(7, "a"), sourceVersion: 1n })).toMatchObject({ status: "completed", embeddingsWritten: 7, batchesReceived: 4 });
    expect(await contents()).toEqual(["a0", "a1", "a2", "a3", "a4", "a5", "a6"]);

    // A second run with fewer chunks: none of the first run's seven is left.
    await repo.jobs.jobInsert({ ...base, jobId: "job_multi_2", createdAt: 3001 });
    const [second] = await repo.queue.jobClaimAvailable({ owner: "w", limit: 10, leaseMs: 10_000 });
    expect(await repo.queue.jobComplete({ job: second, outcome: out(3, "b"), sourceVersion: 2n })).toMatchObject({ embeddingsWritten: 3, batchesReceived: 2 });
    expect(await contents()).toEqual(["b0", "b1", "b2"]);

    // A third run is cancelled after its first batch went in: the last call refuses (SQLSTATE
    // K3A01) and the transaction, first batch included, is undone.
    await repo.jobs.jobInsert({ ...base, jobId: "job_multi_3", createdAt: 3002 });
    const [third] = await repo.queue.jobClaimAvailable({ owner: "w", limit: 10, leaseMs: 10_000 });
    const [batch1, batch2] = outputBatches(out(3, "c").output);
    const call = (first: boolean, last: boolean, batch: unknown[]) =>
      [first, last, "vector", "default", "kb-multi", "pipe_m", "m.txt", third.jobId, third.threadId, "3", ...batch, "completed", 3, 3, 0, 0, 2, 3, "success", "", ""];
    const writer = await repo.pool.connect();
    try {
      await writer.query("BEGIN");
      expect((await writer.query(ATTEMPT_OUTPUT, call(true, false, batch1))).rows[0]).toEqual({ outcome: "more", job_row: null });
      expect((await repo.jobs.jobCancel({ org: "default", bucket: "kb-multi" }, third.jobId, Date.now()))?.job.status).toBe("processing");
      await expect(writer.query(ATTEMPT_OUTPUT, call(false, true, batch2))).rejects.toMatchObject({ code: "K3A01" });
      await writer.query("ROLLBACK");
    } finally {
      writer.release();
    }
    expect(await contents()).toEqual(["b0", "b1", "b2"]);
    // Through the queue the same attempt is simply gone: nothing written, undefined.
    expect(await repo.queue.jobComplete({ job: third, outcome: out(3, "c"), sourceVersion: 3n })).toBeUndefined();
    expect(await contents()).toEqual(["b0", "b1", "b2"]);

    // A cancel that lands while the one call of a one-batch output runs (played by a trigger
    // on the chunks it inserts): the queue answers undefined and the call leaves nothing.
    await repo.jobs.jobInsert({ ...base, jobId: "job_multi_4", createdAt: 3003 });
    const [fourth] = await repo.queue.jobClaimAvailable({ owner: "w", limit: 10, leaseMs: 10_000 });
    await repo.pool.query(`CREATE FUNCTION test_cancel_midway() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN UPDATE jobs SET cancel_requested = true WHERE job_id = NEW.job_id; RETURN NULL; END $$`);
    await repo.pool.query("CREATE TRIGGER test_cancel_midway AFTER INSERT ON vector_chunks FOR EACH ROW EXECUTE FUNCTION test_cancel_midway()");
    try {
      expect(await repo.queue.jobComplete({ job: fourth, outcome: out(1, "d"), sourceVersion: 4n })).toBeUndefined();
    } finally {
      await repo.pool.query("DROP TRIGGER test_cancel_midway ON vector_chunks; DROP FUNCTION test_cancel_midway()");
    }
    expect(await contents()).toEqual(["b0", "b1", "b2"]);
    expect((await repo.pool.query("SELECT status, cancel_requested FROM jobs WHERE job_id = 'job_multi_4'")).rows[0]).toEqual({ status: "processing", cancel_requested: false });
  } finally {
    await repo.close();
  }
});

test("maintained job counts stay exact through inserts, state changes, deletes and compaction", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  try {
    await migrate(repo.pool);
    const scope = { org: "default", bucket: "kb-counts" };
    const pipes = ["pipe_a", "pipe_b"];
    const rules = ["", "rule_1", "rule_2"];
    await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        repo.jobs.jobInsert({
          jobId: `job_count_${String(i).padStart(4, "0")}`,
          ...scope,
          key: "k",
          pipelineId: pipes[i % 2],
          pipelineName: "p",
          pipelineKind: "",
          template: "noop",
          ruleId: rules[i % 3],
          options: {},
          requestId: "",
          traceId: "",
          createdAt: 1000 + i,
        }),
      ),
    );
    const now = Date.now();
    const claimed = await repo.queue.jobClaimAvailable({ owner: "w", limit: 60, leaseMs: 60_000 });
    const none = { status: "completed" as const, output: { kind: "none" as const }, chunksCreated: 0, embeddingsCreated: 0, vectorStatus: "", error: "", errorDetails: "" };
    for (const j of claimed.slice(0, 30)) await repo.queue.jobComplete({ job: j, outcome: none, sourceVersion: 0n });
    for (const j of claimed.slice(30, 40)) await repo.queue.jobFailAttempt({ jobId: j.jobId, threadId: j.threadId, error: "x", errorDetails: "" });
    for (let i = 100; i < 110; i++) await repo.jobs.jobCancel(scope, `job_count_${String(i).padStart(4, "0")}`, now);
    await repo.pool.query("DELETE FROM jobs WHERE job_id IN ('job_count_0140', 'job_count_0141', 'job_count_0142')");

    const check = async () => {
      for (const status of [undefined, "pending", "processing", "completed", "failed", "cancelled"] as const) {
        for (const pipelineId of [undefined, ...pipes]) {
          for (const ruleId of [undefined, ...rules.filter(Boolean)]) {
            const page = await repo.jobs.jobList({ ...scope, status, pipelineId, ruleId }, { limit: 1 });
            const { rows } = await repo.pool.query(
              `SELECT count(*)::int AS n FROM jobs WHERE org = 'default' AND bucket = 'kb-counts'
                 AND ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR pipeline_id = $2) AND ($3::text IS NULL OR rule_id = $3)`,
              [status ?? null, pipelineId ?? null, ruleId ?? null],
            );
            expect({ status, pipelineId, ruleId, total: page.total }).toEqual({ status, pipelineId, ruleId, total: rows[0].n });
          }
        }
      }
    };
    await check();
    expect(await repo.jobs.jobCountsCompact()).toBe(true);
    expect((await repo.pool.query("SELECT count(*)::int AS n FROM job_count_deltas")).rows[0].n).toBe(0);
    await check();
  } finally {
    await repo.close();
  }
});

test("retention prunes only finished jobs past their age, in batches, and keeps counts exact", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  try {
    await migrate(repo.pool);
    const now = Date.now();
    const day = 86_400_000;
    const scope = { org: "default", bucket: "kb-retention" };
    const ids: Record<string, string[]> = { oldDone: [], newDone: [], oldPending: [] };
    for (let i = 0; i < 30; i++) {
      ids.oldDone.push(await insertJob(repo.pool, { ...scope, pipelineId: "pipe_r", status: (["completed", "failed", "cancelled", "partial"] as const)[i % 4], createdAt: now - 40 * day, updatedAt: now - 40 * day + i }));
    }
    for (let i = 0; i < 5; i++) ids.newDone.push(await insertJob(repo.pool, { ...scope, pipelineId: "pipe_r", status: "completed", createdAt: now - day }));
    for (let i = 0; i < 5; i++) ids.oldPending.push(await insertJob(repo.pool, { ...scope, pipelineId: "pipe_r", status: "pending", createdAt: now - 40 * day }));
    const before = now - 30 * day;
    // Other tests of this file left one ancient finished job in another bucket; it goes too.
    const other = Number((await repo.pool.query("SELECT count(*) AS n FROM jobs WHERE bucket <> 'kb-retention' AND finished_at > 0 AND finished_at < $1", [before])).rows[0].n);
    expect(await repo.jobs.jobPruneFinished(before, 20)).toBe(20);
    expect(await repo.jobs.jobPruneFinished(before, 20)).toBe(10 + other);
    expect(await repo.jobs.jobPruneFinished(before, 20)).toBe(0);
    const { rows } = await repo.pool.query("SELECT job_id FROM jobs WHERE bucket = 'kb-retention'");
    expect(rows.map((r) => r.job_id).sort()).toEqual([...ids.newDone, ...ids.oldPending].sort());
    const page = await repo.jobs.jobList({ ...scope }, { limit: 1 });
    expect(page.total).toBe(10);
    const done = await repo.jobs.jobList({ ...scope, status: "completed" }, { limit: 1 });
    expect(done.total).toBe(5);
  } finally {
    await repo.close();
  }
});

test("a bucket's usage stays exact through uploads, overwrites and deletes, before and after folding, and an upload held open does not hold up the bucket's others", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  const other = new Pool({ connectionString: db.url, max: 1 });
  const held = await other.connect();
  try {
    await migrate(repo.pool);
    const scope = { org: "default", bucket: "kb-usage" };
    const now = Date.now();
    await repo.buckets.bucketInsert({ ...scope, name: scope.bucket, description: "", status: "active", accessMode: "private", storageQuotaBytes: 0, internalSourceId: "src_usage", createdAt: now, updatedAt: now });
    const put = (key: string, size: number) =>
      repo.catalog.objectPut(scope, key, async () => ({ object: { key, size, etag: "e", contentType: "text/plain", metadata: {}, version: BigInt(now), createdAt: now, updatedAt: now }, jobs: [] }), bytes);
    const usage = async () => {
      const b = await repo.buckets.bucketGet(scope);
      const { rows } = await repo.pool.query("SELECT count(*)::int AS n, coalesce(sum(size), 0)::int AS bytes FROM objects WHERE org = $1 AND bucket = $2", [scope.org, scope.bucket]);
      expect({ objects: b?.objectCount, bytes: b?.storageUsedBytes }).toEqual({ objects: rows[0].n, bytes: rows[0].bytes });
      return { objects: b!.objectCount, bytes: b!.storageUsedBytes };
    };

    // An upload whose transaction is still open (its object row written, not committed)...
    await held.query("BEGIN");
    await held.query("INSERT INTO objects (org, bucket, object_key, size, created_at, updated_at) VALUES ($1, $2, 'held.txt', 7, 1, 1)", [scope.org, scope.bucket]);
    // ...and the bucket's other uploads go through meanwhile (a shared counter row made them wait for its commit).
    const through = await within(Promise.all(Array.from({ length: 10 }, (_, i) => put(`a/${i}.txt`, 100 + i))).then(() => "through"), 5000, "held up");
    expect(through).toBe("through");
    expect(await usage()).toEqual({ objects: 10, bytes: 1045 });
    await held.query("COMMIT");
    expect(await usage()).toEqual({ objects: 11, bytes: 1052 });

    await put("a/0.txt", 5000); // an overwrite changes the bytes, not the count
    await repo.pool.query("UPDATE objects SET metadata = '{\"x\": \"1\"}' WHERE org = $1 AND bucket = $2", [scope.org, scope.bucket]);
    expect(await usage()).toEqual({ objects: 11, bytes: 5952 });
    expect(await repo.catalog.objectDelete(scope, "a/1.txt", now, bytes)).toBe(true);
    expect(await usage()).toEqual({ objects: 10, bytes: 5851 });

    expect(await repo.buckets.usageCompact()).toBe(true);
    expect((await repo.pool.query("SELECT count(*)::int AS n FROM bucket_usage_deltas")).rows[0].n).toBe(0);
    expect(await usage()).toEqual({ objects: 10, bytes: 5851 });
    await put("b.txt", 49);
    expect(await usage()).toEqual({ objects: 11, bytes: 5900 });
    expect(await repo.buckets.bucketDelete(scope, false)).toEqual({ objects: 11 });

    // A forced delete takes the usage with it: the same name made again starts at zero.
    expect(await repo.buckets.bucketDelete(scope, true)).toBe("deleted");
    await repo.buckets.usageCompact();
    await repo.buckets.bucketInsert({ ...scope, name: scope.bucket, description: "", status: "active", accessMode: "private", storageQuotaBytes: 0, internalSourceId: "src_usage2", createdAt: now, updatedAt: now });
    expect(await usage()).toEqual({ objects: 0, bytes: 0 });
  } finally {
    held.release(true);
    await other.end();
    await repo.close();
  }
});

test("a new job as the insert answers it (TriggerIngest, uploads) is the job as stored, field for field", async () => {
  const repo = new PgRepository({ connectionString: db.url });
  try {
    await migrate(repo.pool);
    const scope = { org: "default", bucket: "kb-answer" };
    const now = Date.now();
    await repo.buckets.bucketInsert({ ...scope, name: scope.bucket, description: "", status: "active", accessMode: "private", storageQuotaBytes: 0, internalSourceId: "src_answer", createdAt: now, updatedAt: now });
    const base = { ...scope, pipelineId: "pipe_a", pipelineName: "a", pipelineKind: "vector", template: "noop", traceId: "req-1", createdAt: now };
    // A direct trigger (the bucket's internal source filled in by the database), one with
    // everything set, one whose request_id is taken, and quotes, backslashes, braces and
    // non-ASCII in the text fields.
    const plain = { ...base, jobId: "job_answer_plain", key: "docs/a.txt", ruleId: "", options: {}, requestId: "" };
    const full = {
      ...base, jobId: "job_answer_full", key: 'odd "key" \\ {a,b} é 名.txt', ruleId: "rule_x", options: { chunk_size: "40", 'q"': "{\\}" },
      requestId: "req-full", sourceId: "src_other", objectVersion: "1700000000000000001", retryOf: "job_answer_plain",
    };
    const [a, b] = await Promise.all([repo.jobs.jobInsert(plain), repo.jobs.jobInsert(full)]);
    expect(a.created && b.created).toBe(true);
    expect(a.job.sourceId).toBe("src_answer");
    expect(b.job.sourceId).toBe("src_other");
    expect(a.job).toEqual(await repo.jobs.jobGetById(scope, plain.jobId));
    expect(b.job).toEqual(await repo.jobs.jobGetById(scope, full.jobId));
    const again = await repo.jobs.jobInsert({ ...full, jobId: "job_answer_again" });
    expect(again).toEqual({ job: b.job, created: false });

    const upload = { ...base, jobId: "job_answer_upload", key: "up/b.txt", ruleId: "rule_u", options: { k: "v" }, requestId: "", sourceId: "src_answer", objectVersion: String(now) };
    const made = await repo.catalog.objectPut(scope, upload.key, async () => ({ object: { key: upload.key, size: 3, etag: "e", contentType: "text/plain", metadata: {}, version: BigInt(now), createdAt: now, updatedAt: now }, jobs: [upload] }), bytes);
    expect(made).toHaveLength(1);
    expect(made[0]).toEqual(await repo.jobs.jobGetById(scope, upload.jobId));
  } finally {
    await repo.close();
  }
});
