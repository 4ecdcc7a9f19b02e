/**
 * `npm run soak`: mixed load against a real server process (API and worker, real
 * pipelines) for K3_SOAK_SECONDS (default 600): triggers through REST and gRPC, status
 * polls, filtered lists and cancels from eight clients. Every 10 s it reports operations,
 * errors, latency percentiles and the server's RSS. It passes when no call failed
 * unexpectedly, every job reached a terminal state that tells the truth, the server's live
 * heap (k3_heap_after_gc_bytes, read from /metrics every second) shows no upward trend after
 * a 40 s warm-up (least-squares growth under max(10 MB, 15 % of its mean)), and its RSS stays
 * under 250 MB. RSS (each window's lowest one-second sample) is reported, not fitted: it
 * follows V8's heap capacity, which swings by 50 MB under this load while the live heap
 * holds within a few (the RSS fit failed a sound tree at +106 MB). CI runs 120 seconds of it.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Pool } from "pg";
import { IngestService } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { connectClients, type CallResult, type Door } from "../helpers/clients";
import { benchPostgres, freshDatabase, percentile, rssOf, startServer } from "./lib";

const SECONDS = Number(process.env.K3_SOAK_SECONDS ?? 600);
const WINDOW_MS = 10_000;
const B = "kb-soak";

interface Window {
  ops: number;
  errors: number;
  lat: number[];
  rss: number;
  /** The server's k3_heap_after_gc_bytes at the window's end. */
  heap: number;
}

