/**
 * Tenants share one process: a bad value from one never becomes another's error, a
 * scraper never starves a writer, one token cannot flood the writes, and a job that keeps
 * killing its worker stops being retried.
 */
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { newToken, type Grant } from "../src/domain/auth";
import type { DescService, JsonObject } from "@bufbuild/protobuf";
import { connectClients, DOORS, type Clients } from "./helpers/clients";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
let clients: Clients;
const B = "kb-tenants";
const NUL = "a\u0000b";
const admin: Record<string, string> = {};

async function insertToken(server: TestServers, org: string, grants: Grant[]): Promise<string> {
  const { token, tokenId, secretHash } = newToken();
  await server.app.repo().tokens.tokenInsert({ tokenId, org, secretHash, name: "test", grants, createdAt: Date.now(), expiresAt: 0, revokedAt: 0 });
  return token;
}

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on", K3_METRICS_AUTH: "on" });
  clients = connectClients(s.httpUrl, s.grpcAddress);
  admin.authorization = `Bearer ${await insertToken(s, "default", [{ bucket: "*", role: "admin" }])}`;
  s.putObject(B, "docs/a.txt", "hello");
});
afterAll(async () => {
  clients.close();
  await s.stop();
});

// Every route and free-text field the issue found answering 500 for a NUL.
const NUL_CASES: Array<[string, DescService, string, JsonObject, string]> = [
  ["list: pipeline filter", IngestService, "ListIngestJobs", { pipelineId: NUL }, "pipeline_id"],
  ["list: rule filter", IngestService, "ListIngestJobs", { ruleId: NUL }, "rule_id"],
  ["list: page token", IngestService, "ListIngestJobs", { pageToken: NUL }, "page_token"],
  ["get: job id", IngestService, "GetIngestStatus", { jobId: `job_${NUL}` }, "job_id"],
  ["cancel: job id", IngestService, "CancelIngestJob", { jobId: `job_${NUL}` }, "job_id"],
  ["trigger: request id", IngestService, "TriggerIngest", { object: { key: "docs/a.txt" }, requestId: NUL }, "request_id"],
  ["trigger: pipeline id", IngestService, "TriggerIngest", { object: { key: "docs/a.txt" }, pipelineId: NUL }, "pipeline_id"],
  ["trigger: rule id", IngestService, "TriggerIngest", { object: { key: "docs/a.txt" }, ruleId: NUL }, "rule_id"],
  ["trigger: option key", IngestService, "TriggerIngest", { object: { key: "docs/a.txt" }, options: { [NUL]: "1" } }, "options key"],
  ["trigger: option value", IngestService, "TriggerIngest", { object: { key: "docs/a.txt" }, options: { note: NUL } }, 'options["note"]'],
  ["trigger: object key", IngestService, "TriggerIngest", { object: { key: `docs/${NUL}` } }, "object.key"],
  ["trigger: object bucket", IngestService, "TriggerIngest", { object: { key: "docs/a.txt", bucket: NUL } }, "object.bucket"],
  ["create pipeline: name", PipelineService, "CreatePipeline", { name: NUL, scriptumTemplate: "noop" }, "name"],
  ["create pipeline: description", PipelineService, "CreatePipeline", { name: "p", scriptumTemplate: "noop", description: NUL }, "description"],
  ["create pipeline: option key", PipelineService, "CreatePipeline", { name: "p", scriptumTemplate: "noop", options: { [NUL]: "1" } }, "options key"],
  ["create pipeline: option value", PipelineService, "CreatePipeline", { name: "p", scriptumTemplate: "noop", options: { k: NUL } }, 'options["k"]'],
  ["create pipeline: store entity", PipelineService, "CreatePipeline", { name: "p", scriptumTemplate: "noop", storeEntityId: NUL }, "store_entity_id"],
  ["create pipeline: template", PipelineService, "CreatePipeline", { name: "p", scriptumTemplate: NUL }, "scriptum_template"],
  ["update pipeline: name", PipelineService, "UpdatePipeline", { pipelineId: "pipe_x", name: NUL }, "name"],
  ["get pipeline: id", PipelineService, "GetPipeline", { pipelineId: `pipe_${NUL}` }, "pipeline_id"],
  ["delete pipeline: id", PipelineService, "DeletePipeline", { pipelineId: `pipe_${NUL}` }, "pipeline_id"],
  ["list pipelines: store entity", PipelineService, "ListPipelines", { storeEntityId: NUL }, "store_entity_id"],
  ["create rule: name", IngestService, "CreateRule", { name: NUL, pipelineId: "pipe_x" }, "name"],
  ["create rule: description", IngestService, "CreateRule", { name: "r", pipelineId: "pipe_x", description: NUL }, "description"],
  ["create rule: include pattern", IngestService, "CreateRule", { name: "r", pipelineId: "pipe_x", includePatterns: ["ok/**", NUL] }, "include_patterns[1]"],
  ["create rule: mime type", IngestService, "CreateRule", { name: "r", pipelineId: "pipe_x", includeMimeTypes: [NUL] }, "include_mime_types[0]"],
  ["create rule: source id", IngestService, "CreateRule", { name: "r", pipelineId: "pipe_x", sourceId: NUL }, "source_id"],
  ["create rule: pipeline id", IngestService, "CreateRule", { name: "r", pipelineId: NUL }, "pipeline_id"],
  ["update rule: description", IngestService, "UpdateRule", { ruleId: "rule_x", description: NUL }, "description"],
  ["get rule: id", IngestService, "GetRule", { ruleId: `rule_${NUL}` }, "rule_id"],
  ["list rules: source filter", IngestService, "ListRules", { sourceId: NUL }, "source_id"],
];

