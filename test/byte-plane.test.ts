/**
 * The S3 byte plane with real clients: curl-style requests with a bearer token, the AWS
 * CLI and boto3 with SigV4 access keys (also a presigned GET). Uploads start the jobs of
 * the bucket's rules without any TriggerIngest call; errors come back as S3 XML with S3's
 * codes and change nothing.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Grant } from "../src/domain/auth";
import { makePdf } from "./helpers/fixtures";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);
const run = promisify(execFile);

let s: TestServers;
let bearer: string;
const keys = { id: "", secret: "" };
const B = "kb-bytes";
const TERMINAL = ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED", "INGEST_STATUS_PARTIAL", "INGEST_STATUS_CANCELLED"];
const work = mkdtempSync(join(tmpdir(), "k3-s3-client-"));

const token = (org: string, grants: Grant[], s3 = false) => insertToken(s, org, grants, s3);

/** The AWS CLI against the server, with credentials in its environment only. */
function aws(args: string[], creds = keys) {
  return run("aws", ["--endpoint-url", s.httpUrl, ...args], {
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: creds.id,
      AWS_SECRET_ACCESS_KEY: creds.secret,
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_CONFIG_FILE: join(work, "no-config"),
      AWS_SHARED_CREDENTIALS_FILE: join(work, "no-credentials"),
    },
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** boto3 (the python3 on PATH has it) running a small script with the keys. */
function boto3(script: string, ...args: string[]) {
  // boto3 presigns with the legacy Signature V2 unless told otherwise; only V4 is served.
  const prelude = `import boto3, sys\nfrom botocore.config import Config\nc = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name="us-east-1", config=Config(signature_version="s3v4"))\n`;
  return run("python3", ["-c", prelude + script, s.httpUrl, keys.id, keys.secret, ...args], { timeout: 60_000 });
}

const http = jsonClient(() => s.httpUrl, { authorization: "" });

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "100", K3_MAX_OBJECT_BYTES: String(30 * 1024 * 1024) });
  const t = await token("default", [{ bucket: "*", role: "admin" }], true);
  bearer = t.token;
  keys.id = t.id;
  keys.secret = t.secret;
  const auth = { authorization: `Bearer ${bearer}` };
  Object.assign(http, jsonClient(() => s.httpUrl, auth));
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

function api(method: string, path: string, body?: unknown) {
  return jsonClient(() => s.httpUrl, { authorization: `Bearer ${bearer}` })(method, path, body);
}

async function jobsOf(bucket: string, key: string): Promise<J[]> {
  const all = (await api("GET", `/${bucket}/ingest/jobs?page_size=1000`)).json.jobs as J[];
  return all.filter((j) => j.object.key === key);
}

