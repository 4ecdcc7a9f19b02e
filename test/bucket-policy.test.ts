/**
 * A bucket's policy: set as S3 sets it (the AWS CLI's put-bucket-policy, `PUT /{bucket}?policy`)
 * or through StorageService (REST, Connect, gRPC), and enforced on every byte-plane request.
 * A statement that allows s3:GetObject to "*" lets curl and an unsigned boto3 read a prefix
 * with no credentials at all; a Deny naming a token stops that token (AWS CLI, DeleteObjects,
 * StorageService's DeleteObject), whatever its role; an Allow naming a token lets it do more
 * than its role on the keys named. Before, `?policy` answered 501 and StorageService had no
 * policy calls, though K3 documents them.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { StorageService } from "../gen/dodil/k3/storage/v1/storage_pb";
import { connectClients, type Clients } from "./helpers/clients";
import { jsonClient, rawRequest } from "./helpers/http";
import { awsEnv, s3Admin, type S3Admin } from "./helpers/s3-clients";
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";

jest.setTimeout(120_000);

const run = promisify(execFile);
const B = "kb-site";
const work = mkdtempSync(join(tmpdir(), "k3-policy-"));

let s: TestServers;
let admin: S3Admin;
let api: ReturnType<typeof jsonClient>;
let clients: Clients;

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  admin = await s3Admin(s, work, [B, "kb-deny", "kb-grant", "kb-lock", "kb-links"]);
  api = jsonClient(() => s.httpUrl, admin.auth);
  clients = connectClients(s.httpUrl, s.grpcAddress);
});
afterAll(async () => {
  clients?.close();
  await s?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** The AWS CLI with `keys` (the admin's by default); stdout, or the error line it printed. */
async function aws(args: string[], keys = admin.keys): Promise<string> {
  return run("aws", ["--endpoint-url", s.httpUrl, ...args], { env: awsEnv(keys, work), timeout: 60_000 }).then(
    (r) => r.stdout.trim(),
    (err: { stderr?: string }) => (err.stderr ?? "").trim(),
  );
}

