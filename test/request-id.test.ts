/**
 * Request ids: a caller's x-request-id (or a generated one) comes back on every door,
 * and the log lines of the job that a TriggerIngest created carry it.
 */
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { ListIngestJobsRequestSchema } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

let s: TestServers;
const lines: string[] = [];
const B = "kb-trace";

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "100" }, { logLines: lines });
  s.putObject(B, "docs/a.txt", "some text to embed");
});
afterAll(() => s.stop());

test("x-request-id is echoed by REST and Connect, or generated when absent", async () => {
  const given = await fetch(`${s.httpUrl}/${B}/ingest/jobs`, { headers: { "x-request-id": "trace-rest-1" } });
  expect(given.headers.get("x-request-id")).toBe("trace-rest-1");
  const generated = await fetch(`${s.httpUrl}/${B}/ingest/jobs`);
  expect(generated.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{24}$/);
  const failed = await fetch(`${s.httpUrl}/${B}/ingest/jobs/job_nope`, { headers: { "x-request-id": "trace-404" } });
  expect(failed.status).toBe(404);
  expect(failed.headers.get("x-request-id")).toBe("trace-404");
  const connect = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/ListIngestJobs`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "trace-connect" },
    body: JSON.stringify({ bucket: B }),
  });
  expect(connect.headers.get("x-request-id")).toBe("trace-connect");
  // A header that is not a sane id is replaced, not echoed.
  const junk = await fetch(`${s.httpUrl}/${B}/ingest/jobs`, { headers: { "x-request-id": "x".repeat(500) } });
  expect(junk.headers.get("x-request-id")).toMatch(/^req_/);
});

test("x-request-id comes back in gRPC response metadata", async () => {
  const client = new grpc.Client(s.grpcAddress, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("x-request-id", "trace-grpc");
  const echoed = await new Promise<string>((resolve, reject) => {
    const call = client.makeUnaryRequest(
      "/dodil.k3.ingest.v1.IngestService/ListIngestJobs",
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      toBinary(ListIngestJobsRequestSchema, create(ListIngestJobsRequestSchema, { bucket: B })),
      md,
      (err) => (err ? reject(err) : undefined),
    );
    call.on("metadata", (m) => resolve(String(m.get("x-request-id")[0])));
  });
  client.close();
  expect(echoed).toBe("trace-grpc");
});

test("the log lines of a job carry the request id of the call that created it", async () => {
  const p = await fetch(`${s.httpUrl}/${B}/pipelines`, { method: "POST", body: JSON.stringify({ name: "e", scriptum_template: "text_embedding_index" }) });
  const pipelineId = ((await p.json()) as { pipeline: { pipelineId: string } }).pipeline.pipelineId;
  const t = await fetch(`${s.httpUrl}/${B}/ingest`, {
    method: "POST",
    headers: { "x-request-id": "trace-job-42" },
    body: JSON.stringify({ object: { key: "docs/a.txt" }, pipelineId }),
  });
  const jobId = ((await t.json()) as { job: { jobId: string } }).job.jobId;
  const finished = await waitFor("the job's log line", () =>
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "job finished" && l.job === jobId),
  );
  expect(finished).toMatchObject({ level: "info", requestId: "trace-job-42", status: "completed" });
  expect(typeof finished.time).toBe("string");
  // The RPC itself is logged (debug) with the same id.
  expect(lines.map((l) => JSON.parse(l)).find((l) => l.msg === "rpc" && l.requestId === "trace-job-42")).toMatchObject({ method: "TriggerIngest", door: "rest", code: "ok" });
});