test("a bucket created over REST takes `aws s3 cp` of a folder of mixed documents; each matching one ends truthfully", async () => {
  expect((await api("POST", "/admin/buckets", { name: B })).status).toBe(200);
  const embed = (await api("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index", options: { chunk_size: "100", chunk_overlap: "0" } })).json.pipeline.pipelineId;
  const rows = (await api("POST", `/${B}/pipelines`, { name: "rows", scriptum_template: "structured_rows" })).json.pipeline.pipelineId;
  await api("POST", `/${B}/rules`, { name: "docs", pipeline_id: embed, include_patterns: ["docs/**"], exclude_mime_types: ["text/csv"] });
  await api("POST", `/${B}/rules`, { name: "tables", pipeline_id: rows, include_mime_types: ["text/csv"] });
  const dir = join(work, "corpus");
  mkdirSync(join(dir, "docs", "legal"), { recursive: true });
  writeFileSync(join(dir, "docs", "intro.txt"), "alpha beta gamma ".repeat(20)); // 340 chars -> 4 chunks
  writeFileSync(join(dir, "docs", "legal", "msa.pdf"), makePdf([["Master services agreement"], ["Second page"]]));
  writeFileSync(join(dir, "docs", "notes.md"), "# Notes\n\nshort");
  writeFileSync(join(dir, "docs", "broken.pdf"), "%PDF-1.4 this is not a pdf");
  writeFileSync(join(dir, "docs", "table.csv"), "id,name\n1,a\n2,b\n");
  writeFileSync(join(dir, "other.bin"), Buffer.from([0, 1, 2, 3]));
  await aws(["s3", "cp", dir, `s3://${B}/`, "--recursive"]);

  const expectations: Record<string, { status: string; [k: string]: unknown }> = {
    "docs/intro.txt": { status: "INGEST_STATUS_COMPLETED", chunksCreated: 4, embeddingsWritten: 4 },
    "docs/legal/msa.pdf": { status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 },
    "docs/notes.md": { status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 },
    "docs/broken.pdf": { status: "INGEST_STATUS_FAILED" },
    "docs/table.csv": { status: "INGEST_STATUS_COMPLETED", rowsWritten: 2 },
  };
  for (const [key, want] of Object.entries(expectations)) {
    const job = await waitFor(`the job of ${key}`, async () => {
      const jobs = await jobsOf(B, key);
      return jobs.length === 1 && TERMINAL.includes(jobs[0].status) ? jobs[0] : undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    expect({ key, ...job }).toMatchObject({ key, ...want });
  }
  expect((await jobsOf(B, "docs/broken.pdf"))[0].error).toMatch(/PDF "docs\/broken\.pdf" is corrupt or unreadable/);
  expect(await jobsOf(B, "other.bin")).toEqual([]); // no rule matches it

  const ls = await aws(["s3", "ls", `s3://${B}/`, "--recursive"]);
  expect(ls.stdout.trim().split("\n").map((l) => l.split(/\s+/).pop())).toEqual(["docs/broken.pdf", "docs/intro.txt", "docs/legal/msa.pdf", "docs/notes.md", "docs/table.csv", "other.bin"]);
  const folders = JSON.parse((await aws(["s3api", "list-objects-v2", "--bucket", B, "--prefix", "docs/", "--delimiter", "/"])).stdout);
  expect(folders.Contents.map((c: { Key: string }) => c.Key)).toEqual(["docs/broken.pdf", "docs/intro.txt", "docs/notes.md", "docs/table.csv"]);
  expect(folders.CommonPrefixes).toEqual([{ Prefix: "docs/legal/" }]);
  const paged = JSON.parse((await aws(["s3api", "list-objects-v2", "--bucket", B, "--max-keys", "2", "--no-paginate"])).stdout);
  expect(paged).toMatchObject({ IsTruncated: true, KeyCount: 2 });
  const rest = JSON.parse((await aws(["s3api", "list-objects-v2", "--bucket", B, "--continuation-token", paged.NextContinuationToken, "--no-paginate"])).stdout);
  expect(rest.Contents.map((c: { Key: string }) => c.Key)).toEqual(["docs/legal/msa.pdf", "docs/notes.md", "docs/table.csv", "other.bin"]);

  const head = JSON.parse((await aws(["s3api", "head-object", "--bucket", B, "--key", "docs/intro.txt"])).stdout);
  expect(head).toMatchObject({ ContentLength: 340, ContentType: "text/plain" });
  await aws(["s3", "cp", `s3://${B}/docs/intro.txt`, join(work, "back.txt")]);
  expect(readFileSync(join(work, "back.txt"), "utf8")).toBe("alpha beta gamma ".repeat(20));
  const bucket = (await api("GET", `/admin/buckets/${B}`)).json.bucket;
  expect(bucket).toMatchObject({ objectCount: "6", ruleCount: "2", indexCount: "2" });
});

test("curl with a bearer token: PUT with metadata, GET with Range, HEAD; DELETE removes outputs and cancels pending jobs", async () => {
  const url = `${s.httpUrl}/${B}/docs/curl.txt`;
  const auth = { authorization: `Bearer ${bearer}` };
  const put = await fetch(url, { method: "PUT", headers: { ...auth, "content-type": "text/plain", "x-amz-meta-owner": "legal" }, body: "0123456789 abc def" });
  expect(put.status).toBe(200);
  expect(put.headers.get("etag")).toBe('"' + (await import("node:crypto")).createHash("md5").update("0123456789 abc def").digest("hex") + '"');
  const got = await fetch(url, { headers: { ...auth, range: "bytes=2-5" } });
  expect(got.status).toBe(206);
  expect(got.headers.get("content-range")).toBe("bytes 2-5/18");
  expect(await got.text()).toBe("2345");
  const head = await fetch(url, { method: "HEAD", headers: auth });
  expect(head.headers.get("x-amz-meta-owner")).toBe("legal");
  expect(head.headers.get("content-length")).toBe("18");
  const job = await waitFor("the curl upload's job", async () => {
    const jobs = await jobsOf(B, "docs/curl.txt");
    return jobs[0]?.status === "INGEST_STATUS_COMPLETED" ? jobs[0] : undefined;
  });
  const pool = s.app.repo().pool;
  expect((await pool.query("SELECT count(*)::int AS n FROM vector_chunks WHERE bucket = $1 AND object_key = 'docs/curl.txt'", [B])).rows[0].n).toBe(job.embeddingsWritten);
  // A pending job of the object (inserted behind the worker's back) is cancelled by the delete.
  await pool.query(`INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, template, created_at, updated_at, run_after) VALUES ('job_pending_del', 'default', $1, 'docs/curl.txt', $2, 'noop', 1, 1, 9999999999999)`, [B, job.pipelineId]);
  expect((await fetch(url, { method: "DELETE", headers: auth })).status).toBe(204);
  expect((await pool.query("SELECT count(*)::int AS n FROM vector_chunks WHERE bucket = $1 AND object_key = 'docs/curl.txt'", [B])).rows[0].n).toBe(0);
  expect((await pool.query("SELECT status FROM jobs WHERE job_id = 'job_pending_del'")).rows[0].status).toBe("cancelled");
  const missing = await fetch(url, { headers: auth });
  expect(missing.status).toBe(404);
  expect(await missing.text()).toMatch(/<Code>NoSuchKey<\/Code>/);
  expect((await fetch(url, { method: "DELETE", headers: auth })).status).toBe(204); // S3 deletes are idempotent
});

test("uploads leave nothing in staging, make the folders their keys need, and go on when the staging folder is removed meanwhile", async () => {
  const auth = { authorization: `Bearer ${bearer}` };
  const staging = join(s.dataDir, "tmp");
  const uploads = () => (existsSync(staging) ? (readdirSync(staging) as string[]).filter((n) => n.startsWith("upload-")) : []);
  const put = (key: string, body: string) => fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: auth, body });
  expect((await put("staging/one.txt", "one")).status).toBe(200);
  expect(uploads()).toEqual([]);
  rmSync(staging, { recursive: true, force: true });
  // A new folder three levels down, after the staging folder went away.
  expect((await put("staging/new/deeper/two.txt", "two")).status).toBe(200);
  expect(uploads()).toEqual([]);
  expect(readFileSync(join(s.dataDir, "buckets", B, "staging", "new", "deeper", "two.txt"), "utf8")).toBe("two");
  const got = await fetch(`${s.httpUrl}/${B}/staging/new/deeper/two.txt`, { headers: auth });
  expect(await got.text()).toBe("two");
  // Overwriting an object replaces it in place.
  expect((await put("staging/one.txt", "one, again")).status).toBe(200);
  expect(await (await fetch(`${s.httpUrl}/${B}/staging/one.txt`, { headers: auth })).text()).toBe("one, again");
  expect(uploads()).toEqual([]);
});

