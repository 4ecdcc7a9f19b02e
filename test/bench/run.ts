/**
 * `npm run bench`: every scenario against its baseline, measured in the same run on the
 * same PostgreSQL, printed as one table and written to test/bench/results.json. Figures
 * are only meaningful as ratios: client, server and database share this machine's cores.
 *
 * Scenarios: (1) TriggerIngest throughput through gRPC, Connect and REST against a raw
 * `pg` INSERT and an echo RPC on the same transport, with the server's RSS; (2) one
 * worker process draining 20,000 no-op jobs against graphile-worker and pg-boss;
 * (3) 2,000 text objects end to end; (4) wake-up latency of an idle worker; (5) Get and
 * List at one million jobs, first page and 900,000 rows deep, for every filter combination.
 *
 * BENCH_SCENARIOS=1,2 runs a subset; BENCH_SECONDS sets the load duration (default 15);
 * BENCH_WORKER_JOBS the jobs scenario 2 drains (default 20,000); BENCH_GATE=1 checks the
 * queue's ratios against their floors (gate.ts) and exits 1 when one is below
 * (`npm run bench:ci`, which CI runs).
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Pool } from "pg";
import { IngestService, TriggerIngestRequestSchema } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { encodePageToken } from "../../src/domain/page-token";
import { flateBomb } from "../helpers/fixtures";
import { migrate } from "../../src/storage/postgres/migrate";
import { connectClients, grpcCall } from "../helpers/clients";
import { bareTextEmbedding } from "./bare-pipeline";
import { scenario9 } from "./discovery";
import { scenario10 } from "./search";
import { scenario11 } from "./watch";
import { gate, type GateRatio } from "./gate";
import { scenario12 } from "./console";
import { scenario13 } from "./rows";
import { benchPostgres, cpuMsOf, ensureDebianTool, stopAll, freshDatabase, grpcFrame, h2load, machineBusyMs, percentile, rssOf, spawnTs, startServer, type LoadResult } from "./lib";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ONLY = (process.env.BENCH_SCENARIOS ?? "1,2,3,4,5,7,8,9,10,11,12,13").split(",").map(Number);
const WORKER_JOBS = Number(process.env.BENCH_WORKER_JOBS ?? 20_000);
/** The ratios the regression gate checks (gate.ts), as scenarios 1 and 2 measure them. */
const gateRatios: GateRatio[] = [];
const BUCKET = "kb-bench";

type Row = { scenario: string; metric: string; value: string; baseline?: string; ratio?: string; target?: string; met?: string };
const rows: Row[] = [];
const results: Record<string, unknown> = {};
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

function md(metadata: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) m.set(k, v);
  return m;
}

async function ok(client: grpc.Client, service: typeof IngestService | typeof PipelineService, name: string, req: JsonObject, token: string) {
  const method = service.methods.find((m) => m.name === name)!;
  const r = await grpcCall(client, service, method, req, md({ authorization: `Bearer ${token}` }));
  if (!r.ok) throw new Error(`${name}: ${r.code} ${r.message}`);
  return r.body as Record<string, Record<string, string>>;
}

/** Raw pg single-row INSERT of the same job row, 64 in flight, for SECONDS. */
async function rawInsertBaseline(url: string, pipelineId: string): Promise<LoadResult> {
  const pool = new Pool({ connectionString: url, max: 16 });
  const deadline = Date.now() + SECONDS * 1000;
  const lat: number[] = [];
  let n = 0;
  const sql = `INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, pipeline_name, pipeline_kind, template, rule_id, options, request_id, created_at, updated_at)
               VALUES ($1, 'default', $2, 'docs/a.txt', $3, 'noop', '', 'noop', '', '{}', '', $4, $4)`;
  await Promise.all(
    Array.from({ length: 64 }, async (_, w) => {
      while (Date.now() < deadline) {
        const t = performance.now();
        await pool.query(sql, [`job_raw_${w}_${n++}`, BUCKET, pipelineId, Date.now()]);
        lat.push(performance.now() - t);
      }
    }),
  );
  await pool.end();
  return { requests: lat.length, ok: lat.length, seconds: SECONDS, p50ms: percentile(lat, 50), p99ms: percentile(lat, 99) };
}

