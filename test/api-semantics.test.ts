/**
 * Behaviour a user relies on beyond the seed: update semantics, rule resolution through
 * the API, idempotent triggers under concurrency, objects that escape their bucket,
 * Connect GET for read-only methods, and the health endpoints.
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { insertJob } from "./helpers/factory";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

let s: TestServers;
const B = "kb-sem";
let embed: string;
let rows: string;


const http = jsonClient(() => s.httpUrl);

beforeAll(async () => {
  s = await startServers();
  embed = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  rows = (await http("POST", `/${B}/pipelines`, { name: "rows", scriptum_template: "structured_rows" })).json.pipeline.pipelineId;
  s.putObject(B, "docs/small.txt", "x".repeat(10));
  s.putObject(B, "docs/big.txt", "x".repeat(5000));
  s.putObject(B, "data/table.csv", "a,b\n1,2\n");
});
afterAll(() => s.stop());

test("UpdateRule: absent fields stay, present scalars are written even when empty, present lists replace", async () => {
  const created = await http("POST", `/${B}/rules`, {
    name: "r1",
    description: "first",
    pipeline_id: rows,
    include_patterns: ["data/**"],
    exclude_mime_types: ["image/*"],
    priority: 3,
    enabled: false,
  });
  expect(created.status).toBe(200);
  const id = created.json.rule.ruleId;
  expect(created.json.rule).toMatchObject({ enabled: false, priority: 3, binding: { pipelineName: "rows", pipelineKind: "warehouse" } });

  const noop = await http("PATCH", `/${B}/rules/${id}`, {});
  expect(noop.status).toBe(200);
  expect({ ...noop.json.rule, updatedAt: 0 }).toEqual({ ...created.json.rule, updatedAt: 0 });

  const cleared = await http("PATCH", `/${B}/rules/${id}`, { description: "", priority: 0, include_patterns: { values: [] } });
  expect(cleared.json.rule).toMatchObject({
    description: "",
    priority: 0,
    includePatterns: [],
    excludeMimeTypes: ["image/*"],
    name: "r1",
    enabled: false,
  });

  const repointed = await http("PATCH", `/${B}/rules/${id}`, { pipelineId: embed, enabled: true });
  expect(repointed.json.rule).toMatchObject({ pipelineId: embed, enabled: true, binding: { pipelineName: "embed", pipelineKind: "vector" } });
  const got = await http("GET", `/${B}/rules/${id}`);
  expect(got.json).toEqual(repointed.json);
  await http("DELETE", `/${B}/rules/${id}`);
});

test("rule resolution through the API: priority, MIME and size axes, sources", async () => {
  const mk = async (body: J) => (await http("POST", `/${B}/rules`, { pipeline_id: embed, ...body })).json.rule.ruleId as string;
  const small = await mk({ name: "small text", include_mime_types: ["text/*"], max_size_bytes: "100", priority: 5 });
  const anyText = await mk({ name: "any text", include_mime_types: ["text/plain"], priority: 1 });
  const csv = await mk({ name: "csv", include_patterns: ["**/*.csv"], priority: 9, pipeline_id: rows });
  const external = (await http("POST", `/${B}/sources`, { provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: "elsewhere", external_s3: { endpoint: "http://127.0.0.1:9", bucket: "elsewhere", access_key_id: "k", secret_access_key: "s" } })).json.source.sourceId as string;
  const fromSource = await mk({ name: "from a source", source_id: external, priority: 100 });
  const trigger = (key: string) => http("POST", `/${B}/ingest`, { object: { key } });

  expect((await trigger("docs/small.txt")).json.job.ruleId).toBe(small);
  expect((await trigger("docs/big.txt")).json.job.ruleId).toBe(anyText);
  const table = (await trigger("data/table.csv")).json.job;
  expect(table).toMatchObject({ ruleId: csv, pipelineId: rows, pipelineKind: "warehouse" });

  // Raising a rule's priority changes the winner.
  await http("PATCH", `/${B}/rules/${anyText}`, { priority: 50 });
  expect((await trigger("docs/small.txt")).json.job.ruleId).toBe(anyText);

  // A rule bound to a source does not apply to direct triggers, but can be forced by id.
  expect((await trigger("docs/small.txt")).json.job.ruleId).not.toBe(fromSource);
  const forced = await http("POST", `/${B}/ingest`, { object: { key: "docs/small.txt" }, rule_id: fromSource });
  expect(forced.json.job.ruleId).toBe(fromSource);

  for (const id of [small, anyText, csv, fromSource]) await http("DELETE", `/${B}/rules/${id}`);
  expect((await http("DELETE", `/${B}/sources/${external}`)).status).toBe(200);
});