test("boto3: put, get, list and delete; a presigned GET works with plain fetch until it expires or is tampered with", async () => {
  const out = await boto3(
    `c.put_object(Bucket="${B}", Key="boto/a b.txt", Body=b"from boto3", ContentType="text/plain")
print(c.get_object(Bucket="${B}", Key="boto/a b.txt")["Body"].read().decode())
print(",".join(o["Key"] for o in c.list_objects_v2(Bucket="${B}", Prefix="boto/")["Contents"]))
print(c.generate_presigned_url("get_object", Params={"Bucket": "${B}", "Key": "boto/a b.txt"}, ExpiresIn=60))
print(c.generate_presigned_url("get_object", Params={"Bucket": "${B}", "Key": "boto/a b.txt"}, ExpiresIn=1))`,
  );
  const [body, listed, presigned, short] = out.stdout.trim().split("\n");
  expect(body).toBe("from boto3");
  expect(listed).toBe("boto/a b.txt");
  const ok = await fetch(presigned);
  expect(ok.status).toBe(200);
  expect(await ok.text()).toBe("from boto3");
  const tampered = await fetch(presigned.replace("a%20b.txt", "a%20c.txt"));
  expect(tampered.status).toBe(403);
  expect(await tampered.text()).toMatch(/<Code>SignatureDoesNotMatch<\/Code>/);
  await new Promise((r) => setTimeout(r, 2100));
  const expired = await fetch(short);
  expect(expired.status).toBe(403);
  expect(await expired.text()).toMatch(/<Code>AccessDenied<\/Code><Message>Request has expired/);
  await boto3(`c.delete_object(Bucket="${B}", Key="boto/a b.txt")`);
  expect((await fetch(`${s.httpUrl}/${B}/boto/a%20b.txt`, { headers: { authorization: `Bearer ${bearer}` } })).status).toBe(404);
});

