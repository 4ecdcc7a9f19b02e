/**
 * Exactly once per attempt, on real servers and workers: concurrent re-ingests of one
 * object, a worker whose lease expired while it was blocked getting the same job back,
 * a cancel landing during a long final write, and heartbeats during a 1M-row write.
 */
import { spawnSync } from "node:child_process";
import type { Pool } from "pg";
import { build, type App } from "../src/app";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { JOB_RESCUE } from "../src/storage/postgres/queue-sql";
import { startEmbedderServer, type EmbedderServer } from "./helpers/embedder-server";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);

const B = "kb-once";
const TERMINAL = ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED", "INGEST_STATUS_PARTIAL", "INGEST_STATUS_CANCELLED"];

function client(s: TestServers) {
  const http = jsonClient(() => s.httpUrl);
  return {
    http,
    async finished(jobId: string, timeoutMs = 60_000): Promise<J> {
      return waitFor(`job ${jobId} to finish`, async () => {
        const g = await http("GET", `/${B}/ingest/jobs/${jobId}`);
        return TERMINAL.includes(g.json.job.status) ? g.json.job : undefined;
      }, { timeoutMs, intervalMs: 50 });
    },
  };
}

describe("1,000 concurrent triggers of one object on two workers", () => {
  let s: TestServers;
  let second: App;
  beforeAll(async () => {
    s = await startServers({ K3_ROLE: "all", K3_WORKER_CONCURRENCY: "8", K3_POLL_MS: "100" });
    second = build(loadConfig({ DATABASE_URL: s.db.url, K3_DATA_DIR: s.dataDir, K3_ROLE: "worker", K3_WORKER_CONCURRENCY: "8", K3_POLL_MS: "100", K3_AUTH: "off" }), createLogger("silent"));
    await second.start();
  });
  afterAll(async () => {
    await second.stop();
    await s.stop();
  });

  test.each([
    ["structured_rows", "same/rows.csv", "id,name\n1,a\n2,b\n3,c\n", 3],
    ["text_embedding_index", "same/text.txt", "word ".repeat(500), 3],
  ])("%s: every job COMPLETED, exactly one current output, no constraint names", async (template, key, content, expectedRows) => {
    const { http, finished } = client(s);
    s.putObject(B, key, content);
    const pipe = (await http("POST", `/${B}/pipelines`, { name: `p-${template}`, scriptum_template: template, options: template === "text_embedding_index" ? { chunk_size: "1000", chunk_overlap: "0" } : {} })).json.pipeline.pipelineId;
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < 1000) {
          next++;
          const r = await http("POST", `/${B}/ingest`, { object: { key }, pipelineId: pipe });
          expect(r.status).toBe(200);
          ids.push(r.json.job.jobId);
        }
      }),
    );
    const pool: Pool = s.app.repo().pool;
    await waitFor("all 1,000 jobs to finish", async () => {
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM jobs WHERE pipeline_id = $1 AND finished_at > 0", [pipe]);
      return rows[0].n === 1000 ? true : undefined;
    }, { timeoutMs: 90_000, intervalMs: 200 });
    const { rows: statuses } = await pool.query("SELECT status, count(*)::int AS n, max(error) AS error FROM jobs WHERE pipeline_id = $1 GROUP BY status", [pipe]);
    expect(statuses).toEqual([{ status: "completed", n: 1000, error: "" }]);
    const table = template === "structured_rows" ? "warehouse_rows" : "vector_chunks";
    const { rows: out } = await pool.query(`SELECT count(*)::int AS n, count(DISTINCT job_id)::int AS jobs FROM ${table} WHERE pipeline_id = $1 AND object_key = $2`, [pipe, key]);
    expect(out[0]).toEqual({ n: expectedRows, jobs: 1 });
    const { rows: current } = await pool.query("SELECT job_id FROM object_outputs WHERE pipeline_id = $1 AND object_key = $2", [pipe, key]);
    expect(ids).toContain(current[0].job_id);
    const { rows: written } = await pool.query(`SELECT DISTINCT job_id FROM ${table} WHERE pipeline_id = $1 AND object_key = $2`, [pipe, key]);
    expect(written[0].job_id).toBe(current[0].job_id);
    const last = await finished(ids[ids.length - 1]);
    // What the job says of itself (its ids are random: one once spelled "pkey").
    expect(`${last.error} ${last.errorDetails}`).not.toMatch(/pkey|duplicate value|constraint/);
  });
});

