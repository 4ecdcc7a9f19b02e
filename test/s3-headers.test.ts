/**
 * The standard headers S3 keeps with an object — Content-Encoding, Cache-Control,
 * Content-Disposition, Content-Language, Expires — are sent back with it (they were
 * dropped), kept by a copy and replaced by a copy that replaces metadata; GetObject's
 * response-* parameters set them for one signed answer. With the AWS CLI and boto3.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { jsonClient } from "./helpers/http";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";
import { startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(60_000);

let s: TestServers;
let admin: S3Admin;
const B = "kb-headers";
const work = mkdtempSync(join(tmpdir(), "k3-headers-"));

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  admin = await s3Admin(s, work, [B]);
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

const head = async (key: string) => JSON.parse((await admin.aws(["s3api", "head-object", "--bucket", B, "--key", key])).stdout);

test("aws s3 cp with content headers: HEAD and GET send them back, and the object's listed metadata is the user's own", async () => {
  const file = join(work, "report.txt.gz");
  writeFileSync(file, gzipSync("a compressed report"));
  await admin.aws(["s3", "cp", file, `s3://${B}/report.txt`, "--no-progress", "--content-type", "text/plain", "--content-encoding", "gzip", "--cache-control", "max-age=60", "--content-disposition", 'attachment; filename="report.txt"', "--content-language", "de", "--expires", "2030-01-01T00:00:00Z", "--metadata", "team=search"]);
  const h = await head("report.txt");
  expect(h).toMatchObject({ ContentType: "text/plain", ContentEncoding: "gzip", CacheControl: "max-age=60", ContentDisposition: 'attachment; filename="report.txt"', ContentLanguage: "de", Metadata: { team: "search" } });
  expect(new Date(h.Expires).toISOString()).toBe("2030-01-01T00:00:00.000Z");
  // A client that honours Content-Encoding gets the text back (fetch decodes gzip).
  const got = await fetch(`${s.httpUrl}/${B}/report.txt`, { headers: admin.auth });
  expect(got.headers.get("content-encoding")).toBe("gzip");
  expect(await got.text()).toBe("a compressed report");
  const info = await jsonClient(() => s.httpUrl, admin.auth)("GET", `/${B}/objects/report.txt/info`);
  expect(info.json.object.metadata).toEqual({ team: "search" });
});

test("a copy keeps the headers; a copy that replaces metadata takes the ones it sends", async () => {
  await admin.aws(["s3api", "copy-object", "--bucket", B, "--key", "kept.txt", "--copy-source", `${B}/report.txt`]);
  expect(await head("kept.txt")).toMatchObject({ ContentEncoding: "gzip", CacheControl: "max-age=60", Metadata: { team: "search" } });
  await admin.aws(["s3api", "copy-object", "--bucket", B, "--key", "replaced.txt", "--copy-source", `${B}/report.txt`, "--metadata-directive", "REPLACE", "--content-type", "application/gzip", "--cache-control", "no-store"]);
  const replaced = await head("replaced.txt");
  expect(replaced).toMatchObject({ ContentType: "application/gzip", CacheControl: "no-store" });
  expect(replaced.ContentEncoding).toBeUndefined();
  expect(replaced.Metadata).toEqual({});
});

test("response-* parameters set the answer's headers for a signed GET (boto3 presigned), not for a GetObjectUrl link", async () => {
  const out = await admin.boto3(`
import urllib.request
c.put_object(Bucket="${B}", Key="plain.txt", Body=b"just text", ContentType="text/plain")
url = c.generate_presigned_url("get_object", Params={"Bucket": "${B}", "Key": "plain.txt", "ResponseContentDisposition": 'attachment; filename="x.txt"', "ResponseCacheControl": "no-cache"}, ExpiresIn=60)
r = urllib.request.urlopen(url)
print(r.headers["Content-Disposition"], "|", r.headers["Cache-Control"], "|", r.read().decode())
`);
  expect(out).toBe('attachment; filename="x.txt" | no-cache | just text');
  const link = (await jsonClient(() => s.httpUrl, admin.auth)("GET", `/${B}/objects/plain.txt/url`)).json.url as string;
  const got = await fetch(`${link}&response-content-type=text%2Fhtml`);
  expect(got.status).toBe(200);
  expect(got.headers.get("content-type")).toBe("text/plain");
});
