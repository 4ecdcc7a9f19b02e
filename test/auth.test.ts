/**
 * Bearer-token auth on every door: for every RPC through native gRPC, Connect, gRPC-Web
 * and REST — no token, a malformed header, an unknown, revoked or expired token, a reader
 * on a write, a token for another bucket and one of another organization each get their
 * exact code, and a valid token succeeds. Tokens are made and revoked with the real CLI.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JsonObject } from "@bufbuild/protobuf";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { newToken, type Grant } from "../src/domain/auth";
import { connectClients, DOORS, type CallResult, type Clients, type Door } from "./helpers/clients";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

const run = promisify(execFile);
const ROOT = join(__dirname, "..");

jest.setTimeout(60_000);

let s: TestServers;
let clients: Clients;
const B = "kb-auth";
const T: Record<string, string> = {};
let ids: { pipelineId: string; ruleId: string; jobId: string };

/** The tokens CLI as a user runs it (on the TypeScript sources). */
function cli(...args: string[]) {
  return run(process.execPath, ["-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), "tokens", ...args], {
    env: { ...process.env, DATABASE_URL: s.db.url, K3_DATA_DIR: s.dataDir },
    timeout: 30_000,
  });
}

async function insertToken(org: string, grants: Grant[], expiresAt = 0): Promise<string> {
  const { token, tokenId, secretHash } = newToken();
  await s.app.repo().tokens.tokenInsert({ tokenId, org, secretHash, name: "test", grants, createdAt: Date.now(), expiresAt, revokedAt: 0 });
  return token;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function ok(r: CallResult): Record<string, Record<string, string>> {
  if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
  return r.body as Record<string, Record<string, string>>;
}

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  clients = connectClients(s.httpUrl, s.grpcAddress);
  s.putObject(B, "docs/a.txt", "hello");
  T.admin = readFileSync(join(s.dataDir, "admin-token"), "utf8").trim();

  const created = await cli("create", "--org", "default", "--bucket", B, "--role", "writer", "--name", "ci writer");
  T.writer = created.stdout.trim();
  expect(T.writer).toMatch(/^k3t_[A-Za-z0-9_-]{43}$/);
  expect(created.stderr).toContain("shown only once");
  // --org left out: the default organization, the bootstrap admin's.
  T.reader = (await cli("create", "--bucket", B, "--role", "reader", "--name", "no org given")).stdout.trim();
  T.otherBucket = await insertToken("default", [{ bucket: "kb-elsewhere", role: "admin" }]);
  T.otherOrg = await insertToken("beta", [{ bucket: B, role: "writer" }]);
  T.expired = await insertToken("default", [{ bucket: B, role: "writer" }], Date.now() - 1000);
  const revoked = JSON.parse((await cli("create", "--org", "default", "--bucket", "*", "--role", "writer", "--json")).stdout);
  T.revoked = revoked.token;
  // Warm the server's cache with the token, then revoke it: the revocation must win at once.
  expect((await clients.call("rest", IngestService, "ListIngestJobs", { bucket: B }, bearer(T.revoked))).ok).toBe(true);
  expect((await cli("revoke", revoked.tokenId)).stderr).toContain(`revoked ${revoked.tokenId}`);

  const admin = bearer(T.admin);
  const pipelineId = ok(await clients.call("grpc", PipelineService, "CreatePipeline", { bucket: B, name: "fixed", scriptumTemplate: "noop" }, admin))
    .pipeline.pipelineId;
  const ruleId = ok(await clients.call("grpc", IngestService, "CreateRule", { bucket: B, name: "fixed", pipelineId }, admin)).rule.ruleId;
  const jobId = ok(await clients.call("grpc", IngestService, "TriggerIngest", { bucket: B, object: { key: "docs/a.txt" }, pipelineId }, admin)).job
    .jobId;
  ids = { pipelineId, ruleId, jobId };
});

afterAll(async () => {
  clients.close();
  await s.stop();
});