async function scenario1(adminUrl: string) {
  log("scenario 1: trigger throughput");
  const echo = await spawnTs("test/bench/echo-server.ts", [], {}, (out) => out.includes("grpcPort"));
  const echoPorts = JSON.parse(echo.output().trim().split("\n")[0]) as { httpPort: number; grpcPort: number };
  const url = await freshDatabase(adminUrl, "k3_bench_trigger");
  const server = await startServer("api", url, { K3_DB_POOL_SIZE: "16" });
  const pool = new Pool({ connectionString: url, max: 2 });
  const { mkdirSync, writeFileSync: write } = await import("node:fs");
  mkdirSync(join(server.dataDir, "buckets", BUCKET, "docs"), { recursive: true });
  write(join(server.dataDir, "buckets", BUCKET, "docs", "a.txt"), "hello");
  const client = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  const pipelineId = (await ok(client, PipelineService, "CreatePipeline", { bucket: BUCKET, name: "noop", scriptumTemplate: "noop" }, server.token)).pipeline.pipelineId;
  client.close();
  const request = { bucket: BUCKET, object: { key: "docs/a.txt" }, pipelineId };
  const auth = { authorization: `Bearer ${server.token}` };
  const rssStart = rssOf(server.proc.child.pid!);
  let rssPeak = rssStart;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssOf(server.proc.child.pid!))), 200);
  const jobs = async () => Number((await pool.query("SELECT count(*) AS n FROM jobs")).rows[0].n);

  const raw = await rawInsertBaseline(url, pipelineId);
  const rawRate = raw.requests / raw.seconds;
  rows.push({ scenario: "1 trigger", metric: "raw pg single-row INSERT, 64 in flight (baseline a)", value: `${fmt(rawRate)} rows/s`, baseline: `p50 ${fmt(raw.p50ms, 2)} ms, p99 ${fmt(raw.p99ms, 2)} ms` });
  const doors: Array<{ door: string; short: string; http1: boolean; body: Buffer; headers: Record<string, string>; path: string; port: (s: { grpcPort: number; httpPort: number }) => number }> = [
    {
      door: "gRPC (grpc-js)",
      short: "gRPC",
      http1: false,
      body: grpcFrame(toBinary(TriggerIngestRequestSchema, create(TriggerIngestRequestSchema, request))),
      headers: { "content-type": "application/grpc", te: "trailers" },
      path: "/dodil.k3.ingest.v1.IngestService/TriggerIngest",
      port: (s: { grpcPort: number }) => s.grpcPort,
    },
    {
      door: "Connect JSON (HTTP/1.1)",
      short: "Connect",
      http1: true,
      body: Buffer.from(JSON.stringify(request)),
      headers: { "content-type": "application/json" },
      path: "/dodil.k3.ingest.v1.IngestService/TriggerIngest",
      port: (s: { httpPort: number }) => s.httpPort,
    },
    {
      door: "REST (HTTP/1.1)",
      short: "REST",
      http1: true,
      body: Buffer.from(JSON.stringify({ object: request.object, pipelineId })),
      headers: { "content-type": "application/json" },
      path: `/${BUCKET}/ingest`,
      port: (s: { httpPort: number }) => s.httpPort,
    },
  ];
  const out: Record<string, unknown> = { raw };
  for (const d of doors) {
    const before = await jobs();
    const trig = await h2load({ url: `http://127.0.0.1:${d.port(server)}${d.path}`, body: d.body, headers: { ...d.headers, ...auth }, seconds: SECONDS, http1: d.http1 });
    const inserted = (await jobs()) - before;
    // Rows that reached the table, over the measured window (h2load counts the warm-up second apart).
    const rate = inserted / (SECONDS + 1);
    const echoLoad = await h2load({ url: `http://127.0.0.1:${d.port(echoPorts)}${d.path}`, body: d.body, headers: d.headers, seconds: SECONDS, http1: d.http1 });
    const echoRate = echoLoad.requests / SECONDS;
    rows.push({
      scenario: "1 trigger",
      metric: `TriggerIngest via ${d.door}: p50 ${fmt(trig.p50ms, 2)} ms, p99 ${fmt(trig.p99ms, 2)} ms`,
      value: `${fmt(rate)} rows/s`,
      baseline: `raw INSERT ${fmt(rawRate)}/s`,
      ratio: `${fmt(rate / rawRate, 2)}×`,
      target: "≥ 1.0×",
      met: rate / rawRate >= 1 ? "yes" : "no",
    });
    rows.push({
      scenario: "1 trigger",
      metric: `  … against echo on ${d.door} (p50 ${fmt(echoLoad.p50ms, 2)} ms, p99 ${fmt(echoLoad.p99ms, 2)} ms)`,
      value: `${fmt(rate)} rows/s`,
      baseline: `echo ${fmt(echoRate)} req/s`,
      ratio: `${fmt(rate / echoRate, 2)}×`,
      target: "≥ 0.6×",
      met: rate / echoRate >= 0.6 ? "yes" : "no",
    });
    out[d.door] = { trigger: trig, inserted, rate, echo: echoLoad, echoRate };
    gateRatios.push({ name: `trigger ${d.short} / raw INSERT`, value: rate / rawRate }, { name: `trigger ${d.short} / echo`, value: rate / echoRate });
  }
  clearInterval(sampler);
  await new Promise((r) => setTimeout(r, 5000));
  const rssAfter = rssOf(server.proc.child.pid!);
  rows.push({ scenario: "6 memory", metric: "server RSS: start / peak under scenario 1 / 5 s after", value: `${fmt(rssStart / 2 ** 20)} / ${fmt(rssPeak / 2 ** 20)} / ${fmt(rssAfter / 2 ** 20)} MB`, target: "peak ≤ 250 MB", met: rssPeak <= 250 * 2 ** 20 ? "yes" : "no" });
  results.scenario1 = { ...out, rssStart, rssPeak, rssAfter };
  await pool.end();
  await server.proc.stop();
  await echo.stop();
}

async function insertNoopJobs(url: string, n: number, pipelineId: string) {
  const pool = new Pool({ connectionString: url, max: 1 });
  await pool.query(
    `INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, pipeline_name, pipeline_kind, template, rule_id, options, request_id, created_at, updated_at)
     SELECT 'job_noop_' || lpad(i::text, 8, '0'), 'default', $1, 'docs/a.txt', $2, 'noop', '', 'noop', '', '{}', '', 1000 + i, 1000 + i
     FROM generate_series(1, $3) AS i`,
    [BUCKET, pipelineId, n],
  );
  await pool.end();
}

