/**
 * S3 object tags on the byte plane: set with an upload's x-amz-tagging (boto3's
 * put_object(Tagging=…), `aws s3api put-object --tagging`) or PutObjectTagging, read with
 * GetObjectTagging and as GetObject's TagCount, removed with DeleteObjectTagging; copies keep
 * or replace them as their tagging directive says; a multipart upload carries them; bad tags
 * are InvalidTag naming the tag, before the body is stored; GetObjectInfo shows them; a
 * policy can deny them. Before, `?tagging` answered 501 and x-amz-tagging was ignored.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jsonClient, rawRequest } from "./helpers/http";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";

jest.setTimeout(120_000);

const B = "kb-tags";
const work = mkdtempSync(join(tmpdir(), "k3-tags-"));
let s: TestServers;
let admin: S3Admin;

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  admin = await s3Admin(s, work, [B]);
});
afterAll(async () => {
  await s?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** The AWS CLI's JSON answer. */
const awsJson = async (args: string[]) => JSON.parse((await admin.aws(args)).stdout || "{}");
/** The AWS CLI's error line, for a call that must fail. */
const awsError = (args: string[]) => admin.aws(args).then((r) => `unexpected success: ${r.stdout}`, (err: { stderr: string }) => err.stderr.trim());
const tagsOf = async (key: string) => (await awsJson(["s3api", "get-object-tagging", "--bucket", B, "--key", key])).TagSet;

test("tags set at upload and by PutObjectTagging read back, count on GET, and go with DeleteObjectTagging; the bytes and ETag stay", async () => {
  expect(await admin.boto3(`c.put_object(Bucket="${B}", Key="docs/a.txt", Body=b"alpha", Tagging="team=search&stage=draft%20one")\nprint(c.get_object(Bucket="${B}", Key="docs/a.txt")["TagCount"])`)).toBe("2");
  expect(await tagsOf("docs/a.txt")).toEqual([{ Key: "team", Value: "search" }, { Key: "stage", Value: "draft one" }]);
  const before = await awsJson(["s3api", "head-object", "--bucket", B, "--key", "docs/a.txt"]);

  await admin.aws(["s3api", "put-object-tagging", "--bucket", B, "--key", "docs/a.txt", "--tagging", JSON.stringify({ TagSet: [{ Key: "team", Value: "ingest & search" }, { Key: "<kind>", Value: "" }] })]);
  expect(await tagsOf("docs/a.txt")).toEqual([{ Key: "team", Value: "ingest & search" }, { Key: "<kind>", Value: "" }]);
  const after = await awsJson(["s3api", "head-object", "--bucket", B, "--key", "docs/a.txt"]);
  expect([after.ETag, after.LastModified, after.ContentLength]).toEqual([before.ETag, before.LastModified, 5]);
  // GetObjectInfo shows them; user metadata stays the user's own.
  const info = await jsonClient(() => s.httpUrl, admin.auth)("GET", `/${B}/objects/docs/a.txt/info`);
  expect(info.json.object).toMatchObject({ tags: { team: "ingest & search", "<kind>": "" }, metadata: {} });

  await admin.aws(["s3api", "delete-object-tagging", "--bucket", B, "--key", "docs/a.txt"]);
  expect(await tagsOf("docs/a.txt")).toEqual([]);
  const got = await rawRequest(s.httpUrl, "GET", `/${B}/docs/a.txt`, admin.auth);
  expect([got.status, got.headers["x-amz-tagging-count"], got.body.toString()]).toEqual([200, undefined, "alpha"]);
  expect(await awsError(["s3api", "get-object-tagging", "--bucket", B, "--key", "docs/none.txt"])).toMatch(/NoSuchKey/);
  // A bucket's own tagging stays unserved, and says so.
  expect((await rawRequest(s.httpUrl, "GET", `/${B}?tagging`, admin.auth)).status).toBe(501);
});