type Method = { service: typeof IngestService | typeof PipelineService; name: string; write: boolean; request: () => JsonObject };
const METHODS: Method[] = [
  { service: IngestService, name: "TriggerIngest", write: true, request: () => ({ bucket: B, object: { key: "docs/a.txt" }, pipelineId: ids.pipelineId }) },
  { service: IngestService, name: "GetIngestStatus", write: false, request: () => ({ bucket: B, jobId: ids.jobId }) },
  { service: IngestService, name: "ListIngestJobs", write: false, request: () => ({ bucket: B }) },
  { service: IngestService, name: "CancelIngestJob", write: true, request: () => ({ bucket: B, jobId: ids.jobId }) },
  { service: IngestService, name: "CreateRule", write: true, request: () => ({ bucket: B, name: "r", pipelineId: ids.pipelineId }) },
  { service: IngestService, name: "ListRules", write: false, request: () => ({ bucket: B }) },
  { service: IngestService, name: "GetRule", write: false, request: () => ({ bucket: B, ruleId: ids.ruleId }) },
  { service: IngestService, name: "UpdateRule", write: true, request: () => ({ bucket: B, ruleId: ids.ruleId, description: "x" }) },
  { service: IngestService, name: "DeleteRule", write: true, request: () => ({ bucket: B, ruleId: ids.ruleId }) },
  { service: PipelineService, name: "CreatePipeline", write: true, request: () => ({ bucket: B, name: `p-${Math.random()}`, scriptumTemplate: "noop" }) },
  { service: PipelineService, name: "ListPipelines", write: false, request: () => ({ bucket: B }) },
  { service: PipelineService, name: "GetPipeline", write: false, request: () => ({ bucket: B, pipelineId: ids.pipelineId }) },
  { service: PipelineService, name: "UpdatePipeline", write: true, request: () => ({ bucket: B, pipelineId: ids.pipelineId, description: "x" }) },
  { service: PipelineService, name: "DeletePipeline", write: true, request: () => ({ bucket: B, pipelineId: ids.pipelineId }) },
];

const UNAUTHENTICATED: Array<[string, () => Record<string, string>, RegExp]> = [
  ["no token", () => ({}), /missing Authorization header/],
  ["a malformed header", () => ({ authorization: `Token ${T.writer}` }), /malformed Authorization header/],
  ["an empty bearer", () => ({ authorization: "Bearer" }), /malformed Authorization header/],
  ["an unknown token", () => bearer("k3t_" + "A".repeat(43)), /unknown token/],
  ["a revoked token", () => bearer(T.revoked), /this token was revoked/],
  ["an expired token", () => bearer(T.expired), /this token has expired/],
];

describe.each(DOORS)("through %s", (door: Door) => {
  test.each(METHODS.map((m) => [m.name, m] as const))("%s: every unauthenticated call is UNAUTHENTICATED", async (_n, m) => {
    for (const [what, headers, message] of UNAUTHENTICATED) {
      const r = await clients.call(door, m.service, m.name, m.request(), headers());
      expect({ what, ...r }).toMatchObject({ what, ok: false, code: "unauthenticated" });
      if (!r.ok) {
        expect(r.message).toMatch(message);
        if (door === "rest") {
          expect(r.httpStatus).toBe(401);
          expect(r.wwwAuthenticate).toMatch(/^Bearer/);
        }
      }
    }
  });

  test.each(METHODS.map((m) => [m.name, m] as const))("%s: wrong bucket, wrong role, wrong organization", async (_n, m) => {
    const other = await clients.call(door, m.service, m.name, m.request(), bearer(T.otherBucket));
    expect(other).toMatchObject({ ok: false, code: "permission_denied" });
    if (!other.ok && door === "rest") expect(other.httpStatus).toBe(403);
    expect((other as { message: string }).message).toContain(`for bucket "${B}"`);

    const reader = await clients.call(door, m.service, m.name, m.request(), bearer(T.reader));
    if (m.write) {
      expect(reader).toMatchObject({ ok: false, code: "permission_denied" });
      expect((reader as { message: string }).message).toContain(`this token has no writer grant for bucket "${B}"`);
    } else {
      expect(reader.ok).toBe(true);
    }

    const claimed = await clients.call(door, m.service, m.name, m.request(), { ...bearer(T.writer), "x-organization-id": "beta" });
    expect(claimed).toMatchObject({ ok: false, code: "permission_denied" });

    // Another organization's token sees none of this organization's rows.
    const foreign = await clients.call(door, m.service, m.name, m.request(), bearer(T.otherOrg));
    if (m.name.startsWith("List")) {
      expect(foreign.ok).toBe(true);
      const body = JSON.stringify((foreign as { body: unknown }).body);
      expect(body).not.toContain(ids.pipelineId);
      expect(body).not.toContain(ids.jobId);
      expect(body).not.toContain(ids.ruleId);
    } else if (m.name === "CreatePipeline") {
      expect(foreign.ok).toBe(true); // in its own organization
    } else {
      expect(foreign).toMatchObject({ ok: false, code: "not_found" });
    }
  });

  test("a valid token succeeds on every RPC", async () => {
    const h = { ...bearer(T.writer), "x-organization-id": "default" };
    const call = async (service: Method["service"], name: string, req: JsonObject) => {
      const r = await clients.call(door, service, name, { bucket: B, ...req }, h);
      return ok(r);
    };
    const pipelineId = (await call(PipelineService, "CreatePipeline", { name: `valid-${door}`, scriptumTemplate: "noop" })).pipeline.pipelineId;
    await call(PipelineService, "GetPipeline", { pipelineId });
    await call(PipelineService, "ListPipelines", {});
    await call(PipelineService, "UpdatePipeline", { pipelineId, description: "d" });
    const ruleId = (await call(IngestService, "CreateRule", { name: "r", pipelineId })).rule.ruleId;
    await call(IngestService, "GetRule", { ruleId });
    await call(IngestService, "ListRules", {});
    await call(IngestService, "UpdateRule", { ruleId, enabled: false });
    const jobId = (await call(IngestService, "TriggerIngest", { object: { key: "docs/a.txt" }, ruleId })).job.jobId;
    await call(IngestService, "GetIngestStatus", { jobId });
    await call(IngestService, "ListIngestJobs", {});
    expect((await call(IngestService, "CancelIngestJob", { jobId })).job.status).toBe("INGEST_STATUS_CANCELLED");
    await call(IngestService, "DeleteRule", { ruleId });
    await call(PipelineService, "DeletePipeline", { pipelineId });
  });
});

