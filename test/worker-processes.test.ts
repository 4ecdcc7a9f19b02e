/**
 * Workers as real processes sharing one database with the API: two workers drain 300
 * jobs exactly once; a worker killed with SIGKILL mid-job loses the job to the rescuer
 * and another worker completes it without duplicates; SIGTERM hands running jobs back.
 */
import type { Pool } from "pg";
import { startEmbedderServer, type EmbedderServer } from "./helpers/embedder-server";
import { startProcess, type Child } from "./helpers/processes";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(90_000);

let s: TestServers;
let pool: Pool;
let fake: EmbedderServer;
const children: Child[] = [];
const B = "kb-procs";

const http = jsonClient(() => s.httpUrl);

async function worker(env: Record<string, string> = {}): Promise<Child> {
  const c = await startProcess("worker", {
    DATABASE_URL: s.db.url,
    K3_DATA_DIR: s.dataDir,
    K3_POLL_MS: "200",
    K3_RETRY_BASE_MS: "20",
    ...env,
  });
  children.push(c);
  return c;
}

async function statusCounts(): Promise<Record<string, number>> {
  const { rows } = await pool.query("SELECT status, count(*)::int AS n FROM jobs WHERE bucket = $1 GROUP BY status", [B]);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

beforeAll(async () => {
  fake = await startEmbedderServer(8);
  s = await startServers();
  pool = s.app.repo().pool;
});
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.proc.kill("SIGKILL");
    await c.exited;
  }
  fake.setDelay(0);
});
afterAll(async () => {
  await s.stop();
  await fake.close();
});

test("two worker processes drain 300 jobs: each COMPLETED once, no duplicate output", async () => {
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "local", scriptum_template: "text_embedding_index", options: { chunk_size: "40", chunk_overlap: "0", dimensions: "8" } }))
    .json.pipeline.pipelineId;
  for (let i = 0; i < 300; i++) s.putObject(B, `many/${i}.txt`, `document ${i} `.repeat(8)); // 2-4 chunks each
  const [w1, w2] = await Promise.all([worker({ K3_WORKER_CONCURRENCY: "4" }), worker({ K3_WORKER_CONCURRENCY: "4" })]);
  const ids = await Promise.all(
    Array.from({ length: 300 }, async (_, i) => (await http("POST", `/${B}/ingest`, { object: { key: `many/${i}.txt` }, pipelineId: pipe })).json.job.jobId as string),
  );
  expect(new Set(ids).size).toBe(300);
  await waitFor("all 300 jobs to complete", async () => ((await statusCounts()).completed === 300 ? true : undefined), { timeoutMs: 60_000, intervalMs: 100 });
  const { rows } = await pool.query(
    `SELECT j.job_id, j.attempts, j.chunks_created, j.embeddings_written,
            (SELECT count(*)::int FROM vector_chunks c WHERE c.bucket = j.bucket AND c.object_key = j.object_key AND c.pipeline_id = j.pipeline_id AND c.job_id = j.job_id) AS stored
     FROM jobs j WHERE j.bucket = $1`,
    [B],
  );
  expect(rows).toHaveLength(300);
  for (const r of rows) {
    expect(r.attempts).toBe(1);
    expect(r.stored).toBe(r.chunks_created);
    expect(r.embeddings_written).toBe(r.chunks_created);
  }
  const total = Number((await pool.query("SELECT count(*) AS n FROM vector_chunks WHERE bucket = $1", [B])).rows[0].n);
  expect(total).toBe(rows.reduce((n, r) => n + r.chunks_created, 0));
  // Both processes took part.
  for (const w of [w1, w2]) expect(w.output()).toContain('"job finished"');
});

test("a worker killed with SIGKILL mid-job: the job is rescued after its lease and completes once", async () => {
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "remote", scriptum_template: "text_embedding_index", options: { chunk_size: "50", chunk_overlap: "0" } }))
    .json.pipeline.pipelineId;
  s.putObject(B, "kill/doc.txt", "x".repeat(120)); // 3 chunks
  const env = { K3_EMBEDDINGS_URL: fake.url, K3_LEASE_MS: "1000" };
  fake.setDelay(60_000);
  const victim = await worker(env);
  const id = (await http("POST", `/${B}/ingest`, { object: { key: "kill/doc.txt" }, pipelineId: pipe })).json.job.jobId;
  await waitFor("the job to be PROCESSING", async () => ((await http("GET", `/${B}/ingest/jobs/${id}`)).json.job.status === "INGEST_STATUS_PROCESSING" ? true : undefined));
  victim.proc.kill("SIGKILL");
  await victim.exited;
  fake.setDelay(0);
  await worker(env);
  const job = await waitFor("the rescued job to complete", async () => {
    const j = (await http("GET", `/${B}/ingest/jobs/${id}`)).json.job;
    return j.status === "INGEST_STATUS_COMPLETED" ? j : undefined;
  }, { timeoutMs: 30_000 });
  expect(job).toMatchObject({ attempts: 2, chunksCreated: 3, embeddingsWritten: 3, error: "" });
  const stored = await pool.query("SELECT job_id FROM vector_chunks WHERE bucket = $1 AND object_key = 'kill/doc.txt'", [B]);
  expect(stored.rows).toHaveLength(3);
  expect(new Set(stored.rows.map((r) => r.job_id))).toEqual(new Set([id]));
});

