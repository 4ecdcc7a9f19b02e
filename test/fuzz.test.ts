/**
 * Hostile input, generated: random JSON bodies, wrong types, deep nesting, huge and
 * invalid strings, random paths and query strings on the HTTP port, random bytes on
 * gRPC. Whatever arrives, the server answers with a client error (never 500/INTERNAL),
 * stays up, and keeps serving a well-behaved client that calls it at the same time.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import * as grpc from "@grpc/grpc-js";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { connectClients, type Clients } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(120_000);

let s: TestServers;
let clients: Clients;
const B = "kb-fuzz";
let stop = false;
let goodCalls = 0;
let goodFailures: string[] = [];
let good: Promise<void>;

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  clients = connectClients(s.httpUrl, s.grpcAddress);
  const token = readFileSync(`${s.dataDir}/admin-token`, "utf8").trim();
  s.putObject(B, "docs/a.txt", "x");
  const p = await clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "p", scriptumTemplate: "noop" }, { authorization: `Bearer ${token}` });
  if (!p.ok) throw new Error(p.message);
  // A well-behaved client keeps calling while the fuzzers run.
  good = (async () => {
    while (!stop) {
      const r = await clients.call("grpc", IngestService, "ListIngestJobs", { bucket: B, pageSize: 1 }, { authorization: `Bearer ${token}` });
      goodCalls++;
      if (!r.ok) goodFailures.push(`${r.code}: ${r.message}`);
      await new Promise((res) => setTimeout(res, 5));
    }
  })();
});

afterAll(async () => {
  stop = true;
  await good;
  clients.close();
  await s.stop();
});

const ROUTES = [
  ["POST", `/${B}/ingest`],
  ["GET", `/${B}/ingest/jobs`],
  ["GET", `/${B}/ingest/jobs/job_x`],
  ["POST", `/${B}/ingest/jobs/job_x:cancel`],
  ["POST", `/${B}/rules`],
  ["PATCH", `/${B}/rules/rule_x`],
  ["POST", `/${B}/pipelines`],
  ["PATCH", `/${B}/pipelines/pipe_x`],
  ["POST", "/dodil.k3.ingest.v1.IngestService/TriggerIngest"],
  ["POST", "/dodil.k3.ingest.v1.IngestService/CreateRule"],
  ["POST", "/dodil.k3.pipeline.v1.PipelineService/CreatePipeline"],
  ["POST", "/dodil.k3.ingest.v1.IngestService/ListIngestJobs"],
] as const;

// JSON with the API's own field names mixed in, so the fuzzer reaches past the first check.
const fieldNames = fc.constantFrom("bucket", "object", "key", "pipelineId", "pipeline_id", "ruleId", "options", "requestId", "statusFilter", "pageSize", "pageToken", "name", "includePatterns", "minSizeBytes", "enabled", "priority", "scriptumTemplate", "spawnFromTemplate", "values");
const weirdString = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.constantFrom("", "kb-fuzz", "../../etc/passwd", "%2e%2e/", "\u0000", "\ud800", "INGEST_STATUS_FAILED", "-1", "1e309", "job_x", "*"),
  fc.integer({ min: 1000, max: 200_000 }).map((n) => "x".repeat(n)),
);
const leaf = fc.oneof(weirdString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.bigInt().map((b) => b.toString()));
const json = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, leaf, tie("array"), tie("object")),
  array: fc.array(tie("value"), { maxLength: 5 }),
  object: fc.dictionary(fc.oneof(fieldNames, fc.string()), tie("value"), { maxKeys: 6 }),
})).value;
const deep = fc.integer({ min: 100, max: 5000 }).map((n) => "[".repeat(n) + "]".repeat(n));

function headers(): Record<string, string> {
  return { "content-type": "application/json", authorization: `Bearer ${readFileSync(`${s.dataDir}/admin-token`, "utf8").trim()}` };
}

test("random JSON bodies on every HTTP route never get a 500", async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...ROUTES), fc.oneof(json.map((v) => JSON.stringify(v) ?? "null"), deep, weirdString), async ([method, path], body) => {
      const res = await fetch(s.httpUrl + path, { method, headers: headers(), body: method === "GET" ? undefined : body });
      await res.arrayBuffer();
      expect(res.status).toBeLessThan(500);
    }),
    { numRuns: 400 },
  );
});

test("random paths and query strings never get a 500", async () => {
  const segment = fc.oneof(fc.webSegment(), weirdString.map((x) => [...Buffer.from(x.slice(0, 300))].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("")), fc.constantFrom("ingest", "jobs", "rules", "pipelines", B, "%", "%zz", "..", ":cancel"));
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom("GET", "POST", "PATCH", "DELETE", "PUT"),
      fc.array(segment, { minLength: 1, maxLength: 6 }),
      fc.webQueryParameters(),
      async (method, segments, query) => {
        const res = await fetch(`${s.httpUrl}/${segments.join("/")}?${query}`, { method, headers: headers() });
        await res.arrayBuffer();
        expect(res.status).toBeLessThan(500);
      },
    ),
    { numRuns: 400 },
  );
});

test("random protobuf bytes on gRPC are never INTERNAL", async () => {
  const raw = new grpc.Client(s.grpcAddress, grpc.credentials.createInsecure());
  const token = headers().authorization;
  const methods = [...IngestService.methods.map((m) => `/${IngestService.typeName}/${m.name}`), ...PipelineService.methods.map((m) => `/${PipelineService.typeName}/${m.name}`)];
  try {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods), fc.uint8Array({ maxLength: 2048 }), async (path, bytes) => {
        const md = new grpc.Metadata();
        md.set("authorization", token);
        const code = await new Promise<number>((resolve) =>
          raw.makeUnaryRequest(path, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, bytes, md, { deadline: Date.now() + 10_000 }, (err) => resolve(err?.code ?? 0)),
        );
        expect([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).not.toContain(code);
      }),
      { numRuns: 600 },
    );
  } finally {
    raw.close();
  }
});

// Well-formed requests whose values are hostile: control characters, lone surrogates,
// huge strings and glob shapes that make backtracking matchers explode.
const hostileValue = fc.oneof(
  weirdString,
  fc.constantFrom("a\u0000b", "\u0007", "\u001b[2J", "\u007f", "\ud83d", "\udc00x", "é\u0000", "*a".repeat(14) + "x", "**a".repeat(10) + "b", "[", "[!]", "[z-a]", "**/**/**/**/**"),
  fc.string({ unit: "grapheme", maxLength: 50 }),
);
const DOOR = fc.constantFrom("grpc", "connect", "grpcweb", "rest") as fc.Arbitrary<"grpc" | "connect" | "grpcweb" | "rest">;
const wellFormed = fc.oneof(
  fc.record({ key: hostileValue, requestId: hostileValue, ok: hostileValue, v: hostileValue }).map((r) => ({
    service: IngestService, method: "TriggerIngest", request: { bucket: B, object: { key: r.key }, requestId: r.requestId, options: { [r.ok]: r.v } },
  })),
  fc.record({ name: hostileValue, pattern: hostileValue, mime: hostileValue, desc: hostileValue }).map((r) => ({
    service: IngestService, method: "CreateRule", request: { bucket: B, name: r.name, pipelineId: "pipe_x", includePatterns: [r.pattern], excludePatterns: [r.pattern], includeMimeTypes: [r.mime], description: r.desc },
  })),
  fc.record({ name: hostileValue, ok: hostileValue, v: hostileValue, desc: hostileValue }).map((r) => ({
    service: PipelineService, method: "CreatePipeline", request: { bucket: B, name: r.name, scriptumTemplate: "text_embedding_index", description: r.desc, options: { [r.ok]: r.v } },
  })),
  fc.record({ p: hostileValue, r: hostileValue, t: hostileValue }).map((r) => ({
    service: IngestService, method: "ListIngestJobs", request: { bucket: B, pipelineId: r.p, ruleId: r.r, pageToken: r.t },
  })),
);

test("well-formed requests with hostile values, through every door, are never INTERNAL", async () => {
  const auth = { authorization: headers().authorization };
  await fc.assert(
    fc.asyncProperty(DOOR, wellFormed, async (door, { service, method, request }) => {
      let r;
      try {
        r = await clients.call(door, service, method, request as never, auth);
      } catch (err) {
        // protobuf clients refuse to encode lone surrogates themselves; REST sends them.
        if (/invalid UTF8/.test(String(err))) return;
        throw err;
      }
      if (!r.ok && door !== "rest" && /invalid UTF8/.test(r.message)) return; // refused by the client itself
      if (!r.ok) expect(["internal", "unknown", "unavailable"]).not.toContain(r.code);
    }),
    { numRuns: 500 },
  );
});

test("the well-behaved client was served throughout, and the server is still healthy", async () => {
  expect(goodCalls).toBeGreaterThan(10);
  expect(goodFailures).toEqual([]);
  expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
  expect((await fetch(`${s.httpUrl}/readyz`)).status).toBe(200);
});
