/**
 * One scenario through every door — native gRPC (grpc-js), Connect, gRPC-Web and REST
 * (fetch) — each in a bucket of its own. The transcripts, with IDs, times and bucket
 * names replaced by stable placeholders, must be identical: same answers, same codes,
 * same messages.
 */
import type { DescService, JsonObject, JsonValue } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { connectClients, DOORS, type CallResult, type Clients, type Door } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
let clients: Clients;

beforeAll(async () => {
  s = await startServers();
  clients = connectClients(s.httpUrl, s.grpcAddress);
});
afterAll(async () => {
  clients.close();
  await s.stop();
});

type Step = { step: string; result: CallResult };

/** Runs the scenario through one door and returns its transcript. */
async function scenario(door: Door, bucket: string): Promise<Step[]> {
  const steps: Step[] = [];
  const call = async (step: string, service: DescService, method: string, req: JsonObject) => {
    const result = await clients.call(door, service, method, { bucket, ...req });
    steps.push({ step, result });
    return result;
  };
  const body = (r: CallResult) => {
    if (!r.ok) throw new Error(`${door}: unexpected error ${r.code}: ${r.message}`);
    return r.body as Record<string, Record<string, JsonValue>>;
  };
  for (const key of ["contracts/acme-2026.pdf", "data/rows.csv", "notes/readme.md"]) {
    s.putObject(bucket, key, `content of ${key}`);
  }

  const embed = body(
    await call("create embed pipeline", PipelineService, "CreatePipeline", {
      name: "embed-contracts",
      scriptumTemplate: "text_embedding_index",
      options: { chunk_size: "800", chunk_overlap: "100" },
    }),
  ).pipeline.pipelineId as string;
  const rows = body(
    await call("create rows pipeline", PipelineService, "CreatePipeline", {
      name: "rows",
      spawnFromTemplate: { template: "structured_rows", parameters: { batch_size: "500" } },
    }),
  ).pipeline.pipelineId as string;
  await call("duplicate pipeline name", PipelineService, "CreatePipeline", { name: "rows", scriptumTemplate: "noop" });
  await call("unknown template", PipelineService, "CreatePipeline", { name: "x", scriptumTemplate: "nope" });

  const catchAll = body(
    await call("create catch-all rule", IngestService, "CreateRule", { name: "all", pipelineId: rows, priority: 1 }),
  ).rule.ruleId as string;
  const contracts = body(
    await call("create contracts rule", IngestService, "CreateRule", {
      name: "contracts",
      pipelineId: embed,
      includePatterns: ["contracts/**"],
      includeMimeTypes: ["application/pdf"],
      priority: 10,
    }),
  ).rule.ruleId as string;
  await call("rule with bad glob", IngestService, "CreateRule", { name: "bad", pipelineId: embed, includePatterns: ["a/[b"] });

  const j1 = body(
    await call("trigger by rules (contracts)", IngestService, "TriggerIngest", {
      object: { bucket, key: "contracts/acme-2026.pdf" },
    }),
  ).job.jobId as string;
  await call("trigger by rules (catch-all)", IngestService, "TriggerIngest", { object: { key: "data/rows.csv" } });
  await call("trigger forced pipeline with overlay", IngestService, "TriggerIngest", {
    object: { key: "notes/readme.md" },
    pipelineId: embed,
    options: { chunk_size: "2000" },
  });
  await call("trigger by rule id", IngestService, "TriggerIngest", { object: { key: "notes/readme.md" }, ruleId: contracts });
  await call("trigger idempotent (first)", IngestService, "TriggerIngest", { object: { key: "data/rows.csv" }, requestId: "req-1" });
  await call("trigger idempotent (retry)", IngestService, "TriggerIngest", { object: { key: "data/rows.csv" }, requestId: "req-1" });
  await call("trigger missing object", IngestService, "TriggerIngest", { object: { key: "nope.txt" } });
  await call("trigger bucket mismatch", IngestService, "TriggerIngest", { object: { bucket: "other-bucket", key: "data/rows.csv" } });
  await call("trigger rule/pipeline conflict", IngestService, "TriggerIngest", {
    object: { key: "data/rows.csv" },
    ruleId: contracts,
    pipelineId: rows,
  });
  await call("trigger bad option", IngestService, "TriggerIngest", {
    object: { key: "notes/readme.md" },
    pipelineId: embed,
    options: { chunk_size: "ten" },
  });

  await call("get job", IngestService, "GetIngestStatus", { jobId: j1 });
  await call("get unknown job", IngestService, "GetIngestStatus", { jobId: "job_nope" });
  const page1 = body(await call("list page 1", IngestService, "ListIngestJobs", { pageSize: 2 }));
  await call("list page 2", IngestService, "ListIngestJobs", {
    pageSize: 2,
    pageToken: page1.pagination.nextPageToken as string,
  });
  await call("list by pipeline", IngestService, "ListIngestJobs", { pipelineId: embed });
  await call("list by rule", IngestService, "ListIngestJobs", { ruleId: contracts });

  await call("cancel pending job", IngestService, "CancelIngestJob", { jobId: j1 });
  await call("cancel cancelled job", IngestService, "CancelIngestJob", { jobId: j1 });
  await call("list cancelled", IngestService, "ListIngestJobs", { statusFilter: "INGEST_STATUS_CANCELLED" });

  await call("get rule", IngestService, "GetRule", { ruleId: contracts });
  await call("list rules by pipeline", IngestService, "ListRules", { pipelineId: rows });
  await call("update rule: clear patterns, raise priority", IngestService, "UpdateRule", {
    ruleId: contracts,
    includePatterns: { values: [] },
    priority: 20,
  });
  await call("update rule: bad size range", IngestService, "UpdateRule", { ruleId: contracts, minSizeBytes: "10", maxSizeBytes: "5" });
  await call("delete bound pipeline", PipelineService, "DeletePipeline", { pipelineId: rows });
  await call("disable catch-all", IngestService, "UpdateRule", { ruleId: catchAll, enabled: false });
  await call("delete pipeline bound by a disabled rule", PipelineService, "DeletePipeline", { pipelineId: rows });
  await call("delete rule", IngestService, "DeleteRule", { ruleId: catchAll });
  await call("delete rule again", IngestService, "DeleteRule", { ruleId: catchAll });
  await call("delete unbound pipeline", PipelineService, "DeletePipeline", { pipelineId: rows });
  await call("update pipeline", PipelineService, "UpdatePipeline", { pipelineId: embed, description: "contracts", options: { values: {} } });
  await call("list vector pipelines", PipelineService, "ListPipelines", { storeEntityKind: "vector" });
  return steps;
}