describe.each(DOORS)("NUL through %s", (door) => {
  test.each(NUL_CASES)("%s is INVALID_ARGUMENT naming the field", async (_name, service, method, request, field) => {
    const r = await clients.call(door, service, method, { bucket: B, ...request }, admin);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe("invalid_argument");
    if (door === "rest") expect(r.httpStatus).toBe(400);
    expect(r.message).toContain(field);
    expect(r.message).toMatch(/U\+0000|contains NUL/);
  });
});

test("an attacker's NUL triggers never fail a neighbour's triggers", async () => {
  const victim = jsonClient(() => s.httpUrl, admin);
  const attacker = jsonClient(() => s.httpUrl, admin);
  const pipe = (await victim("POST", `/${B}/pipelines`, { name: "victim", scriptum_template: "noop" })).json.pipeline.pipelineId;
  s.putObject("kb-attacker", "x.txt", "x");
  let stop = false;
  let attacks = 0;
  const attack = Promise.all(
    Array.from({ length: 4 }, async () => {
      while (!stop) {
        const r = await attacker("POST", "/kb-attacker/ingest", { object: { key: "x.txt" }, pipelineId: "pipe_x", options: { k: NUL } });
        expect(r.status).toBe(400);
        attacks++;
      }
    }),
  );
  const replies = await Promise.all(
    Array.from({ length: 300 }, () => victim("POST", `/${B}/ingest`, { object: { key: "docs/a.txt" }, pipelineId: pipe })),
  );
  stop = true;
  await attack;
  expect(attacks).toBeGreaterThan(10);
  expect(replies.filter((r) => r.status !== 200)).toEqual([]);
});

test("a group-commit batch holding one row PostgreSQL refuses answers every other row", async () => {
  const repo = s.app.repo();
  const job = (i: number, options: Record<string, string>) => ({
    jobId: `job_batch_${i}_${Date.now()}`,
    org: "default",
    bucket: B,
    key: "docs/a.txt",
    pipelineId: "pipe_x",
    pipelineName: "x",
    pipelineKind: "",
    template: "noop",
    ruleId: "",
    options,
    requestId: "",
    traceId: "",
    createdAt: Date.now(),
  });
  // Straight to the repository, past the door's validation: the batch itself must cope.
  const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => repo.jobs.jobInsert(job(i, i === 7 ? { k: NUL } : { k: "v" }))));
  expect(results.filter((r) => r.status === "rejected").length).toBe(1);
  expect(results[7].status).toBe("rejected");
});