test("`aws s3 presign` as the AWS CLI v1 makes it (Signature V2) is refused saying how to presign with V4, and that one works", async () => {
  const file = join(work, "presign.txt");
  writeFileSync(file, "shared with a link");
  await aws(["s3", "cp", file, `s3://${B}/links/presign.txt`]);
  const v2 = (await aws(["s3", "presign", `s3://${B}/links/presign.txt`])).stdout.trim();
  expect(v2).toContain("AWSAccessKeyId=");
  const refused = await fetch(v2);
  expect(refused.status).toBe(400);
  const text = await refused.text();
  expect(text).toContain("<Code>InvalidRequest</Code>");
  expect(text).toContain("(Signature Version 2) is not supported. Please use AWS4-HMAC-SHA256: with the AWS CLI, `aws configure set default.s3.signature_version s3v4`");
  // The advice, followed.
  const config = join(work, "s3v4-config");
  await run("aws", ["configure", "set", "default.s3.signature_version", "s3v4"], { env: { ...process.env, AWS_CONFIG_FILE: config } });
  const v4 = (await run("aws", ["--endpoint-url", s.httpUrl, "s3", "presign", `s3://${B}/links/presign.txt`], { env: { ...process.env, AWS_ACCESS_KEY_ID: keys.id, AWS_SECRET_ACCESS_KEY: keys.secret, AWS_DEFAULT_REGION: "us-east-1", AWS_CONFIG_FILE: config } })).stdout.trim();
  expect(v4).toContain("X-Amz-Signature=");
  expect(await (await fetch(v4)).text()).toBe("shared with a link");
  // Signature V2 in a header, as old tools send it.
  const header = await fetch(`${s.httpUrl}/${B}/links/presign.txt`, { headers: { authorization: `AWS ${keys.id}:c2lnbmF0dXJl`, date: new Date().toUTCString() } });
  expect(header.status).toBe(400);
  expect(await header.text()).toContain("(Signature Version 2) is not supported");
});

test("a wrong secret, another organization's bucket and an oversized or corrupted upload get S3 errors and store nothing", async () => {
  const wrong = aws(["s3", "cp", join(work, "back.txt"), `s3://${B}/bad/x.txt`], { id: keys.id, secret: "not-the-secret" });
  await expect(wrong).rejects.toMatchObject({ stderr: expect.stringMatching(/SignatureDoesNotMatch/) });
  const unknown = aws(["s3", "ls", `s3://${B}/`], { id: "K3AKNOSUCHKEY0000", secret: "x" });
  await expect(unknown).rejects.toMatchObject({ stderr: expect.stringMatching(/InvalidAccessKeyId/) });
  const other = await token("other-org", [{ bucket: "*", role: "admin" }], true);
  await expect(aws(["s3", "ls", `s3://${B}/`], other)).rejects.toMatchObject({ stderr: expect.stringMatching(/NoSuchBucket/) });
  const reader = await token("default", [{ bucket: B, role: "reader" }], true);
  await expect(aws(["s3", "cp", join(work, "back.txt"), `s3://${B}/bad/y.txt`], reader)).rejects.toMatchObject({ stderr: expect.stringMatching(/AccessDenied/) });

  const auth = { authorization: `Bearer ${bearer}` };
  const big = await fetch(`${s.httpUrl}/${B}/bad/big.bin`, { method: "PUT", headers: auth, body: Buffer.alloc(31 * 1024 * 1024) });
  expect(big.status).toBe(413);
  expect(await big.text()).toMatch(/<Code>EntityTooLarge<\/Code>/);
  const badMd5 = await fetch(`${s.httpUrl}/${B}/bad/md5.txt`, { method: "PUT", headers: { ...auth, "content-md5": Buffer.alloc(16).toString("base64") }, body: "x" });
  expect(badMd5.status).toBe(400);
  expect(await badMd5.text()).toMatch(/<Code>BadDigest<\/Code>/);
  const pool = s.app.repo().pool;
  expect((await pool.query("SELECT object_key FROM objects WHERE bucket = $1 AND object_key LIKE 'bad/%'", [B])).rows).toEqual([]);
  expect(existsSync(join(s.dataDir, "buckets", B, "bad"))).toBe(false);
  expect((await api("GET", `/${B}/ingest/jobs?page_size=1000`)).json.jobs.filter((j: J) => j.object.key.startsWith("bad/"))).toEqual([]);
});

