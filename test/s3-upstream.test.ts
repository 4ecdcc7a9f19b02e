/**
 * Object bytes in an S3-compatible upstream (moto_server, started by the test): uploads
 * through our byte plane land upstream under <org>/<bucket>/<key>, downloads come back from
 * it, and a worker on another data dir — another machine, as far as files go — reads the
 * object from the upstream and completes its job.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, type App } from "../src/app";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { readClaim, signRequest, verifySigV4 } from "../src/s3/sigv4";
import { jsonClient, keyPathOf, rawRequest, type J } from "./helpers/http";
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";
import { startMoto, type Moto } from "./helpers/moto";

jest.setTimeout(90_000);


const UP = { bucket: "k3-upstream", accessKeyId: "upstream-key", secretAccessKey: "upstream-secret", region: "us-east-1" };
let moto: Moto;
let endpoint: string;
let s: TestServers;
let worker: App;
let env: Record<string, string>;
const otherDir = mkdtempSync(join(tmpdir(), "k3-other-machine-"));

/** A signed request straight to the upstream, as an operator would inspect it. */
async function upstream(method: string, path: string, query = ""): Promise<Response> {
  const headers = { host: new URL(endpoint).host };
  const signed = signRequest({ method, path, rawQuery: query, headers }, UP, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  return fetch(`${endpoint}${path}${query ? `?${query}` : ""}`, { method, headers: { ...headers, ...signed } });
}

beforeAll(async () => {
  moto = await startMoto();
  endpoint = moto.endpoint;
  expect((await upstream("PUT", `/${UP.bucket}`)).status).toBe(200);
  env = { K3_S3_ENDPOINT: endpoint, K3_S3_BUCKET: UP.bucket, K3_S3_ACCESS_KEY_ID: UP.accessKeyId, K3_S3_SECRET_ACCESS_KEY: UP.secretAccessKey };
  s = await startServers({ K3_ROLE: "api", ...env });
  worker = build(loadConfig({ DATABASE_URL: s.db.url, K3_DATA_DIR: otherDir, K3_ROLE: "worker", K3_POLL_MS: "100", K3_AUTH: "off", ...env }), createLogger("silent"));
  await worker.start();
});
afterAll(async () => {
  await worker?.stop();
  await s?.stop();
  await moto?.stop();
  rmSync(otherDir, { recursive: true, force: true });
});

test("uploads land upstream, come back from it, and a worker elsewhere completes their jobs", async () => {
  const http = jsonClient(() => s.httpUrl);
  expect((await http("POST", "/admin/buckets", { name: "kb-up" })).status).toBe(200);
  const pipe = (await http("POST", "/kb-up/pipelines", { name: "embed", scriptum_template: "text_embedding_index", options: { chunk_size: "100", chunk_overlap: "0" } })).json.pipeline.pipelineId;
  await http("POST", "/kb-up/rules", { name: "docs", pipeline_id: pipe, include_patterns: ["docs/**"] });
  const text = "upstream words ".repeat(20); // 300 characters: 4 chunks of whole words (6, 6, 6, 2 times "upstream words")
  const put = await fetch(`${s.httpUrl}/kb-up/docs/a b.txt`, { method: "PUT", headers: { "content-type": "text/plain" }, body: text });
  expect(put.status).toBe(200);
  // The bytes are upstream, under <org>/<bucket>/<key>, and not on the API's disk.
  const raw = await upstream("GET", `/${UP.bucket}/default/kb-up/docs/a b.txt`);
  expect(raw.status).toBe(200);
  expect(await raw.text()).toBe(text);
  expect(existsSync(join(s.dataDir, "buckets", "kb-up", "docs"))).toBe(false);
  // The worker, on a data dir of its own, reads it from the upstream.
  const job = await waitFor("the upload's job", async () => {
    const jobs = (await http("GET", "/kb-up/ingest/jobs")).json.jobs as J[];
    return jobs[0] && ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED"].includes(jobs[0].status) ? jobs[0] : undefined;
  });
  expect(job).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 4 });
  const got = await fetch(`${s.httpUrl}/kb-up/docs/a%20b.txt`, { headers: { range: "bytes=0-7" } });
  expect(got.status).toBe(206);
  expect(await got.text()).toBe("upstream");
  // A trigger by key asks the upstream whether the object exists.
  expect((await http("POST", "/kb-up/ingest", { object: { key: "docs/a b.txt" }, pipelineId: pipe })).status).toBe(200);
  expect((await http("POST", "/kb-up/ingest", { object: { key: "docs/none.txt" }, pipelineId: pipe })).status).toBe(404);
  expect((await fetch(`${s.httpUrl}/kb-up/docs/a%20b.txt`, { method: "DELETE" })).status).toBe(204);
  expect((await upstream("GET", `/${UP.bucket}/default/kb-up/docs/a b.txt`)).status).toBe(404);
});

test("keys that are no plain path (`..`, control characters, `a` beside `a/b`) round-trip through the upstream", async () => {
  const http = jsonClient(() => s.httpUrl);
  expect((await http("POST", "/admin/buckets", { name: "kb-keys-up" })).status).toBe(200);
  const keys = ["a", "a/b", "x/../../../escape.txt", "ctl\u0001.txt", "a//b"];
  for (const key of keys) expect((await rawRequest(s.httpUrl, "PUT", `/kb-keys-up/${keyPathOf(key)}`, {}, Buffer.from(`v:${key}`))).status).toBe(200);
  for (const key of keys) {
    const got = await rawRequest(s.httpUrl, "GET", `/kb-keys-up/${keyPathOf(key)}`);
    expect({ key, status: got.status, body: got.body.toString() }).toEqual({ key, status: 200, body: `v:${key}` });
  }
  // Upstream, the `..` key is kept by hash inside the bucket's prefix, never at a path it spells.
  expect((await upstream("GET", `/${UP.bucket}/escape.txt`)).status).toBe(404);
  const listing = await (await upstream("GET", `/${UP.bucket}`, `list-type=2&prefix=default%2Fkb-keys-up%2F.k3-keys%2F`)).text();
  expect(listing.match(/<Key>/g)).toHaveLength(2); // the `..` key and `a//b`
  for (const key of keys) expect((await rawRequest(s.httpUrl, "DELETE", `/kb-keys-up/${keyPathOf(key)}`)).status).toBe(204);
  expect(await (await upstream("GET", `/${UP.bucket}`, `list-type=2&prefix=default%2Fkb-keys-up%2F`)).text()).not.toMatch(/<Key>/);
});

