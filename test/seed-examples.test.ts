/**
 * The seed's examples (shared/seeds: the Jobs API page) replayed against the REST routes
 * with curl-equivalent fetch calls: every field the seed shows is present, with the same
 * JSON value kind (counters numbers; timestamps and totalCount decimal strings).
 */
import { insertJob } from "./helpers/factory";
import { startServers, type TestServers } from "./helpers/servers";

// The seed's response examples, verbatim.
const SEED_TRIGGER_RESPONSE = {
  job: {
    jobId: "job_a1b2...",
    object: { bucket: "kb-prod", key: "contracts/acme-2026.pdf" },
    status: "INGEST_STATUS_PENDING",
    pipelineId: "pipe_a1b2...",
    pipelineName: "embed-contracts",
    pipelineKind: "vector",
    createdAt: "1716843600000",
  },
};
const SEED_LIST_RESPONSE = {
  jobs: [
    {
      jobId: "job_a1b2...",
      object: { bucket: "kb-prod", key: "contracts/acme-2026.pdf" },
      status: "INGEST_STATUS_COMPLETED",
      pipelineId: "pipe_a1b2...",
      pipelineName: "embed-contracts",
      pipelineKind: "vector",
      ruleId: "rule_a1b2...",
      chunksCreated: 47,
      embeddingsCreated: 47,
      rowsWritten: 0,
      createdAt: "1716843600000",
      updatedAt: "1716843680000",
      threadId: "thread_a1b2...",
      vectorStatus: "success",
      outputSize: 18429,
      batchesReceived: 5,
      embeddingsWritten: 47,
    },
  ],
  pagination: { nextPageToken: "", totalCount: "1" },
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Asserts that `actual` has every key of `expected` with the same JSON kind, recursively. */
function expectSameShape(actual: Json, expected: Json, path = "$"): void {
  if (Array.isArray(expected)) {
    expect(Array.isArray(actual)).toBe(true);
    (expected as Json[]).forEach((e, i) => expectSameShape((actual as Json[])[i], e, `${path}[${i}]`));
    return;
  }
  if (expected !== null && typeof expected === "object") {
    expect(actual !== null && typeof actual === "object" && !Array.isArray(actual)).toBe(true);
    for (const k of Object.keys(expected)) {
      if (!(k in (actual as object))) throw new Error(`${path}.${k} is missing`);
      expectSameShape((actual as Record<string, Json>)[k], expected[k], `${path}.${k}`);
    }
    return;
  }
  if (typeof actual !== typeof expected) {
    throw new Error(`${path}: expected a JSON ${typeof expected}, got ${JSON.stringify(actual)}`);
  }
  if (typeof expected === "string" && /^\d+$/.test(expected)) {
    if (!/^\d+$/.test(actual as string)) throw new Error(`${path}: expected a decimal string, got ${JSON.stringify(actual)}`);
  }
}

let s: TestServers;
let pipelineId: string;
let ruleId: string;

async function post(path: string, body: unknown) {
  const res = await fetch(s.httpUrl + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer test" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Json & Record<string, Json> };
}

async function get(path: string) {
  const res = await fetch(s.httpUrl + path, { headers: { authorization: "Bearer test" } });
  return { status: res.status, json: (await res.json()) as Json & Record<string, Json> };
}

beforeAll(async () => {
  s = await startServers();
  s.putObject("kb-prod", "contracts/acme-2026.pdf", "%PDF-1.4 not really a pdf");
  const p = await post("/kb-prod/pipelines", {
    name: "embed-contracts",
    scriptum_template: "text_embedding_index",
    options: { chunk_size: "1000" },
  });
  expect(p.status).toBe(200);
  pipelineId = (p.json.pipeline as Record<string, string>).pipelineId;
  const r = await post("/kb-prod/rules", { name: "contracts", pipeline_id: pipelineId, include_patterns: ["contracts/**"] });
  expect(r.status).toBe(200);
  ruleId = (r.json.rule as Record<string, string>).ruleId;
});

afterAll(() => s.stop());

test("TriggerIngest resolving the pipeline from the rules answers like the seed", async () => {
  const res = await post("/kb-prod/ingest", { object: { bucket: "kb-prod", key: "contracts/acme-2026.pdf" } });
  expect(res.status).toBe(200);
  expectSameShape(res.json, SEED_TRIGGER_RESPONSE);
  const job = res.json.job as Record<string, Json>;
  expect(job.jobId).toMatch(/^job_[0-9a-z]+$/);
  expect(job.object).toEqual({ bucket: "kb-prod", key: "contracts/acme-2026.pdf" });
  expect(job.status).toBe("INGEST_STATUS_PENDING");
  expect(job.pipelineId).toBe(pipelineId);
  expect(job.pipelineName).toBe("embed-contracts");
  expect(job.pipelineKind).toBe("vector");
  expect(job.ruleId).toBe(ruleId);
  expect(Math.abs(Number(job.createdAt) - Date.now())).toBeLessThan(60_000);

  // GetIngestStatus returns the same job.
  const got = await get(`/kb-prod/ingest/jobs/${job.jobId}`);
  expect(got.status).toBe(200);
  expect(got.json).toEqual(res.json);
});

test("TriggerIngest forcing a pipeline with an options overlay answers like the seed", async () => {
  const res = await post("/kb-prod/ingest", {
    object: { bucket: "kb-prod", key: "contracts/acme-2026.pdf" },
    pipelineId,
    options: { chunk_size: "2000" },
  });
  expect(res.status).toBe(200);
  expectSameShape(res.json, SEED_TRIGGER_RESPONSE);
  const job = res.json.job as Record<string, Json>;
  expect(job.pipelineId).toBe(pipelineId);
  expect(job.ruleId).toBe("");
  expect(job.options).toEqual({ chunk_size: "2000" });
  // The overlay is per event: the pipeline keeps its stored options.
  const p = await get(`/kb-prod/pipelines/${pipelineId}`);
  expect((p.json.pipeline as Record<string, Json>).options).toEqual({ chunk_size: "1000" });
});

test("ListIngestJobs with each of the seed's filters answers like the seed", async () => {
  const jobId = await insertJob(s.app.repo().pool, {
    bucket: "kb-prod",
    key: "contracts/acme-2026.pdf",
    status: "completed",
    pipelineId,
    pipelineName: "embed-contracts",
    pipelineKind: "vector",
    ruleId,
    chunksCreated: 47,
    embeddingsCreated: 47,
    createdAt: 1716843600000,
    updatedAt: 1716843680000,
    threadId: "thread_x1",
    vectorStatus: "success",
    outputSize: 18429,
    batchesReceived: 5,
    embeddingsWritten: 47,
  });

  const failed = await get("/kb-prod/ingest/jobs?status_filter=INGEST_STATUS_FAILED");
  expect(failed.status).toBe(200);
  expect(failed.json).toEqual({ jobs: [], pagination: { nextPageToken: "", totalCount: "0" } });

  const completed = await get("/kb-prod/ingest/jobs?status_filter=INGEST_STATUS_COMPLETED");
  expect(completed.status).toBe(200);
  expectSameShape(completed.json, SEED_LIST_RESPONSE);
  expect(completed.json.pagination).toEqual({ nextPageToken: "", totalCount: "1" });
  const job = (completed.json.jobs as Json[])[0] as Record<string, Json>;
  expect(job).toMatchObject({
    jobId,
    status: "INGEST_STATUS_COMPLETED",
    chunksCreated: 47,
    embeddingsCreated: 47,
    rowsWritten: 0,
    createdAt: "1716843600000",
    updatedAt: "1716843680000",
    vectorStatus: "success",
    outputSize: 18429,
    batchesReceived: 5,
    embeddingsWritten: 47,
  });

  const byPipeline = await get(`/kb-prod/ingest/jobs?pipeline_id=${pipelineId}&page_size=100`);
  expect(byPipeline.status).toBe(200);
  expect((byPipeline.json.jobs as Json[]).length).toBe(3);
  expect(byPipeline.json.pagination).toEqual({ nextPageToken: "", totalCount: "3" });

  const byRule = await get(`/kb-prod/ingest/jobs?rule_id=${ruleId}`);
  expect(byRule.status).toBe(200);
  const ruleJobs = byRule.json.jobs as Array<Record<string, Json>>;
  expect(ruleJobs.map((j) => j.ruleId)).toEqual([ruleId, ruleId]);
  expect(byRule.json.pagination).toEqual({ nextPageToken: "", totalCount: "2" });
});