test("a pipeline bound by a rule, even a disabled one, cannot be deleted; the message names the rule", async () => {
  const p = (await http("POST", `/${B}/pipelines`, { name: "short-lived", scriptum_template: "noop" })).json.pipeline.pipelineId;
  const r = (await http("POST", `/${B}/rules`, { name: "orphan", pipeline_id: p, enabled: false })).json.rule.ruleId;
  const refused = await http("DELETE", `/${B}/pipelines/${p}`);
  expect(refused.status).toBe(400);
  expect(refused.json).toMatchObject({ code: "failed_precondition" });
  expect(refused.json.message).toContain(r);
  expect((await http("GET", `/${B}/pipelines/${p}`)).status).toBe(200);
  // Re-enabled, the rule still has its pipeline: a trigger it matches runs.
  await http("PATCH", `/${B}/rules/${r}`, { enabled: true });
  const res = await http("POST", `/${B}/ingest`, { object: { key: "docs/small.txt" }, rule_id: r });
  expect(res.status).toBe(200);
  expect(res.json.job.pipelineId).toBe(p);
  await http("DELETE", `/${B}/rules/${r}`);
  expect((await http("DELETE", `/${B}/pipelines/${p}`)).status).toBe(200);
});

test("concurrent triggers with one request_id create one job", async () => {
  const replies = await Promise.all(
    Array.from({ length: 12 }, () =>
      http("POST", `/${B}/ingest`, { object: { key: "docs/small.txt" }, pipeline_id: embed, request_id: "retry-me" }),
    ),
  );
  expect(replies.every((r) => r.status === 200)).toBe(true);
  const ids = new Set(replies.map((r) => r.json.job.jobId));
  expect(ids.size).toBe(1);
  expect(replies[0].json.job.requestId).toBe("retry-me");
  // The same request_id in another bucket is another job.
  s.putObject("kb-sem-2", "docs/small.txt", "x");
  const p2 = (await http("POST", `/kb-sem-2/pipelines`, { name: "embed", scriptum_template: "noop" })).json.pipeline.pipelineId;
  const other = await http("POST", `/kb-sem-2/ingest`, { object: { key: "docs/small.txt" }, pipeline_id: p2, request_id: "retry-me" });
  expect(ids.has(other.json.job.jobId)).toBe(false);
});

test("a request_id reused for a different request is refused, naming what differs; the same request gets its job back", async () => {
  s.putObject(B, "docs/other.txt", "another object");
  const first = await http("POST", `/${B}/ingest`, { object: { key: "docs/small.txt" }, pipeline_id: embed, request_id: "pay-once", options: { chunk_size: "500" } });
  expect(first.status).toBe(200);
  const again = await http("POST", `/${B}/ingest`, { object: { key: "docs/small.txt" }, pipeline_id: embed, request_id: "pay-once", options: { chunk_size: "500" } });
  expect(again.json.job.jobId).toBe(first.json.job.jobId);
  const otherKey = await http("POST", `/${B}/ingest`, { object: { key: "docs/other.txt" }, pipeline_id: embed, request_id: "pay-once" });
  expect(otherKey).toMatchObject({
    status: 409,
    json: { code: "already_exists", message: `request_id "pay-once" already created job ${first.json.job.jobId} for a different request: object.key "docs/other.txt" (it was "docs/small.txt"); send a new request_id for a new request` },
  });
  const otherOptions = await http("POST", `/${B}/ingest`, { object: { key: "docs/small.txt" }, pipeline_id: embed, request_id: "pay-once", options: { chunk_size: "800" } });
  expect(otherOptions.json.message).toMatch(/options\["chunk_size"\]/);
  // Racing requests with one request_id and different objects: one job, the others refused.
  const race = await Promise.all(["docs/small.txt", "docs/other.txt", "docs/small.txt", "docs/other.txt"].map((key) => http("POST", `/${B}/ingest`, { object: { key }, pipeline_id: embed, request_id: "raced" })));
  const winners = new Set(race.filter((r) => r.status === 200).map((r) => r.json.job.object.key));
  expect(winners.size).toBe(1);
  expect(race.filter((r) => r.status === 409)).toHaveLength(2);
});