describe("a worker blocked past its lease gets the same job back", () => {
  let s: TestServers;
  let fake: EmbedderServer;
  beforeAll(async () => {
    fake = await startEmbedderServer(8);
    s = await startServers({ K3_ROLE: "all", K3_EMBEDDINGS_URL: fake.url, K3_LEASE_MS: "300", K3_POLL_MS: "50", K3_WORKER_CONCURRENCY: "2" });
  });
  afterAll(async () => {
    await s.stop();
    await fake.close();
  });

  test("the stale attempt never writes; the new one completes once", async () => {
    const { http, finished } = client(s);
    s.putObject(B, "blocked/a.txt", "alpha beta gamma ".repeat(30));
    const pipe = (await http("POST", `/${B}/pipelines`, { name: "remote", scriptum_template: "text_embedding_index", options: { chunk_size: "100", chunk_overlap: "0", batch_size: "100" } })).json.pipeline.pipelineId;
    fake.setDelay(800);
    const t = await http("POST", `/${B}/ingest`, { object: { key: "blocked/a.txt" }, pipelineId: pipe });
    await waitFor("the first attempt to call the embedder", () => (fake.received() > 0 ? true : undefined));
    const first = (await http("GET", `/${B}/ingest/jobs/${t.json.job.jobId}`)).json.job;
    expect(first).toMatchObject({ status: "INGEST_STATUS_PROCESSING", attempts: 1 });
    // Block this process's event loop (the worker's) past the lease, while another process
    // rescues the expired lease by the database clock.
    const rescuer = `
      const { Client } = require("pg");
      setTimeout(async () => {
        const c = new Client({ connectionString: process.argv[1] });
        await c.connect();
        await c.query(process.argv[2], [5, 5]);
        await c.end();
      }, 700);`;
    const r = spawnSync(process.execPath, ["-e", rescuer, s.db.url, JOB_RESCUE], { cwd: process.cwd(), encoding: "utf8" });
    expect(r.status).toBe(0);
    fake.setDelay(0);
    const job = await finished(t.json.job.jobId);
    expect(job).toMatchObject({ status: "INGEST_STATUS_COMPLETED", attempts: 2, embeddingsWritten: 6, batchesReceived: 1 });
    expect(job.threadId).not.toBe(first.threadId);
    const pool: Pool = s.app.repo().pool;
    const { rows } = await pool.query("SELECT count(*)::int AS n, count(DISTINCT job_id)::int AS jobs FROM vector_chunks WHERE pipeline_id = $1", [pipe]);
    expect(rows[0]).toEqual({ n: 6, jobs: 1 });
    const { rows: lost } = await pool.query("SELECT lost_attempts FROM jobs WHERE job_id = $1", [t.json.job.jobId]);
    expect(lost[0].lost_attempts).toBe(1);
  });
});

