/**
 * StorageService buckets through REST and gRPC: create, get, list (search, paging),
 * update, delete (refused while objects remain unless forced), exact aggregates, adoption
 * of buckets that existed only as folders or by their config, and who may do what.
 */
import { mkdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { StorageService } from "../gen/dodil/k3/storage/v1/storage_pb";
import { newToken, type Grant } from "../src/domain/auth";
import { connectClients } from "./helpers/clients";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";

let s: TestServers;
const admin: Record<string, string> = {};

async function token(org: string, grants: Grant[]): Promise<string> {
  const { token: t, tokenId, secretHash } = newToken();
  await s.app.repo().tokens.tokenInsert({ tokenId, org, secretHash, name: "t", grants, createdAt: Date.now(), expiresAt: 0, revokedAt: 0 });
  return t;
}

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  admin.authorization = `Bearer ${await token("default", [{ bucket: "*", role: "admin" }])}`;
});
afterAll(() => s.stop());

const http = jsonClient(() => s.httpUrl, admin);

test("create, get, update and list a bucket over REST; a duplicate is 409 and a bad name 400", async () => {
  const created = await http("POST", "/admin/buckets", { name: "kb-alpha", description: "Contracts corpus", storageQuotaBytes: "1000000" });
  expect(created.status).toBe(200);
  expect(created.json.bucket).toMatchObject({
    name: "kb-alpha",
    description: "Contracts corpus",
    status: "BUCKET_STATUS_ACTIVE",
    accessMode: "BUCKET_ACCESS_MODE_PRIVATE",
    storageQuotaBytes: "1000000",
    storageUsedBytes: "0",
    objectCount: "0",
    sourceCount: "1",
    ruleCount: "0",
    indexCount: "0",
  });
  expect(created.json.bucket.internalSourceId).toMatch(/^src_/);
  expect(existsSync(join(s.dataDir, "buckets", "kb-alpha"))).toBe(true);

  const again = await http("POST", "/admin/buckets", { name: "kb-alpha" });
  expect(again.status).toBe(409);
  expect(again.json).toMatchObject({ code: "already_exists", message: 'bucket "kb-alpha" already exists' });
  const bad = await http("POST", "/admin/buckets", { name: "Bad_Name" });
  expect(bad.status).toBe(400);
  expect(bad.json.message).toMatch(/^name "Bad_Name" is not a valid bucket name/);

  const patched = await http("PATCH", "/admin/buckets/kb-alpha", { description: "RAG corpus", objectCount: "99" });
  // Server-maintained counts are not fields of the update: sending one is an unknown field.
  expect(patched.status).toBe(400);
  const ok = await http("PATCH", "/admin/buckets/kb-alpha", { description: "RAG corpus", storageQuotaBytes: "0" });
  expect(ok.json.bucket).toMatchObject({ description: "RAG corpus", storageQuotaBytes: "0", objectCount: "0" });
  expect(Number(ok.json.bucket.updatedAt)).toBeGreaterThanOrEqual(Number(created.json.bucket.createdAt));

  await http("POST", "/admin/buckets", { name: "kb-beta", description: "rag notes" });
  await http("POST", "/admin/buckets", { name: "kb-gamma" });
  const search = await http("GET", "/admin/buckets?search=RAG");
  expect(search.json.buckets.map((b: { name: string }) => b.name)).toEqual(["kb-beta", "kb-alpha"]);
  expect(search.json.pagination.totalCount).toBe("2");
  const names: string[] = [];
  let pageToken = "";
  do {
    const page = await http("GET", `/admin/buckets?page_size=1${pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : ""}`);
    names.push(...page.json.buckets.map((b: { name: string }) => b.name));
    pageToken = page.json.pagination.nextPageToken;
  } while (pageToken);
  expect(names.filter((n) => n.startsWith("kb-") && ["kb-alpha", "kb-beta", "kb-gamma"].includes(n))).toEqual(["kb-gamma", "kb-beta", "kb-alpha"]);
});

