/**
 * Conditional requests on the byte plane, as S3 answers them: GET and HEAD with If-Match,
 * If-None-Match, If-Modified-Since and If-Unmodified-Since (304, 412); PUT with
 * If-None-Match: * and If-Match (412, 404, 501) — checked in the key's turn, so of racing
 * conditional writes exactly one wins. With boto3: put_object(IfNoneMatch="*"), and a
 * multipart download whose object is replaced halfway fails (s3transfer sends If-Match with
 * every part after the first) instead of writing a file made of two objects.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";

jest.setTimeout(120_000);

let s: TestServers;
let peer: Awaited<ReturnType<typeof startPeer>>;
let admin: S3Admin;
let auth: Record<string, string>;
const B = "kb-conditions";
const work = mkdtempSync(join(tmpdir(), "k3-conditions-"));

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on", K3_MAX_OBJECT_BYTES: String(30 * 1024 * 1024) });
  peer = await startPeer(s, { K3_AUTH: "on", K3_DATA_DIR: s.dataDir });
  admin = await s3Admin(s, work, [B]);
  auth = admin.auth;
});
afterAll(async () => {
  await peer.stop();
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

const md5 = (body: string | Buffer) => createHash("md5").update(body).digest("hex");
const url = (key: string, base = s.httpUrl) => `${base}/${B}/${key}`;
const put = (key: string, body: string, headers: Record<string, string> = {}, base = s.httpUrl) =>
  fetch(url(key, base), { method: "PUT", headers: { ...auth, ...headers }, body });
const get = (key: string, headers: Record<string, string>, method = "GET") => fetch(url(key), { method, headers: { ...auth, ...headers } });
const staged = () => (existsSync(join(s.dataDir, "tmp")) ? readdirSync(join(s.dataDir, "tmp")).filter((n) => n.startsWith("upload-")) : []);

test("GET and HEAD: If-None-Match and If-Modified-Since answer 304, If-Match and If-Unmodified-Since 412, as S3", async () => {
  expect((await put("read.txt", "version one")).status).toBe(200);
  const etag = `"${md5("version one")}"`;
  const lastModified = (await get("read.txt", {}, "HEAD")).headers.get("last-modified")!;
  const before = new Date(Date.parse(lastModified) - 60_000).toUTCString();
  const after = new Date(Date.parse(lastModified) + 60_000).toUTCString();

  const notModified = await get("read.txt", { "if-none-match": etag });
  expect(notModified.status).toBe(304);
  expect(notModified.headers.get("etag")).toBe(etag);
  expect(await notModified.text()).toBe("");
  expect((await get("read.txt", { "if-none-match": '"0123"' })).status).toBe(200);
  expect((await get("read.txt", { "if-none-match": `"0123", ${etag}` })).status).toBe(304);
  expect((await get("read.txt", { "if-none-match": "*" }, "HEAD")).status).toBe(304);

  const failed = await get("read.txt", { "if-match": '"0123"' });
  expect(failed.status).toBe(412);
  expect(await failed.text()).toMatch(/<Code>PreconditionFailed<\/Code>.*If-Match/);
  const failedHead = await get("read.txt", { "if-match": '"0123"' }, "HEAD");
  expect(failedHead.status).toBe(412);
  expect(await failedHead.text()).toBe("");
  const matched = await get("read.txt", { "if-match": etag });
  expect(matched.status).toBe(200);
  expect(await matched.text()).toBe("version one");

  expect((await get("read.txt", { "if-modified-since": after })).status).toBe(304);
  expect((await get("read.txt", { "if-modified-since": lastModified })).status).toBe(304);
  expect((await get("read.txt", { "if-modified-since": before })).status).toBe(200);
  expect((await get("read.txt", { "if-modified-since": "not a date" })).status).toBe(200);
  expect((await get("read.txt", { "if-unmodified-since": before })).status).toBe(412);
  expect((await get("read.txt", { "if-unmodified-since": after })).status).toBe(200);
  // An ETag condition decides alone: its date counterpart is not looked at.
  expect((await get("read.txt", { "if-match": etag, "if-unmodified-since": before })).status).toBe(200);
  expect((await get("read.txt", { "if-none-match": '"0123"', "if-modified-since": after })).status).toBe(200);
  // A missing object is still 404, whatever the conditions.
  expect((await get("missing.txt", { "if-none-match": "*" })).status).toBe(404);
});

test("PUT: If-None-Match: * writes only a new key, If-Match only over that ETag; a refused upload leaves nothing", async () => {
  expect((await put("write.txt", "first", { "if-none-match": "*" })).status).toBe(200);
  const again = await put("write.txt", "second", { "if-none-match": "*" });
  expect(again.status).toBe(412);
  expect(await again.text()).toMatch(/<Code>PreconditionFailed<\/Code>.*If-None-Match/);
  expect(await (await get("write.txt", {})).text()).toBe("first");

  const stale = await put("write.txt", "third", { "if-match": `"${md5("something else")}"` });
  expect(stale.status).toBe(412);
  expect(await (await get("write.txt", {})).text()).toBe("first");
  const current = await put("write.txt", "third", { "if-match": `"${md5("first")}"` });
  expect(current.status).toBe(200);
  expect(await (await get("write.txt", {})).text()).toBe("third");

  const none = await put("never-written.txt", "x", { "if-match": `"${md5("x")}"` });
  expect(none.status).toBe(404);
  expect(await none.text()).toMatch(/<Code>NoSuchKey<\/Code>/);
  const unsupported = await put("write.txt", "x", { "if-none-match": `"${md5("third")}"` });
  expect(unsupported.status).toBe(501);
  expect(await unsupported.text()).toMatch(/If-None-Match .* only &quot;\*&quot;/);
  expect(await (await get("write.txt", {})).text()).toBe("third");
  expect(staged()).toEqual([]);
});

test("eight If-None-Match: * uploads of one new key at once, on two instances: exactly one is written", async () => {
  for (let round = 0; round < 10; round++) {
    const key = `create-once/${round}.txt`;
    const bodies = Array.from({ length: 8 }, (_, i) => `writer ${i} of round ${round}`);
    const answers = await Promise.all(bodies.map((body, i) => put(key, body, { "if-none-match": "*" }, i % 2 ? peer.httpUrl : s.httpUrl).then((r) => r.status)));
    expect(answers.filter((a) => a === 200)).toHaveLength(1);
    expect(answers.filter((a) => a === 412)).toHaveLength(7);
    expect(await (await get(key, {})).text()).toBe(bodies[answers.indexOf(200)]);
  }
  expect(staged()).toEqual([]);
});

test("boto3: put_object(IfNoneMatch='*') twice is PreconditionFailed the second time", async () => {
  const out = await admin.boto3(`
from botocore.exceptions import ClientError
c.put_object(Bucket="${B}", Key="boto/once.txt", Body=b"one", IfNoneMatch="*")
try:
    c.put_object(Bucket="${B}", Key="boto/once.txt", Body=b"two", IfNoneMatch="*")
    print("written twice")
except ClientError as e:
    print(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
print(c.get_object(Bucket="${B}", Key="boto/once.txt")["Body"].read().decode())
`);
  expect(out.split("\n")).toEqual(["PreconditionFailed 412", "one"]);
});

test("boto3: a multipart download whose object is replaced halfway fails rather than mixing the two", async () => {
  const out = await admin.boto3(`
import os, urllib.request
from boto3.s3.transfer import TransferConfig
big = os.urandom(12 * 1024 * 1024)
c.put_object(Bucket="${B}", Key="boto/big.bin", Body=big)
cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=1)
plain = os.path.join(sys.argv[4], "plain.bin")
c.download_file("${B}", "boto/big.bin", plain, Config=cfg)
print("plain", open(plain, "rb").read() == big)
replaced = []
def replace_once(n):
    if not replaced:
        replaced.append(1)
        c.put_object(Bucket="${B}", Key="boto/big.bin", Body=os.urandom(12 * 1024 * 1024))
target = os.path.join(sys.argv[4], "raced.bin")
try:
    c.download_file("${B}", "boto/big.bin", target, Config=cfg, Callback=replace_once)
    print("raced downloaded", os.path.exists(target))
except Exception as e:
    print("raced failed:", type(e).__name__, "did not match expected ETag" in str(e), os.path.exists(target))
`, work);
  expect(out.split("\n")).toEqual(["plain True", "raced failed: S3DownloadFailedError True False"]);
});
