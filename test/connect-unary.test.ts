/**
 * The Connect door's unary calls (src/transport/connect-unary.ts) on the wire, with a raw
 * HTTP client so every header and byte is visible: JSON and binary bodies, responses of
 * 1 KiB or more compressed as the client accepts (gzip, br) and not otherwise, a compressed
 * request, the request id, and bad bodies — garbage bytes, an empty
 * body, a bad timeout — as INVALID_ARGUMENT naming what is wrong, never INTERNAL; and the
 * same for a gRPC-Web message that does not decode.
 */
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GetIngestStatusRequestSchema,
  ListIngestJobsRequestSchema,
  ListIngestJobsResponseSchema,
  TriggerIngestRequestSchema,
  TriggerIngestResponseSchema,
} from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { rawRequest } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
const B = "kb-connect-unary";
const INGEST = "/dodil.k3.ingest.v1.IngestService";
let pipelineId = "";

type Raw = Awaited<ReturnType<typeof rawRequest>>;

const post = (path: string, headers: Record<string, string>, body: Buffer | string): Promise<Raw> => rawRequest(s.httpUrl, "POST", path, headers, Buffer.from(body));

const json = (r: Raw) => JSON.parse(r.body.toString("utf8"));

beforeAll(async () => {
  s = await startServers();
  s.putObject(B, "docs/a.txt", "hello");
  const res = await fetch(`${s.httpUrl}/${B}/pipelines`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "noop", scriptum_template: "noop" }) });
  pipelineId = ((await res.json()) as { pipeline: { pipelineId: string } }).pipeline.pipelineId;
});
afterAll(() => s.stop());

test("JSON and binary bodies: the same call answers in the request's format, with the request id", async () => {
  const asJson = await post(`${INGEST}/TriggerIngest`, { "content-type": "application/json" }, JSON.stringify({ bucket: B, object: { key: "docs/a.txt" }, pipelineId }));
  expect(asJson.status).toBe(200);
  expect(asJson.headers["content-type"]).toBe("application/json");
  expect(asJson.headers["x-request-id"]).toMatch(/^req_/);
  expect(json(asJson)).toMatchObject({ job: { status: "INGEST_STATUS_PENDING", object: { key: "docs/a.txt" }, pipelineId } });

  const bytes = toBinary(TriggerIngestRequestSchema, create(TriggerIngestRequestSchema, { bucket: B, object: { key: "docs/a.txt" }, pipelineId }));
  const asProto = await post(`${INGEST}/TriggerIngest`, { "content-type": "application/proto", "connect-protocol-version": "1" }, Buffer.from(bytes));
  expect(asProto.status).toBe(200);
  expect(asProto.headers["content-type"]).toBe("application/proto");
  const job = fromBinary(TriggerIngestResponseSchema, asProto.body).job!;
  expect(job).toMatchObject({ object: { key: "docs/a.txt" }, pipelineId });
  expect(job.jobId).not.toBe(json(asJson).job.jobId);
});

test("a response of 1 KiB or more is compressed as the client accepts; a small one or an unasked one is not", async () => {
  for (let i = 0; i < 10; i++) {
    await post(`${INGEST}/TriggerIngest`, { "content-type": "application/json" }, JSON.stringify({ bucket: B, object: { key: "docs/a.txt" }, pipelineId }));
  }
  const list = JSON.stringify({ bucket: B, pageSize: 10 });
  const plain = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json" }, list);
  expect(plain.headers["content-encoding"]).toBeUndefined();
  expect(plain.body.length).toBeGreaterThan(1024);
  expect(json(plain).jobs).toHaveLength(10);

  const gz = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json", "accept-encoding": "gzip, deflate" }, list);
  expect(gz.headers["content-encoding"]).toBe("gzip");
  expect(Number(gz.headers["content-length"])).toBe(gz.body.length);
  expect(JSON.parse(gunzipSync(gz.body).toString("utf8"))).toEqual(json(plain));

  const br = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json", "accept-encoding": "br, gzip" }, list);
  expect(br.headers["content-encoding"]).toBe("br");
  expect(JSON.parse(brotliDecompressSync(br.body).toString("utf8"))).toEqual(json(plain));

  const small = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json", "accept-encoding": "gzip" }, JSON.stringify({ bucket: B, pageSize: 1 }));
  expect(small.body.length).toBeLessThan(1024);
  expect(small.headers["content-encoding"]).toBeUndefined();

  // Binary, too.
  const bin = toBinary(ListIngestJobsRequestSchema, create(ListIngestJobsRequestSchema, { bucket: B, pageSize: 10 }));
  const binGz = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/proto", "accept-encoding": "gzip" }, Buffer.from(bin));
  expect(binGz.headers["content-encoding"]).toBe("gzip");
  expect(fromBinary(ListIngestJobsResponseSchema, gunzipSync(binGz.body)).jobs).toHaveLength(10);
});