test("a client that disconnects mid-upload leaves no object and no job", async () => {
  const u = new URL(`${s.httpUrl}/${B}/docs/cut.txt`);
  await new Promise<void>((resolve) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: "PUT", headers: { authorization: `Bearer ${bearer}`, "content-length": String(1024 * 1024) } });
    req.on("error", () => resolve());
    req.write(Buffer.alloc(64 * 1024, "a"));
    setTimeout(() => {
      req.destroy();
      resolve();
    }, 200);
  });
  await new Promise((r) => setTimeout(r, 300));
  const pool = s.app.repo().pool;
  expect((await pool.query("SELECT 1 FROM objects WHERE bucket = $1 AND object_key = 'docs/cut.txt'", [B])).rows).toEqual([]);
  expect(await jobsOf(B, "docs/cut.txt")).toEqual([]);
  expect(existsSync(join(s.dataDir, "buckets", B, "docs", "cut.txt"))).toBe(false);
});

test("a client that stops reading a download and goes away leaves no descriptor open on the object", async () => {
  const key = "downloads/big.bin";
  const put = await fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: { authorization: `Bearer ${bearer}` }, body: Buffer.alloc(24 * 1024 * 1024, "z") });
  expect(put.status).toBe(200);
  const file = join(s.dataDir, "buckets", B, key);
  // This process is the server: its descriptors open on the object's file.
  const openOnObject = () =>
    readdirSync("/proc/self/fd").filter((n) => {
      try {
        return readlinkSync(`/proc/self/fd/${n}`) === file;
      } catch {
        return false;
      }
    }).length;
  const u = new URL(`${s.httpUrl}/${B}/${key}`);
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, headers: { authorization: `Bearer ${bearer}` } }, (res) => {
      expect(res.statusCode).toBe(200);
      res.once("data", () => {
        // Read one chunk, stop, and let the server fill the socket and wait for it to drain.
        res.pause();
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 500);
      });
    });
    req.on("error", () => resolve());
    req.setTimeout(10_000, () => reject(new Error("no response")));
    req.end();
  });
  await waitFor("the download's descriptor to be closed", async () => (openOnObject() === 0 ? true : undefined), { timeoutMs: 5_000 });
  expect((await fetch(`${s.httpUrl}/${B}/${key}`, { method: "DELETE", headers: { authorization: `Bearer ${bearer}` } })).status).toBe(204);
});

test("on the shared port a REST route wins for bearer calls; the same path signed with SigV4 is an object", async () => {
  // An object whose key is "rules": PUT goes to the byte plane; GET with a bearer token is the rule list.
  await aws(["s3", "cp", join(work, "back.txt"), `s3://${B}/rules`]);
  const list = await api("GET", `/${B}/rules`);
  expect(list.json.rules).toHaveLength(2);
  await aws(["s3", "cp", `s3://${B}/rules`, join(work, "rules.txt")]);
  expect(readFileSync(join(work, "rules.txt"), "utf8")).toBe("alpha beta gamma ".repeat(20));
});

