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
import { SourceService } from "../gen/dodil/k3/source/v1/source_pb";
import { StorageService } from "../gen/dodil/k3/storage/v1/storage_pb";
import { VectorService } from "../gen/dodil/k3/vector/v1/vector_pb";
import { SERVICES } from "../src/service/descriptors";
import { connectClients, type Clients } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(120_000);

let s: TestServers;
let clients: Clients;
const B = "kb-fuzz";
/** The well-behaved client's bucket: no fuzzer names it (they may delete kb-fuzz). */
const STEADY = "kb-steady";
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
  s.putObject(STEADY, "a.txt", "x");
  const c = await clients.call("grpc", VectorService, "AddVectorCollection", { bucket: B, name: "pushed", dimensions: 4 }, { authorization: `Bearer ${token}` });
  if (!c.ok) throw new Error(c.message);
  pushed = String((c.body as { collection: { collectionId: string } }).collection.collectionId);
  routes = await restRoutes();
  // A well-behaved client keeps calling while the fuzzers run.
  good = (async () => {
    while (!stop) {
      const r = await clients.call("grpc", IngestService, "ListIngestJobs", { bucket: STEADY, pageSize: 1 }, { authorization: `Bearer ${token}` });
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

/**
 * Every REST route the server documents (its own /openapi.json), with kb-fuzz or a made-up
 * id in each path variable, and every unary method on the Connect path. The watch routes
 * stream until told to stop, so they are left to watch.test.ts.
 */
let routes: [string, string][] = [];
async function restRoutes(): Promise<[string, string][]> {
  const doc = (await (await fetch(`${s.httpUrl}/openapi.json`)).json()) as { paths: Record<string, Record<string, { operationId: string }>> };
  const out: [string, string][] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (/_Watch/.test(op.operationId)) continue;
      out.push([method.toUpperCase(), path.replace(/\{(\w+)\}/g, (_, v: string) => (v === "bucket" || v === "name" ? B : v === "key" ? "docs%2Fa.txt" : `${v}_x`))]);
    }
  }
  for (const service of SERVICES) {
    for (const m of service.methods) if (m.methodKind === "unary") out.push(["POST", `/${service.typeName}/${m.name}`]);
  }
  return out;
}

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

// 501 is an answer: the calls for OAuth providers say this server does not serve them.
test("random JSON bodies on every HTTP route never get a 500", async () => {
  expect(routes.length).toBeGreaterThan(100);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...routes), fc.oneof(json.map((v) => JSON.stringify(v) ?? "null"), deep, weirdString), async ([method, path], body) => {
      const res = await fetch(s.httpUrl + path, { method, headers: headers(), body: method === "GET" ? undefined : body });
      const text = await res.text();
      if (res.status >= 500 && res.status !== 501) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
    }),
    { numRuns: 1500 },
  );
});