describe("long final writes", () => {
  let s: TestServers;
  beforeAll(async () => {
    // The write takes 10+ s, many leases long; 3 s (not 1 s) keeps a machine busy with other
    // test files from stalling the heartbeat past a whole lease, which is not what this tests.
    s = await startServers({ K3_ROLE: "all", K3_LEASE_MS: "3000", K3_POLL_MS: "50", K3_SANDBOX_MEMORY_MB: "512", K3_MAX_TEXT_CHARS: "40000000" });
  });
  afterAll(() => s.stop());

  /** A CSV of `n` rows. */
  function csv(n: number): string {
    const lines = ["id,name"];
    for (let i = 0; i < n; i++) lines.push(`${i},name-${i}`);
    return lines.join("\n") + "\n";
  }

  test("heartbeats keep the lease alive while 1,000,000 rows are written", async () => {
    const { http, finished } = client(s);
    s.putObject(B, "long/million.csv", csv(1_000_000));
    const pipe = (await http("POST", `/${B}/pipelines`, { name: "rows-1m", scriptum_template: "structured_rows", options: { batch_size: "10000" } })).json.pipeline.pipelineId;
    const t = await http("POST", `/${B}/ingest`, { object: { key: "long/million.csv" }, pipelineId: pipe });
    const job = await finished(t.json.job.jobId, 110_000);
    expect({ ...job, error: job.error }).toMatchObject({ status: "INGEST_STATUS_COMPLETED", attempts: 1, rowsWritten: 1_000_000, batchesReceived: 100, error: "" });
    const pool: Pool = s.app.repo().pool;
    const { rows } = await pool.query("SELECT lost_attempts FROM jobs WHERE job_id = $1", [t.json.job.jobId]);
    expect(rows[0].lost_attempts).toBe(0);
  }, 120_000);

  test("a cancel during the final write answers at once and the job ends CANCELLED (nothing written) or COMPLETED", async () => {
    const { http, finished } = client(s);
    s.putObject(B, "long/cancel.csv", csv(300_000));
    const pipe = (await http("POST", `/${B}/pipelines`, { name: "rows-cancel", scriptum_template: "structured_rows", options: { batch_size: "1000" } })).json.pipeline.pipelineId;
    const t = await http("POST", `/${B}/ingest`, { object: { key: "long/cancel.csv" }, pipelineId: pipe });
    const pool: Pool = s.app.repo().pool;
    await waitFor("the final write to be running", async () => {
      const { rows } = await pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%k3_attempt_output(%' AND state = 'active' AND pid <> pg_backend_pid()");
      return rows.length > 0 ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 10 });
    const started = performance.now();
    const cancel = await http("POST", `/${B}/ingest/jobs/${t.json.job.jobId}:cancel`);
    const cancelMs = performance.now() - started;
    expect([200, 400]).toContain(cancel.status);
    if (cancel.status === 400) expect(cancel.json.code).toBe("failed_precondition");
    expect(cancelMs).toBeLessThan(3000); // it used to wait behind the write's row lock, then time out into INTERNAL
    const job = await finished(t.json.job.jobId);
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM warehouse_rows WHERE pipeline_id = $1", [pipe]);
    if (job.status === "INGEST_STATUS_CANCELLED") expect(rows[0].n).toBe(0);
    else expect({ status: job.status, n: rows[0].n }).toEqual({ status: "INGEST_STATUS_COMPLETED", n: 300_000 });
  }, 90_000);
});

describe("the worker has a pool of its own", () => {
  test("with every API connection stuck behind a lock, the worker still claims and finishes jobs", async () => {
    const s = await startServers({ K3_ROLE: "all", K3_DB_POOL_SIZE: "2", K3_POLL_MS: "50" });
    const { Client } = await import("pg");
    const lock = new Client({ connectionString: s.db.url });
    await lock.connect();
    try {
      const { http, finished } = client(s);
      s.putObject(B, "pool/a.txt", "a");
      const pipe = (await http("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
      const t = await http("POST", `/${B}/ingest`, { object: { key: "pool/a.txt" }, pipelineId: pipe, requestId: "warm" });
      await finished(t.json.job.jobId);
      await lock.query("BEGIN");
      await lock.query("LOCK TABLE pipelines IN ACCESS EXCLUSIVE MODE");
      // Both API connections block on the pipelines lock.
      const stuck = [1, 2].map(() => fetch(`${s.httpUrl}/${B}/pipelines`).catch((e: Error) => e));
      const pool: Pool = s.app.repo().pool;
      await waitFor("the API pool to be exhausted", () => (pool.totalCount === 2 && pool.idleCount === 0 ? true : undefined));
      // A job inserted behind the API's back is claimed and finished by the worker's own
      // pool while every API connection is still stuck.
      const side = new Client({ connectionString: s.db.url });
      await side.connect();
      try {
        await side.query(
          `INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, template, created_at, updated_at) VALUES ('job_pool_1', 'default', $1, 'pool/a.txt', $2, 'noop', 1, 1)`,
          [B, pipe],
        );
        await side.query("SELECT pg_notify('k3_jobs', '')");
        await waitFor("the worker to finish the job", async () => {
          const { rows } = await side.query("SELECT status FROM jobs WHERE job_id = 'job_pool_1'");
          return rows[0].status === "completed" ? true : undefined;
        }, { timeoutMs: 4000 });
        expect(pool.idleCount).toBe(0); // the API's connections were stuck all along
      } finally {
        await side.end();
      }
      await lock.query("COMMIT");
      await Promise.all(stuck);
    } finally {
      await lock.end();
      await s.stop();
    }
  });
});
