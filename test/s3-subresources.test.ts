/**
 * S3 operations named by a query parameter ("sub-resources") with the AWS CLI. Those the
 * byte plane does not serve answer 501 and change nothing — before, PutObjectTagging
 * overwrote the object with its XML, DeleteObjectTagging deleted the object and
 * DeleteBucketCors deleted the bucket with its pipelines (CORS is served now: cors.test.ts). Those it serves: versioning read
 * (never enabled), ListMultipartUploads with its markers, GetObject's partNumber; a version
 * other than the current one, customer-key encryption and object lock are refused.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServers, type TestServers } from "./helpers/servers";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";
import { jsonClient } from "./helpers/http";

jest.setTimeout(120_000);

let s: TestServers;
let admin: S3Admin;
let auth: Record<string, string>;
const B = "kb-subresources";
const work = mkdtempSync(join(tmpdir(), "k3-subresources-"));

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  admin = await s3Admin(s, work, [B]);
  auth = admin.auth;
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

/** The AWS CLI; resolves with stdout, or with the error line it printed. */
function aws(...args: string[]): Promise<string> {
  return admin.aws(args).then(
    (r) => r.stdout.trim(),
    (err: { stderr?: string }) => (err.stderr ?? "").trim(),
  );
}

const bytes = async (key: string) => (await fetch(`${s.httpUrl}/${B}/${key}`, { headers: auth })).text();

test("bucket tagging, ACL, lifecycle and website calls answer 501 NotImplemented and leave the object and the bucket as they were", async () => {
  writeFileSync(join(work, "precious.txt"), "precious bytes");
  await aws("s3", "cp", join(work, "precious.txt"), `s3://${B}/precious.txt`);
  // An object's tagging is served (object-tagging.test.ts); a bucket's is not.
  expect(await aws("s3api", "put-bucket-tagging", "--bucket", B, "--tagging", "TagSet=[{Key=a,Value=b}]")).toMatch(/\(NotImplemented\).*\?tagging/);
  expect(await aws("s3api", "delete-bucket-tagging", "--bucket", B)).toMatch(/\(NotImplemented\)/);
  expect(await aws("s3api", "put-object-acl", "--bucket", B, "--key", "precious.txt", "--acl", "public-read")).toMatch(/\(NotImplemented\).*\?acl/);
  expect(await bytes("precious.txt")).toBe("precious bytes");

  const api = jsonClient(() => s.httpUrl, auth);
  expect((await api("POST", "/admin/buckets", { name: "kb-subresources-empty" })).status).toBe(200);
  expect((await api("POST", "/kb-subresources-empty/pipelines", { name: "noop", scriptum_template: "noop" })).status).toBe(200);
  expect(await aws("s3api", "delete-bucket-lifecycle", "--bucket", "kb-subresources-empty")).toMatch(/\(NotImplemented\).*\?lifecycle/);
  expect(await aws("s3api", "delete-bucket-website", "--bucket", "kb-subresources-empty")).toMatch(/\(NotImplemented\).*\?website/);
  // Served now (bucket-policy.test.ts), and still a call on the bucket's policy, not on the bucket.
  expect(await aws("s3api", "delete-bucket-policy", "--bucket", "kb-subresources-empty")).toBe("");
  expect(await aws("s3api", "put-bucket-versioning", "--bucket", "kb-subresources-empty", "--versioning-configuration", "Status=Enabled")).toMatch(/\(NotImplemented\)/);
  const kept = await api("GET", "/kb-subresources-empty/pipelines");
  expect(kept.status).toBe(200);
  expect(kept.json.pipelines).toHaveLength(1);
  // Versioning read: never enabled, so no Status (the CLI prints nothing).
  expect(await aws("s3api", "get-bucket-versioning", "--bucket", B)).toBe("");
});