async function scenario2(adminUrl: string) {
  const N = WORKER_JOBS;
  log(`scenario 2: worker throughput, ${N.toLocaleString("en")} no-op jobs`);
  // Ours: one worker process.
  const url = await freshDatabase(adminUrl, "k3_bench_worker");
  const pool = new Pool({ connectionString: url, max: 2 });
  await migrate(pool);
  await insertNoopJobs(url, N, "pipe_noop");
  const started = Date.now();
  const worker = await startServer("worker", url, { K3_WORKER_CONCURRENCY: "512", K3_POLL_MS: "100" });
  const { mkdirSync, writeFileSync: write } = await import("node:fs");
  mkdirSync(join(worker.dataDir, "buckets", BUCKET, "docs"), { recursive: true });
  write(join(worker.dataDir, "buckets", BUCKET, "docs", "a.txt"), "x");
  for (;;) {
    const { rows: r } = await pool.query("SELECT count(*) FILTER (WHERE status = 'completed') AS done, count(*) FILTER (WHERE status = 'failed') AS failed FROM jobs");
    if (Number(r[0].done) + Number(r[0].failed) >= N) break;
    if (Date.now() - started > 300_000) throw new Error("worker did not drain in 5 minutes");
    await new Promise((res) => setTimeout(res, 100));
  }
  const { rows: span } = await pool.query("SELECT min(started_at) AS a, max(finished_at) AS b, count(*) FILTER (WHERE status = 'completed') AS done FROM jobs");
  const ours = N / ((Number(span[0].b) - Number(span[0].a)) / 1000);
  await worker.proc.stop();
  await pool.end();

  const graphile = await graphileWorkerBaseline(adminUrl, N);
  const pgboss = await pgBossBaseline(adminUrl, N);
  const best = Math.max(graphile, pgboss);
  rows.push({ scenario: "2 worker", metric: `graphile-worker 0.17 (localQueue 500, batched completion, concurrency 24)`, value: `${fmt(graphile)} jobs/s` });
  rows.push({ scenario: "2 worker", metric: `pg-boss 10 (10 work() loops × batchSize 500, polling 0.5 s)`, value: `${fmt(pgboss)} jobs/s` });
  rows.push({
    scenario: "2 worker",
    metric: `k3-ingest worker, 1 process, K3_WORKER_CONCURRENCY=512 (${span[0].done} completed)`,
    value: `${fmt(ours)} jobs/s`,
    baseline: `best peer ${fmt(best)}/s`,
    ratio: `${fmt(ours / best, 2)}×`,
    target: "≥ 1.0×",
    met: ours >= best ? "yes" : "no",
  });
  results.scenario2 = { ours, graphile, pgboss };
  gateRatios.push({ name: "worker / graphile-worker", value: ours / graphile });
}

async function graphileWorkerBaseline(adminUrl: string, n: number): Promise<number> {
  const url = await freshDatabase(adminUrl, "k3_bench_graphile");
  const gw = await import("graphile-worker");
  const utils = await gw.makeWorkerUtils({ connectionString: url });
  await utils.migrate();
  for (let i = 0; i < n; i += 1000) {
    await utils.addJobs(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ identifier: "noop", payload: { i: i + j } })));
  }
  await utils.release();
  let done = 0;
  let first = 0;
  let last = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const runner = await gw.run({
    connectionString: url,
    concurrency: 24,
    maxPoolSize: 25,
    noHandleSignals: true,
    logger: new gw.Logger(() => () => undefined),
    preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    taskList: {
      noop: async () => {
        if (!first) first = Date.now();
      },
    },
  });
  runner.events.on("job:success", () => {
    done++;
    if (done === n) {
      last = Date.now();
      finish();
    }
  });
  await finished;
  await runner.stop();
  return n / ((last - first) / 1000);
}

async function pgBossBaseline(adminUrl: string, n: number): Promise<number> {
  const url = await freshDatabase(adminUrl, "k3_bench_pgboss");
  const { default: PgBoss } = (await import("pg-boss")) as unknown as { default: new (o: object) => PgBossLike };
  const boss = new PgBoss({ connectionString: url, max: 10 });
  let done = 0;
  let first = 0;
  let last = 0;
  let finish!: () => void;
  let fail!: (err: unknown) => void;
  const finished = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  finished.catch(() => undefined); // awaited below, after the setup
  // pg-boss emits its pool's errors, and one nobody hears ends the process (CI's short bench
  // once died of a connection closing as it stopped): while it drains, one fails the
  // baseline; after, it changes nothing measured.
  boss.on("error", (err: unknown) => {
    if (!last) fail(err);
  });
  await boss.start();
  await boss.createQueue("noop");
  for (let i = 0; i < n; i += 1000) {
    await boss.insert(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: "noop", data: { i: i + j } })));
  }
  for (let w = 0; w < 10; w++) {
    await boss.work("noop", { batchSize: 500, pollingIntervalSeconds: 0.5 }, async (jobs: unknown[]) => {
      if (!first) first = Date.now();
      done += jobs.length;
      if (done >= n && !last) {
        last = Date.now();
        finish();
      }
    });
  }
  await finished;
  await boss.stop({ graceful: false, wait: true });
  return n / ((last - first) / 1000);
}

interface PgBossLike {
  on(event: "error", listener: (err: unknown) => void): void;
  start(): Promise<unknown>;
  createQueue(name: string): Promise<void>;
  insert(jobs: Array<{ name: string; data: object }>): Promise<void>;
  work(name: string, opts: object, handler: (jobs: unknown[]) => Promise<void>): Promise<string>;
  stop(opts: object): Promise<void>;
}