describe("/metrics", () => {
  test("process metrics are open; an organization's job gauges need its admin token", async () => {
    const open = await fetch(`${s.httpUrl}/metrics`);
    expect(open.status).toBe(401);
    const other = await insertToken(s, "other-org", [{ bucket: "*", role: "admin" }]);
    const writer = await insertToken(s, "default", [{ bucket: B, role: "writer" }]);
    expect((await fetch(`${s.httpUrl}/metrics`, { headers: { authorization: `Bearer ${writer}` } })).status).toBe(403);
    const mine = await (await fetch(`${s.httpUrl}/metrics`, { headers: admin })).text();
    const theirs = await (await fetch(`${s.httpUrl}/metrics`, { headers: { authorization: `Bearer ${other}` } })).text();
    const pending = (text: string) => Number(/^k3_jobs\{status="pending"\} (\d+)$/m.exec(text)?.[1]);
    expect(pending(mine)).toBeGreaterThan(0);
    expect(pending(theirs)).toBe(0);
    expect(mine).toMatch(/^k3_process_resident_memory_bytes \d/m);
  });

  test("without K3_METRICS_AUTH no organization's figures are shown, and process metrics survive a database outage", async () => {
    const plain = await startServers({ K3_AUTH: "off" });
    try {
      const text = await (await fetch(`${plain.httpUrl}/metrics`)).text();
      expect(text).toMatch(/^k3_rpc_requests_total|^# HELP k3_rpc_requests_total/m);
      expect(text).not.toMatch(/^k3_jobs/m);
      await plain.db.drop(); // WITH (FORCE): every connection of the server is cut
      const down = await fetch(`${plain.httpUrl}/metrics`);
      expect(down.status).toBe(200);
      expect(await down.text()).toMatch(/^k3_process_cpu_seconds_total|^k3_process_resident_memory_bytes/m);
    } finally {
      await plain.app.stop();
    }
  });
});

test("a token over its write rate gets RESOURCE_EXHAUSTED with Retry-After; reads and other tokens go on", async () => {
  const limited = await startServers({ K3_AUTH: "on", K3_WRITE_RATE_LIMIT: "0.5", K3_WRITE_BURST: "3" });
  try {
    const a = await insertToken(limited, "default", [{ bucket: "*", role: "writer" }]);
    const b = await insertToken(limited, "default", [{ bucket: "*", role: "writer" }]);
    limited.putObject(B, "docs/a.txt", "x");
    const ha = jsonClient(() => limited.httpUrl, { authorization: `Bearer ${a}` });
    const hb = jsonClient(() => limited.httpUrl, { authorization: `Bearer ${b}` });
    const pipe = (await ha("POST", `/${B}/pipelines`, { name: "p", scriptum_template: "noop" })).json.pipeline.pipelineId;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await ha("POST", `/${B}/ingest`, { object: { key: "docs/a.txt" }, pipelineId: pipe })).status);
    expect(statuses).toEqual([200, 200, 429]);
    const res = await fetch(`${limited.httpUrl}/${B}/ingest`, {
      method: "POST",
      headers: { authorization: `Bearer ${a}`, "content-type": "application/json" },
      body: JSON.stringify({ object: { key: "docs/a.txt" }, pipelineId: pipe }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(((await res.json()) as { code: string }).code).toBe("resource_exhausted");
    const grpcLimited = connectClients(limited.httpUrl, limited.grpcAddress);
    const g = await grpcLimited.call("grpc", IngestService, "TriggerIngest", { bucket: B, object: { key: "docs/a.txt" }, pipelineId: pipe }, { authorization: `Bearer ${a}` });
    grpcLimited.close();
    expect(g).toMatchObject({ ok: false, code: "resource_exhausted" });
    expect((await ha("GET", `/${B}/ingest/jobs`)).status).toBe(200);
    expect((await hb("POST", `/${B}/ingest`, { object: { key: "docs/a.txt" }, pipelineId: pipe })).status).toBe(200);
  } finally {
    await limited.stop();
  }
});

test("a job whose worker is lost twice ends FAILED saying so, instead of crash-looping", async () => {
  const repo = s.app.repo();
  const pool = repo.pool;
  const id = `job_crashy_${Date.now()}`;
  await pool.query(
    `INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, template, created_at, updated_at) VALUES ($1, 'default', $2, 'docs/a.txt', 'pipe_x', 'noop', 1, 1)`,
    [id, "kb-crashy"],
  );
  for (let lost = 1; lost <= 2; lost++) {
    const claimed = await repo.queue.jobClaimAvailable({ owner: `doomed-${lost}`, limit: 100, leaseMs: 1 });
    expect(claimed.map((j) => j.jobId)).toContain(id);
    await new Promise((r) => setTimeout(r, 20));
    await repo.queue.jobRescueExpired({ maxAttempts: 5, maxLostAttempts: 2 });
  }
  const { rows } = await pool.query("SELECT status, error, attempts FROM jobs WHERE job_id = $1", [id]);
  expect(rows[0]).toMatchObject({ status: "failed", attempts: 2 });
  expect(rows[0].error).toMatch(/worker lost 2 times while running this job .* not retried again/);
});