test("a gzip-compressed request body is still understood, and answered in kind", async () => {
  const body = gzipSync(JSON.stringify({ bucket: B, pageSize: 2 }));
  const res = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json", "content-encoding": "gzip" }, body);
  expect(res.status).toBe(200);
  // Without an accept-encoding, Connect answers in the request's own compression.
  expect(res.headers["content-encoding"]).toBe("gzip");
  expect(JSON.parse(gunzipSync(res.body).toString("utf8")).jobs).toHaveLength(2);
});

test("bad bodies and headers are INVALID_ARGUMENT naming what is wrong, never INTERNAL", async () => {
  const garbage = await post(`${INGEST}/GetIngestStatus`, { "content-type": "application/proto" }, Buffer.from([0xff, 0xff, 0xff, 0xff]));
  expect(garbage.status).toBe(400);
  expect(json(garbage)).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^request body is not a valid dodil\.k3\.ingest\.v1\.GetIngestStatusRequest: /) });

  const empty = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json" }, "");
  expect(empty.status).toBe(400);
  expect(json(empty)).toMatchObject({ code: "invalid_argument", message: "request body is empty: send a JSON object ({} when no field of dodil.k3.ingest.v1.ListIngestJobsRequest is set)" });

  const notJson = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json" }, "{bucket:");
  expect(notJson.status).toBe(400);
  expect(json(notJson).message).toMatch(/^request body is not valid JSON: /);

  const unknownField = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json" }, JSON.stringify({ bucket: B, colour: "red" }));
  expect(unknownField.status).toBe(400);
  expect(json(unknownField).message).toMatch(/colour/);

  const badTimeout = await post(`${INGEST}/ListIngestJobs`, { "content-type": "application/json", "connect-timeout-ms": "soon" }, JSON.stringify({ bucket: B }));
  expect(badTimeout.status).toBe(400);
  expect(json(badTimeout)).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/timeout/) });
});

test("gRPC-Web (still connect-node's): a unary message that does not decode is INVALID_ARGUMENT, as on native gRPC", async () => {
  const frame = (msg: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]);
  const bad = await post(`${INGEST}/GetIngestStatus`, { "content-type": "application/grpc-web+proto" }, frame(Buffer.from([0xff, 0xff, 0xff, 0xff])));
  expect(bad.headers["grpc-status"]).toBe("3");
  expect(decodeURIComponent(String(bad.headers["grpc-message"]))).toMatch(/^request is not a valid dodil\.k3\.ingest\.v1\.GetIngestStatusRequest: /);
  // A good one is served as before: NOT_FOUND for a job that does not exist, in the trailers.
  const good = await post(`${INGEST}/GetIngestStatus`, { "content-type": "application/grpc-web+proto" }, frame(Buffer.from(toBinary(GetIngestStatusRequestSchema, create(GetIngestStatusRequestSchema, { bucket: B, jobId: "job_nope" })))));
  expect(good.status).toBe(200);
  expect(good.body.toString("latin1")).toMatch(/grpc-status: ?5/);
});