async function scenario3and4(adminUrl: string) {
  const url = await freshDatabase(adminUrl, "k3_bench_e2e");
  const server = await startServer("serve", url, { K3_WORKER_CONCURRENCY: "8", K3_POLL_MS: "1000" });
  const { mkdirSync, writeFileSync: write } = await import("node:fs");
  const dir = join(server.dataDir, "buckets", BUCKET, "small");
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < 2000; i++) write(join(dir, `${i}.txt`), `Document ${i}. `.repeat(40));
  const client = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  const embed = (await ok(client, PipelineService, "CreatePipeline", { bucket: BUCKET, name: "embed", scriptumTemplate: "text_embedding_index" }, server.token)).pipeline.pipelineId;
  const noop = (await ok(client, PipelineService, "CreatePipeline", { bucket: BUCKET, name: "noop", scriptumTemplate: "noop" }, server.token)).pipeline.pipelineId;
  const pool = new Pool({ connectionString: url, max: 2 });

  if (ONLY.includes(3)) {
    log("scenario 3: 2,000 text objects end to end");
    // Where the CPU goes: the machine's busy time (both cores: PostgreSQL, the server, this
    // load generator) and the server's own, per object, here and in the bare loop.
    const cpu0 = { machine: machineBusyMs(), server: cpuMsOf(server.proc.child.pid!), bench: cpuMsOf(process.pid) };
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < 2000) {
          const i = next++;
          await ok(client, IngestService, "TriggerIngest", { bucket: BUCKET, object: { key: `small/${i}.txt` }, pipelineId: embed }, server.token);
        }
      }),
    );
    for (;;) {
      const { rows: r } = await pool.query("SELECT count(*) AS n FROM jobs WHERE pipeline_id = $1 AND status IN ('completed', 'failed')", [embed]);
      if (Number(r[0].n) >= 2000) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const { rows: r } = await pool.query(
      "SELECT finished_at - created_at AS latency, created_at, finished_at, status FROM jobs WHERE pipeline_id = $1",
      [embed],
    );
    const cpu1 = { machine: machineBusyMs(), server: cpuMsOf(server.proc.child.pid!), bench: cpuMsOf(process.pid) };
    const lat = r.map((x) => Number(x.latency));
    const span = (Math.max(...r.map((x) => Number(x.finished_at))) - Math.min(...r.map((x) => Number(x.created_at)))) / 1000;
    const completed = r.filter((x) => x.status === "completed").length;
    // The limit: the same code in a bare loop, as many at once as the worker (8).
    const keys = Array.from({ length: 2000 }, (_, i) => `small/${i}.txt`);
    const bare0 = { machine: machineBusyMs(), bench: cpuMsOf(process.pid) };
    const bare = await bareTextEmbedding(url, { org: "default", bucket: BUCKET }, join(server.dataDir, "buckets", BUCKET), keys, 8);
    const bare1 = { machine: machineBusyMs(), bench: cpuMsOf(process.pid) };
    const ratio = 2000 / span / bare;
    rows.push({ scenario: "3 end-to-end", metric: `2,000 text objects, text_embedding_index, local embedder (${completed} completed)`, value: `${fmt(2000 / span)} jobs/s`, baseline: `bare loop ${fmt(bare)}/s`, ratio: `${ratio.toFixed(2)}×`, target: "≥ 0.8×", met: ratio >= 0.8 ? "yes" : "no" });
    rows.push({ scenario: "3 end-to-end", metric: "bare loop: the same extract + chunk + embed + insert code, 8 at once, no server or queue", value: `${fmt(bare)} objects/s` });
    const per = (ms: number) => fmt(ms / 2000, 2);
    const server3 = cpu1.server - cpu0.server;
    const bench3 = cpu1.bench - cpu0.bench;
    rows.push({
      scenario: "3 end-to-end",
      metric: "CPU per object: machine (server / load generator / PostgreSQL and the rest); bare loop: machine (loop / PostgreSQL and the rest)",
      value: `${per(cpu1.machine - cpu0.machine)} ms (${per(server3)} / ${per(bench3)} / ${per(cpu1.machine - cpu0.machine - server3 - bench3)})`,
      baseline: `bare ${per(bare1.machine - bare0.machine)} ms (${per(bare1.bench - bare0.bench)} / ${per(bare1.machine - bare0.machine - (bare1.bench - bare0.bench))})`,
    });
    rows.push({ scenario: "3 end-to-end", metric: "trigger → COMPLETED latency p50 / p99", value: `${fmt(percentile(lat, 50))} / ${fmt(percentile(lat, 99))} ms` });
    results.scenario3 = { jobsPerSecond: 2000 / span, bareLoopPerSecond: bare, ratio, p50: percentile(lat, 50), p99: percentile(lat, 99) };
  }

  if (ONLY.includes(4)) {
    log("scenario 4: wake-up latency of an idle worker");
    await new Promise((res) => setTimeout(res, 1500));
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const job = (await ok(client, IngestService, "TriggerIngest", { bucket: BUCKET, object: { key: `small/${i}.txt` }, pipelineId: noop }, server.token)).job;
      ids.push(job.jobId);
      await new Promise((res) => setTimeout(res, 20));
    }
    await new Promise((res) => setTimeout(res, 500));
    const { rows: r } = await pool.query("SELECT started_at - created_at AS wake FROM jobs WHERE job_id = ANY($1) AND started_at > 0", [ids]);
    const wake = r.map((x) => Number(x.wake));
    rows.push({
      scenario: "4 wake-up",
      metric: `trigger → PROCESSING with an idle worker, 200 jobs (poll interval 1 s)`,
      value: `p50 ${fmt(percentile(wake, 50))} ms, p99 ${fmt(percentile(wake, 99))} ms`,
      target: "p50 ≤ 5 ms",
      met: percentile(wake, 50) <= 5 ? "yes" : "no",
    });
    results.scenario4 = { p50: percentile(wake, 50), p99: percentile(wake, 99), n: wake.length };
  }
  client.close();
  await pool.end();
  await server.proc.stop();
}