test("objects behind symlinks that leave the bucket do not exist", async () => {
  const outside = join(s.dataDir, "secret.txt");
  writeFileSync(outside, "top secret");
  const dir = join(s.dataDir, "buckets", B, "links");
  mkdirSync(dir, { recursive: true });
  symlinkSync(outside, join(dir, "escape.txt"));
  symlinkSync(join(s.dataDir, "buckets", B, "docs", "small.txt"), join(dir, "inside.txt"));
  const escape = await http("POST", `/${B}/ingest`, { object: { key: "links/escape.txt" }, pipeline_id: embed });
  expect(escape.status).toBe(404);
  expect(escape.json.message).toBe('object "links/escape.txt" not found in bucket "kb-sem"');
  const inside = await http("POST", `/${B}/ingest`, { object: { key: "links/inside.txt" }, pipeline_id: embed });
  expect(inside.status).toBe(200);
  const dirAsObject = await http("POST", `/${B}/ingest`, { object: { key: "docs" }, pipeline_id: embed });
  expect(dirAsObject.status).toBe(404);
  // A folder that is a link out of the bucket: the plain file in it is outside too.
  mkdirSync(join(s.dataDir, "elsewhere"), { recursive: true });
  writeFileSync(join(s.dataDir, "elsewhere", "x.txt"), "not the bucket's");
  symlinkSync(join(s.dataDir, "elsewhere"), join(dir, "out"));
  const throughFolder = await http("POST", `/${B}/ingest`, { object: { key: "links/out/x.txt" }, pipeline_id: embed });
  expect(throughFolder.status).toBe(404);
  // A folder that is a link to another folder of the same bucket is inside.
  symlinkSync(join(s.dataDir, "buckets", B, "docs"), join(dir, "docs-again"));
  expect((await http("POST", `/${B}/ingest`, { object: { key: "links/docs-again/small.txt" }, pipeline_id: embed })).status).toBe(200);
});

test("Connect serves read-only methods by GET", async () => {
  const message = encodeURIComponent(JSON.stringify({ bucket: B, pipelineId: embed, pageSize: 2 }));
  const res = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/ListIngestJobs?connect=v1&encoding=json&message=${message}`);
  expect(res.status).toBe(200);
  const body = (await res.json()) as J;
  expect(body.jobs).toHaveLength(2);
  expect(body.pagination.nextPageToken).not.toBe("");
  // A method with side effects is not reachable by GET.
  const trigger = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/TriggerIngest?connect=v1&encoding=json&message=${message}`);
  expect(trigger.status).not.toBe(200);
});

test("health and readiness", async () => {
  for (const path of ["/health", "/healthz", "/ready", "/readyz"]) {
    const res = await http("GET", path);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok" });
  }
});

test("when the database goes away, readiness turns red and calls fail fast with UNAVAILABLE", async () => {
  const other = await startServers();
  try {
    expect((await fetch(`${other.httpUrl}/readyz`)).status).toBe(200);
    await other.db.drop();
    const ready = await fetch(`${other.httpUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect((await fetch(`${other.httpUrl}/healthz`)).status).toBe(200);
    const res = await fetch(`${other.httpUrl}/${B}/ingest/jobs`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ code: "unavailable", message: "the database is unavailable; retry later", details: [] });
  } finally {
    await other.stop();
  }
});

test("the server prunes finished jobs past K3_JOB_RETENTION in the background", async () => {
  const other = await startServers({ K3_JOB_RETENTION: "1h", K3_RETENTION_INTERVAL_MS: "100" });
  try {
    const pool = other.app.repo().pool;
    const old = await insertJob(pool, { bucket: B, pipelineId: "pipe_x", status: "completed", createdAt: Date.now() - 2 * 3_600_000 });
    const fresh = await insertJob(pool, { bucket: B, pipelineId: "pipe_x", status: "completed" });
    const pending = await insertJob(pool, { bucket: B, pipelineId: "pipe_x", status: "pending", createdAt: Date.now() - 2 * 3_600_000 });
    await waitFor("the old job to be pruned", async () =>
      (await pool.query("SELECT 1 FROM jobs WHERE job_id = $1", [old])).rowCount === 0 ? true : undefined,
    );
    const left = (await pool.query("SELECT job_id FROM jobs ORDER BY job_id")).rows.map((r) => r.job_id);
    expect(left.sort()).toEqual([fresh, pending].sort());
  } finally {
    await other.stop();
  }
});