/** Replaces IDs (in order of appearance), times, tokens and the bucket with placeholders. */
function normalize(steps: Step[], bucket: string): unknown {
  const ids = new Map<string, string>();
  const text = JSON.stringify(steps)
    .replaceAll(bucket, "BUCKET")
    .replace(/\b(job|pipe|rule)_[0-9a-z]{26}\b/g, (id, kind: string) => {
      if (!ids.has(id)) ids.set(id, `${kind.toUpperCase()}#${ids.size + 1}`);
      return ids.get(id)!;
    });
  return JSON.parse(text, (key, value) => {
    if (key === "httpStatus") return undefined; // only REST has one; the bad-input suite checks it
    if (/At$/.test(key) && typeof value === "string" && value !== "0") return "TIME";
    if (key === "nextPageToken" && value !== "") return "TOKEN";
    if (key === "traceId" && typeof value === "string") return /^req_[0-9a-f]+$/.test(value) ? "REQUEST" : value; // each call's own id
    return value;
  });
}

test("every door gives the same answers to the same scenario", async () => {
  const transcripts: Partial<Record<Door, unknown>> = {};
  for (const door of DOORS) {
    const bucket = `parity-${door}`;
    transcripts[door] = normalize(await scenario(door, bucket), bucket);
  }
  for (const door of DOORS) expect(transcripts[door]).toEqual(transcripts.grpc);

  // Spot checks on the shared transcript, so that "all equal" cannot mean "all wrong".
  const steps = transcripts.grpc as Array<{ step: string; result: CallResult }>;
  type Loose = {
    ok: boolean;
    message: string;
    body: { job: Record<string, unknown>; jobs: unknown[]; pagination: unknown; rule: unknown; pipeline: unknown };
  };
  const at = (name: string): Loose => {
    const found = steps.find((x) => x.step === name);
    if (!found) throw new Error(`no step ${name}`);
    return found.result as unknown as Loose;
  };
  const job = (name: string) => at(name).body.job;
  expect(job("trigger by rules (contracts)")).toMatchObject({ pipelineId: "PIPE#1", ruleId: "RULE#4", pipelineKind: "vector" });
  expect(job("trigger by rules (catch-all)")).toMatchObject({ pipelineId: "PIPE#2", ruleId: "RULE#3", pipelineKind: "warehouse" });
  expect(job("trigger forced pipeline with overlay")).toMatchObject({
    ruleId: "",
    options: { chunk_size: "2000", chunk_overlap: "100" },
  });
  expect(job("trigger by rule id")).toMatchObject({ pipelineId: "PIPE#1", ruleId: "RULE#4" });
  expect(job("trigger idempotent (retry)").jobId).toBe(job("trigger idempotent (first)").jobId);
  expect(at("duplicate pipeline name")).toMatchObject({ ok: false, code: "already_exists" });
  expect(at("unknown template")).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(at("unknown template").message).toMatch(/"nope".*noop, structured_rows, text_embedding_index/);
  expect(at("rule with bad glob")).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(at("trigger missing object")).toMatchObject({ ok: false, code: "not_found" });
  expect(at("trigger bucket mismatch")).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(at("trigger rule/pipeline conflict")).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(at("trigger bad option")).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(at("trigger bad option").message).toContain('options["chunk_size"] = "ten"');
  expect(at("get unknown job")).toMatchObject({ ok: false, code: "not_found" });
  expect(at("list page 1").body.pagination).toEqual({
    nextPageToken: "TOKEN",
    totalCount: "5",
  });
  expect(at("list page 2").body.jobs).toHaveLength(2);
  expect(job("cancel pending job").status).toBe("INGEST_STATUS_CANCELLED");
  expect(at("cancel cancelled job")).toMatchObject({ ok: false, code: "failed_precondition" });
  expect(at("update rule: bad size range")).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(at("delete bound pipeline")).toMatchObject({ ok: false, code: "failed_precondition" });
  expect(at("delete pipeline bound by a disabled rule")).toMatchObject({ ok: false, code: "failed_precondition" });
  expect(at("delete pipeline bound by a disabled rule").message).toMatch(/bound by rules \(RULE#3\)/);
  expect(at("delete unbound pipeline")).toMatchObject({ ok: true });
  expect(at("delete rule again")).toMatchObject({ ok: false, code: "not_found" });
  const updated = at("update rule: clear patterns, raise priority").body.rule;
  expect(updated).toMatchObject({ includePatterns: [], includeMimeTypes: ["application/pdf"], priority: 20, name: "contracts" });
  expect(at("update pipeline").body.pipeline).toMatchObject({
    description: "contracts",
    options: {},
    name: "embed-contracts",
  });
});
