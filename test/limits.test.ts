/**
 * Input limits and hostile paths: object keys that try to leave their bucket read
 * nothing outside it, and oversized requests are refused on every door without crashing
 * the server or stopping it from serving a well-behaved client at the same time.
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { toBinary, create } from "@bufbuild/protobuf";
import { IngestService, TriggerIngestRequestSchema } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { connectClients, DOORS, type Clients } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
let clients: Clients;
const B = "kb-limits";
let pipelineId: string;

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "100" });
  clients = connectClients(s.httpUrl, s.grpcAddress);
  const r = await clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "p", scriptumTemplate: "text_embedding_index" });
  if (!r.ok) throw new Error(r.message);
  pipelineId = (r.body as { pipeline: { pipelineId: string } }).pipeline.pipelineId;
  s.putObject(B, "docs/ok.txt", "inside");
  writeFileSync(join(s.dataDir, "secret.txt"), "TOP SECRET");
  writeFileSync(join(s.dataDir, "buckets", "secret.txt"), "TOP SECRET");
  mkdirSync(join(s.dataDir, "buckets", B, "%2e%2e"), { recursive: true });
  symlinkSync(join(s.dataDir, "secret.txt"), join(s.dataDir, "buckets", B, "docs", "link.txt"));
  symlinkSync(join(s.dataDir, "buckets"), join(s.dataDir, "buckets", B, "up"));
});
afterAll(async () => {
  clients.close();
  await s.stop();
});

describe.each(DOORS)("through %s", (door) => {
  test.each<[string, string, string]>([
    // Keys are S3 keys: `..` and `/` spell a name, never a path out of the bucket.
    ["../", "../secret.txt", "not_found"],
    ["nested ../", "docs/../../secret.txt", "not_found"],
    ["absolute", "/etc/passwd", "not_found"],
    ["backslashes", "..\\secret.txt", "not_found"],
    ["%2e%2e/ (taken literally)", "%2e%2e/secret.txt", "not_found"],
    ["a symlink to a file out of the bucket", "docs/link.txt", "not_found"],
    ["a symlinked folder out of the bucket", "up/secret.txt", "not_found"],
  ])("a key with %s reads nothing outside the bucket", async (_what, key, code) => {
    const r = await clients.call(door, IngestService, "TriggerIngest", { bucket: B, object: { key }, pipelineId });
    expect(r).toMatchObject({ ok: false, code });
  });
});

test("a bucket name that tries to climb out is refused, by REST or by the byte plane", async () => {
  for (const path of ["/%2e%2e/ingest/jobs", "/..%2Fbuckets/ingest/jobs", "/kb-limits%2F..%2F../ingest/jobs"]) {
    const res = await fetch(s.httpUrl + path);
    expect([400, 404]).toContain(res.status);
    const text = await res.text();
    // REST answers JSON; a path it does not route is the byte plane's (S3 XML).
    const code = text.startsWith("{") ? (JSON.parse(text) as { code: string }).code : /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
    expect(["invalid_argument", "not_found", "InvalidBucketName", "NoSuchBucket", "InvalidArgument"]).toContain(code);
  }
});

test("no job ever read a file outside its bucket", async () => {
  const { rows } = await s.app.repo().pool.query("SELECT content FROM vector_chunks");
  expect(rows.map((r) => r.content).join()).not.toContain("TOP SECRET");
});

test("oversized requests are refused on every door while another client is served", async () => {
  const big = "x".repeat(2 * 1024 * 1024);
  const good = async () => {
    let served = 0;
    for (let i = 0; i < 40; i++) {
      const r = await clients.call("grpc", IngestService, "ListIngestJobs", { bucket: B, pageSize: 1 });
      if (r.ok) served++;
    }
    return served;
  };
  const hostile = async () => {
    const results: string[] = [];
    for (let i = 0; i < 5; i++) {
      const rest = await fetch(`${s.httpUrl}/${B}/ingest`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ object: { key: big } }) });
      results.push(`rest:${rest.status}`);
      const connect = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/TriggerIngest`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ bucket: B, object: { key: big } }),
      });
      results.push(`connect:${connect.status}`);
      const web = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/TriggerIngest`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: Buffer.alloc(2 * 1024 * 1024),
      });
      results.push(`grpcweb:${web.status}:${web.headers.get("grpc-status")}`);
      const bytes = toBinary(TriggerIngestRequestSchema, create(TriggerIngestRequestSchema, { bucket: B, object: { key: big } }));
      const code = await new Promise<number>((resolve) =>
        clients.grpc.makeUnaryRequest(
          "/dodil.k3.ingest.v1.IngestService/TriggerIngest",
          (b: Uint8Array) => Buffer.from(b),
          (b: Buffer) => b,
          bytes,
          new grpc.Metadata(),
          (err) => resolve(err?.code ?? 0),
        ),
      );
      results.push(`grpc:${code}`);
    }
    return results;
  };
  const [served, refused] = await Promise.all([good(), hostile()]);
  expect(served).toBe(40);
  // 413 on every HTTP protocol (Connect's own limit would answer 429, which clients retry).
  expect(new Set(refused)).toEqual(new Set(["rest:413", "connect:413", `grpcweb:413:${grpc.status.RESOURCE_EXHAUSTED}`, `grpc:${grpc.status.RESOURCE_EXHAUSTED}`]));
  // Still healthy.
  expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
});