test("a copy keeps the source's tags unless its tagging directive is REPLACE; a multipart upload carries its tags", async () => {
  await admin.aws(["s3api", "put-object", "--bucket", B, "--key", "src.txt", "--body", writeTemp("src", "source"), "--tagging", "origin=copy-test"]);
  await admin.aws(["s3api", "copy-object", "--bucket", B, "--key", "kept.txt", "--copy-source", `${B}/src.txt`]);
  expect(await tagsOf("kept.txt")).toEqual([{ Key: "origin", Value: "copy-test" }]);
  await admin.aws(["s3api", "copy-object", "--bucket", B, "--key", "replaced.txt", "--copy-source", `${B}/src.txt`, "--tagging-directive", "REPLACE", "--tagging", "origin=replaced"]);
  expect(await tagsOf("replaced.txt")).toEqual([{ Key: "origin", Value: "replaced" }]);
  // Metadata replaced, tags copied: the two directives are separate.
  await admin.aws(["s3api", "copy-object", "--bucket", B, "--key", "meta.txt", "--copy-source", `${B}/src.txt`, "--metadata-directive", "REPLACE", "--metadata", "owner=ops"]);
  expect(await tagsOf("meta.txt")).toEqual([{ Key: "origin", Value: "copy-test" }]);

  const parts = await admin.boto3(
    `u = c.create_multipart_upload(Bucket="${B}", Key="big.bin", Tagging="size=large")\n` +
      `p = c.upload_part(Bucket="${B}", Key="big.bin", UploadId=u["UploadId"], PartNumber=1, Body=b"x" * (5 << 20))\n` +
      `q = c.upload_part(Bucket="${B}", Key="big.bin", UploadId=u["UploadId"], PartNumber=2, Body=b"y")\n` +
      `c.complete_multipart_upload(Bucket="${B}", Key="big.bin", UploadId=u["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}, {"PartNumber": 2, "ETag": q["ETag"]}]})\n` +
      `print(c.get_object_tagging(Bucket="${B}", Key="big.bin")["TagSet"])`,
  );
  expect(parts).toBe("[{'Key': 'size', 'Value': 'large'}]");
});

test("bad tags are InvalidTag naming the tag, and an upload carrying them stores nothing", async () => {
  const eleven = Array.from({ length: 11 }, (_, i) => `k${i}=v`).join("&");
  const refusals: Array<[string, RegExp]> = [
    [eleven, /11 tags given; an object may have at most 10/],
    [`${"k".repeat(129)}=v`, /is 129 characters long; a key has 1 to 128/],
    [`team=a&team=b`, /the tag key "team" is given twice/],
    [`long=${"v".repeat(257)}`, /the value of tag "long" is 257 characters long; a value has at most 256/],
  ];
  for (const [tagging, message] of refusals) {
    const res = await rawRequest(s.httpUrl, "PUT", `/${B}/bad/${Math.random()}.txt`, { ...admin.auth, "x-amz-tagging": tagging }, Buffer.from("bytes"));
    const text = res.body.toString().replace(/&quot;/g, '"');
    expect([res.status, /<Code>InvalidTag<\/Code>/.test(text), message.test(text) || text]).toEqual([400, true, true]);
  }
  expect((await awsJson(["s3api", "list-objects-v2", "--bucket", B, "--prefix", "bad/"])).Contents).toBeUndefined();
  const staging = join(s.dataDir, "tmp");
  expect(existsSync(staging) ? readdirSync(staging).filter((f) => f.startsWith("upload-")) : []).toEqual([]);
  const xml = await rawRequest(s.httpUrl, "PUT", `/${B}/src.txt?tagging`, admin.auth, Buffer.from("<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>"));
  expect([xml.status, /<Code>MalformedXML<\/Code>/.test(xml.body.toString())]).toEqual([400, true]);
  expect(await tagsOf("src.txt")).toEqual([{ Key: "origin", Value: "copy-test" }]);
});

test("tagging calls need their role, and a bucket policy can deny them", async () => {
  const reader = await insertToken(s, "default", [{ bucket: B, role: "reader" }]);
  const writer = await insertToken(s, "default", [{ bucket: B, role: "writer" }]);
  const as = (t: { token: string }) => ({ authorization: `Bearer ${t.token}` });
  const body = Buffer.from("<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>");
  expect((await rawRequest(s.httpUrl, "GET", `/${B}/src.txt?tagging`, as(reader))).status).toBe(200);
  expect((await rawRequest(s.httpUrl, "PUT", `/${B}/src.txt?tagging`, as(reader), body)).status).toBe(403);
  expect((await rawRequest(s.httpUrl, "PUT", `/${B}/src.txt?tagging`, as(writer), body)).status).toBe(200);
  const deny = { Version: "2012-10-17", Statement: [{ Sid: "FrozenTags", Effect: "Deny", Principal: { AWS: [writer.tokenId] }, Action: ["s3:PutObjectTagging", "s3:DeleteObjectTagging"], Resource: `arn:aws:s3:::${B}/*` }] };
  expect((await jsonClient(() => s.httpUrl, admin.auth)("PUT", `/admin/buckets/${B}/policy`, { policy: deny })).status).toBe(200);
  const denied = await rawRequest(s.httpUrl, "DELETE", `/${B}/src.txt?tagging`, as(writer));
  expect([denied.status, /FrozenTags/.test(denied.body.toString())]).toEqual([403, true]);
  expect(await tagsOf("src.txt")).toEqual([{ Key: "k", Value: "v" }]);
});

function writeTemp(name: string, content: string): string {
  const file = join(work, name);
  writeFileSync(file, content);
  return file;
}