test("aggregates are exact: rules, index pipelines, and the objects of an adopted folder", async () => {
  // A bucket that exists only as a folder, from an earlier version.
  const dir = join(s.dataDir, "buckets", "kb-legacy", "docs");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "a.txt"), "12345");
  writeFileSync(join(dir, "b.csv"), "id\n1\n");
  const got = await http("GET", "/admin/buckets/kb-legacy");
  expect(got.status).toBe(200);
  expect(got.json.bucket).toMatchObject({ name: "kb-legacy", objectCount: "2", storageUsedBytes: String(5 + 5), sourceCount: "1" });

  const pipe = (await http("POST", "/kb-legacy/pipelines", { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  await http("POST", "/kb-legacy/pipelines", { name: "free", scriptum_template: "noop" });
  await http("POST", "/kb-legacy/rules", { name: "docs", pipeline_id: pipe, include_patterns: ["docs/**"] });
  await http("POST", "/kb-legacy/rules", { name: "csv", pipeline_id: pipe, include_mime_types: ["text/csv"] });
  const after = await http("GET", "/admin/buckets/kb-legacy");
  expect(after.json.bucket).toMatchObject({ ruleCount: "2", indexCount: "1", objectCount: "2" });
  // Catalogued objects remain objects: a trigger by key still works.
  expect((await http("POST", "/kb-legacy/ingest", { object: { key: "docs/a.txt" } })).status).toBe(200);
});

test("a bucket known only by its rules and pipelines is adopted by ListBuckets", async () => {
  await http("POST", "/kb-config-only/pipelines", { name: "noop", scriptum_template: "noop" });
  const list = await http("GET", "/admin/buckets?search=config-only");
  expect(list.json.buckets).toHaveLength(1);
  expect(list.json.buckets[0]).toMatchObject({ name: "kb-config-only", objectCount: "0", sourceCount: "1" });
});

test("delete is refused while objects remain, unless forced; force removes the bucket with everything in it", async () => {
  const dir = join(s.dataDir, "buckets", "kb-doomed");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "x.txt"), "x");
  const pipe = (await http("POST", "/kb-doomed/pipelines", { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
  await http("POST", "/kb-doomed/rules", { name: "all", pipeline_id: pipe });
  await http("POST", "/kb-doomed/ingest", { object: { key: "x.txt" } });
  const refused = await http("DELETE", "/admin/buckets/kb-doomed");
  expect(refused.status).toBe(400);
  expect(refused.json).toMatchObject({ code: "failed_precondition", message: 'bucket "kb-doomed" holds 1 objects; delete them first, or pass force to delete them with it' });
  expect((await http("DELETE", "/admin/buckets/kb-doomed?force=true")).status).toBe(200);
  expect((await http("GET", "/admin/buckets/kb-doomed")).status).toBe(404);
  expect(existsSync(dir)).toBe(false);
  expect((await http("GET", "/kb-doomed/rules")).json.rules).toEqual([]);
  expect((await http("GET", "/kb-doomed/ingest/jobs")).json.jobs).toEqual([]);
  // An empty bucket goes without force.
  await http("POST", "/admin/buckets", { name: "kb-empty" });
  expect((await http("DELETE", "/admin/buckets/kb-empty")).status).toBe(200);
  expect((await http("DELETE", "/admin/buckets/kb-empty")).status).toBe(404);
});

test("bucket administration needs admin; a token sees only the buckets it has grants on, and never another org's", async () => {
  await http("POST", "/admin/buckets", { name: "kb-mine" });
  await http("POST", "/admin/buckets", { name: "kb-theirs" });
  const writer = jsonClient(() => s.httpUrl, { authorization: `Bearer ${await token("default", [{ bucket: "kb-mine", role: "writer" }])}` });
  const denied = await writer("POST", "/admin/buckets", { name: "kb-new" });
  expect(denied.status).toBe(403);
  expect(denied.json.message).toMatch(/no admin grant for bucket "kb-new" \(CreateBucket needs admin\)/);
  expect((await writer("GET", "/admin/buckets/kb-mine")).status).toBe(200);
  expect((await writer("GET", "/admin/buckets/kb-theirs")).status).toBe(403);
  const listed = await writer("GET", "/admin/buckets");
  expect(listed.json.buckets.map((b: { name: string }) => b.name)).toEqual(["kb-mine"]);
  const other = jsonClient(() => s.httpUrl, { authorization: `Bearer ${await token("other-org", [{ bucket: "*", role: "admin" }])}` });
  expect((await other("GET", "/admin/buckets/kb-mine")).status).toBe(404);
  expect((await other("GET", "/admin/buckets")).json.buckets).toEqual([]);
  // The same name is free in another organization.
  expect((await other("POST", "/admin/buckets", { name: "kb-mine" })).status).toBe(200);
});

test("the same service answers on native gRPC and Connect", async () => {
  const clients = connectClients(s.httpUrl, s.grpcAddress);
  try {
    const g = await clients.call("grpc", StorageService, "CreateBucket", { name: "kb-grpc", description: "via grpc" }, admin);
    expect(g).toMatchObject({ ok: true, body: { bucket: { name: "kb-grpc", description: "via grpc", objectCount: "0" } } });
    const c = await clients.call("connect", StorageService, "GetBucket", { name: "kb-grpc" }, admin);
    expect(c).toMatchObject({ ok: true, body: { bucket: { name: "kb-grpc", sourceCount: "1" } } });
    const missing = await clients.call("grpc", StorageService, "GetBucket", { name: "kb-nowhere" }, admin);
    expect(missing).toMatchObject({ ok: false, code: "not_found" });
  } finally {
    clients.close();
  }
});
