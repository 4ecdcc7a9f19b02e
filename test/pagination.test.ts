/**
 * Keyset pagination over 120 jobs: newest first, no duplicate, no gap, exact totalCount
 * on every page, page-size rules, and tokens bound to the filters they were issued for.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
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