test("nothing the refused calls attempted took effect", async () => {
  const admin = bearer(T.admin);
  expect(ok(await clients.call("rest", IngestService, "GetIngestStatus", { bucket: B, jobId: ids.jobId }, admin)).job.status).toBe(
    "INGEST_STATUS_PENDING",
  );
  expect(ok(await clients.call("rest", IngestService, "GetRule", { bucket: B, ruleId: ids.ruleId }, admin)).rule.description).toBe("");
  expect(ok(await clients.call("rest", PipelineService, "GetPipeline", { bucket: B, pipelineId: ids.pipelineId }, admin)).pipeline.description).toBe("");
});

test("the first start wrote an admin token file (0600) that works; the CLI lists tokens without secrets", async () => {
  const path = join(s.dataDir, "admin-token");
  expect(statSync(path).mode & 0o777).toBe(0o600);
  const res = await fetch(`${s.httpUrl}/${B}/ingest/jobs`, { headers: bearer(T.admin) });
  expect(res.status).toBe(200);
  const listed = JSON.parse((await cli("list", "--json")).stdout) as Array<Record<string, string>>;
  expect(listed.map((t) => t.state).sort()).toEqual(["active", "active", "active", "active", "active", "expired", "revoked"]);
  expect(listed.find((t) => t.name === "bootstrap admin")).toMatchObject({ org: "default", grants: "*:admin" });
  expect(listed.find((t) => t.name === "no org given")).toMatchObject({ org: "default", grants: `${B}:reader` });
  expect(JSON.stringify(listed)).not.toContain("k3t_");
  const bad = await cli("create", "--org", "Bad Org", "--bucket", B, "--role", "writer").catch((e: { code: number; stderr: string }) => e);
  expect(bad).toMatchObject({ code: 2 });
  expect((bad as { stderr: string }).stderr).toContain('--org "Bad Org" must be');
});

