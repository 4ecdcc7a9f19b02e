/**
 * The worker engine against a fake embedder: transient failures are retried with backoff
 * until the job completes, permanent ones fail at once, a batch rejected for good makes
 * the job PARTIAL, cancellation stops a running pipeline and leaves nothing behind, and a
 * stopping worker hands its jobs back.
 */
import type { Pool } from "pg";
import { startEmbedderServer, type EmbedderServer } from "./helpers/embedder-server";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";


let s: TestServers;
let fake: EmbedderServer;
let pool: Pool;
const B = "kb-engine";
let embed: string;

const http = jsonClient(() => s.httpUrl);

const TERMINAL = ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED", "INGEST_STATUS_PARTIAL", "INGEST_STATUS_CANCELLED"];
const getJob = async (id: string) => (await http("GET", `/${B}/ingest/jobs/${id}`)).json.job;
const trigger = async (key: string, options: Record<string, string> = {}) =>
  (await http("POST", `/${B}/ingest`, { object: { key }, pipelineId: embed, options })).json.job.jobId as string;
const finished = (id: string) => waitFor(`job ${id} to finish`, async () => {
  const j = await getJob(id);
  return TERMINAL.includes(j.status) ? j : undefined;
});
const chunkCount = async (key: string) =>
  Number((await pool.query("SELECT count(*) AS n FROM vector_chunks WHERE bucket = $1 AND object_key = $2", [B, key])).rows[0].n);

beforeAll(async () => {
  fake = await startEmbedderServer(8);
  s = await startServers({
    K3_ROLE: "all",
    K3_EMBEDDINGS_URL: fake.url,
    K3_EMBEDDINGS_MODEL: "test-model",
    K3_RETRY_BASE_MS: "20",
    K3_RETRY_MAX_MS: "100",
    K3_MAX_ATTEMPTS: "4",
    K3_POLL_MS: "100",
    K3_LEASE_MS: "3000",
    // Auth is off here, so every caller is the default organization's admin and sees its job gauges.
    K3_METRICS_AUTH: "on",
  });
  pool = s.app.repo().pool;
  embed = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index", options: { chunk_size: "100", chunk_overlap: "0", batch_size: "2" } }))
    .json.pipeline.pipelineId;
  s.putObject(B, "docs/a.txt", "alpha ".repeat(50)); // 300 characters: 4 chunks of whole words (16, 16, 16, 2), 2 batches
});
afterAll(async () => {
  await s.stop();
  await fake.close();
});
afterEach(() => {
  fake.failNext(0, 200);
  fake.setDelay(0);
});

test("an embedder that fails with 503 twice: the job retries and completes", async () => {
  fake.failNext(2, 503);
  const id = await trigger("docs/a.txt");
  const job = await finished(id);
  expect(job).toMatchObject({ status: "INGEST_STATUS_COMPLETED", attempts: 3, chunksCreated: 4, embeddingsWritten: 4, error: "" });
  expect(fake.calls.slice(-4).map((c) => c.status)).toEqual([503, 503, 200, 200]);
  expect(fake.calls.at(-1)?.model).toBe("test-model");
  expect(await chunkCount("docs/a.txt")).toBe(4);
  // A COMPLETED job cannot be cancelled.
  const cancel = await http("POST", `/${B}/ingest/jobs/${id}:cancel`);
  expect(cancel.status).toBe(400);
  expect(cancel.json).toMatchObject({ code: "failed_precondition", message: `job "${id}" is already INGEST_STATUS_COMPLETED and cannot be cancelled` });
});

test("429 is transient too; when the attempts run out the job fails with the last reason", async () => {
  fake.failNext(10, 429, "slow down");
  const job = await finished(await trigger("docs/a.txt"));
  expect(job.status).toBe("INGEST_STATUS_FAILED");
  expect(job.attempts).toBe(4);
  expect(job.error).toMatch(/^embedder returned HTTP 429.*slow down.*\(gave up after 4 attempts\)$/);
  expect(job.errorDetails).toBe("stage: embed");
  expect(job.vectorStatus).toBe("failed");
});

test("a permanent 400 fails the job at once with a clear error", async () => {
  fake.failNext(1, 400, "model not found");
  const job = await finished(await trigger("docs/a.txt"));
  expect(job).toMatchObject({ status: "INGEST_STATUS_FAILED", attempts: 1, errorDetails: "stage: embed" });
  expect(job.error).toMatch(/embedder returned HTTP 400.*model not found/);
});

