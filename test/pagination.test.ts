/**
 * Keyset pagination over 120 jobs: newest first, no duplicate, no gap, exact totalCount
 * on every page, page-size rules, and tokens bound to the filters they were issued for.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { StorageService } from "../gen/dodil/k3/storage/v1/storage_pb";
import { connectClients, type CallResult, type Clients, type Door } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
let clients: Clients;
const BUCKET = "kb-pages";
let pipeA: string;
let pipeB: string;
const all: Array<{ jobId: string; createdAt: string; pipelineId: string; status: string }> = [];

type Body = { jobs: Array<Record<string, string>>; pagination: { nextPageToken: string; totalCount: string } };

function ok(r: CallResult): Body & Record<string, Record<string, string>> {
  if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
  return r.body as unknown as Body & Record<string, Record<string, string>>;
}

const list = (door: Door, req: JsonObject) => clients.call(door, IngestService, "ListIngestJobs", { bucket: BUCKET, ...req });

beforeAll(async () => {
  s = await startServers();
  clients = connectClients(s.httpUrl, s.grpcAddress);
  s.putObject(BUCKET, "docs/a.txt", "a");
  const mk = async (name: string) =>
    ok(await clients.call("grpc", PipelineService, "CreatePipeline", { bucket: BUCKET, name, scriptumTemplate: "noop" })).pipeline
      .pipelineId;
  pipeA = await mk("a");
  pipeB = await mk("b");
  for (let i = 0; i < 120; i++) {
    const job = ok(
      await clients.call("grpc", IngestService, "TriggerIngest", {
        bucket: BUCKET,
        object: { key: "docs/a.txt" },
        pipelineId: i % 2 ? pipeB : pipeA,
      }),
    ).job;
    all.push({ jobId: job.jobId, createdAt: job.createdAt, pipelineId: job.pipelineId, status: "INGEST_STATUS_PENDING" });
  }
  for (const j of all.filter((_, i) => i % 3 === 0)) {
    ok(await clients.call("grpc", IngestService, "CancelIngestJob", { bucket: BUCKET, jobId: j.jobId }));
    j.status = "INGEST_STATUS_CANCELLED";
  }
});

afterAll(async () => {
  clients.close();
  await s.stop();
});

/** Newest first: created_at descending, then job id descending. */
function expectedOrder(jobs: typeof all): string[] {
  return [...jobs]
    .sort((a, b) => (a.createdAt === b.createdAt ? (a.jobId < b.jobId ? 1 : -1) : Number(b.createdAt) - Number(a.createdAt)))
    .map((j) => j.jobId);
}

async function walk(door: Door, filters: JsonObject, pageSize: number): Promise<string[]> {
  const seen: string[] = [];
  let token = "";
  let pages = 0;
  do {
    const body = ok(await list(door, { ...filters, pageSize, pageToken: token }));
    expect(body.jobs.length).toBeLessThanOrEqual(pageSize);
    seen.push(...body.jobs.map((j) => j.jobId));
    token = body.pagination.nextPageToken;
    expect(body.pagination.totalCount).toBe(String(countFor(filters)));
    if (++pages > 200) throw new Error("pagination does not end");
  } while (token !== "");
  return seen;
}

function countFor(filters: JsonObject): number {
  return all.filter(
    (j) =>
      (!filters.pipelineId || j.pipelineId === filters.pipelineId) &&
      (!filters.statusFilter || j.status === filters.statusFilter),
  ).length;
}

test.each<[Door, number]>([
  ["grpc", 7],
  ["rest", 13],
  ["connect", 50],
])("walking all pages through %s with page_size %d: newest first, no duplicate, no gap", async (door, size) => {
  const seen = await walk(door, {}, size);
  expect(new Set(seen).size).toBe(seen.length);
  expect(seen).toEqual(expectedOrder(all));
});

test("filtered walks visit exactly the matching jobs", async () => {
  const byPipe = await walk("rest", { pipelineId: pipeA }, 9);
  expect(byPipe).toEqual(expectedOrder(all.filter((j) => j.pipelineId === pipeA)));
  const cancelled = await walk("grpc", { statusFilter: "INGEST_STATUS_CANCELLED" }, 11);
  expect(cancelled).toEqual(expectedOrder(all.filter((j) => j.status === "INGEST_STATUS_CANCELLED")));
  expect(cancelled).toHaveLength(40);
  const both = await walk("connect", { pipelineId: pipeB, statusFilter: "INGEST_STATUS_PENDING" }, 8);
  expect(both).toEqual(expectedOrder(all.filter((j) => j.pipelineId === pipeB && j.status === "INGEST_STATUS_PENDING")));
});