async function scenario5(adminUrl: string) {
  log("scenario 5: list and status at scale (bulk load)");
  const url = await freshDatabase(adminUrl, "k3_bench_scale");
  const pool = new Pool({ connectionString: url, max: 2 });
  await migrate(pool);
  const STATUSES = ["pending", "processing", "completed", "failed", "partial", "cancelled"];
  const N = Number(process.env.BENCH_SCALE_JOBS ?? 1_000_000);
  pool.on("error", (err) => log(`scale pool: ${err.message}`));
  const t0 = Date.now();
  for (let from = 0; from < N; from += 100_000) {
    await pool.query(
      `INSERT INTO jobs (job_id, org, bucket, object_key, status, pipeline_id, pipeline_name, pipeline_kind, template, rule_id,
                         lease_owner, lease_expires_at, created_at, updated_at, started_at, finished_at)
       SELECT 'job_' || lpad(i::text, 26, '0'), 'default', $1, 'docs/' || i || '.txt', s, 'pipe_bench' || (i % 10), 'p', 'vector',
              'text_embedding_index', CASE WHEN i % 21 = 0 THEN '' ELSE 'rule_bench' || (i % 21) END,
              CASE WHEN s = 'processing' THEN 'bench' END, CASE WHEN s = 'processing' THEN 9e15::bigint END,
              1700000000000 + i, 1700000000000 + i, 1700000000000 + i,
              CASE WHEN s IN ('completed', 'failed', 'partial', 'cancelled') THEN 1700000000000 + i ELSE 0 END
       FROM (SELECT i, ($4::text[])[1 + i % 6] AS s FROM generate_series($2::int, $3::int) AS i) AS g`,
      [BUCKET, from, Math.min(N, from + 100_000) - 1, STATUSES],
    );
  }
  await pool.query("ANALYZE jobs");
  log(`bulk-loaded ${N} jobs in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  // The rows are dated 2023: with the default 30-day retention the server would prune the
  // finished ones while they are being counted.
  const server = await startServer("api", url, { K3_JOB_RETENTION: "off" });
  const clients = connectClients(`http://127.0.0.1:${server.httpPort}`, `127.0.0.1:${server.grpcPort}`);
  const h = { authorization: `Bearer ${server.token}` };
  const timeCalls = async (n: number, req: () => JsonObject, name: string, service = IngestService) => {
    const lat: number[] = [];
    let total = "";
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      const r = await clients.call("grpc", service, name, req(), h);
      lat.push(performance.now() - t);
      if (!r.ok) throw new Error(`${name}: ${r.code} ${r.message}`);
      total = String((r.body as { pagination?: { totalCount?: string } }).pagination?.totalCount ?? "");
    }
    return { p50: percentile(lat, 50), p99: percentile(lat, 99), total };
  };
  // Warm-up: the first calls after a million-row bulk load meet cold pages and autovacuum.
  await timeCalls(100, () => ({ bucket: BUCKET, pageSize: 50 }), "ListIngestJobs");
  const get = await timeCalls(300, () => ({ bucket: BUCKET, jobId: `job_${String(Math.floor(Math.random() * N)).padStart(26, "0")}` }), "GetIngestStatus");
  rows.push({ scenario: "5 scale", metric: `GetIngestStatus at ${N.toLocaleString("en")} jobs (300 calls)`, value: `p50 ${fmt(get.p50, 2)} ms, p99 ${fmt(get.p99, 2)} ms` });
  const out: Record<string, unknown> = { get };
  // i0 = 5 picks a status, pipeline and rule that co-occur (i ≡ 5 mod 6, 10 and 21).
  const values = { status: "cancelled", pipelineId: "pipe_bench5", ruleId: "rule_bench5" };
  for (const combo of [[], ["status"], ["pipelineId"], ["ruleId"], ["status", "pipelineId"], ["status", "ruleId"], ["pipelineId", "ruleId"], ["status", "pipelineId", "ruleId"]] as Array<Array<keyof typeof values>>) {
    const f = Object.fromEntries(combo.map((k) => [k, values[k]])) as Partial<typeof values>;
    const filter = { org: "default", bucket: BUCKET, status: f.status, pipelineId: f.pipelineId, ruleId: f.ruleId };
    const where = ["bucket = $1", ...combo.map((k, i) => `${{ status: "status", pipelineId: "pipeline_id", ruleId: "rule_id" }[k]} = $${i + 2}`)].join(" AND ");
    const params = [BUCKET, ...combo.map((k) => values[k])];
    const matching = Number((await pool.query(`SELECT count(*) AS n FROM jobs WHERE ${where}`, params)).rows[0].n);
    const depth = Math.min(900_000, Math.floor(matching * 0.9));
    const at = (await pool.query(`SELECT created_at, job_id FROM jobs WHERE ${where} ORDER BY created_at DESC, job_id DESC OFFSET ${depth} LIMIT 1`, params)).rows[0];
    const token = encodePageToken({ createdAt: Number(at.created_at), id: at.job_id }, { ...filter });
    const req: JsonObject = { bucket: BUCKET, pageSize: 50, ...(f.status ? { statusFilter: `INGEST_STATUS_${f.status.toUpperCase()}` } : {}), ...(f.pipelineId ? { pipelineId: f.pipelineId } : {}), ...(f.ruleId ? { ruleId: f.ruleId } : {}) };
    const first = await timeCalls(200, () => req, "ListIngestJobs");
    const deep = await timeCalls(200, () => ({ ...req, pageToken: token }), "ListIngestJobs");
    if (first.total !== String(matching)) throw new Error(`totalCount ${first.total} != ${matching} for ${combo.join("+")}`);
    const worst = Math.max(first.p99, deep.p99);
    rows.push({
      scenario: "5 scale",
      metric: `ListIngestJobs [${combo.join(" + ") || "no filter"}] ${matching} matching; first / ${depth.toLocaleString("en")} deep`,
      value: `p50 ${fmt(first.p50, 2)} / ${fmt(deep.p50, 2)} ms, p99 ${fmt(first.p99, 2)} / ${fmt(deep.p99, 2)} ms`,
      target: "p99 ≤ 20 ms",
      met: worst <= 20 ? "yes" : "no",
    });
    out[combo.join("+") || "none"] = { matching, depth, first, deep };
  }
  // key_prefix: a rare prefix (11 keys), a tenth of the bucket, all of it. Counted exactly
  // over the prefix's range of jobs_object_idx, so the count grows with the matching jobs.
  for (const prefix of ["docs/12345", "docs/1", "docs/"]) {
    const matching = Number((await pool.query("SELECT count(*) AS n FROM jobs WHERE bucket = $1 AND starts_with(object_key, $2)", [BUCKET, prefix])).rows[0].n);
    const req: JsonObject = { bucket: BUCKET, pageSize: 50, keyPrefix: prefix };
    const first = await timeCalls(100, () => req, "ListIngestJobs");
    if (first.total !== String(matching)) throw new Error(`totalCount ${first.total} != ${matching} for key_prefix ${prefix}`);
    // The page is the right one, whichever plan served it.
    const want = (await pool.query("SELECT job_id FROM jobs WHERE bucket = $1 AND starts_with(object_key, $2) ORDER BY created_at DESC, job_id DESC LIMIT 50", [BUCKET, prefix])).rows.map((r) => r.job_id);
    const got = await clients.call("grpc", IngestService, "ListIngestJobs", req, h);
    const ids = got.ok ? (got.body as { jobs: Array<{ jobId: string }> }).jobs.map((j) => j.jobId) : [];
    if (JSON.stringify(ids) !== JSON.stringify(want)) throw new Error(`key_prefix ${prefix}: the first page is not the newest 50 matching jobs`);
    rows.push({
      scenario: "5 scale",
      metric: `ListIngestJobs [key_prefix ${prefix}] ${matching} matching; first page`,
      value: `p50 ${fmt(first.p50, 2)} ms, p99 ${fmt(first.p99, 2)} ms`,
      ...(matching <= 1000 ? { target: "p99 ≤ 20 ms", met: first.p99 <= 20 ? "yes" : "no" } : {}),
    });
    out[`key_prefix ${prefix}`] = { matching, first };
  }
  results.scenario5 = out;
  clients.close();
  await pool.end();
  await server.proc.stop();
}