test("a batch rejected for good after others landed makes the job PARTIAL", async () => {
  // 200 characters of good text, then a third chunk the embedder rejects.
  s.putObject(B, "docs/mixed.txt", "good ".repeat(40) + "POISON");
  fake.failWhenInputContains("POISON", 400);
  const job = await finished(await trigger("docs/mixed.txt", { batch_size: "1" }));
  fake.failWhenInputContains("\u0000never", 400);
  expect(job).toMatchObject({ status: "INGEST_STATUS_PARTIAL", vectorStatus: "partial", chunksCreated: 3, embeddingsWritten: 2, batchesReceived: 2 });
  expect(job.error).toMatch(/^1 of 3 embedding batches failed: embedder returned HTTP 400/);
  expect(await chunkCount("docs/mixed.txt")).toBe(2);
});

test("cancelling a PENDING job, a PROCESSING job, and a finished one", async () => {
  // PROCESSING: a slow embedder keeps the job running until the cancel arrives.
  fake.setDelay(60_000);
  s.putObject(B, "docs/slow.txt", "slow ".repeat(20));
  const running = await trigger("docs/slow.txt");
  await waitFor("the job to be PROCESSING", async () => ((await getJob(running)).status === "INGEST_STATUS_PROCESSING" ? true : undefined));
  const cancel = await http("POST", `/${B}/ingest/jobs/${running}:cancel`);
  expect(cancel.status).toBe(200);
  const ended = await finished(running);
  expect(ended.status).toBe("INGEST_STATUS_CANCELLED");
  expect(ended.error).toBe("cancelled while processing");
  expect(await chunkCount("docs/slow.txt")).toBe(0);

  // PENDING: with the worker stopped, a new job stays PENDING until cancelled.
  await s.app.worker()?.stop();
  const pending = await trigger("docs/a.txt");
  const p = await http("POST", `/${B}/ingest/jobs/${pending}:cancel`);
  expect(p.status).toBe(200);
  expect(p.json.job.status).toBe("INGEST_STATUS_CANCELLED");

  // Finished: FAILED_PRECONDITION.
  const again = await http("POST", `/${B}/ingest/jobs/${pending}:cancel`);
  expect(again.status).toBe(400);
  expect(again.json).toMatchObject({ code: "failed_precondition" });
  expect(again.json.message).toContain("is already INGEST_STATUS_CANCELLED");
});

test("GET /metrics reports RPCs by method, code and door, jobs by status, retries and the worker", async () => {
  await http("GET", `/${B}/ingest/jobs/job_missing`);
  // The job gauges read the maintained counters; let the compactor run once too.
  await new Promise((r) => setTimeout(r, 1100));
  const res = await fetch(`${s.httpUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  const text = await res.text();
  const value = (re: RegExp) => {
    const m = re.exec(text);
    if (!m) throw new Error(`no metric line matches ${re}`);
    return Number(m[1]);
  };
  expect(value(/^k3_rpc_requests_total\{method="TriggerIngest",code="ok",door="rest"\} (\d+)$/m)).toBeGreaterThanOrEqual(5);
  expect(value(/^k3_rpc_requests_total\{method="GetIngestStatus",code="not_found",door="rest"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
  expect(value(/^k3_rpc_duration_seconds_count\{method="TriggerIngest",door="rest"\} (\d+)$/m)).toBeGreaterThanOrEqual(5);
  const completed = value(/^k3_jobs\{status="completed"\} (\d+)$/m);
  const { rows } = await pool.query("SELECT count(*)::int AS n FROM jobs WHERE status = 'completed'");
  expect(completed).toBe(rows[0].n);
  expect(value(/^k3_job_retries_total\{template="text_embedding_index"\} (\d+)$/m)).toBeGreaterThanOrEqual(2 + 3);
  expect(value(/^k3_job_duration_seconds_count\{template="text_embedding_index",outcome="completed"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
  expect(text).toMatch(/^k3_queue_oldest_pending_age_seconds \d/m);
  expect(text).toMatch(/^k3_worker_busy \d/m);
  expect(text).toMatch(/^k3_process_resident_memory_bytes \d/m);
  expect(text).toMatch(/^k3_heap_after_gc_bytes \d+$/m);
});