test("page_size 0 means 50, above 1000 is capped, negative is rejected", async () => {
  const dflt = ok(await list("rest", {}));
  expect(dflt.jobs).toHaveLength(50);
  expect(dflt.pagination.nextPageToken).not.toBe("");
  const big = ok(await list("rest", { pageSize: 5000 }));
  expect(big.jobs).toHaveLength(120);
  expect(big.pagination.nextPageToken).toBe("");
  const neg = await list("rest", { pageSize: -1 });
  expect(neg).toMatchObject({ ok: false, code: "invalid_argument", httpStatus: 400 });
  expect((neg as { message: string }).message).toContain("page_size -1");
});

test("a token reused with other filters, or a forged one, is INVALID_ARGUMENT", async () => {
  const first = ok(await list("grpc", { pipelineId: pipeA, pageSize: 5 }));
  const token = first.pagination.nextPageToken;
  for (const door of ["grpc", "rest", "connect"] as Door[]) {
    const other = await list(door, { pipelineId: pipeB, pageSize: 5, pageToken: token });
    expect(other).toMatchObject({ ok: false, code: "invalid_argument" });
    expect((other as { message: string }).message).toMatch(/page_token was issued for different filters/);
    const forged = await list(door, { pageSize: 5, pageToken: "not-a-token" });
    expect(forged).toMatchObject({ ok: false, code: "invalid_argument" });
    expect((forged as { message: string }).message).toContain('page_token "not-a-token"');
  }
  // The same token with the same filters goes on where the first page stopped.
  const second = ok(await list("rest", { pipelineId: pipeA, pageSize: 5, pageToken: token }));
  expect(second.jobs[0].jobId).toBe(expectedOrder(all.filter((j) => j.pipelineId === pipeA))[5]);
});

test("key_prefix lists exactly the jobs whose key starts with it, byte-wise, with an exact totalCount, on every door", async () => {
  const P = "kb-prefixes";
  // "%" and "_" are not wildcards; "docs-old" and "docs.x" sort between "docs/" keys in
  // many locales but not byte-wise; "é" is two bytes.
  const keys = ["docs/a.txt", "docs/b/c.txt", "docs-old/x.txt", "docs.x", "docs", "img/é.png", "img/%.png", "img/_x.png", "Docs/a.txt"];
  expect((await fetch(`${s.httpUrl}/admin/buckets`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: P }) })).status).toBe(200);
  // Through the byte plane: "docs" beside "docs/…" is a key the folder store keeps aside.
  for (const key of keys) expect((await fetch(`${s.httpUrl}/${P}/${key.split("/").map(encodeURIComponent).join("/")}`, { method: "PUT", body: key })).status).toBe(200);
  const pipe = ok(await clients.call("grpc", PipelineService, "CreatePipeline", { bucket: P, name: "p", scriptumTemplate: "noop" })).pipeline.pipelineId;
  const jobs: Array<{ jobId: string; key: string; createdAt: string; status: string }> = [];
  for (let round = 0; round < 3; round++) {
    for (const key of keys) {
      const job = ok(await clients.call("rest", IngestService, "TriggerIngest", { bucket: P, object: { key }, pipelineId: pipe })).job;
      jobs.push({ jobId: job.jobId, key, createdAt: job.createdAt, status: "INGEST_STATUS_PENDING" });
    }
  }
  for (const j of jobs.filter((_, i) => i % 4 === 0)) {
    ok(await clients.call("grpc", IngestService, "CancelIngestJob", { bucket: P, jobId: j.jobId }));
    j.status = "INGEST_STATUS_CANCELLED";
  }
  const order = (js: typeof jobs) => [...js].sort((a, b) => (a.createdAt === b.createdAt ? (a.jobId < b.jobId ? 1 : -1) : Number(b.createdAt) - Number(a.createdAt))).map((j) => j.jobId);
  for (const [door, prefix, status] of [
    ["grpc", "docs/", ""],
    ["rest", "docs", ""],
    ["connect", "img/%", ""],
    ["rest", "img/_", ""],
    ["grpc", "img/é", ""],
    ["connect", "docs/", "INGEST_STATUS_CANCELLED"],
    ["rest", "nothing/", ""],
  ] as Array<[Door, string, string]>) {
    const want = jobs.filter((j) => j.key.startsWith(prefix) && (!status || j.status === status));
    const seen: string[] = [];
    let token = "";
    do {
      const body = ok(await clients.call(door, IngestService, "ListIngestJobs", { bucket: P, keyPrefix: prefix, ...(status ? { statusFilter: status } : {}), pageSize: 2, pageToken: token }));
      expect(body.pagination.totalCount).toBe(String(want.length));
      seen.push(...body.jobs.map((j) => j.jobId));
      for (const j of body.jobs) expect((j.object as unknown as { key: string }).key.startsWith(prefix)).toBe(true);
      token = body.pagination.nextPageToken;
    } while (token);
    expect({ door, prefix, status, seen }).toEqual({ door, prefix, status, seen: order(want) });
  }
  // A page token belongs to its prefix.
  const first = ok(await clients.call("rest", IngestService, "ListIngestJobs", { bucket: P, keyPrefix: "docs/", pageSize: 2 }));
  const other = await clients.call("rest", IngestService, "ListIngestJobs", { bucket: P, keyPrefix: "img/", pageSize: 2, pageToken: first.pagination.nextPageToken });
  expect(other).toMatchObject({ ok: false, code: "invalid_argument" });
  // A prefix longer than a key can be is refused, naming the field.
  const long = await clients.call("connect", IngestService, "ListIngestJobs", { bucket: P, keyPrefix: "x".repeat(1025) });
  expect(long).toMatchObject({ ok: false, code: "invalid_argument" });
  expect((long as { message: string }).message).toContain("key_prefix is 1025 characters long; at most 1024");
  // Plain HTTP, as the console and curl send it.
  const res = await fetch(`${s.httpUrl}/${P}/ingest/jobs?key_prefix=${encodeURIComponent("img/")}&page_size=100`);
  const body = (await res.json()) as Body;
  expect(res.status).toBe(200);
  expect(body.pagination.totalCount).toBe(String(jobs.filter((j) => j.key.startsWith("img/")).length));
});

