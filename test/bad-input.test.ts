/**
 * Bad input through every door gets the right code, an HTTP status to match on the HTTP
 * doors, and a message naming the field and value — and the server keeps serving.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { connectClients, DOORS, type CallResult, type Clients } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
let clients: Clients;
let pipelineId: string;
const B = "kb-bad";

beforeAll(async () => {
  s = await startServers();
  clients = connectClients(s.httpUrl, s.grpcAddress);
  s.putObject(B, "docs/a.txt", "hello");
  const r = await clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "p", scriptumTemplate: "text_embedding_index" });
  if (!r.ok) throw new Error(r.message);
  pipelineId = (r.body as { pipeline: { pipelineId: string } }).pipeline.pipelineId;
});

afterAll(async () => {
  clients.close();
  await s.stop();
});

interface Case {
  name: string;
  method: string;
  service?: typeof IngestService | typeof PipelineService;
  request: () => JsonObject;
  code: string;
  http: number;
  message: RegExp;
}

const CASES: Case[] = [
  { name: "missing object", method: "TriggerIngest", request: () => ({ bucket: B }), code: "invalid_argument", http: 400, message: /^object is required \(or retry_of, the id of a job to replay\)$/ },
  { name: "missing key", method: "TriggerIngest", request: () => ({ bucket: B, object: { bucket: B } }), code: "invalid_argument", http: 400, message: /^object\.key is required$/ },
  {
    name: "bucket mismatch",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { bucket: "kb-other", key: "docs/a.txt" } }),
    code: "invalid_argument",
    http: 400,
    message: /object\.bucket "kb-other" does not match the bucket of the path "kb-bad"/,
  },
  {
    name: "invalid bucket name",
    method: "TriggerIngest",
    request: () => ({ bucket: "Bad_Bucket", object: { key: "docs/a.txt" } }),
    code: "invalid_argument",
    http: 400,
    message: /bucket "Bad_Bucket" is not a valid bucket name/,
  },
  {
    // Keys are S3 keys: ".." is a name, never a way out of the bucket.
    name: "key spelling a way out of the bucket",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "docs/../../../../../../etc/passwd" }, pipelineId }),
    code: "not_found",
    http: 404,
    message: /object "docs\/\.\.\/\.\.\/\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" not found in bucket "kb-bad"/,
  },
  {
    name: "absolute key",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "/etc/passwd" }, pipelineId }),
    code: "not_found",
    http: 404,
    message: /object "\/etc\/passwd" not found in bucket "kb-bad"/,
  },
  {
    name: "key over 1024 bytes",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "k".repeat(1100) } }),
    code: "invalid_argument",
    http: 400,
    message: /object\.key "k+…" is longer than 1024 bytes/,
  },
  {
    name: "key with NUL",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "docs/a\u0000.txt" } }),
    code: "invalid_argument",
    http: 400,
    message: /object\.key contains NUL at position 6; any other UTF-8 is accepted/,
  },
  {
    name: "too many options",
    method: "TriggerIngest",
    request: () => ({
      bucket: B,
      object: { key: "docs/a.txt" },
      pipelineId,
      options: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])),
    }),
    code: "invalid_argument",
    http: 400,
    message: /options has 65 entries; at most 64 are allowed/,
  },
  {
    name: "option value over 4 KiB",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "docs/a.txt" }, pipelineId, options: { note: "x".repeat(5000) } }),
    code: "invalid_argument",
    http: 400,
    message: /options\["note"\] is 5004 bytes \(key plus value\); at most 4096 are allowed/,
  },
  {
    name: "missing object in bucket",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "docs/missing.txt" }, pipelineId }),
    code: "not_found",
    http: 404,
    message: /object "docs\/missing\.txt" not found in bucket "kb-bad"/,
  },
  {
    name: "unknown pipeline",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "docs/a.txt" }, pipelineId: "pipe_nope" }),
    code: "not_found",
    http: 404,
    message: /pipeline_id "pipe_nope" not found in bucket "kb-bad"/,
  },
  {
    name: "no matching rule",
    method: "TriggerIngest",
    request: () => ({ bucket: B, object: { key: "docs/a.txt" } }),
    code: "failed_precondition",
    http: 400,
    message: /no enabled rule of bucket "kb-bad" matches object key "docs\/a\.txt" \(text\/plain, 5 bytes\)/,
  },
  { name: "unknown job", method: "GetIngestStatus", request: () => ({ bucket: B, jobId: "job_nope" }), code: "not_found", http: 404, message: /job_id "job_nope" not found in bucket "kb-bad"/ },
  { name: "unknown status number", method: "ListIngestJobs", request: () => ({ bucket: B, statusFilter: 99 }), code: "invalid_argument", http: 400, message: /status_filter 99 is not a known IngestStatus/ },
  { name: "negative page size", method: "ListIngestJobs", request: () => ({ bucket: B, pageSize: -5 }), code: "invalid_argument", http: 400, message: /page_size -5 must not be negative/ },
  { name: "cancel unknown job", method: "CancelIngestJob", request: () => ({ bucket: B, jobId: "job_nope" }), code: "not_found", http: 404, message: /job_id "job_nope" not found/ },
  { name: "rule without name", method: "CreateRule", request: () => ({ bucket: B, pipelineId }), code: "invalid_argument", http: 400, message: /^name is required$/ },
  {
    name: "rule with a bad MIME pattern",
    method: "CreateRule",
    request: () => ({ bucket: B, name: "r", pipelineId, includeMimeTypes: ["text/plain", "pdf"] }),
    code: "invalid_argument",
    http: 400,
    message: /include_mime_types\[1\] "pdf" is not a MIME type pattern/,
  },
  {
    name: "rule with inverted sizes",
    method: "CreateRule",
    request: () => ({ bucket: B, name: "r", pipelineId, minSizeBytes: "100", maxSizeBytes: "10" }),
    code: "invalid_argument",
    http: 400,
    message: /max_size_bytes 10 is smaller than min_size_bytes 100/,
  },
  {
    name: "rule with too many patterns",
    method: "CreateRule",
    request: () => ({ bucket: B, name: "r", pipelineId, excludePatterns: Array.from({ length: 101 }, (_, i) => `x${i}/**`) }),
    code: "invalid_argument",
    http: 400,
    message: /exclude_patterns has 101 entries; at most 100 are allowed/,
  },
  { name: "rule of unknown pipeline", method: "CreateRule", request: () => ({ bucket: B, name: "r", pipelineId: "pipe_nope" }), code: "not_found", http: 404, message: /pipeline_id "pipe_nope" not found/ },
  {
    name: "pipeline without template",
    method: "CreatePipeline",
    service: PipelineService,
    request: () => ({ bucket: B, name: "x" }),
    code: "invalid_argument",
    http: 400,
    message: /one of scriptum_template or spawn_from_template is required/,
  },
  {
    name: "pipeline with a bad option value",
    method: "CreatePipeline",
    service: PipelineService,
    request: () => ({ bucket: B, name: "x", scriptumTemplate: "text_embedding_index", options: { chunk_size: "0" } }),
    code: "invalid_argument",
    http: 400,
    message: /options\["chunk_size"\] = "0" must be an integer from 32 to 100000/,
  },
  {
    name: "pipeline filter with an unknown kind",
    method: "ListPipelines",
    service: PipelineService,
    request: () => ({ bucket: B, storeEntityKind: "graph" }),
    code: "invalid_argument",
    http: 400,
    message: /store_entity_kind "graph" must be one of/,
  },
];

describe.each(DOORS)("through %s", (door) => {
  test.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const result: CallResult = await clients.call(door, c.service ?? IngestService, c.method, c.request());
    expect(result).toMatchObject({ ok: false, code: c.code });
    if (!result.ok) {
      expect(result.message).toMatch(c.message);
      if (door === "rest") expect(result.httpStatus).toBe(c.http);
    }
  });
});

async function raw(path: string, init: RequestInit = {}) {
  const res = await fetch(s.httpUrl + path, init);
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text);
  } catch {
    body = { text };
  }
  return { status: res.status, body, headers: res.headers };
}

const json = (body: string): RequestInit => ({ method: "POST", headers: { "content-type": "application/json" }, body });

describe("malformed requests on the HTTP port", () => {
  test.each<[string, string, RequestInit, number, string, RegExp]>([
    ["REST malformed JSON", `/${B}/ingest`, json("{not json"), 400, "invalid_argument", /request body is not valid JSON/],
    ["REST body not an object", `/${B}/ingest`, json("[1,2]"), 400, "invalid_argument", /request body must be a JSON object/],
    ["REST unknown field", `/${B}/ingest`, json('{"object":{"key":"docs/a.txt"},"bogus":1}'), 400, "invalid_argument", /unknown field "bogus" of TriggerIngestRequest; its fields are bucket, object, pipelineId/],
    ["REST wrong type", `/${B}/ingest`, json('{"object":"docs/a.txt"}'), 400, "invalid_argument", /object must be a JSON object \(a ObjectRef\), got "docs\/a\.txt"/],
    // Numbers and booleans in an options map are taken as their text on REST; an object is not.
    ["REST wrong type in map", `/${B}/ingest`, json('{"object":{"key":"docs/a.txt"},"options":{"a":{"b":1}}}'), 400, "invalid_argument", /options: map entry "a": expected string/],
    ["REST body bucket differs from path", `/${B}/ingest`, json('{"bucket":"other","object":{"key":"a"}}'), 400, "invalid_argument", /bucket "other" in the body does not match "kb-bad" in the path/],
    ["REST bad enum name", `/${B}/ingest/jobs?status_filter=INGEST_STATUS_BOGUS`, {}, 400, "invalid_argument", /INGEST_STATUS_BOGUS/],
    ["REST page_size not a number", `/${B}/ingest/jobs?page_size=abc`, {}, 400, "invalid_argument", /abc/],
    ["REST unknown query parameter", `/${B}/ingest/jobs?colour=red`, {}, 400, "invalid_argument", /unknown query parameter "colour"/],
    ["REST repeated scalar parameter", `/${B}/ingest/jobs?page_size=1&page_size=2`, {}, 400, "invalid_argument", /"page_size" is given 2 times/],
    ["REST bad percent-encoding", `/${B}/ingest/jobs/%E0%A4%A`, {}, 400, "invalid_argument", /percent-encoding/],
    ["REST wrong method", `/${B}/ingest`, { method: "GET" }, 405, "unimplemented", /method GET is not allowed on \/kb-bad\/ingest; allowed: POST/],
    ["Connect malformed JSON", "/dodil.k3.ingest.v1.IngestService/TriggerIngest", json("{oops"), 400, "invalid_argument", /./],
    ["Connect unknown field", "/dodil.k3.ingest.v1.IngestService/TriggerIngest", json(`{"bucket":"${B}","bogus":true}`), 400, "invalid_argument", /unknown field "bogus" of TriggerIngestRequest/],
    ["Connect bad enum name", "/dodil.k3.ingest.v1.IngestService/ListIngestJobs", json(`{"bucket":"${B}","statusFilter":"NOPE"}`), 400, "invalid_argument", /NOPE/],
    ["Connect wrong type", "/dodil.k3.ingest.v1.IngestService/ListIngestJobs", json(`{"bucket":"${B}","pageSize":"ten"}`), 400, "invalid_argument", /page_size: expected number \(int32\), got "ten"/],
  ])("%s", async (_name, path, init, status, code, message) => {
    const res = await raw(path, init);
    expect(res.status).toBe(status);
    expect(res.body.code).toBe(code);
    expect(String(res.body.message)).toMatch(message);
  });

  test("a path no REST route knows is the byte plane's: an S3 error in XML", async () => {
    const res = await fetch(`${s.httpUrl}/${B}/nothing-here`);
    expect(res.status).toBe(404);
    expect(await res.text()).toMatch(/<Code>NoSuch(Bucket|Key)<\/Code>/);
  });

  test("a body over the limit is refused with 413 and the limit named", async () => {
    const big = JSON.stringify({ object: { key: "docs/a.txt" }, options: { x: "y".repeat(2 * 1024 * 1024) } });
    const rest = await raw(`/${B}/ingest`, json(big));
    expect(rest.status).toBe(413);
    expect(rest.body.code).toBe("resource_exhausted");
    expect(String(rest.body.message)).toMatch(/exceeds the limit of 1048576 bytes \(K3_MAX_BODY_BYTES\); send less in one call, or raise the limit/);
    const connect = await raw("/dodil.k3.ingest.v1.IngestService/TriggerIngest", json(big));
    expect(connect.body.code).toBe("resource_exhausted");
  });
});

test("random bytes on gRPC are INVALID_ARGUMENT, not INTERNAL", async () => {
  const result = await new Promise<{ code: number; details: string }>((resolve) => {
    clients.grpc.makeUnaryRequest(
      "/dodil.k3.ingest.v1.IngestService/TriggerIngest",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
      (err) => resolve({ code: err?.code ?? 0, details: err?.details ?? "" }),
    );
  });
  expect(result.code).toBe(3);
  expect(result.details).toMatch(/request is not a valid dodil\.k3\.ingest\.v1\.TriggerIngestRequest/);
});

test("after all that, the server still serves", async () => {
  expect((await raw("/healthz")).status).toBe(200);
  expect((await raw("/readyz")).status).toBe(200);
  for (const door of DOORS) {
    const r = await clients.call(door, IngestService, "TriggerIngest", { bucket: B, object: { key: "docs/a.txt" }, pipelineId });
    expect(r.ok).toBe(true);
  }
});