test("SIGTERM while a job's final write waits for its object's lock: the write is cancelled, the job handed back, the worker gone in seconds", async () => {
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "locked", scriptum_template: "text_embedding_index", options: { dimensions: "8" } })).json.pipeline.pipelineId;
  const key = "locked/doc.txt";
  s.putObject(B, key, "a document whose output cannot be written yet");
  // The object's output lock, as k3_attempt_output takes it, held by another session.
  const holder = await pool.connect();
  try {
    await holder.query("SELECT pg_advisory_lock(hashtextextended($1, 1798533317))", [`default/${B}/${pipe}/${key}`]);
    const w = await worker({ K3_WORKER_GRACE_MS: "300" });
    const id = (await http("POST", `/${B}/ingest`, { object: { key }, pipelineId: pipe })).json.job.jobId;
    const blocked = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory' AND query LIKE '%k3_attempt_output%'";
    await waitFor("the final write to wait for the lock", async () => ((await pool.query(blocked)).rows[0].n === 1 ? true : undefined));
    const t0 = Date.now();
    w.proc.kill("SIGTERM");
    expect(await w.exited).toBe(0);
    // Without the cancel the process waited for the statement timeout (30 s); here it takes
    // the grace period and the hand-back (~1 s), with room for a loaded machine.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(w.output()).toContain("handed running jobs back");
    // The cancelled statement leaves the lock's queue within moments of the exit (PostgreSQL
    // handles the cancel on its own time; CI once looked in between). Left waiting, it would
    // stay there until the holder lets go below.
    await waitFor("the cancelled write to stop waiting for the lock", async () => ((await pool.query(blocked)).rows[0].n === 0 ? true : undefined), { timeoutMs: 5000 });
    expect((await http("GET", `/${B}/ingest/jobs/${id}`)).json.job).toMatchObject({ status: "INGEST_STATUS_PENDING", attempts: 0 });
    expect((await pool.query("SELECT count(*)::int AS n FROM vector_chunks WHERE bucket = $1 AND object_key = $2", [B, key])).rows[0].n).toBe(0);
    await holder.query("SELECT pg_advisory_unlock_all()");
    await worker();
    const done = await waitFor("the job to complete", async () => {
      const j = (await http("GET", `/${B}/ingest/jobs/${id}`)).json.job;
      return j.status === "INGEST_STATUS_COMPLETED" ? j : undefined;
    });
    expect(done).toMatchObject({ attempts: 1, embeddingsWritten: done.chunksCreated });
  } finally {
    holder.release();
  }
});

test("SIGTERM: the worker hands its running job back to PENDING and exits 0", async () => {
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "remote-2", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  s.putObject(B, "term/doc.txt", "hello world");
  fake.setDelay(60_000);
  const w = await worker({ K3_EMBEDDINGS_URL: fake.url, K3_WORKER_GRACE_MS: "300" });
  const id = (await http("POST", `/${B}/ingest`, { object: { key: "term/doc.txt" }, pipelineId: pipe })).json.job.jobId;
  await waitFor("the job to be PROCESSING", async () => ((await http("GET", `/${B}/ingest/jobs/${id}`)).json.job.status === "INGEST_STATUS_PROCESSING" ? true : undefined));
  w.proc.kill("SIGTERM");
  expect(await w.exited).toBe(0);
  expect(w.output()).toContain("handed running jobs back");
  const job = (await http("GET", `/${B}/ingest/jobs/${id}`)).json.job;
  expect(job).toMatchObject({ status: "INGEST_STATUS_PENDING", attempts: 0 });
  expect(await statusCounts()).not.toHaveProperty("processing");
  // Another worker picks it up and finishes it.
  fake.setDelay(0);
  await worker({ K3_EMBEDDINGS_URL: fake.url });
  const done = await waitFor("the job to complete", async () => {
    const j = (await http("GET", `/${B}/ingest/jobs/${id}`)).json.job;
    return j.status === "INGEST_STATUS_COMPLETED" ? j : undefined;
  });
  expect(done.attempts).toBe(1);
});