/**
 * Scenario 7: four hostile 100 MiB objects at once (a one-line CSV, a text, a JSON of
 * `[` only, and a PDF whose stream inflates to 1 GiB), parsed for real: the text cap is
 * raised so every one reaches its sandbox. Measured: the server's RSS, the RSS of its
 * whole process tree (sandboxes included), and /healthz latency against the same probe
 * on the idle server just before.
 */
async function scenario7(adminUrl: string) {
  log("scenario 7: four hostile 100 MiB objects at once");
  const url = await freshDatabase(adminUrl, "k3_bench_hostile");
  const server = await startServer("serve", url, { K3_WORKER_CONCURRENCY: "4", K3_MAX_TEXT_CHARS: "200000000", K3_MAX_OBJECT_BYTES: String(110 * 2 ** 20) });
  const { mkdirSync, writeFileSync: write } = await import("node:fs");
  const dir = join(server.dataDir, "buckets", BUCKET, "hostile");
  mkdirSync(dir, { recursive: true });
  const MiB100 = 100 * 2 ** 20;
  write(join(dir, "one-line.csv"), Buffer.alloc(MiB100, "a"));
  write(join(dir, "huge.txt"), Buffer.alloc(MiB100, "word "));
  write(join(dir, "open.json"), Buffer.alloc(MiB100, "["));
  write(join(dir, "bomb.pdf"), await flateBomb(2 ** 30));
  const client = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  const embed = (await ok(client, PipelineService, "CreatePipeline", { bucket: BUCKET, name: "embed", scriptumTemplate: "text_embedding_index" }, server.token)).pipeline.pipelineId;
  const rowsPipe = (await ok(client, PipelineService, "CreatePipeline", { bucket: BUCKET, name: "rows", scriptumTemplate: "structured_rows" }, server.token)).pipeline.pipelineId;
  const probe = async (ms: number) => {
    const lat: number[] = [];
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const t = performance.now();
      await (await fetch(`http://127.0.0.1:${server.httpPort}/healthz`)).text();
      lat.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 10));
    }
    return lat;
  };
  const idle = await probe(3000);
  const tree = () => {
    const pids = [server.proc.child.pid!, ...execFileSync("sh", ["-c", `pgrep -P ${server.proc.child.pid} || true`]).toString().split(/\s+/).filter(Boolean).map(Number)];
    // The sandboxes are direct children (sh execs node in place).
    return pids.reduce((n, pid) => n + (() => { try { return rssOf(pid); } catch { return 0; } })(), 0);
  };
  let serverPeak = 0;
  let treePeak = 0;
  const sampler = setInterval(() => {
    serverPeak = Math.max(serverPeak, rssOf(server.proc.child.pid!));
    treePeak = Math.max(treePeak, tree());
  }, 50);
  const keys: Array<[string, string]> = [["hostile/one-line.csv", rowsPipe], ["hostile/huge.txt", embed], ["hostile/open.json", embed], ["hostile/bomb.pdf", embed]];
  const started = Date.now();
  const ids = await Promise.all(keys.map(async ([key, p]) => (await ok(client, IngestService, "TriggerIngest", { bucket: BUCKET, object: { key }, pipelineId: p }, server.token)).job.jobId as string));
  const pool = new Pool({ connectionString: url, max: 1 });
  let busy: number[] = [];
  const probing = (async () => {
    for (;;) {
      busy = busy.concat(await probe(500));
      const { rows: r } = await pool.query("SELECT count(*) AS n FROM jobs WHERE job_id = ANY($1) AND finished_at > 0", [ids]);
      if (Number(r[0].n) === ids.length || Date.now() - started > 300_000) break;
    }
  })();
  await probing;
  clearInterval(sampler);
  const { rows: outcome } = await pool.query("SELECT object_key, status, left(error, 90) AS error FROM jobs WHERE job_id = ANY($1) ORDER BY object_key", [ids]);
  for (const o of outcome) log(`  ${o.object_key}: ${o.status} ${o.error}`);
  const p99Idle = percentile(idle, 99);
  const maxBusy = Math.max(...busy);
  rows.push({ scenario: "7 hostile", metric: `4 × 100 MiB hostile objects at once (${outcome.map((o) => o.status).join(", ")}; ${fmt((Date.now() - started) / 1000, 1)} s)`, value: `server RSS peak ${fmt(serverPeak / 2 ** 20)} MB, with sandboxes ${fmt(treePeak / 2 ** 20)} MB`, target: "< 1024 MB", met: treePeak < 2 ** 30 ? "yes" : "no" });
  rows.push({ scenario: "7 hostile", metric: "/healthz latency meanwhile: p99 / max", value: `${fmt(percentile(busy, 99), 1)} / ${fmt(maxBusy, 1)} ms`, baseline: `idle p99 ${fmt(p99Idle, 1)} ms`, ratio: fmt(percentile(busy, 99) / p99Idle, 1), target: "max < 100 ms", met: maxBusy < 100 ? "yes" : "no" });
  results.scenario7 = { serverPeak, treePeak, busyP99: percentile(busy, 99), busyMax: maxBusy, idleP99: p99Idle, outcome };
  client.close();
  await pool.end();
  await server.proc.stop();
}