/** Writes a policy document to a file, as `--policy file://…` takes it. */
function policyFile(doc: unknown): string {
  const file = join(work, `policy-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof doc === "string" ? doc : JSON.stringify(doc));
  return `file://${file}`;
}

const put = (bucket: string, key: string, body: string) => rawRequest(s.httpUrl, "PUT", `/${bucket}/${key}`, admin.auth, Buffer.from(body));
const anonymous = (path: string, method = "GET", body?: string) => rawRequest(s.httpUrl, method, path, {}, body === undefined ? undefined : Buffer.from(body));

const publicRead = {
  Version: "2012-10-17",
  Statement: [{ Sid: "PublicSite", Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/site/*` }],
};

test("the AWS CLI sets, reads and deletes a bucket's policy; GetBucketPolicyStatus says whether it is public", async () => {
  expect(await aws(["s3api", "get-bucket-policy", "--bucket", B])).toMatch(/NoSuchBucketPolicy/);
  expect(await aws(["s3api", "put-bucket-policy", "--bucket", B, "--policy", policyFile(publicRead)])).toBe("");
  const got = JSON.parse(await aws(["s3api", "get-bucket-policy", "--bucket", B]));
  expect(JSON.parse(got.Policy)).toEqual(publicRead);
  expect(JSON.parse(await aws(["s3api", "get-bucket-policy-status", "--bucket", B]))).toEqual({ PolicyStatus: { IsPublic: true } });
  // The same policy through StorageService, on REST.
  const rest = await api("GET", `/admin/buckets/${B}/policy`);
  expect(rest.status).toBe(200);
  expect(rest.json.policy).toEqual({ bucket: B, document: publicRead, public: true });
  expect(await aws(["s3api", "delete-bucket-policy", "--bucket", B])).toBe("");
  expect(await aws(["s3api", "get-bucket-policy", "--bucket", B])).toMatch(/NoSuchBucketPolicy/);
  expect((await api("GET", `/admin/buckets/${B}/policy`)).status).toBe(404);
});

test("a policy S3 would refuse, or one naming what is not served, is refused naming the element and the value; nothing is stored", async () => {
  const statement = { Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${B}/*` };
  const cases: Array<[unknown, RegExp]> = [
    ["{not json", /MalformedPolicy.*not JSON/],
    [{ Version: "2012-10-17", Statement: [{ ...statement, Effect: "allow" }] }, /Statement\[0\]\.Effect: "allow" is not "Allow" or "Deny"/],
    [{ Statement: [statement, { ...statement, Action: "s3:GetObjet" }] }, /Statement\[1\]\.Action: "s3:GetObjet" names none of the actions served here: s3:GetObject/],
    [{ Statement: [{ ...statement, Resource: "arn:aws:s3:::another-bucket/*" }] }, /Statement\[0\]\.Resource: "arn:aws:s3:::another-bucket\/\*" is not this bucket or its objects; use "arn:aws:s3:::kb-site"/],
    [{ Statement: [{ ...statement, Principal: { AWS: "arn:aws:iam::123456789012:root" } }] }, /Statement\[0\]\.Principal\.AWS: "arn:aws:iam::123456789012:root" is not "\*" or a token id/],
    [{ Statement: [{ ...statement, Condition: { IpAddress: { "aws:SourceIp": "10.0.0.0/8" } } }] }, /Statement\[0\]\.Condition: not supported by this server/],
    [{ Statement: [{ ...statement, Action: "s3:PutBucketPolicy", Resource: `arn:aws:s3:::${B}` }] }, /s3:PutBucketPolicy can be denied by a policy but not granted/],
    [{ Version: "2020-01-01", Statement: [statement] }, /Version: "2020-01-01" is not one of 2012-10-17, 2008-10-17/],
    [{ Statement: [] }, /Statement: 0 statements; a policy has 1 to 100/],
  ];
  for (const [doc, expected] of cases) {
    const out = await aws(["s3api", "put-bucket-policy", "--bucket", B, "--policy", policyFile(doc)]);
    expect(out).toMatch(/MalformedPolicy/);
    expect(out).toMatch(expected);
  }
  // The same checks on StorageService, with its status and field.
  const rest = await api("PUT", `/admin/buckets/${B}/policy`, { policy: { Statement: [{ ...statement, Effect: "Permit" }] } });
  expect(rest.status).toBe(400);
  expect(rest.json.message).toMatch(/^policy Statement\[0\]\.Effect: "Permit" is not "Allow" or "Deny"/);
  const connect = await clients.call("connect", StorageService, "SetBucketPolicy", { name: B }, admin.auth);
  expect(connect).toMatchObject({ ok: false, code: "invalid_argument" });
  expect(JSON.stringify(connect)).toMatch(/policy: missing/);
  expect(await aws(["s3api", "get-bucket-policy", "--bucket", B])).toMatch(/NoSuchBucketPolicy/);
});

test("public read: curl and an unsigned boto3 read the keys the policy names, with no credentials; nothing else is let in", async () => {
  for (const key of ["site/index.html", "site/css/app.css", "private/notes.txt"]) expect((await put(B, key, `bytes of ${key}`)).status).toBe(200);
  // No policy yet: a request without credentials is refused as before.
  expect((await anonymous(`/${B}/site/index.html`)).status).toBe(403);
  expect(await aws(["s3api", "put-bucket-policy", "--bucket", B, "--policy", policyFile(publicRead)])).toBe("");

  const page = await anonymous(`/${B}/site/index.html`);
  expect(page.status).toBe(200);
  expect(page.body.toString()).toBe("bytes of site/index.html");
  expect((await anonymous(`/${B}/site/css/app.css`, "HEAD")).status).toBe(200);
  // As S3: an anonymous GET may not choose its answer's headers (a public page served as HTML, say).
  const override = await anonymous(`/${B}/site/index.html?response-content-type=text%2Fhtml`);
  expect(override.status).toBe(400);
  expect(override.body.toString()).toContain("Request specific response headers cannot be used for anonymous GET requests.");
  // boto3 as a public site's readers use it: no signature at all.
  const script = `import boto3, sys\nfrom botocore import UNSIGNED\nfrom botocore.config import Config\nc = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", config=Config(signature_version=UNSIGNED))\nprint(c.get_object(Bucket=sys.argv[2], Key="site/css/app.css")["Body"].read().decode())\ntry:\n    c.get_object(Bucket=sys.argv[2], Key="private/notes.txt")\nexcept Exception as e:\n    print(e.response["Error"]["Code"])\n`;
  const out = await run("python3", ["-c", script, s.httpUrl, B], { timeout: 60_000 });
  expect(out.stdout.trim().split("\n")).toEqual(["bytes of site/css/app.css", "AccessDenied"]);

  // Not named by the policy: another prefix, the listing, a write, a delete.
  const refused = await anonymous(`/${B}/private/notes.txt`);
  expect(refused.status).toBe(403);
  expect(refused.body.toString()).toContain(`the policy of bucket &quot;${B}&quot; does not let anyone s3:GetObject arn:aws:s3:::${B}/private/notes.txt`);
  expect((await anonymous(`/${B}?list-type=2`)).status).toBe(403);
  expect((await anonymous(`/${B}/site/evil.html`, "PUT", "defaced")).status).toBe(403);
  expect((await anonymous(`/${B}/site/index.html`, "DELETE")).status).toBe(403);
  expect((await anonymous(`/${B}?policy`)).status).toBe(403);
  expect((await anonymous(`/`)).status).toBe(403);
  expect((await rawRequest(s.httpUrl, "GET", `/${B}/site/index.html`)).body.toString()).toBe("bytes of site/index.html");

  // A second statement lets anyone list the bucket: the AWS CLI with --no-sign-request does.
  const listable = { ...publicRead, Statement: [...publicRead.Statement, { Sid: "Listing", Effect: "Allow", Principal: { AWS: "*" }, Action: "s3:ListBucket", Resource: `arn:aws:s3:::${B}` }] };
  expect(await aws(["s3api", "put-bucket-policy", "--bucket", B, "--policy", policyFile(listable)])).toBe("");
  const listed = await aws(["--no-sign-request", "s3", "ls", `s3://${B}/`, "--recursive"]);
  expect(listed.split("\n").map((l) => l.split(/\s+/).pop())).toEqual(["private/notes.txt", "site/css/app.css", "site/index.html"]);
  expect(await aws(["--no-sign-request", "s3", "cp", `s3://${B}/private/notes.txt`, join(work, "notes.txt")])).toMatch(/403|AccessDenied/);

  // A second instance (sharing the first's data folder) follows the policy's removal at once
  // (the config cache's NOTIFY, not its TTL).
  const peer = await startPeer(s, { K3_AUTH: "on", K3_DATA_DIR: s.dataDir });
  try {
    expect((await rawRequest(peer.httpUrl, "GET", `/${B}/site/index.html`)).status).toBe(200);
    expect(await aws(["s3api", "delete-bucket-policy", "--bucket", B])).toBe("");
    const deadline = Date.now() + 2_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) status = (await rawRequest(peer.httpUrl, "GET", `/${B}/site/index.html`)).status;
    expect(status).toBe(403);
  } finally {
    await peer.stop();
  }
  expect((await anonymous(`/${B}/site/index.html`)).status).toBe(403);
});

test("a Deny naming a token stops it whatever its role: the AWS CLI, DeleteObjects key by key, and StorageService's DeleteObject", async () => {
  const writer = await insertToken(s, "default", [{ bucket: "kb-deny", role: "writer" }], true);
  const keys = { id: writer.id, secret: writer.secret };
  for (const key of ["records/a.txt", "records/b.txt", "scratch/c.txt", "scratch/d.txt"]) expect((await put("kb-deny", key, key)).status).toBe(200);
  const deny = {
    Version: "2012-10-17",
    Statement: [{ Sid: "KeepRecords", Effect: "Deny", Principal: { AWS: [writer.tokenId] }, Action: ["s3:DeleteObject", "s3:PutObject"], Resource: "arn:aws:s3:::kb-deny/records/*" }],
  };
  const set = await api("PUT", "/admin/buckets/kb-deny/policy", { policy: deny });
  expect(set.status).toBe(200);
  expect(set.json.policy.public).toBe(false);

  const rm = await aws(["s3", "rm", "s3://kb-deny/records/a.txt"], keys);
  expect(rm).toMatch(/AccessDenied.*s3:DeleteObject on arn:aws:s3:::kb-deny\/records\/a\.txt is denied by the policy of bucket "kb-deny" \(KeepRecords\)/);
  const file = join(work, "overwrite.txt");
  writeFileSync(file, "overwritten");
  expect(await aws(["s3", "cp", file, "s3://kb-deny/records/a.txt"], keys)).toMatch(/AccessDenied/);
  expect(await aws(["s3", "rm", "s3://kb-deny/scratch/c.txt"], keys)).toMatch(/delete: s3:\/\/kb-deny\/scratch\/c\.txt/);
  // One DeleteObjects: the records stay, each with its own AccessDenied; the rest go.
  const batch = JSON.parse(await aws(["s3api", "delete-objects", "--bucket", "kb-deny", "--delete", JSON.stringify({ Objects: [{ Key: "records/b.txt" }, { Key: "scratch/d.txt" }] })], keys));
  expect(batch.Deleted).toEqual([{ Key: "scratch/d.txt" }]);
  expect(batch.Errors).toEqual([expect.objectContaining({ Key: "records/b.txt", Code: "AccessDenied" })]);
  // StorageService honours the Deny too, on every door.
  const bearer = { authorization: `Bearer ${writer.token}` };
  for (const door of ["connect", "grpc"] as const) {
    const res = await clients.call(door, StorageService, "DeleteObject", { bucket: "kb-deny", key: "records/a.txt" }, bearer);
    expect(res).toMatchObject({ ok: false, code: "permission_denied" });
  }
  const listed = await aws(["s3", "ls", "s3://kb-deny/", "--recursive"]);
  expect(listed).toContain("records/a.txt");
  expect(listed).toContain("records/b.txt");
  expect(listed).not.toContain("scratch/");
  // The admin's token is not named: it still deletes.
  expect(await aws(["s3", "rm", "s3://kb-deny/records/b.txt"])).toMatch(/delete: s3:\/\/kb-deny\/records\/b\.txt/);
});

test("a presigned URL answers for the token that made it: a Deny naming the token stops it, and it dies with the token", async () => {
  const reader = await insertToken(s, "default", [{ bucket: "kb-links", role: "reader" }]);
  const other = await insertToken(s, "default", [{ bucket: "kb-links", role: "reader" }]);
  expect((await put("kb-links", "shared/report.txt", "the report")).status).toBe(200);
  const made = await jsonClient(() => s.httpUrl, { authorization: `Bearer ${reader.token}` })("GET", "/kb-links/objects/shared/report.txt/url");
  expect(made.status).toBe(200);
  const url = new URL(made.json.url);
  expect(url.searchParams.get("X-K3-Token")).toBe(reader.tokenId);
  const get = async (u: URL | string) => {
    const res = await fetch(u);
    return [res.status, await res.text()];
  };
  expect(await get(url)).toEqual([200, "the report"]);
  // The token is signed: dropped or swapped, the URL no longer matches its signature.
  const dropped = new URL(url);
  dropped.searchParams.delete("X-K3-Token");
  expect((await get(dropped))[0]).toBe(403);
  const swapped = new URL(url);
  swapped.searchParams.set("X-K3-Token", other.tokenId);
  expect(await get(swapped)).toEqual([403, expect.stringContaining("<Code>SignatureDoesNotMatch</Code>")]);

  const deny = { Version: "2012-10-17", Statement: [{ Sid: "NoLinks", Effect: "Deny", Principal: { AWS: [reader.tokenId] }, Action: "s3:GetObject", Resource: "arn:aws:s3:::kb-links/shared/*" }] };
  expect((await api("PUT", "/admin/buckets/kb-links/policy", { policy: deny })).status).toBe(200);
  expect(await get(url)).toEqual([403, expect.stringMatching(/<Code>AccessDenied<\/Code>.*denied by the policy of bucket &quot;kb-links&quot; \(NoLinks\)/s)]);
  expect((await api("DELETE", "/admin/buckets/kb-links/policy")).status).toBe(200);
  expect(await get(url)).toEqual([200, "the report"]);

  expect(await s.app.repo().tokens.tokenRevoke(reader.tokenId, Date.now())).toBe(true);
  expect(await get(url)).toEqual([403, expect.stringContaining(`the token that made this URL (${reader.tokenId}) was revoked`)]);
});

test("an Allow naming a token lets it do more than its role, on the keys named only", async () => {
  const reader = await insertToken(s, "default", [{ bucket: "kb-grant", role: "reader" }], true);
  const keys = { id: reader.id, secret: reader.secret };
  const file = join(work, "upload.txt");
  writeFileSync(file, "dropped off");
  expect(await aws(["s3", "cp", file, "s3://kb-grant/inbox/upload.txt"], keys)).toMatch(/AccessDenied.*no writer grant for bucket "kb-grant"/);
  // Without a policy a DeleteObjects is refused whole, before its body is read.
  expect(await aws(["s3api", "delete-objects", "--bucket", "kb-grant", "--delete", JSON.stringify({ Objects: [{ Key: "a" }] })], keys)).toMatch(/\(AccessDenied\) when calling the DeleteObjects operation: .*no writer grant/);
  const grant = { Statement: [{ Effect: "Allow", Principal: { AWS: reader.tokenId }, Action: "s3:PutObject", Resource: "arn:aws:s3:::kb-grant/inbox/*" }] };
  expect(await aws(["s3api", "put-bucket-policy", "--bucket", "kb-grant", "--policy", policyFile(grant)])).toBe("");
  expect(await aws(["s3", "cp", file, "s3://kb-grant/inbox/upload.txt"], keys)).toMatch(/upload: .* to s3:\/\/kb-grant\/inbox\/upload\.txt/);
  expect(await aws(["s3", "cp", file, "s3://kb-grant/elsewhere.txt"], keys)).toMatch(/AccessDenied/);
  expect(await aws(["s3", "cp", "s3://kb-grant/inbox/upload.txt", "-"], keys)).toBe("dropped off");
  // Setting a policy stays the admin role's, on every door.
  const bearer = { authorization: `Bearer ${reader.token}` };
  expect(await clients.call("grpc", StorageService, "SetBucketPolicy", { name: "kb-grant", policy: grant }, bearer)).toMatchObject({ ok: false, code: "permission_denied" });
  expect(await aws(["s3api", "delete-bucket-policy", "--bucket", "kb-grant"], keys)).toMatch(/AccessDenied/);
  expect(await clients.call("grpc", StorageService, "GetBucketPolicy", { name: "kb-grant" }, bearer)).toMatchObject({ ok: true });
});

test("a policy that denies everything to everyone cannot lock the admin out of the policy itself", async () => {
  expect((await put("kb-lock", "a.txt", "a")).status).toBe(200);
  const lock = { Statement: [{ Sid: "Lockdown", Effect: "Deny", Principal: "*", Action: "s3:*", Resource: ["arn:aws:s3:::kb-lock", "arn:aws:s3:::kb-lock/*"] }] };
  expect(await aws(["s3api", "put-bucket-policy", "--bucket", "kb-lock", "--policy", policyFile(lock)])).toBe("");
  const read = () => aws(["s3api", "get-object", "--bucket", "kb-lock", "--key", "a.txt", join(work, "a.txt")]);
  expect(await read()).toMatch(/AccessDenied.*s3:GetObject on arn:aws:s3:::kb-lock\/a\.txt is denied by the policy of bucket "kb-lock" \(Lockdown\)/);
  expect(await aws(["s3", "ls", "s3://kb-lock/"])).toMatch(/AccessDenied/);
  expect((await clients.call("connect", StorageService, "GetObjectInfo", { bucket: "kb-lock", key: "a.txt" }, admin.auth))).toMatchObject({ ok: false, code: "permission_denied" });
  expect(JSON.parse(JSON.parse(await aws(["s3api", "get-bucket-policy", "--bucket", "kb-lock"])).Policy)).toEqual(lock);
  expect(await aws(["s3api", "delete-bucket-policy", "--bucket", "kb-lock"])).toBe("");
  expect(JSON.parse(await read())).toMatchObject({ ContentLength: 1 });
});

test("a bucket name public in two organizations: a request without credentials is refused, saying why", async () => {
  const other = await insertToken(s, "acme", [{ bucket: "*", role: "admin" }]);
  const acme = jsonClient(() => s.httpUrl, { authorization: `Bearer ${other.token}` });
  expect((await acme("POST", "/admin/buckets", { name: B })).status).toBe(200);
  const site = (bucket: string) => ({ Statement: [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: `arn:aws:s3:::${bucket}/*` }] });
  expect((await acme("PUT", `/admin/buckets/${B}/policy`, { policy: site(B) })).status).toBe(200);
  expect((await rawRequest(s.httpUrl, "PUT", `/${B}/site/acme.html`, { authorization: `Bearer ${other.token}` }, Buffer.from("acme's page"))).status).toBe(200);
  // Only acme's bucket is public: anyone reads acme's object by the bucket's name.
  expect((await anonymous(`/${B}/site/acme.html`)).body.toString()).toBe("acme's page");
  expect((await api("PUT", `/admin/buckets/${B}/policy`, { policy: site(B) })).status).toBe(200);
  const ambiguous = await anonymous(`/${B}/site/acme.html`);
  expect(ambiguous.status).toBe(403);
  expect(ambiguous.body.toString()).toContain(`buckets named &quot;${B}&quot; are public in 2 organizations; sign the request or send a bearer token`);
  expect((await api("DELETE", `/admin/buckets/${B}/policy`)).status).toBe(200);
  expect((await anonymous(`/${B}/site/acme.html`)).body.toString()).toBe("acme's page");
});