test("a version other than the current one, customer-key encryption and object lock are refused, nothing written", async () => {
  expect(await aws("s3api", "get-object", "--bucket", B, "--key", "precious.txt", "--version-id", "3HL4kqtJlcpXroDTDmJ", join(work, "v.txt"))).toMatch(/\(InvalidArgument\).*versionId/);
  const current = JSON.parse(await aws("s3api", "head-object", "--bucket", B, "--key", "precious.txt", "--version-id", "null"));
  expect(current.ContentLength).toBe(14);
  const sse = await fetch(`${s.httpUrl}/${B}/sealed.txt`, { method: "PUT", headers: { ...auth, "x-amz-server-side-encryption-customer-algorithm": "AES256" }, body: "secret" });
  expect(sse.status).toBe(501);
  const lock = await fetch(`${s.httpUrl}/${B}/locked.txt`, { method: "PUT", headers: { ...auth, "x-amz-object-lock-mode": "COMPLIANCE", "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z" }, body: "kept" });
  expect(lock.status).toBe(501);
  for (const key of ["sealed.txt", "locked.txt"]) expect((await fetch(`${s.httpUrl}/${B}/${key}`, { method: "HEAD", headers: auth })).status).toBe(404);
});

test("ListMultipartUploads pages by key and upload id, under a prefix; aborted uploads leave the list", async () => {
  const ids: Array<[string, string]> = [];
  for (const key of ["up/a.bin", "up/b.bin", "up/b.bin", "other/c.bin"]) {
    ids.push([key, JSON.parse(await aws("s3api", "create-multipart-upload", "--bucket", B, "--key", key)).UploadId]);
  }
  const first = JSON.parse(await aws("s3api", "list-multipart-uploads", "--bucket", B, "--prefix", "up/", "--max-uploads", "2", "--no-paginate"));
  expect(first.IsTruncated).toBe(true);
  expect(first.Uploads.map((u: { Key: string }) => u.Key)).toEqual(["up/a.bin", "up/b.bin"]);
  const rest = JSON.parse(await aws("s3api", "list-multipart-uploads", "--bucket", B, "--prefix", "up/", "--key-marker", first.NextKeyMarker, "--upload-id-marker", first.NextUploadIdMarker, "--no-paginate"));
  expect(rest.IsTruncated).toBe(false);
  expect(rest.Uploads.map((u: { Key: string }) => u.Key)).toEqual(["up/b.bin"]);
  const bIds = ids.filter(([k]) => k === "up/b.bin").map(([, id]) => id).sort();
  expect([first.Uploads[1].UploadId, rest.Uploads[0].UploadId]).toEqual(bIds);
  // All of them, as the CLI pages by itself; then abort each.
  const all = JSON.parse(await aws("s3api", "list-multipart-uploads", "--bucket", B));
  expect(all.Uploads.map((u: { Key: string }) => u.Key).sort()).toEqual(["other/c.bin", "up/a.bin", "up/b.bin", "up/b.bin"]);
  for (const [key, id] of ids) await aws("s3api", "abort-multipart-upload", "--bucket", B, "--key", key, "--upload-id", id);
  expect(JSON.parse((await aws("s3api", "list-multipart-uploads", "--bucket", B)) || "{}").Uploads).toBeUndefined();
});

test("GetObject with partNumber: part 1 is the whole object, any other part is InvalidPartNumber", async () => {
  const out = join(work, "part1.txt");
  const got = JSON.parse(await aws("s3api", "get-object", "--bucket", B, "--key", "precious.txt", "--part-number", "1", out));
  expect(got.ContentRange).toBe("bytes 0-13/14");
  expect(readFileSync(out, "utf8")).toBe("precious bytes");
  expect(await aws("s3api", "get-object", "--bucket", B, "--key", "precious.txt", "--part-number", "2", join(work, "part2.txt"))).toMatch(/\(InvalidPartNumber\)/);
});

test("a browser form upload (POST Object) is 501 with a pointer to presigned PUTs, before any authentication", async () => {
  const form = new FormData();
  form.append("key", "form/up.txt");
  form.append("policy", "e30=");
  form.append("file", new Blob(["form bytes"]), "up.txt");
  const res = await fetch(`${s.httpUrl}/${B}`, { method: "POST", body: form });
  expect(res.status).toBe(501);
  expect(await res.text()).toMatch(/POST Object .* presigned PUT/);
  expect((await fetch(`${s.httpUrl}/${B}/form/up.txt`, { method: "HEAD", headers: auth })).status).toBe(404);
});