/**
 * Scenario 8: PUT throughput on the byte plane (bearer token, no rules: pure storage, with
 * the catalog row committed before each 200) against the same bytes written straight to
 * disk with fsync and rename, in the same run and at the same concurrency.
 */
async function scenario8(adminUrl: string) {
  log("scenario 8: PUT throughput on the byte plane");
  const url = await freshDatabase(adminUrl, "k3_bench_put");
  const server = await startServer("api", url, { K3_MAX_OBJECT_BYTES: String(128 * 2 ** 20) });
  const base = `http://127.0.0.1:${server.httpPort}`;
  const auth = { authorization: `Bearer ${server.token}` };
  await fetch(`${base}/admin/buckets`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ name: BUCKET }) });
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { open, rename, mkdir } = await import("node:fs/promises");
  const diskDir = mkdtempSync(join(server.dataDir, "baseline-"));
  const diskWrite = async (name: string, body: Buffer) => {
    await mkdir(diskDir, { recursive: true });
    const tmp = join(diskDir, `${name}.tmp`);
    const fh = await open(tmp, "w");
    await fh.write(body);
    await fh.sync();
    await fh.close();
    await rename(tmp, join(diskDir, name));
  };
  const measure = async (count: number, concurrency: number, put: (i: number) => Promise<void>) => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) await put(next++);
      }),
    );
    return (performance.now() - t0) / 1000;
  };
  const small = Buffer.alloc(4096, "k");
  const N = 3000;
  const ours = await measure(N, 32, async (i) => {
    const res = await fetch(`${base}/${BUCKET}/small/${i}.txt`, { method: "PUT", headers: auth, body: small });
    if (res.status !== 200) throw new Error(`PUT answered ${res.status}`);
    await res.arrayBuffer();
  });
  const disk = await measure(N, 32, (i) => diskWrite(`s${i}`, small));
  rows.push({ scenario: "8 PUT", metric: `${N} × 4 KiB objects, 32 in flight`, value: `${fmt(N / ours)} objects/s`, baseline: `${fmt(N / disk)} files/s (write+fsync+rename)`, ratio: fmt(disk / ours, 2) });
  // The same into a bucket whose rule makes a job of every upload (K3's usual bucket).
  const ruled = `${BUCKET}-rule`;
  const json = { ...auth, "content-type": "application/json" };
  await fetch(`${base}/admin/buckets`, { method: "POST", headers: json, body: JSON.stringify({ name: ruled }) });
  const pipe = (await (await fetch(`${base}/${ruled}/pipelines`, { method: "POST", headers: json, body: JSON.stringify({ name: "noop", scriptum_template: "noop" }) })).json()) as { pipeline: { pipelineId: string } };
  const rule = await fetch(`${base}/${ruled}/rules`, { method: "POST", headers: json, body: JSON.stringify({ name: "all", pipeline_id: pipe.pipeline.pipelineId, include_patterns: ["**"] }) });
  if (rule.status !== 200) throw new Error(`CreateRule answered ${rule.status}: ${await rule.text()}`);
  const oursRuled = await measure(N, 32, async (i) => {
    const res = await fetch(`${base}/${ruled}/small/${i}.txt`, { method: "PUT", headers: auth, body: small });
    if (res.status !== 200 || !res.headers.get("x-k3-jobs")) throw new Error(`PUT answered ${res.status} with jobs ${res.headers.get("x-k3-jobs")}`);
    await res.arrayBuffer();
  });
  rows.push({ scenario: "8 PUT", metric: `${N} × 4 KiB objects, 32 in flight, into a bucket with a rule (a job each)`, value: `${fmt(N / oursRuled)} objects/s`, baseline: `${fmt(N / disk)} files/s (write+fsync+rename)`, ratio: fmt(disk / oursRuled, 2) });
  const large = Buffer.alloc(64 * 2 ** 20, "m");
  const L = 8;
  const oursL = await measure(L, 2, async (i) => {
    const res = await fetch(`${base}/${BUCKET}/large/${i}.bin`, { method: "PUT", headers: auth, body: large });
    if (res.status !== 200) throw new Error(`PUT answered ${res.status}`);
    await res.arrayBuffer();
  });
  const diskL = await measure(L, 2, (i) => diskWrite(`l${i}`, large));
  const mb = L * 64;
  rows.push({ scenario: "8 PUT", metric: `${L} × 64 MiB objects, 2 in flight`, value: `${fmt(mb / oursL)} MiB/s`, baseline: `${fmt(mb / diskL)} MiB/s (write+fsync+rename)`, ratio: fmt(diskL / oursL, 2) });
  results.scenario8 = { smallPerSecond: N / ours, smallWithRulePerSecond: N / oursRuled, smallDiskPerSecond: N / disk, largeMiBps: mb / oursL, largeDiskMiBps: mb / diskL };
  rmSync(diskDir, { recursive: true, force: true });
  await server.proc.stop();
}