async function main() {
  const pg = await benchPostgres();
  const url = await freshDatabase(pg.adminUrl, "k3_soak");
  const server = await startServer("serve", url, { K3_WORKER_CONCURRENCY: "4", K3_LEASE_MS: "10000" });
  const dir = join(server.dataDir, "buckets", B);
  mkdirSync(join(dir, "docs"), { recursive: true });
  mkdirSync(join(dir, "data"), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(dir, "docs", `${i}.txt`), `Soak document ${i}. `.repeat(20 + (i % 50)));
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, "data", `${i}.csv`), "id,name\n" + Array.from({ length: 50 }, (_, r) => `${r},row ${r}`).join("\n"));
  const clients = connectClients(`http://127.0.0.1:${server.httpPort}`, `127.0.0.1:${server.grpcPort}`);
  const h = { authorization: `Bearer ${server.token}` };
  const must = async (r: Promise<CallResult>) => {
    const x = await r;
    if (!x.ok) throw new Error(`${x.code}: ${x.message}`);
    return x.body as Record<string, Record<string, string>>;
  };
  const embed = (await must(clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "embed", scriptumTemplate: "text_embedding_index", options: { chunk_size: "300", chunk_overlap: "30" } }, h))).pipeline.pipelineId;
  const rows = (await must(clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "rows", scriptumTemplate: "structured_rows" }, h))).pipeline.pipelineId;
  const noop = (await must(clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "noop", scriptumTemplate: "noop" }, h))).pipeline.pipelineId;

  const windows: Window[] = [];
  let current: Window = { ops: 0, errors: 0, lat: [], rss: 0, heap: 0 };
  let heap = 0;
  const unexpected: string[] = [];
  const jobs: string[] = [];
  const pid = server.proc.child.pid!;
  const heapAfterGc = async () => {
    const text = await fetch(`http://127.0.0.1:${server.httpPort}/metrics`).then((r) => r.text(), () => "");
    const m = /^k3_heap_after_gc_bytes (\d+)$/m.exec(text);
    if (m && Number(m[1]) > 0) heap = Number(m[1]);
  };
  const sampler = setInterval(() => {
    const rss = rssOf(pid);
    current.rss = current.rss === 0 ? rss : Math.min(current.rss, rss);
    void heapAfterGc();
  }, 1000);
  const ticker = setInterval(() => {
    current.rss = current.rss === 0 ? rssOf(pid) : Math.min(current.rss, rssOf(pid));
    current.heap = heap;
    windows.push(current);
    const w = current;
    process.stderr.write(`[soak] ${windows.length * 10}s ops ${w.ops} errors ${w.errors} p50 ${percentile(w.lat, 50).toFixed(1)} ms p99 ${percentile(w.lat, 99).toFixed(1)} ms rss floor ${(w.rss / 2 ** 20).toFixed(0)} MB heap after gc ${(w.heap / 2 ** 20).toFixed(1)} MB\n`);
    current = { ops: 0, errors: 0, lat: [], rss: 0, heap: 0 };
  }, WINDOW_MS);

  const deadline = Date.now() + SECONDS * 1000;
  const rnd = (n: number) => Math.floor(Math.random() * n);
  await Promise.all(
    Array.from({ length: 8 }, async (_, u) => {
      const door: Door = u % 2 ? "rest" : "grpc";
      while (Date.now() < deadline) {
        const dice = Math.random();
        const t = performance.now();
        let r: CallResult;
        let tolerated: string[] = [];
        if (dice < 0.5 || jobs.length === 0) {
          const kind = rnd(3);
          const req =
            kind === 0
              ? { object: { key: `docs/${rnd(200)}.txt` }, pipelineId: embed }
              : kind === 1
                ? { object: { key: `data/${rnd(20)}.csv` }, pipelineId: rows }
                : { object: { key: `docs/${rnd(200)}.txt` }, pipelineId: noop };
          r = await clients.call(door, IngestService, "TriggerIngest", { bucket: B, ...req }, h);
          if (r.ok) jobs.push((r.body as { job: { jobId: string } }).job.jobId);
        } else if (dice < 0.7) {
          r = await clients.call(door, IngestService, "GetIngestStatus", { bucket: B, jobId: jobs[rnd(jobs.length)] }, h);
        } else if (dice < 0.9) {
          const choices: Array<Record<string, string>> = [{}, { statusFilter: "INGEST_STATUS_COMPLETED" }, { pipelineId: embed }, { statusFilter: "INGEST_STATUS_PENDING", pipelineId: rows }];
          const filters = choices[rnd(choices.length)];
          r = await clients.call(door, IngestService, "ListIngestJobs", { bucket: B, pageSize: 20, ...filters }, h);
        } else {
          // Cancelling a job that already finished is a legitimate FAILED_PRECONDITION.
          tolerated = ["failed_precondition"];
          r = await clients.call(door, IngestService, "CancelIngestJob", { bucket: B, jobId: jobs[rnd(jobs.length)] }, h);
        }
        current.lat.push(performance.now() - t);
        current.ops++;
        if (!r.ok && !tolerated.includes(r.code)) {
          current.errors++;
          if (unexpected.length < 20) unexpected.push(`${r.code}: ${r.message}`);
        }
        await new Promise((res) => setTimeout(res, 2));
      }
    }),
  );
  clearInterval(ticker);
  clearInterval(sampler);

  // Let the workers finish what was triggered.
  const pool = new Pool({ connectionString: url, max: 1 });
  const drainDeadline = Date.now() + 120_000;
  for (;;) {
    const { rows: r } = await pool.query("SELECT count(*)::int AS n FROM jobs WHERE status IN ('pending', 'processing')");
    if (r[0].n === 0 || Date.now() > drainDeadline) break;
    await new Promise((res) => setTimeout(res, 500));
  }
  const { rows: states } = await pool.query("SELECT status, count(*)::int AS n FROM jobs GROUP BY status ORDER BY status");
  const { rows: failedJobs } = await pool.query("SELECT error FROM jobs WHERE status IN ('failed', 'partial', 'pending', 'processing') LIMIT 5");
  await pool.end();
  clients.close();
  await server.proc.stop();
  await pg.stop();

  // Memory: the least-squares trend of the live heap (heap after a full collection) past the
  // warm-up, where it settles (a 300 s run: 24 MB at 20 s, 29 MB from 90 s to the end). RSS
  // follows V8's heap capacity instead, which grows and shrinks by 50 MB under this load
  // (floors 108 -> 181 MB in a 120 s run whose live heap went 25 -> 29 MB), so it is held
  // only to the project's 250 MB bound for a server under load.
  const warmup = Math.max(1, Math.min(4, windows.length - 3));
  const fit = (values: number[]) => {
    const pts = values.map((v, i) => [i * (WINDOW_MS / 1000), v / 2 ** 20]);
    const mean = pts.reduce((a, p) => a + p[1], 0) / Math.max(1, pts.length);
    let slope = 0;
    if (pts.length >= 3) {
      const mx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
      slope = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - mean), 0) / pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
    }
    return { mean, slope, growth: slope * (pts.length * (WINDOW_MS / 1000)) };
  };
  const heapFit = fit(windows.slice(warmup).map((w) => w.heap));
  const rssFit = fit(windows.slice(warmup).map((w) => w.rss));
  const rssPeak = Math.max(...windows.map((w) => w.rss)) / 2 ** 20;
  const allLat = windows.flatMap((w) => w.lat);
  const totalOps = windows.reduce((a, w) => a + w.ops, 0);
  const totalErrors = windows.reduce((a, w) => a + w.errors, 0);
  const heapSeen = windows.slice(warmup).every((w) => w.heap > 0);
  const memoryOk = heapSeen && heapFit.growth < Math.max(10, 0.15 * heapFit.mean) && rssPeak < 250;
  const jobsOk = failedJobs.length === 0;
  process.stdout.write(
    [
      `soak: ${SECONDS} s, ${totalOps} calls, ${totalErrors} unexpected errors, p50 ${percentile(allLat, 50).toFixed(1)} ms, p99 ${percentile(allLat, 99).toFixed(1)} ms`,
      `jobs: ${states.map((s) => `${s.status} ${s.n}`).join(", ")}`,
      `live heap: mean ${heapFit.mean.toFixed(1)} MB, trend ${heapFit.slope >= 0 ? "+" : ""}${(heapFit.slope * 60).toFixed(2)} MB/min (${heapFit.growth.toFixed(1)} MB over the run after the warm-up; bound ${Math.max(10, 0.15 * heapFit.mean).toFixed(1)})${heapSeen ? "" : " — no full collection reported in some window"}`,
      `rss: floor peak ${rssPeak.toFixed(0)} MB (bound 250), mean ${rssFit.mean.toFixed(0)} MB, trend ${rssFit.growth >= 0 ? "+" : ""}${rssFit.growth.toFixed(1)} MB over the run (reported, not judged)`,
      ...unexpected.map((e) => `unexpected: ${e}`),
      ...failedJobs.map((j) => `job not completed: ${j.error}`),
      totalErrors === 0 && memoryOk && jobsOk ? "PASS" : "FAIL",
    ].join("\n") + "\n",
  );
  process.exit(totalErrors === 0 && memoryOk && jobsOk ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