/**
 * A listing's page and its totalCount describe one moment. Jobs (counted from the counter
 * tables, and by key prefix with COUNT) and buckets (COUNT) are written while they are
 * listed in one page: every answer's totalCount must equal the rows it holds. Read at two
 * moments, a commit between the two reads made them disagree ("21 rows of 20").
 */
test("a listing's page and its totalCount come from one moment while rows are being added", async () => {
  const LIVE = "kb-pages-live";
  s.putObject(LIVE, "live/a.txt", "a");
  const pipelineId = ok(await clients.call("rest", PipelineService, "CreatePipeline", { bucket: LIVE, name: "live", scriptumTemplate: "noop" })).pipeline.pipelineId;
  let writing = true;
  let written = 0;
  const writer = async (lane: number) => {
    for (let i = 0; writing && written < 600; i++) {
      ok(await clients.call("rest", IngestService, "TriggerIngest", { bucket: LIVE, object: { key: "live/a.txt" }, pipelineId }));
      if (i % 4 === lane) ok(await clients.call("rest", StorageService, "CreateBucket", { name: `kb-live-${lane}-${i}` }));
      written++;
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  const disagreements: string[] = [];
  try {
    for (let i = 0; i < 300 && written < 600; i++) {
      const [jobs, byPrefix, buckets] = await Promise.all([
        list("connect", { bucket: LIVE, pageSize: 1000 }),
        list("rest", { bucket: LIVE, keyPrefix: "live/", pageSize: 1000 }),
        clients.call("connect", StorageService, "ListBuckets", { pageSize: 1000 }),
      ]);
      for (const [what, r, rows] of [
        ["jobs", jobs, "jobs"],
        ["jobs by key prefix", byPrefix, "jobs"],
        ["buckets", buckets, "buckets"],
      ] as Array<[string, CallResult, string]>) {
        const body = ok(r) as unknown as Record<string, unknown[]> & { pagination: { totalCount: string; nextPageToken: string } };
        expect(body.pagination.nextPageToken).toBe("");
        const held = (body[rows] ?? []).length;
        if (String(held) !== body.pagination.totalCount) disagreements.push(`${what}: ${held} rows, totalCount ${body.pagination.totalCount}`);
      }
    }
  } finally {
    writing = false;
    await Promise.all(writers);
  }
  expect(written).toBeGreaterThan(50);
  expect(disagreements).toEqual([]);
});