/** A scenario of the run: which numbers select it, what it adds to the table, the tools it needs. */
type Scenario = { ids: number[]; run: (adminUrl: string) => Promise<void>; needs?: () => Promise<void> };

const H2LOAD = () => ensureDebianTool("h2load", ["--version"], "nghttp2-client");
// The console's scenario drives Debian's Chromium (CHROMIUM_PATH names another).
const CHROMIUM = () => (process.env.CHROMIUM_PATH ? Promise.resolve() : ensureDebianTool("/usr/bin/chromium", ["--version"], "chromium"));

/** The scenarios kept in their own modules report rows and results; this adds them to the run's. */
const reported = (key: string, f: (adminUrl: string) => Promise<{ rows: Row[]; results: Record<string, number> }>) => async (adminUrl: string) => {
  const r = await f(adminUrl);
  rows.push(...r.rows);
  results[key] = r.results;
};

const SCENARIOS: Scenario[] = [
  { ids: [1], run: scenario1, needs: H2LOAD },
  { ids: [2], run: scenario2 },
  { ids: [3, 4], run: scenario3and4 },
  { ids: [5], run: scenario5 },
  { ids: [7], run: scenario7 },
  { ids: [8], run: scenario8 },
  { ids: [9], run: reported("scenario9", (url) => scenario9(url, log)) },
  { ids: [10], run: reported("scenario10", (url) => scenario10(url, log)) },
  { ids: [11], run: reported("scenario11", (url) => scenario11(url, SECONDS, log)), needs: H2LOAD },
  { ids: [12], run: reported("scenario12", (url) => scenario12(url, log)), needs: CHROMIUM },
  { ids: [13], run: reported("scenario13", () => scenario13(log)) },
];

async function main() {
  const chosen = SCENARIOS.filter((s) => s.ids.some((id) => ONLY.includes(id)));
  // Every tool first: a missing one stops the run now, not a quarter of an hour in.
  for (const s of chosen) await s.needs?.();
  const pg = await benchPostgres();
  const started = Date.now();
  // How long each scenario took, so a reader can pick a subset that fits their time.
  const took: string[] = [];
  let failed = 0;
  try {
    for (const s of chosen) {
      const t = Date.now();
      try {
        await s.run(pg.adminUrl);
      } catch (err) {
        // One broken scenario costs its own rows, not the table of the others.
        failed++;
        log(`scenario ${s.ids.join("+")} failed: ${err instanceof Error ? err.stack : String(err)}`);
        rows.push({ scenario: s.ids.join("+"), metric: "FAILED", value: (err instanceof Error ? err.message : String(err)).split("\n")[0] });
        await stopAll(); // its servers, so they do not load the scenarios after it
      }
      took.push(`${s.ids.join("+")} ${((Date.now() - t) / 1000).toFixed(0)} s`);
    }
  } finally {
    await pg.stop();
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, PostgreSQL: ${process.env.BENCH_DATABASE_URL ? "BENCH_DATABASE_URL" : "embedded"}`;
  const lines = [
    `k3-ingest benchmark — ${new Date().toISOString()} — ${machine} — ${((Date.now() - started) / 1000).toFixed(0)} s (scenarios: ${took.join(", ")})`,
    "",
    "| scenario | metric | value | baseline | ratio | target | met |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.scenario} | ${r.metric} | ${r.value} | ${r.baseline ?? ""} | ${r.ratio ?? ""} | ${r.target ?? ""} | ${r.met ?? ""} |`),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  writeFileSync(join(__dirname, "results.json"), JSON.stringify({ machine, at: new Date().toISOString(), durations: took, rows, results }, null, 2));
  if (process.env.BENCH_GATE) {
    const g = gate(gateRatios);
    process.stdout.write(`\nregression gate (test/bench/gate.ts):\n${g.lines.join("\n")}\n`);
    process.exit(g.passed && failed === 0 ? 0 : 1);
  }
  // The peers' libraries may keep timers alive; the run is over.
  process.exit(failed > 0 ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