test("random query parameters on every GET route never get a 500", async () => {
  const gets = routes.filter(([method]) => method === "GET");
  const query = fc.dictionary(fc.oneof(fieldNames, fc.constantFrom("page_size", "page_token", "status_filter", "expires_in_seconds", "prefix", "max_keys", "source_id"), fc.string()), weirdString.map((x) => x.slice(0, 2000)), { maxKeys: 4 });
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...gets), query, async ([, path], q) => {
      const res = await fetch(`${s.httpUrl}${path}?${new URLSearchParams(q)}`, { headers: headers() });
      const text = await res.text();
      if (res.status >= 500 && res.status !== 501) throw new Error(`GET ${path}?${new URLSearchParams(q)} answered ${res.status}: ${text.slice(0, 300)}`);
    }),
    { numRuns: 600 },
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
  const methods = SERVICES.flatMap((service) => service.methods.filter((m) => m.methodKind === "unary").map((m) => `/${service.typeName}/${m.name}`));
  expect(methods.length).toBeGreaterThan(60);
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
      { numRuns: 1500 },
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
const anInt = fc.oneof(fc.integer(), fc.constantFrom(0, -1, 2147483647, -2147483648));
const anInt64 = fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constantFrom(0n, -1n, 2n ** 63n - 1n)).map(String);
const aFloat = fc.oneof(fc.float({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom("NaN", "Infinity", "-Infinity"));
/** The collection of pushed vectors made before the fuzzers run (InsertVectors reaches past the lookup). */
let pushed = "";
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
  fc.record({ name: hostileValue, desc: hostileValue, quota: anInt64 }).map((r) => ({
    service: StorageService, method: "CreateBucket", request: { name: r.name, description: r.desc, storageQuotaBytes: r.quota },
  })),
  fc.record({ prefix: hostileValue, delimiter: hostileValue, token: hostileValue, max: anInt }).map((r) => ({
    service: StorageService, method: "ListObjects", request: { bucket: B, prefix: r.prefix, delimiter: r.delimiter, continuationToken: r.token, maxKeys: r.max },
  })),
  fc.record({ key: hostileValue, expires: anInt64 }).map((r) => ({
    service: StorageService, method: "GetObjectUrl", request: { bucket: B, key: r.key, expiresInSeconds: r.expires },
  })),
  fc.record({ origin: hostileValue, method: hostileValue, header: hostileValue, age: anInt }).map((r) => ({
    service: StorageService, method: "PutBucketCors", request: { name: B, rules: [{ allowedOrigins: [r.origin], allowedMethods: [r.method], allowedHeaders: [r.header], maxAgeSeconds: r.age }] },
  })),
  fc.record({ effect: hostileValue, action: hostileValue, resource: hostileValue, principal: hostileValue }).map((r) => ({
    service: StorageService, method: "SetBucketPolicy", request: { name: B, policy: { Version: "2012-10-17", Statement: [{ Effect: r.effect, Action: r.action, Resource: r.resource, Principal: r.principal }] } },
  })),
  // The endpoint answers nothing (port 9), so a scheduled sync of a source made here fails at once.
  fc.record({ name: hostileValue, root: hostileValue, bucket: hostileValue, interval: anInt64 }).map((r) => ({
    service: SourceService, method: "CreateSource",
    request: { bucket: B, provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: r.name, rootPath: r.root, syncIntervalSeconds: r.interval, externalS3: { endpoint: "http://127.0.0.1:9", bucket: r.bucket, accessKeyId: "AK", secretAccessKey: "secret" } },
  })),
  fc.record({ name: hostileValue, key: hostileValue, source: hostileValue }).map((r) => ({
    service: SourceService, method: "StoreCredential",
    request: { provider: "SOURCE_PROVIDER_EXTERNAL_S3", credentialType: "CREDENTIAL_TYPE_ACCESS_KEY", displayName: r.name, sourceId: r.source, accessKey: { accessKeyId: r.key, secretAccessKey: r.key } },
  })),
  fc.record({ text: hostileValue, collection: hostileValue, k: anInt, min: aFloat, prefix: hostileValue, mk: hostileValue, mv: hostileValue }).map((r) => ({
    service: VectorService, method: "Search", request: { bucket: B, text: r.text, collectionName: r.collection, topK: r.k, minScore: r.min, filter: { keyPrefix: r.prefix, metadata: { [r.mk]: r.mv } } },
  })),
  fc.record({ values: fc.array(aFloat, { maxLength: 8 }), k: anInt }).map((r) => ({
    service: VectorService, method: "Search", request: { bucket: B, vector: { values: r.values }, collectionName: "pushed", topK: r.k },
  })),
  fc.record({ name: hostileValue, dims: anInt, metric: hostileValue, model: hostileValue }).map((r) => ({
    service: VectorService, method: "AddVectorCollection", request: { bucket: B, name: r.name, dimensions: r.dims, distanceMetric: r.metric, embedModel: r.model },
  })),
  fc.record({ id: hostileValue, values: fc.array(aFloat, { maxLength: 8 }), content: hostileValue, mk: hostileValue, mv: hostileValue }).map((r) => ({
    service: VectorService, method: "InsertVectors", request: { bucket: B, collectionId: pushed, vectors: [{ id: r.id, values: r.values, content: r.content, metadata: { [r.mk]: r.mv } }] },
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
    { numRuns: 1500 },
  );
});

test("the well-behaved client was served throughout, and the server is still healthy", async () => {
  expect(goodCalls).toBeGreaterThan(10);
  expect(goodFailures).toEqual([]);
  expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
  expect((await fetch(`${s.httpUrl}/readyz`)).status).toBe(200);
});