test("two organizations with the same bucket name never see each other's jobs, rules or pipelines", async () => {
  const acme = await insertToken("acme", [{ bucket: "kb-shared", role: "writer" }]);
  const beta = await insertToken("beta", [{ bucket: "kb-shared", role: "writer" }]);
  const seen: Record<string, string[]> = {};
  for (const [org, token] of [["acme", acme], ["beta", beta]] as const) {
    // Each organization's objects live in its own folder: <dataDir>/orgs/<org>/buckets/<bucket>.
    mkdirSync(join(s.dataDir, "orgs", org, "buckets", "kb-shared", "docs"), { recursive: true });
    writeFileSync(join(s.dataDir, "orgs", org, "buckets", "kb-shared", "docs", `${org}.txt`), `${org} data`);
    const h = bearer(token);
    const p = ok(await clients.call("rest", PipelineService, "CreatePipeline", { bucket: "kb-shared", name: "embed", scriptumTemplate: "noop" }, h)).pipeline
      .pipelineId;
    const r = ok(await clients.call("rest", IngestService, "CreateRule", { bucket: "kb-shared", name: "all", pipelineId: p }, h)).rule.ruleId;
    const j = ok(await clients.call("rest", IngestService, "TriggerIngest", { bucket: "kb-shared", object: { key: `docs/${org}.txt` } }, h)).job.jobId;
    seen[org] = [p, r, j];
    // The other organization's object is not there for this one.
    const other = org === "acme" ? "beta" : "acme";
    expect(await clients.call("rest", IngestService, "TriggerIngest", { bucket: "kb-shared", object: { key: `docs/${other}.txt` } }, h)).toMatchObject({
      ok: false,
      code: "not_found",
    });
  }
  for (const [org, token, other] of [["acme", acme, "beta"], ["beta", beta, "acme"]] as const) {
    const h = bearer(token);
    const lists = [
      await clients.call("grpc", IngestService, "ListIngestJobs", { bucket: "kb-shared" }, h),
      await clients.call("grpc", IngestService, "ListRules", { bucket: "kb-shared" }, h),
      await clients.call("grpc", PipelineService, "ListPipelines", { bucket: "kb-shared" }, h),
    ].map((r) => JSON.stringify(ok(r)));
    for (const id of seen[org]) expect(lists.join()).toContain(id);
    for (const id of seen[other]) expect(lists.join()).not.toContain(id);
    for (const [i, [method, field]] of ([["GetPipeline", "pipelineId"], ["GetRule", "ruleId"], ["GetIngestStatus", "jobId"]] as const).entries()) {
      const service = method === "GetPipeline" ? PipelineService : IngestService;
      expect(await clients.call("connect", service, method, { bucket: "kb-shared", [field]: seen[other][i] }, h)).toMatchObject({ ok: false, code: "not_found" });
    }
  }
});

test("reflection is open by default", async () => {
  const { stdout } = await run(join(ROOT, "node_modules/.bin/buf"), ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", `http://${s.grpcAddress}`]);
  expect(stdout).toContain("dodil.k3.ingest.v1.IngestService");
});

test("K3_REFLECTION_AUTH=on puts reflection behind a token", async () => {
  const locked = await startServers({ K3_AUTH: "on", K3_REFLECTION_AUTH: "on" });
  try {
    const token = readFileSync(join(locked.dataDir, "admin-token"), "utf8").trim();
    const buf = (...extra: string[]) =>
      run(join(ROOT, "node_modules/.bin/buf"), ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...extra, "--list-services", `http://${locked.grpcAddress}`]);
    const refused = await buf().catch((e: { stderr: string }) => e);
    // buf words the UNAUTHENTICATED status in its own way.
    expect(String((refused as { stderr: string }).stderr)).toMatch(/unauthenticated|not authenticated/);
    const { stdout } = await buf("--reflect-header", `authorization: Bearer ${token}`);
    expect(stdout).toContain("dodil.k3.pipeline.v1.PipelineService");
  } finally {
    await locked.stop();
  }
});

test("a token created while the server runs works at once (its cached absence is forgotten)", async () => {
  const { token, tokenId, secretHash } = newToken();
  expect(await clients.call("rest", IngestService, "ListIngestJobs", { bucket: B }, bearer(token))).toMatchObject({ code: "unauthenticated" });
  await s.app.repo().tokens.tokenInsert({ tokenId, org: "default", secretHash, name: "late", grants: [{ bucket: B, role: "reader" }], createdAt: Date.now(), expiresAt: 0, revokedAt: 0 });
  await waitFor("the new token to be accepted", async () =>
    (await clients.call("rest", IngestService, "ListIngestJobs", { bucket: B }, bearer(token))).ok ? true : undefined,
  );
});