test("the upstream signature is one our SigV4 verifier (proven against the AWS CLI, boto3 and the JS SDK) accepts", () => {
  const headers = { host: "upstream.example:9000", "content-length": "5" };
  const req = { method: "PUT", path: "/k3-upstream/default/kb/a b+c.txt", rawQuery: "partNumber=1&uploadId=abc", headers };
  const payload = "a".repeat(64);
  const signed = signRequest(req, UP, payload, Date.UTC(2026, 10, 29, 12, 0, 0));
  const all = { ...headers, ...signed };
  const claim = readClaim(all, new URLSearchParams(req.rawQuery));
  expect(claim).toMatchObject({ accessKeyId: UP.accessKeyId, region: "us-east-1", payloadHash: payload });
  expect(() => verifySigV4(claim, { ...req, headers: all }, UP.secretAccessKey, Date.UTC(2026, 10, 29, 12, 1, 0))).not.toThrow();
  expect(() => verifySigV4(claim, { ...req, headers: all }, "another-secret", Date.UTC(2026, 10, 29, 12, 1, 0))).toThrow(/signature/);
});

test("uploads and deletes of one key through two instances at once: the object read back is the one its row describes, or gone", async () => {
  // With this store the upload is the placement, too long to hold a lock through; the row
  // is written only if the bytes under the key are still the upload's (checked under the
  // key's lock), and a delete holds that lock through its removal.
  const peer = await startPeer(s, env);
  const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
  const bases = [s.httpUrl, peer.httpUrl];
  const bad: string[] = [];
  try {
    expect((await jsonClient(() => s.httpUrl)("POST", "/admin/buckets", { name: "kb-race" })).status).toBe(200);
    for (let round = 0; round < Number(process.env.ROUNDS ?? 120); round++) {
      const key = `race/${round % 4}.txt`;
      const bodies = Array.from({ length: 8 }, (_, i) => `round ${round} writer ${i} `.repeat(1 + i * 40));
      const answers = await Promise.all(
        bodies.map((body, i) =>
          round % 2 === 1 && i === 3
            ? fetch(`${bases[i % 2]}/kb-race/${key}`, { method: "DELETE" }).then((r) => r.status)
            : fetch(`${bases[i % 2]}/kb-race/${key}`, { method: "PUT", body }).then((r) => r.status),
        ),
      );
      expect([round, answers.filter((st) => st !== 200 && st !== 204)]).toEqual([round, []]);
      for (const base of bases) {
        const got = await fetch(`${base}/kb-race/${key}`);
        const bytes = Buffer.from(await got.arrayBuffer());
        const listing = await (await fetch(`${base}/kb-race?list-type=2&prefix=${encodeURIComponent(key)}`)).text();
        const listed = /<ETag>&quot;([0-9a-f]+)&quot;<\/ETag><Size>(\d+)<\/Size>/.exec(listing);
        const ok =
          got.status === 404
            ? !listed
            : got.status === 200 && bodies.includes(bytes.toString()) && got.headers.get("etag") === `"${md5(bytes)}"` && listed?.[1] === md5(bytes) && Number(listed?.[2]) === bytes.length;
        if (!ok) bad.push(`round ${round} via ${base}: ${got.status}, ${bytes.length} bytes, ETag ${got.headers.get("etag")} (MD5 ${md5(bytes)}), listed ${listed?.[1]}/${listed?.[2]}`);
      }
    }
  } finally {
    await peer.stop();
  }
  expect(bad).toEqual([]);
});

test("conditional uploads of one new key (If-None-Match: *) through two instances at once: one lands, the others answer 412", async () => {
  // The check against the catalog is per instance (both may find no row); the upstream's
  // own If-None-Match decides between instances.
  const peer = await startPeer(s, env);
  const bases = [s.httpUrl, peer.httpUrl];
  const bad: string[] = [];
  try {
    expect((await jsonClient(() => s.httpUrl)("POST", "/admin/buckets", { name: "kb-create-once" })).status).toBe(200);
    for (let round = 0; round < Number(process.env.ROUNDS ?? 40); round++) {
      const key = `once/${round}.txt`;
      const bodies = Array.from({ length: 8 }, (_, i) => `round ${round} writer ${i} `.repeat(1 + i * 40));
      const answers = await Promise.all(bodies.map((body, i) => fetch(`${bases[i % 2]}/kb-create-once/${key}`, { method: "PUT", body, headers: { "if-none-match": "*" } }).then(async (r) => (await r.arrayBuffer(), r.status))));
      const winners = answers.flatMap((st, i) => (st === 200 ? [i] : []));
      const got = await (await fetch(`${s.httpUrl}/kb-create-once/${key}`)).text();
      if (winners.length !== 1 || answers.some((st) => st !== 200 && st !== 412) || got !== bodies[winners[0]]) bad.push(`round ${round}: answers ${answers.join(",")}, read back writer ${bodies.indexOf(got)}`);
    }
  } finally {
    await peer.stop();
  }
  expect(bad).toEqual([]);
});
