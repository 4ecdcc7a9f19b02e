/**
 * A database outage under load, on a PostgreSQL of the test's own: while it is down,
 * calls fail fast with UNAVAILABLE (HTTP 503) instead of hanging, /readyz turns red and
 * the worker backs off instead of spinning. When it is back, the same server recovers
 * without a restart: every acknowledged job completes, once, with no duplicate output.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import * as grpc from "@grpc/grpc-js";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { build } from "../src/app";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { connectClients, grpcCall, type Clients } from "./helpers/clients";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);

let pgProc: ChildProcess;
let lines: AsyncIterableIterator<string>;
let s: TestServers;
let clients: Clients;
const B = "kb-outage";

async function pg(command: "stop" | "start", expect: string) {
  pgProc.stdin!.write(command + "\n");
  for (;;) {
    const { value, done } = await lines.next();
    if (done) throw new Error("pg-instance exited");
    if (value === expect) return;
  }
}

const http = jsonClient(() => s.httpUrl);

beforeAll(async () => {
  pgProc = spawn(process.execPath, [join(__dirname, "helpers", "pg-instance.mjs")], { stdio: ["pipe", "pipe", "inherit"] });
  lines = createInterface({ input: pgProc.stdout! })[Symbol.asyncIterator]();
  const first = (await lines.next()).value as string;
  const adminUrl = first.split(" ")[2];
  s = await startServers(
    { K3_ROLE: "all", K3_POLL_MS: "100", K3_LEASE_MS: "1500", K3_RETRY_BASE_MS: "50", K3_RETRY_MAX_MS: "200" },
    { adminUrl },
  );
  clients = connectClients(s.httpUrl, s.grpcAddress);
});

afterAll(async () => {
  clients.close();
  await s.stop().catch(() => undefined);
  pgProc.stdin!.write("exit\n");
});

test("outage: fail fast, red readiness, quiet worker; then recovery with nothing lost or doubled", async () => {
  const pipe = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index", options: { chunk_size: "100", chunk_overlap: "0" } })).json.pipeline.pipelineId;
  for (let i = 0; i < 60; i++) s.putObject(B, `docs/${i}.txt`, `document ${i} `.repeat(30)); // 4 chunks each
  const acknowledged: string[] = [];
  const trigger = async (i: number) => {
    const r = await http("POST", `/${B}/ingest`, { object: { key: `docs/${i}.txt` }, pipelineId: pipe });
    if (r.status === 200) acknowledged.push(r.json.job.jobId);
    return r;
  };
  for (let i = 0; i < 30; i++) await trigger(i);
  expect(acknowledged).toHaveLength(30);

  await pg("stop", "stopped");

  // Calls fail fast with UNAVAILABLE on every door, well inside their deadline.
  const started = Date.now();
  const rest = await http("GET", `/${B}/ingest/jobs/${acknowledged[0]}`);
  expect(rest).toMatchObject({ status: 503, json: { code: "unavailable" } });
  const trig = await trigger(30);
  expect(trig.status).toBe(503);
  const method = IngestService.methods.find((m) => m.name === "GetIngestStatus")!;
  const viaGrpc = await grpcCall(clients.grpc as grpc.Client, IngestService, method, { bucket: B, jobId: acknowledged[0] });
  expect(viaGrpc).toMatchObject({ ok: false, code: "unavailable" });
  expect(Date.now() - started).toBeLessThan(5_000);
  expect((await fetch(`${s.httpUrl}/readyz`)).status).toBe(503);
  expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);

  // The worker backs off instead of spinning: this whole process stays mostly idle.
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 2000));
  const cpu = process.cpuUsage(cpu0);
  expect((cpu.user + cpu.system) / 1e6).toBeLessThan(0.6);

  await pg("start", "started");

  // The same server recovers on its own.
  await waitFor("readiness to come back", async () => ((await fetch(`${s.httpUrl}/readyz`)).status === 200 ? true : undefined), { timeoutMs: 20_000, intervalMs: 100 });
  for (let i = 31; i < 60; i++) expect((await trigger(i)).status).toBe(200);
  expect(acknowledged).toHaveLength(59);

  const pool = s.app.repo().pool;
  await waitFor(
    "every acknowledged job to complete",
    async () => {
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM jobs WHERE job_id = ANY($1) AND status = 'completed'", [acknowledged]);
      return rows[0].n === acknowledged.length ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  const { rows } = await pool.query(
    `SELECT j.job_id, j.chunks_created, j.embeddings_written,
            (SELECT count(*)::int FROM vector_chunks c WHERE c.org = j.org AND c.bucket = j.bucket AND c.pipeline_id = j.pipeline_id AND c.object_key = j.object_key) AS stored
     FROM jobs j WHERE j.job_id = ANY($1)`,
    [acknowledged],
  );
  expect(rows).toHaveLength(59);
  for (const r of rows) {
    expect(r.chunks_created).toBe(4);
    expect(r.stored).toBe(4);
    expect(r.embeddings_written).toBe(4);
  }
  expect((await pool.query("SELECT count(*)::int AS n FROM jobs")).rows[0].n).toBe(59);
});

test("a server started while its database is down waits for it and then serves", async () => {
  await pg("stop", "stopped");
  const app = build(
    loadConfig({ DATABASE_URL: s.db.url, K3_HOST: "127.0.0.1", K3_HTTP_PORT: "0", K3_GRPC_PORT: "0", K3_DATA_DIR: s.dataDir, K3_AUTH: "off", K3_ROLE: "api" }),
    createLogger("silent"),
  );
  const starting = app.start();
  await new Promise((r) => setTimeout(r, 1500));
  await pg("start", "started");
  const { httpPort } = await starting;
  expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
  await app.stop();
});