test("a 20 MB file goes up with `aws s3 cp` (multipart), comes back identical, and carries S3's multipart ETag", async () => {
  const big = Buffer.alloc(20 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
  writeFileSync(join(work, "big.bin"), big);
  await aws(["s3", "cp", join(work, "big.bin"), `s3://${B}/multi/big.bin`]);
  const head = JSON.parse((await aws(["s3api", "head-object", "--bucket", B, "--key", "multi/big.bin"])).stdout);
  expect(head.ContentLength).toBe(big.length);
  expect(head.ETag).toMatch(/^"[0-9a-f]{32}-3"$/); // 8 MB parts: 3 of them
  await aws(["s3", "cp", `s3://${B}/multi/big.bin`, join(work, "big-back.bin")]);
  expect(readFileSync(join(work, "big-back.bin")).equals(big)).toBe(true);
  const pool = s.app.repo().pool;
  expect((await pool.query("SELECT count(*)::int AS n FROM multipart_uploads")).rows[0].n).toBe(0);
  expect(existsSync(join(s.dataDir, "tmp")) ? (await import("node:fs")).readdirSync(join(s.dataDir, "tmp")).filter((n) => n.startsWith("mpu-")) : []).toEqual([]);
});

test("an aborted multipart upload leaves nothing; parts listed while it runs; a wrong part ETag is InvalidPart", async () => {
  const out = await boto3(
    `u = c.create_multipart_upload(Bucket="${B}", Key="multi/aborted.bin")["UploadId"]
p1 = c.upload_part(Bucket="${B}", Key="multi/aborted.bin", UploadId=u, PartNumber=1, Body=b"a" * 5242880)["ETag"]
print(",".join(str(p["PartNumber"]) for p in c.list_parts(Bucket="${B}", Key="multi/aborted.bin", UploadId=u)["Parts"]))
try:
    c.complete_multipart_upload(Bucket="${B}", Key="multi/aborted.bin", UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]})
except Exception as e:
    print(type(e).__name__, getattr(e, "response", {}).get("Error", {}).get("Code"))
c.abort_multipart_upload(Bucket="${B}", Key="multi/aborted.bin", UploadId=u)
try:
    c.list_parts(Bucket="${B}", Key="multi/aborted.bin", UploadId=u)
except Exception as e:
    print(getattr(e, "response", {}).get("Error", {}).get("Code"))`,
  );
  expect(out.stdout.trim().split("\n")).toEqual(["1", "ClientError InvalidPart", "NoSuchUpload"]);
  expect((await fetch(`${s.httpUrl}/${B}/multi/aborted.bin`, { headers: { authorization: `Bearer ${bearer}` } })).status).toBe(404);
});

test("the admin object surface: ListObjects, GetObjectInfo with per-pipeline status, GetObjectUrl, DeleteObject", async () => {
  const listed = await api("GET", `/${B}/objects?prefix=docs/&delimiter=/`);
  expect(listed.status).toBe(200);
  expect(listed.json.objects.map((o: J) => o.key)).toEqual(["docs/broken.pdf", "docs/intro.txt", "docs/notes.md", "docs/table.csv"]);
  expect(listed.json.commonPrefixes).toEqual(["docs/legal/"]);
  const first = await api("GET", `/${B}/objects?max_keys=2`);
  expect(first.json).toMatchObject({ isTruncated: true });
  const second = await api("GET", `/${B}/objects?max_keys=1000&continuation_token=${encodeURIComponent(first.json.nextContinuationToken)}`);
  expect([...first.json.objects, ...second.json.objects].map((o: J) => o.key)).toContain("other.bin");

  const info = await api("GET", `/${B}/objects/docs/intro.txt/info`);
  expect(info.json.object).toMatchObject({ bucket: B, key: "docs/intro.txt", size: "340", contentType: "text/plain" });
  expect(info.json.object.etag).toMatch(/^[0-9a-f]{32}$/);
  expect(info.json.object.indexStatus).toEqual([expect.objectContaining({ pipelineName: "embed", status: "INGEST_STATUS_COMPLETED" })]);
  const nested = await api("GET", `/${B}/objects/docs/legal/msa.pdf/info`);
  expect(nested.json.object.key).toBe("docs/legal/msa.pdf");
  expect((await api("GET", `/${B}/objects/docs/nope.txt/info`)).status).toBe(404);

  const url = await api("GET", `/${B}/objects/docs/legal/msa.pdf/url?expires_in_seconds=999999`);
  expect(Number(url.json.expiresAt) - Date.now()).toBeLessThanOrEqual(86_400_000 + 1000); // capped at 24 h
  const download = await fetch(url.json.url);
  expect(download.status).toBe(200);
  expect(Buffer.from(await download.arrayBuffer()).equals(makePdf([["Master services agreement"], ["Second page"]]))).toBe(true);
  expect((await fetch(url.json.url.replace("msa.pdf", "msa2.pdf"))).status).toBe(403);
  expect((await fetch(url.json.url, { method: "PUT", body: "overwrite" })).status).toBe(403);

  expect((await api("DELETE", `/${B}/objects/docs/notes.md`)).status).toBe(200);
  expect((await api("GET", `/${B}/objects/docs/notes.md/info`)).status).toBe(404);
  expect((await fetch(`${s.httpUrl}/${B}/docs/notes.md`, { headers: { authorization: `Bearer ${bearer}` } })).status).toBe(404);
  expect((await api("DELETE", `/${B}/objects/docs/notes.md`)).status).toBe(404);
});

test("CopyObject (with `aws s3 cp` between keys) runs the rules for the copy; DeleteObjects removes many keys at once", async () => {
  await aws(["s3", "cp", `s3://${B}/docs/intro.txt`, `s3://${B}/copies/intro-copy.txt`]);
  const back = await fetch(`${s.httpUrl}/${B}/copies/intro-copy.txt`, { headers: { authorization: `Bearer ${bearer}` } });
  expect(await back.text()).toBe("alpha beta gamma ".repeat(20));
  await aws(["s3", "cp", `s3://${B}/docs/intro.txt`, `s3://${B}/docs/intro-copy.txt`]);
  const job = await waitFor("the copy's job", async () => {
    const jobs = await jobsOf(B, "docs/intro-copy.txt");
    return jobs[0]?.status === "INGEST_STATUS_COMPLETED" ? jobs[0] : undefined;
  });
  expect(job).toMatchObject({ chunksCreated: 4 });
  const out = await boto3(
    `r = c.delete_objects(Bucket="${B}", Delete={"Objects": [{"Key": "copies/intro-copy.txt"}, {"Key": "docs/intro-copy.txt"}, {"Key": "never/was.txt"}]})
print(",".join(sorted(d["Key"] for d in r["Deleted"])))`,
  );
  expect(out.stdout.trim()).toBe("copies/intro-copy.txt,docs/intro-copy.txt,never/was.txt");
  const pool = s.app.repo().pool;
  expect((await pool.query("SELECT count(*)::int AS n FROM objects WHERE bucket = $1 AND object_key LIKE '%intro-copy.txt'", [B])).rows[0].n).toBe(0);
  expect((await pool.query("SELECT count(*)::int AS n FROM vector_chunks WHERE bucket = $1 AND object_key = 'docs/intro-copy.txt'", [B])).rows[0].n).toBe(0);
});

test("DeleteObjects of 1,000 keys in non-ASCII names deletes those keys, whatever packets the request arrived in", async () => {
  // ~230 KB of XML: read chunk by chunk into a string, a character split between two chunks became two U+FFFDs.
  const out = await boto3(
    `keys = ["ünïcödé/" + "Ωμέγα-" * 20 + str(i) + ".txt" for i in range(1000)]
for k in keys[:3]:
    c.put_object(Bucket="${B}", Key=k, Body=b"x")
r = c.delete_objects(Bucket="${B}", Delete={"Objects": [{"Key": k} for k in keys]})
deleted = set(d["Key"] for d in r["Deleted"])
print(len(deleted), len(deleted & set(keys)), len(r.get("Errors", [])))`,
  );
  expect(out.stdout.trim()).toBe("1000 1000 0");
  const pool = s.app.repo().pool;
  expect((await pool.query("SELECT count(*)::int AS n FROM objects WHERE bucket = $1 AND object_key LIKE 'ünïcödé/%'", [B])).rows[0].n).toBe(0);
});

test("@aws-sdk/client-s3 puts, heads, lists, gets and deletes with SigV4", async () => {
  const { S3Client, PutObjectCommand, HeadObjectCommand, ListObjectsV2Command, GetObjectCommand, DeleteObjectCommand } = await import("@aws-sdk/client-s3");
  const client = new S3Client({ endpoint: s.httpUrl, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: keys.id, secretAccessKey: keys.secret } });
  try {
    const put = await client.send(new PutObjectCommand({ Bucket: B, Key: "sdk/js.txt", Body: Buffer.from("from the js sdk"), ContentType: "text/plain", Metadata: { team: "search" } }));
    expect(put.ETag).toMatch(/^"[0-9a-f]{32}"$/);
    const head = await client.send(new HeadObjectCommand({ Bucket: B, Key: "sdk/js.txt" }));
    expect(head).toMatchObject({ ContentLength: 15, ContentType: "text/plain", Metadata: { team: "search" } });
    const list = await client.send(new ListObjectsV2Command({ Bucket: B, Prefix: "sdk/" }));
    expect(list.Contents?.map((c) => c.Key)).toEqual(["sdk/js.txt"]);
    const got = await client.send(new GetObjectCommand({ Bucket: B, Key: "sdk/js.txt" }));
    expect(await got.Body?.transformToString()).toBe("from the js sdk");
    await client.send(new DeleteObjectCommand({ Bucket: B, Key: "sdk/js.txt" }));
    await expect(client.send(new HeadObjectCommand({ Bucket: B, Key: "sdk/js.txt" }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
  } finally {
    client.destroy();
  }
});

test("a request signed 20 minutes ago is RequestTimeTooSkewed; `aws s3 sync` and `s3api put-object` work", async () => {
  const skewed = boto3(
    `import datetime, botocore.auth
Real = datetime.datetime
class Past(Real):
    @classmethod
    def utcnow(cls):
        return Real.utcnow() - datetime.timedelta(minutes=20)
    @classmethod
    def now(cls, tz=None):
        return Real.now(tz) - datetime.timedelta(minutes=20)
botocore.auth.datetime.datetime = Past
c.list_objects_v2(Bucket="${B}")`,
  );
  await expect(skewed).rejects.toMatchObject({ stderr: expect.stringMatching(/RequestTimeTooSkewed/) });
  const dir = join(work, "sync");
  mkdirSync(join(dir, "a"), { recursive: true });
  writeFileSync(join(dir, "a", "one.txt"), "one");
  writeFileSync(join(dir, "two.txt"), "two");
  await aws(["s3", "sync", dir, `s3://${B}/synced/`]);
  const listed = await aws(["s3", "ls", `s3://${B}/synced/`, "--recursive"]);
  expect(listed.stdout).toMatch(/synced\/a\/one\.txt/);
  expect(listed.stdout).toMatch(/synced\/two\.txt/);
  const put = JSON.parse((await aws(["s3api", "put-object", "--bucket", B, "--key", "synced/api.txt", "--body", join(dir, "two.txt")])).stdout);
  expect(put.ETag).toMatch(/^"[0-9a-f]{32}"$/);
  await aws(["s3", "rm", `s3://${B}/synced/`, "--recursive"]);
  expect((await aws(["s3", "ls", `s3://${B}/synced/`, "--recursive"]).catch((e: { stdout: string }) => e)).stdout.trim()).toBe("");
});

test("a bucket's storage quota is enforced on upload: QuotaExceeded, nothing stored", async () => {
  await api("POST", "/admin/buckets", { name: "kb-quota", storageQuotaBytes: "10" });
  const auth = { authorization: `Bearer ${bearer}` };
  expect((await fetch(`${s.httpUrl}/kb-quota/a.txt`, { method: "PUT", headers: auth, body: "12345678" })).status).toBe(200);
  const over = await fetch(`${s.httpUrl}/kb-quota/b.txt`, { method: "PUT", headers: auth, body: "12345" });
  expect(over.status).toBe(403);
  expect(await over.text()).toMatch(/<Code>QuotaExceeded<\/Code>/);
  // Replacing an object counts only the difference.
  expect((await fetch(`${s.httpUrl}/kb-quota/a.txt`, { method: "PUT", headers: auth, body: "0123456789" })).status).toBe(200);
  expect((await api("GET", "/admin/buckets/kb-quota")).json.bucket).toMatchObject({ objectCount: "1", storageUsedBytes: "10" });
});

test("curl itself: a PDF PUT with a bearer token under a rule's pattern reaches COMPLETED; a presigned GET works", async () => {
  const pdf = makePdf([["Curl uploaded contract"], ["Page two"]]);
  writeFileSync(join(work, "curl.pdf"), pdf);
  const put = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", `${s.httpUrl}/${B}/docs/curl/contract.pdf`, "-H", `Authorization: Bearer ${bearer}`, "-H", "Content-Type: application/pdf", "--data-binary", `@${join(work, "curl.pdf")}`]);
  expect(put.stdout).toBe("200");
  const job = await waitFor("the curl PDF's job", async () => {
    const jobs = await jobsOf(B, "docs/curl/contract.pdf");
    return jobs[0] && TERMINAL.includes(jobs[0].status) ? jobs[0] : undefined;
  });
  expect(job).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1, embeddingsWritten: 1, batchesReceived: 1 });
  const url = (await api("GET", `/${B}/objects/docs/curl/contract.pdf/url`)).json.url as string;
  const got = await run("curl", ["-sS", "-o", join(work, "curl-back.pdf"), "-w", "%{http_code}", url]);
  expect(got.stdout).toBe("200");
  expect(readFileSync(join(work, "curl-back.pdf")).equals(pdf)).toBe(true);
});
