/**
 * Sources beyond the bucket itself, and sync across processes: an external S3 source on
 * moto_server (started here) ingests its objects end to end without copying them, keeps
 * its secret out of every answer, and fails a discovery clearly on bad credentials; two
 * server instances polling a 1 s source start exactly one discovery per period; a server
 * killed with SIGKILL mid-discovery resumes after restart and dispatches every object
 * exactly once.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { lookup } from "node:dns/promises";
import { hostname, tmpdir } from "node:os";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { Client } from "pg";
import { build, type App } from "../src/app";
import { isInternalAddress } from "../src/domain/url-policy";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { signRequest } from "../src/s3/sigv4";
import { createTestDb, type TestDb } from "./helpers/db";
import { jsonClient, type J } from "./helpers/http";
import { freePort, startProcess } from "./helpers/processes";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";
import { startMoto, type Moto } from "./helpers/moto";

jest.setTimeout(180_000);


describe("an external S3-compatible source", () => {
  const UP = { accessKeyId: "ext-key", secretAccessKey: "ext-secret-do-not-leak", region: "us-east-1" };
  let moto: Moto;
  let endpoint = "";
  let s: TestServers;
  const lines: string[] = [];
  const http = jsonClient(() => s.httpUrl);

  async function put(path: string, body: string | Buffer, more: Record<string, string> = {}): Promise<void> {
    const headers = { host: new URL(endpoint).host, ...more };
    const signed = signRequest({ method: "PUT", path, rawQuery: "", headers }, UP, "UNSIGNED-PAYLOAD");
    const res = await fetch(`${endpoint}${path}`, { method: "PUT", headers: { ...headers, ...signed }, body });
    expect(res.status).toBe(200);
  }

  beforeAll(async () => {
    moto = await startMoto();
    endpoint = moto.endpoint;
    await put("/team-docs", "");
    await put("/team-docs/kb/guide.txt", "external words ".repeat(20));
    await put("/team-docs/kb/deep/faq.md", "# FAQ\n\nanswers from elsewhere");
    await put("/team-docs/outside/skip.txt", "not under the root path");
    await put("/team-docs/packed/notes.txt", gzipSync("penguins of the southern ocean ".repeat(10)), { "content-encoding": "gzip" });
    for (let i = 0; i < 300; i++) await put(`/team-docs/many/m${String(i).padStart(3, "0")}.txt`, `many ${i}`);
    // Small batches, so that a discovery of "many/" is still running when the test deletes its source.
    s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "50", K3_DISCOVERY_BATCH: "5" }, { logLines: lines });
  });
  afterAll(async () => {
    await s?.stop();
    await moto?.stop();
  });

  test("discovers and ingests its objects in place; the secret is never shown; bad credentials fail the discovery clearly", async () => {
    await http("POST", "/admin/buckets", { name: "kb-ext" });
    const pipe = (await http("POST", "/kb-ext/pipelines", { name: "embed", scriptum_template: "text_embedding_index", options: { chunk_size: "100", chunk_overlap: "0" } })).json.pipeline.pipelineId;
    const created = await http("POST", "/kb-ext/sources", {
      provider: "SOURCE_PROVIDER_EXTERNAL_S3",
      name: "team docs",
      root_path: "kb",
      external_s3: { endpoint, bucket: "team-docs", region: "us-east-1", access_key_id: UP.accessKeyId, secret_access_key: UP.secretAccessKey },
    });
    expect(created.status).toBe(200);
    const src = created.json.source;
    expect(src).toMatchObject({ provider: "SOURCE_PROVIDER_EXTERNAL_S3", rootPath: "kb", externalS3: { endpoint, bucket: "team-docs", accessKeyId: UP.accessKeyId } });
    expect(src.externalS3.secretAccessKey ?? "").toBe("");
    // A rule bound to this source; the bucket's own uploads do not go through it.
    await http("POST", "/kb-ext/rules", { name: "ext", pipeline_id: pipe, source_id: src.sourceId, include_patterns: ["**"] });

    expect((await http("POST", `/kb-ext/sources/${src.sourceId}/discover`, {})).json.accepted).toBe(true);
    const jobs = await waitFor("the external objects' jobs", async () => {
      const list = (await http("GET", `/kb-ext/ingest/jobs?source_id=${src.sourceId}`)).json.jobs as J[];
      return list.length === 2 && list.every((j) => j.status === "INGEST_STATUS_COMPLETED") ? list : undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    expect(jobs.map((j) => j.object.key).sort()).toEqual(["deep/faq.md", "guide.txt"]);
    expect(jobs.find((j) => j.object.key === "guide.txt")).toMatchObject({ chunksCreated: 4, sourceId: src.sourceId }); // 300 characters in whole words of 15
    // The jobs can end before the discovery that made them records its own end.
    const status = await waitFor("the discovery's end", async () => {
      const st = (await http("GET", `/kb-ext/sources/${src.sourceId}/sync`)).json;
      return st.syncing ? undefined : st;
    });
    expect(status).toMatchObject({ syncing: false, totalObjects: "2", indexedObjects: "2", last: { state: "completed", newObjects: "2" }, jobCounts: { INGEST_STATUS_COMPLETED: "2" } });
    // A direct upload of the bucket is not routed by the external source's rule.
    expect((await fetch(`${s.httpUrl}/kb-ext/own.txt`, { method: "PUT", body: "mine" })).status).toBe(200);
    expect(((await http("GET", "/kb-ext/ingest/jobs")).json.jobs as J[]).filter((j) => j.object.key === "own.txt")).toEqual([]);

    // Wrong credentials: the discovery fails, saying so, and the source shows the error.
    await http("PATCH", `/kb-ext/sources/${src.sourceId}`, { external_s3: { endpoint, bucket: "no-such-bucket", region: "us-east-1", access_key_id: UP.accessKeyId, secret_access_key: "" } });
    await http("POST", `/kb-ext/sources/${src.sourceId}/discover`, {});
    const failed = await waitFor("the failed discovery", async () => {
      const st = (await http("GET", `/kb-ext/sources/${src.sourceId}/sync`)).json;
      return st.last?.state === "failed" ? st : undefined;
    }, { timeoutMs: 30_000 });
    expect(failed.last.error).toMatch(/the S3 server refused to list the bucket: 404 NoSuchBucket/);
    expect((await http("GET", `/kb-ext/sources/${src.sourceId}`)).json.source).toMatchObject({ status: "SOURCE_STATUS_ERROR", lastError: failed.last.error });
    const all = JSON.stringify([failed, created.json, (await http("GET", "/kb-ext/sources")).json]) + lines.join("\n");
    expect(all).not.toContain(UP.secretAccessKey);

    // Deleting the source removes its objects' outputs and its checkpoint.
    expect((await http("DELETE", `/kb-ext/sources/${src.sourceId}`)).status).toBe(400); // a rule is bound to it
    const rule = ((await http("GET", `/kb-ext/rules?source_id=${src.sourceId}`)).json.rules as J[])[0];
    await http("DELETE", `/kb-ext/rules/${rule.ruleId}`);
    expect((await http("DELETE", `/kb-ext/sources/${src.sourceId}`)).status).toBe(200);
    const db = new Client({ connectionString: s.db.url });
    await db.connect();
    try {
      expect((await db.query("SELECT count(*)::int AS n FROM vector_chunks WHERE bucket = 'kb-ext' AND object_key = 'guide.txt'")).rows[0].n).toBe(0);
    } finally {
      await db.end();
    }
  });

  test("an object stored with Content-Encoding gzip (aws s3 cp --content-encoding gzip) is indexed as its text", async () => {
    await http("POST", "/admin/buckets", { name: "kb-packed" });
    const pipe = (await http("POST", "/kb-packed/vector/pipelines", { name: "packed", template_id: "text_embedding_index" })).json.embedPipelineId;
    await http("POST", "/kb-packed/rules", { name: "all", pipeline_id: pipe });
    const src = (await http("POST", "/kb-packed/sources", { provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: "packed", root_path: "packed/", external_s3: { endpoint, bucket: "team-docs", access_key_id: UP.accessKeyId, secret_access_key: UP.secretAccessKey } })).json.source;
    await http("POST", `/kb-packed/sources/${src.sourceId}/discover`, {});
    const job = await waitFor("the packed object's job", async () => {
      const j = ((await http("GET", `/kb-packed/ingest/jobs?source_id=${src.sourceId}`)).json.jobs as J[])[0];
      return j && ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED"].includes(j.status) ? j : undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    expect(job).toMatchObject({ status: "INGEST_STATUS_COMPLETED", object: { key: "notes.txt" } });
    const found = (await http("POST", "/kb-packed/vector/search", { text: "penguins", include_content: true })).json.results as J[];
    expect(found.map((r) => r.content)).toEqual([("penguins of the southern ocean ".repeat(10)).trim()]);
  });

  test("a source's endpoint is held to K3_SOURCE_ALLOW: loopback and link-local refused when given, and when its name resolves there at connection", async () => {
    const port = new URL(endpoint).port;
    const open = await startServers({ K3_ROLE: "all", K3_POLL_MS: "50", K3_SOURCE_ALLOW: "" });
    const ohttp = jsonClient(() => open.httpUrl);
    const source = (ep: string) => ohttp("POST", "/kb-guard/sources", { provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: `s${Math.random()}`, root_path: "kb/", external_s3: { endpoint: ep, bucket: "team-docs", access_key_id: UP.accessKeyId, secret_access_key: UP.secretAccessKey } });
    try {
      await ohttp("POST", "/admin/buckets", { name: "kb-guard" });
      for (const ep of [endpoint, `http://localhost:${port}`, "http://169.254.169.254", `http://[::ffff:127.0.0.1]:${port}`]) {
        const r = await source(ep);
        expect([ep, r.status, r.json.message]).toEqual([ep, 400, expect.stringMatching(/^external_s3.endpoint host ".*" is a loopback or link-local address; external S3 sources go there only when K3_SOURCE_ALLOW names it$/)]);
      }
      // A name (this machine's) that resolves to loopback passes the first check; the connection is refused.
      const name = hostname();
      expect([name, isInternalAddress((await lookup(name)).address)]).toEqual([name, true]);
      const created = await source(`http://${name}:${port}`);
      expect(created.status).toBe(200);
      const id = created.json.source.sourceId;
      await ohttp("POST", `/kb-guard/sources/${id}/discover`, {});
      const failed = await waitFor("the refused discovery", async () => {
        const st = (await ohttp("GET", `/kb-guard/sources/${id}/sync`)).json;
        return st.last?.state === "failed" ? st : undefined;
      }, { timeoutMs: 30_000 });
      expect(failed.last.error).toMatch(new RegExp(`^the S3 server could not be reached \\(${name} resolves to 127\\.\\d+\\.\\d+\\.\\d+, a loopback or link-local address; add it to K3_SOURCE_ALLOW to connect there\\)$`));
      expect(failed.last.scanned).toBe("0");
    } finally {
      await open.stop();
    }
  });

  test("a source deleted during its discovery stops it cleanly: cancelled, nothing of it left", async () => {
    await http("POST", "/admin/buckets", { name: "kb-gone" });
    const src = (await http("POST", "/kb-gone/sources", { provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: "many", root_path: "many/", external_s3: { endpoint, bucket: "team-docs", access_key_id: UP.accessKeyId, secret_access_key: UP.secretAccessKey } })).json.source;
    const disc = (await http("POST", `/kb-gone/sources/${src.sourceId}/discover`, {})).json.jobId;
    await waitFor("the discovery to be under way", async () => {
      const cur = (await http("GET", `/kb-gone/sources/${src.sourceId}/sync`)).json.current;
      return cur && Number(cur.scanned) > 0 ? true : undefined;
    }, { timeoutMs: 30_000, intervalMs: 5 });
    expect((await http("DELETE", `/kb-gone/sources/${src.sourceId}`)).status).toBe(200);
    expect((await http("GET", `/kb-gone/sources/${src.sourceId}`)).status).toBe(404);
    const db = new Client({ connectionString: s.db.url });
    await db.connect();
    try {
      const row = await waitFor("the discovery to stop", async () => {
        const r = (await db.query("SELECT state, lease_owner FROM discoveries WHERE discovery_id = $1", [disc])).rows[0];
        return r && r.state !== "running" ? r : undefined;
      }, { timeoutMs: 10_000 });
      expect(row).toEqual({ state: "cancelled", lease_owner: null });
      await new Promise((r) => setTimeout(r, 300)); // a batch in flight when it was cancelled must not land
      expect((await db.query("SELECT count(*)::int AS n FROM source_objects WHERE source_id = $1", [src.sourceId])).rows[0].n).toBe(0);
      expect((await db.query("SELECT count(*)::int AS n FROM jobs WHERE source_id = $1 AND status IN ('pending', 'processing')", [src.sourceId])).rows[0].n).toBe(0);
    } finally {
      await db.end();
    }
  });
});

describe("across processes", () => {
  let db: TestDb;
  const dirs: string[] = [];
  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(async () => {
    await db.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function dataDir(): string {
    const d = mkdtempSync(join(tmpdir(), "k3-sync-"));
    dirs.push(d);
    return d;
  }

  test("two instances polling a 1 s source start exactly one discovery per period", async () => {
    const shared = dataDir();
    const mk = () => build(loadConfig({ DATABASE_URL: db.url, K3_DATA_DIR: shared, K3_HOST: "127.0.0.1", K3_HTTP_PORT: "0", K3_GRPC_PORT: "0", K3_AUTH: "off", K3_POLL_MS: "50" }), createLogger("silent"));
    const apps: App[] = [mk(), mk()];
    const ports: number[] = [];
    for (const a of apps) ports.push((await a.start()).httpPort);
    try {
      const http = jsonClient(() => `http://127.0.0.1:${ports[0]}`);
      const internal = (await http("POST", "/admin/buckets", { name: "kb-poll" })).json.bucket.internalSourceId;
      const since = Date.now();
      expect((await http("PATCH", `/kb-poll/sources/${internal}`, { sync_interval_seconds: "1" })).json.source.syncIntervalSeconds).toBe("1");
      await new Promise((r) => setTimeout(r, 5_500));
      await http("PATCH", `/kb-poll/sources/${internal}`, { sync_interval_seconds: "0" });
      const c = new Client({ connectionString: db.url });
      await c.connect();
      const rows = (await c.query("SELECT created_at::bigint AS at FROM discoveries WHERE source_id = $1 ORDER BY created_at", [internal])).rows.map((r) => Number(r.at));
      await c.end();
      // One per elapsed period, from either instance: two in one period would be
      // milliseconds apart; a loaded machine delays a creation by a little, not by half a period.
      expect(rows.length).toBeGreaterThanOrEqual(4);
      expect(rows.length).toBeLessThanOrEqual(6);
      for (let i = 1; i < rows.length; i++) expect(rows[i] - rows[i - 1]).toBeGreaterThanOrEqual(500);
      expect(rows[0]).toBeGreaterThanOrEqual(since);
    } finally {
      for (const a of apps) await a.stop();
    }
  });

  test("SIGKILL mid-discovery: after a restart it completes, every object dispatched exactly once", async () => {
    const dir = dataDir();
    const files = 3000;
    mkdirSync(join(dir, "buckets", "kb-crash", "docs"), { recursive: true });
    const env = { DATABASE_URL: db.url, K3_DATA_DIR: dir, K3_HOST: "127.0.0.1", K3_HTTP_PORT: String(await freePort()), K3_GRPC_PORT: "0", K3_AUTH: "off", K3_POLL_MS: "50", K3_DISCOVERY_BATCH: "20", K3_LEASE_MS: "2000", K3_WORKER_CONCURRENCY: "1" };
    let server = await startProcess("serve", env);
    const http = jsonClient(() => `http://127.0.0.1:${env.K3_HTTP_PORT}`);
    const internal = (await http("POST", "/admin/buckets", { name: "kb-crash" })).json.bucket.internalSourceId;
    const pipe = (await http("POST", "/kb-crash/pipelines", { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
    await http("POST", "/kb-crash/rules", { name: "all", pipeline_id: pipe, include_patterns: ["**"] });
    for (let i = 0; i < files; i++) writeFileSync(join(dir, "buckets", "kb-crash", "docs", `f${i}.txt`), `file ${i}`);
    expect((await http("POST", `/kb-crash/sources/${internal}/discover`, {})).json.accepted).toBe(true);
    await waitFor("the discovery to be part way", async () => {
      const cur = (await http("GET", `/kb-crash/sources/${internal}/sync`)).json.current;
      return cur && Number(cur.scanned) >= 200 ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 20 });
    server.proc.kill("SIGKILL");
    await server.exited;
    server = await startProcess("serve", env);
    try {
      const last = await waitFor("the discovery to complete after the restart", async () => {
        const st = (await http("GET", `/kb-crash/sources/${internal}/sync`)).json;
        return st.last?.state === "completed" ? st.last : undefined;
      }, { timeoutMs: 120_000, intervalMs: 200 });
      expect(last).toMatchObject({ scanned: String(files), newObjects: String(files), dispatched: String(files) });
      expect(last.attempts).toBeGreaterThanOrEqual(2);
      const c = new Client({ connectionString: db.url });
      await c.connect();
      const per = (await c.query("SELECT count(DISTINCT object_key)::int AS keys, count(*)::int AS jobs FROM jobs WHERE bucket = 'kb-crash'")).rows[0];
      await c.end();
      expect(per).toEqual({ keys: files, jobs: files });
    } finally {
      server.proc.kill("SIGTERM");
      await server.exited;
    }
  });
});
