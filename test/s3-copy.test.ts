/**
 * Copies on the byte plane: the AWS CLI copies and moves a large object with a multipart
 * copy (UploadPartCopy: each part a range of the source), boto3 sets ranges and the copy
 * source's conditions, and a caller who may not read the source copies nothing from it.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";

jest.setTimeout(120_000);
const run = promisify(execFile);

let s: TestServers;
let admin: S3Admin;
let auth: Record<string, string>;
const B = "kb-copies";
const OTHER = "kb-copies-private";
const work = mkdtempSync(join(tmpdir(), "k3-copies-"));
const big = randomBytes(20 * 1024 * 1024);

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on", K3_MAX_OBJECT_BYTES: String(30 * 1024 * 1024) });
  admin = await s3Admin(s, work, [B, OTHER]);
  auth = admin.auth;
  expect((await fetch(`${s.httpUrl}/${B}/big.bin`, { method: "PUT", headers: auth, body: big })).status).toBe(200);
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

const aws = (args: string[]) => admin.aws(["--no-progress", ...args]);

async function bytesOf(bucket: string, key: string): Promise<Buffer> {
  const res = await fetch(`${s.httpUrl}/${bucket}/${key}`, { headers: auth });
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

test("aws s3 cp and mv of a 20 MiB object inside the byte plane: a multipart copy, the same bytes", async () => {
  await aws(["s3", "cp", `s3://${B}/big.bin`, `s3://${B}/copied.bin`]);
  expect((await bytesOf(B, "copied.bin")).equals(big)).toBe(true);
  // A multipart copy's ETag: the MD5 of its parts' MD5s and their count (the CLI copies in 8 MiB parts).
  const head = await fetch(`${s.httpUrl}/${B}/copied.bin`, { method: "HEAD", headers: auth });
  expect(head.headers.get("etag")).toMatch(/^"[0-9a-f]{32}-3"$/);

  await aws(["s3", "mv", `s3://${B}/copied.bin`, `s3://${B}/moved/big.bin`]);
  expect((await bytesOf(B, "moved/big.bin")).equals(big)).toBe(true);
  expect((await fetch(`${s.httpUrl}/${B}/copied.bin`, { method: "HEAD", headers: auth })).status).toBe(404);
  const local = join(work, "back.bin");
  await aws(["s3", "cp", `s3://${B}/moved/big.bin`, local]);
  expect(readFileSync(local).equals(big)).toBe(true);
});

test("boto3: UploadPartCopy with ranges, a range past the end, and the copy source's conditions", async () => {
  const script = join(work, "part_copy_check.py"); // not copy.py: it would shadow the standard library's copy module
  writeFileSync(
    script,
    `import boto3, sys, hashlib
from botocore.config import Config
from botocore.exceptions import ClientError
c = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name="us-east-1", config=Config(signature_version="s3v4"))
B = "${B}"
def code(f):
    try:
        f()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]
etag = c.head_object(Bucket=B, Key="big.bin")["ETag"]
up = c.create_multipart_upload(Bucket=B, Key="stitched.bin")["UploadId"]
MiB = 1024 * 1024
p1 = c.upload_part_copy(Bucket=B, Key="stitched.bin", UploadId=up, PartNumber=1, CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceRange="bytes=%d-%d" % (10 * MiB, 15 * MiB - 1), CopySourceIfMatch=etag)
p2 = c.upload_part_copy(Bucket=B, Key="stitched.bin", UploadId=up, PartNumber=2, CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceRange="bytes=0-99")
print("past the end", code(lambda: c.upload_part_copy(Bucket=B, Key="stitched.bin", UploadId=up, PartNumber=3, CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceRange="bytes=0-%d" % (20 * MiB))))
print("if-match other", code(lambda: c.upload_part_copy(Bucket=B, Key="stitched.bin", UploadId=up, PartNumber=3, CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceIfMatch='"0123"')))
parts = [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]
c.complete_multipart_upload(Bucket=B, Key="stitched.bin", UploadId=up, MultipartUpload={"Parts": parts})
print("stitched", hashlib.md5(c.get_object(Bucket=B, Key="stitched.bin")["Body"].read()).hexdigest())
print("copy if-none-match current", code(lambda: c.copy_object(Bucket=B, Key="c.bin", CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceIfNoneMatch=etag)))
print("copy if-match current", code(lambda: c.copy_object(Bucket=B, Key="c.bin", CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceIfMatch=etag)))
print("copy if-unmodified-since long ago", code(lambda: c.copy_object(Bucket=B, Key="c.bin", CopySource={"Bucket": B, "Key": "big.bin"}, CopySourceIfUnmodifiedSince="2001-01-01T00:00:00Z")))
`,
  );
  const out = (await run("python3", [script, s.httpUrl, admin.keys.id, admin.keys.secret], { timeout: 60_000 })).stdout.trim().split("\n");
  const MiB = 1024 * 1024;
  const want = createHash("md5").update(Buffer.concat([big.subarray(10 * MiB, 15 * MiB), big.subarray(0, 100)])).digest("hex");
  expect(out).toEqual([
    "past the end InvalidArgument",
    "if-match other PreconditionFailed",
    `stitched ${want}`,
    "copy if-none-match current PreconditionFailed",
    "copy if-match current ok",
    "copy if-unmodified-since long ago PreconditionFailed",
  ]);
});

test("a caller who may not read the source copies nothing from it, whole or by part", async () => {
  expect((await fetch(`${s.httpUrl}/${OTHER}/secret.txt`, { method: "PUT", headers: auth, body: "not yours" })).status).toBe(200);
  const writer = await insertToken(s, "default", [{ bucket: B, role: "writer" }]);
  const h = { authorization: `Bearer ${writer.token}`, "x-amz-copy-source": `/${OTHER}/secret.txt` };
  const whole = await fetch(`${s.httpUrl}/${B}/stolen.txt`, { method: "PUT", headers: h });
  expect(whole.status).toBe(403);
  expect(await whole.text()).toMatch(/<Code>AccessDenied<\/Code>/);
  const started = await fetch(`${s.httpUrl}/${B}/stolen.txt?uploads`, { method: "POST", headers: { authorization: h.authorization } });
  const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(await started.text())![1];
  const part = await fetch(`${s.httpUrl}/${B}/stolen.txt?partNumber=1&uploadId=${uploadId}`, { method: "PUT", headers: h });
  expect(part.status).toBe(403);
  const listed = await fetch(`${s.httpUrl}/${B}/stolen.txt?uploadId=${uploadId}`, { headers: { authorization: h.authorization } });
  expect(await listed.text()).not.toMatch(/<Part>/);
});
