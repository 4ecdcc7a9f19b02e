/**
 * Object keys are S3 keys: up to 1,024 bytes of any UTF-8 but NUL. Keys that spell `..`,
 * empty or `.` segments, control characters, over-long segments, the store's reserved
 * folder, or a key beside a folder of the same name (`a` and `a/b`) are all stored, read,
 * listed, ingested and deleted like any other, and nothing is ever written outside the
 * bucket. Requests are sent with raw paths (as `curl --path-as-is` does), since fetch and
 * browsers fold `..` segments away.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { jsonClient, keyPathOf, rawRequest, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);
const run = promisify(execFile);

let s: TestServers;
let bearer = "";
const keys = { id: "", secret: "" };
const B = "kb-keys";
const work = mkdtempSync(join(tmpdir(), "k3-keys-"));

const STRANGE = [
  "a",
  "a/b",
  "x/../../../../escape.txt",
  "a//b",
  "./dot.txt",
  "ctl\u0001key.txt",
  `long/${"s".repeat(300)}.txt`,
  ".k3-keys/spoof",
  "trailing/",
  "日本語/ファイル.txt",
  "back\\slash",
  "sp ace+plus%pct&amp;<x>",
];

const raw = (method: string, key: string, body?: Buffer) => rawRequest(s.httpUrl, method, `/${B}/${keyPathOf(key)}`, { authorization: `Bearer ${bearer}` }, body);

function aws(args: string[]) {
  return run("aws", ["--endpoint-url", s.httpUrl, ...args], {
    env: { ...process.env, AWS_ACCESS_KEY_ID: keys.id, AWS_SECRET_ACCESS_KEY: keys.secret, AWS_DEFAULT_REGION: "us-east-1", AWS_CONFIG_FILE: join(work, "none"), AWS_SHARED_CREDENTIALS_FILE: join(work, "none") },
    timeout: 60_000,
  });
}

/** Every file under a folder, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)));
}

const api = (method: string, path: string, body?: unknown) => jsonClient(() => s.httpUrl, { authorization: `Bearer ${bearer}` })(method, path, body);

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "100" });
  const t = await insertToken(s, "default", [{ bucket: "*", role: "admin" }], true);
  bearer = t.token;
  Object.assign(keys, { id: t.id, secret: t.secret });
  expect((await api("POST", "/admin/buckets", { name: B })).status).toBe(200);
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

test("strange keys are stored, read back, listed in byte order and deleted; nothing lands outside the bucket", async () => {
  for (const [i, key] of STRANGE.entries()) {
    const put = await raw("PUT", key, Buffer.from(`object ${i}`));
    expect({ key, status: put.status, body: put.body.toString() }).toEqual({ key, status: 200, body: "" });
  }
  for (const [i, key] of STRANGE.entries()) {
    const got = await raw("GET", key);
    expect({ key, status: got.status, body: got.body.toString() }).toEqual({ key, status: 200, body: `object ${i}` });
  }
  // The AWS CLI lists with encoding-type=url and decodes; the keys come back exactly, in byte order.
  const listed = JSON.parse((await aws(["s3api", "list-objects-v2", "--bucket", B])).stdout).Contents.map((c: { Key: string }) => c.Key);
  expect(listed).toEqual([...STRANGE].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));

  // Nothing outside the bucket's folder; plain keys are browsable paths, every key one file.
  const bucketDir = join(s.dataDir, "buckets", B);
  expect(filesUnder(s.dataDir).filter((f) => !f.startsWith(join("buckets", B) + "/") && f.endsWith(".txt"))).toEqual([]);
  expect(filesUnder(bucketDir)).toEqual(expect.arrayContaining(["a", "日本語/ファイル.txt", "back\\slash"]));
  expect(filesUnder(bucketDir)).toHaveLength(STRANGE.length);

  // The admin surface sees the control-character key, and a rule's job reads the `..` key.
  const info = await api("GET", `/${B}/objects/${encodeURIComponent("ctl\u0001key.txt")}/info`);
  expect(info).toMatchObject({ status: 200, json: { object: { key: "ctl\u0001key.txt", size: "8" } } });
  const pipe = (await api("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  const job = (await api("POST", `/${B}/ingest`, { object: { key: "x/../../../../escape.txt" }, pipeline_id: pipe })).json.job;
  const done = await waitFor("the job of the `..` key", async () => {
    const j = (await api("GET", `/${B}/ingest/jobs/${job.jobId}`)).json.job as J;
    return j.status === "INGEST_STATUS_COMPLETED" || j.status === "INGEST_STATUS_FAILED" ? j : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100 });
  expect(done).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });

  for (const key of STRANGE) expect({ key, status: (await raw("DELETE", key)).status }).toEqual({ key, status: 204 });
  for (const key of STRANGE) expect({ key, status: (await raw("GET", key)).status }).toEqual({ key, status: 404 });
  expect(JSON.parse((await aws(["s3api", "list-objects-v2", "--bucket", B])).stdout || "{}").Contents).toBeUndefined();
  expect(filesUnder(bucketDir)).toEqual([]);
});

test("a NUL in a key is refused by name; a key of 1,025 bytes is KeyTooLongError", async () => {
  const nul = await raw("PUT", "bad\u0000key", Buffer.from("x"));
  expect(nul.status).toBe(400);
  expect(nul.body.toString()).toMatch(/<Code>InvalidArgument<\/Code>[\s\S]*key .* contains NUL at position 3; any other UTF-8 is accepted/);
  const long = await raw("PUT", "k".repeat(1025), Buffer.from("x"));
  expect(long.status).toBe(400);
  expect(long.body.toString()).toMatch(/<Code>KeyTooLongError<\/Code>/);
});
