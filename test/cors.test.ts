/**
 * Web pages on other origins. A bucket's CORS rules, set as S3 sets them (the AWS CLI's
 * put-bucket-cors, `PUT /{bucket}?cors`) or through StorageService (REST, Connect), decide
 * which origins may use its byte plane from a browser: Chromium uploads through a presigned
 * PUT URL from a page on another port and reads the ETag its rule exposes, and a page on an
 * origin no rule names is refused before anything is written. The API (REST, Connect)
 * follows K3_CORS_ORIGINS. Before, a browser's preflight got 405 or 501 everywhere: no page
 * outside the console's own origin could use the server.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { StorageService } from "../gen/dodil/k3/storage/v1/storage_pb";
import { loadConfig } from "../src/config";
import { launchChromium } from "./helpers/chromium";
import { connectClients, type Clients } from "./helpers/clients";
import { jsonClient, rawRequest } from "./helpers/http";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";

jest.setTimeout(120_000);

const B = "kb-web";
const work = mkdtempSync(join(tmpdir(), "k3-cors-"));

let s: TestServers;
let admin: S3Admin;
let api: ReturnType<typeof jsonClient>;
let clients: Clients;
let browser: Browser;
/** Two web apps on ports of their own: one the rules name, one they do not. */
let app: { server: Server; origin: string };
let stranger: { server: Server; origin: string };

async function webApp(): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>app</title><p>a web app</p>");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  app = await webApp();
  stranger = await webApp();
  s = await startServers({ K3_AUTH: "on", K3_CORS_ORIGINS: `${app.origin}, https://*.example.com` });
  admin = await s3Admin(s, work, [B]);
  api = jsonClient(() => s.httpUrl, admin.auth);
  clients = connectClients(s.httpUrl, s.grpcAddress);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  clients?.close();
  await s?.stop();
  app?.server.close();
  stranger?.server.close();
  rmSync(work, { recursive: true, force: true });
});

/** The AWS CLI; resolves with stdout, or with the error line it printed. */
function aws(...args: string[]): Promise<string> {
  return admin.aws(args).then(
    (r) => r.stdout.trim(),
    (err: { stderr?: string }) => (err.stderr ?? "").trim(),
  );
}

/** A browser's preflight, as Chromium sends it. */
const preflight = (base: string, path: string, origin: string, method: string, headers?: string) =>
  rawRequest(base, "OPTIONS", path, { origin, "access-control-request-method": method, ...(headers ? { "access-control-request-headers": headers } : {}) });

/** A page at `origin`, running `fetch` as that page's scripts would; the answer's status and headers, or the browser's error. */
async function fetchFrom(origin: string, url: string, init: { method?: string; headers?: Record<string, string>; body?: string }, read: string[] = []): Promise<{ status?: number; headers?: Record<string, string | null>; body?: string; error?: string }> {
  const page: Page = await browser.newPage();
  try {
    await page.goto(`${origin}/`);
    return await page.evaluate(
      async ({ url, init, read }) => {
        try {
          const res = await fetch(url, init);
          return { status: res.status, headers: Object.fromEntries(read.map((h) => [h, res.headers.get(h)])), body: await res.text() };
        } catch (err) {
          return { error: String(err) };
        }
      },
      { url, init, read },
    );
  } finally {
    await page.close();
  }
}

const rules = (origin: string) => ({
  CORSRules: [
    { ID: "app", AllowedOrigins: [origin], AllowedMethods: ["GET", "PUT"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag", "x-k3-jobs"], MaxAgeSeconds: 60 },
    { AllowedOrigins: ["https://*.example.com"], AllowedMethods: ["GET"], AllowedHeaders: [], ExposeHeaders: [] },
  ],
});

test("the AWS CLI sets, reads and deletes a bucket's CORS rules; rules S3 would refuse are refused naming the element and the value", async () => {
  const file = join(work, "cors.json");
  writeFileSync(file, JSON.stringify(rules(app.origin)));
  expect(await aws("s3api", "put-bucket-cors", "--bucket", B, "--cors-configuration", `file://${file}`)).toBe("");
  const got = JSON.parse(await aws("s3api", "get-bucket-cors", "--bucket", B));
  expect(got.CORSRules[0]).toEqual(rules(app.origin).CORSRules[0]);
  expect(got.CORSRules[1]).toEqual({ AllowedOrigins: ["https://*.example.com"], AllowedMethods: ["GET"] });

  const bad = async (rule: object) => {
    writeFileSync(file, JSON.stringify({ CORSRules: [rule] }));
    return aws("s3api", "put-bucket-cors", "--bucket", B, "--cors-configuration", `file://${file}`);
  };
  expect(await bad({ AllowedOrigins: ["*"], AllowedMethods: ["PATCH"] })).toMatch(/\(InvalidRequest\).*CORSRule\[0\]\.AllowedMethod: "PATCH" is not one of GET, PUT, POST, DELETE, HEAD/);
  expect(await bad({ AllowedOrigins: ["https://*.*.example.com"], AllowedMethods: ["GET"] })).toMatch(/\(InvalidRequest\).*AllowedOrigin: "https:\/\/\*\.\*\.example\.com" has 2 wildcards; at most one/);
  expect(await bad({ AllowedOrigins: ["*"], AllowedMethods: ["GET"], ExposeHeaders: ["x-*"] })).toMatch(/\(InvalidRequest\).*ExposeHeader: "x-\*" is not a header name/);
  // The rules that were set are still there, whole.
  expect(JSON.parse(await aws("s3api", "get-bucket-cors", "--bucket", B)).CORSRules).toHaveLength(2);
  // A bucket with rules answers Vary even to a client without Origin, so a shared cache keeps
  // a browser's answer apart; a bucket without rules does not.
  expect((await fetch(`${s.httpUrl}/${B}?list-type=2`, { headers: admin.auth })).headers.get("vary")).toBe("Origin, Access-Control-Request-Headers, Access-Control-Request-Method");
  expect((await fetch(`${s.httpUrl}/kb-no-cors-here?list-type=2`, { headers: admin.auth })).headers.get("vary")).toBeNull();

  // Signed with the keys' Signature V4, the body's digest is checked like an upload's.
  const xml = `<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>`;
  const raw = await fetch(`${s.httpUrl}/${B}?cors`, { method: "PUT", headers: admin.auth, body: xml });
  expect(raw.status).toBe(400);
  expect(await raw.text()).toContain("CORSRule[0].MaxAgeSeconds: &quot;soon&quot; is not a number of seconds");
  const wrongMd5 = await fetch(`${s.httpUrl}/${B}?cors`, { method: "PUT", headers: { ...admin.auth, "content-md5": createHash("md5").update("other").digest("base64") }, body: xml.replace("soon", "5") });
  expect(wrongMd5.status).toBe(400);
  expect(await wrongMd5.text()).toContain("<Code>BadDigest</Code>");

  // A ?cors on an object is not PutBucketCors, and not a PutObject of the XML either.
  const kept = join(work, "keep.json");
  writeFileSync(kept, JSON.stringify(rules(app.origin)));
  await aws("s3", "cp", kept, `s3://${B}/keep.json`);
  const onObject = await fetch(`${s.httpUrl}/${B}/keep.json?cors`, { method: "PUT", headers: admin.auth, body: xml });
  expect(onObject.status).toBe(501);
  expect(await (await fetch(`${s.httpUrl}/${B}/keep.json`, { headers: admin.auth })).text()).toBe(JSON.stringify(rules(app.origin)));

  // Deleting the rules leaves the bucket, its objects and pipelines.
  expect((await api("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).status).toBe(200);
  expect(await aws("s3api", "delete-bucket-cors", "--bucket", B)).toBe("");
  expect(await aws("s3api", "get-bucket-cors", "--bucket", B)).toMatch(/\(NoSuchCORSConfiguration\)/);
  expect((await api("GET", `/${B}/pipelines`)).json.pipelines).toHaveLength(1);
  expect((await api("GET", `/admin/buckets/${B}`)).json.bucket.objectCount).toBe("1");
  const noRules = await preflight(s.httpUrl, `/${B}/keep.json`, app.origin, "GET");
  expect(noRules.status).toBe(403);
  expect(noRules.body.toString()).toContain(`CORS is not enabled for bucket &quot;${B}&quot;`);
});

test("StorageService sets the same rules on every door; errors name the field, the value and what is accepted; a reader may read them, not set them", async () => {
  const put = await api("PUT", `/admin/buckets/${B}/cors`, {
    rules: [{ id: "app", allowed_origins: [app.origin], allowed_methods: ["GET", "PUT"], allowed_headers: ["*"], expose_headers: ["ETag", "x-k3-jobs"], max_age_seconds: 60 }],
  });
  expect(put.status).toBe(200);
  expect(put.json.rules[0]).toEqual({ id: "app", allowedOrigins: [app.origin], allowedMethods: ["GET", "PUT"], allowedHeaders: ["*"], exposeHeaders: ["ETag", "x-k3-jobs"], maxAgeSeconds: 60 });
  // The S3 view of what the API set.
  expect(JSON.parse(await aws("s3api", "get-bucket-cors", "--bucket", B)).CORSRules).toEqual([rules(app.origin).CORSRules[0]]);

  const bad = await api("PUT", `/admin/buckets/${B}/cors`, { rules: [{ allowed_origins: ["*"], allowed_methods: ["get"] }] });
  expect(bad.status).toBe(400);
  expect(bad.json.message).toBe('rules[0].allowed_methods: "get" is not one of GET, PUT, POST, DELETE, HEAD (in capitals)');
  const none = await api("PUT", `/admin/buckets/${B}/cors`, { rules: [] });
  expect(none.status).toBe(400);
  expect(none.json.message).toMatch(/^rules: no rule given/);
  const noOrigin = await api("PUT", `/admin/buckets/${B}/cors`, { rules: [{ allowed_methods: ["GET"] }] });
  expect(noOrigin.json.message).toMatch(/^rules\[0\]\.allowed_origins: none given/);

  const viaConnect = await clients.call("connect", StorageService, "GetBucketCors", { name: B }, admin.auth);
  expect(viaConnect).toMatchObject({ ok: true, body: { rules: [{ id: "app", allowedMethods: ["GET", "PUT"] }] } });
  const viaGrpc = await clients.call("grpc", StorageService, "GetBucketCors", { name: "kb-nowhere" }, admin.auth);
  expect(viaGrpc).toMatchObject({ ok: false, code: "not_found" });

  const reader = { authorization: `Bearer ${(await insertToken(s, "default", [{ bucket: B, role: "reader" }])).token}` };
  expect(await clients.call("connect", StorageService, "GetBucketCors", { name: B }, reader)).toMatchObject({ ok: true });
  const refused = await clients.call("connect", StorageService, "PutBucketCors", { name: B, rules: [] }, reader);
  expect(refused).toMatchObject({ ok: false, code: "permission_denied", message: expect.stringContaining("PutBucketCors needs admin") });
});

test("a page on another origin uploads through a presigned PUT URL and reads the ETag its rule exposes; a page on an origin no rule names writes nothing", async () => {
  expect((await api("PUT", `/admin/buckets/${B}/cors`, { rules: [{ allowed_origins: [app.origin], allowed_methods: ["GET", "PUT"], allowed_headers: ["*"], expose_headers: ["ETag"], max_age_seconds: 60 }] })).status).toBe(200);
  const presign = (key: string) => admin.boto3(`print(c.generate_presigned_url("put_object", Params={"Bucket": sys.argv[4], "Key": sys.argv[5]}, ExpiresIn=600))`, B, key);

  const body = "written by a web page";
  const ok = await fetchFrom(app.origin, await presign("from-browser.txt"), { method: "PUT", headers: { "content-type": "text/plain" }, body }, ["etag"]);
  expect(ok).toMatchObject({ status: 200, headers: { etag: `"${createHash("md5").update(body).digest("hex")}"` } });
  expect(await (await fetch(`${s.httpUrl}/${B}/from-browser.txt`, { headers: admin.auth })).text()).toBe(body);
  // Reading back with the bearer token from the page: GET is allowed too.
  const read = await fetchFrom(app.origin, `${s.httpUrl}/${B}/from-browser.txt`, { headers: admin.auth });
  expect(read).toMatchObject({ status: 200, body });

  const refused = await fetchFrom(stranger.origin, await presign("from-stranger.txt"), { method: "PUT", headers: { "content-type": "text/plain" }, body: "should not land" });
  expect(refused.error).toMatch(/TypeError: Failed to fetch/);
  expect((await fetch(`${s.httpUrl}/${B}/from-stranger.txt`, { headers: admin.auth })).status).toBe(404);

  // A preflight answers as S3: the origin, the rule's methods, the headers asked for, how long to keep it.
  const pf = await preflight(s.httpUrl, `/${B}/x.txt`, app.origin, "PUT", "Content-Type, X-Amz-Date");
  expect(pf.status).toBe(200);
  expect(pf.headers).toMatchObject({
    "access-control-allow-origin": app.origin,
    "access-control-allow-methods": "GET, PUT",
    "access-control-allow-headers": "content-type, x-amz-date",
    "access-control-max-age": "60",
    "access-control-expose-headers": "ETag",
  });
  const denied = await preflight(s.httpUrl, `/${B}/x.txt`, app.origin, "DELETE");
  expect(denied.status).toBe(403);
  expect(denied.body.toString()).toContain(`no CORS rule of bucket &quot;${B}&quot; lets origin &quot;${app.origin}&quot; DELETE`);
});

test("another instance answers preflights from the rules set on the first at once, and stops when they are deleted", async () => {
  const peer = await startPeer(s, { K3_AUTH: "on" });
  try {
    const allowed = async () => (await preflight(peer.httpUrl, `/${B}/y.txt`, app.origin, "PUT")).status;
    expect((await api("DELETE", `/admin/buckets/${B}/cors`)).status).toBe(200);
    expect(await allowed()).toBe(403);
    expect((await api("PUT", `/admin/buckets/${B}/cors`, { rules: [{ allowed_origins: [app.origin], allowed_methods: ["PUT"] }] })).status).toBe(200);
    // The peer's cache of rules is cleared by the first instance's NOTIFY, well before its TTL (5 s).
    const until = Date.now() + 2_000;
    while ((await allowed()) !== 200 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(await allowed()).toBe(200);
    expect((await api("DELETE", `/admin/buckets/${B}/cors`)).status).toBe(200);
    const after = Date.now() + 2_000;
    while ((await allowed()) !== 403 && Date.now() < after) await new Promise((r) => setTimeout(r, 50));
    expect(await allowed()).toBe(403);
  } finally {
    await peer.stop();
  }
});

test("a page on an origin of K3_CORS_ORIGINS calls the API with its bearer token over REST, Connect, gRPC-Web and a stream of server-sent events; a page elsewhere cannot", async () => {
  const rest = await fetchFrom(app.origin, `${s.httpUrl}/admin/buckets/${B}`, { headers: admin.auth }, ["x-request-id"]);
  expect(rest.status).toBe(200);
  expect(JSON.parse(rest.body ?? "{}").bucket.name).toBe(B);
  expect(rest.headers?.["x-request-id"]).toMatch(/^req_/);
  const connect = await fetchFrom(app.origin, `${s.httpUrl}/dodil.k3.storage.v1.StorageService/GetBucket`, {
    method: "POST",
    headers: { ...admin.auth, "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ name: B }),
  });
  expect(connect.status).toBe(200);
  expect(JSON.parse(connect.body ?? "{}").bucket.name).toBe(B);

  // gRPC-Web, the protocol made for browsers: a GetBucketRequest framed by hand; the answer's
  // status travels in its trailer frame and in headers the page may read.
  const page = await browser.newPage();
  try {
    await page.goto(`${app.origin}/`);
    const grpcWeb = await page.evaluate(
      async ({ url, auth, name }) => {
        const msg = new Uint8Array([0x0a, name.length, ...new TextEncoder().encode(name)]);
        const frame = new Uint8Array([0, 0, 0, 0, msg.length, ...msg]);
        const res = await fetch(url, { method: "POST", headers: { ...auth, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body: frame });
        const bytes = new Uint8Array(await res.arrayBuffer());
        const first = (bytes[1] << 24) | (bytes[2] << 16) | (bytes[3] << 8) | bytes[4];
        const trailer = new TextDecoder().decode(bytes.subarray(5 + first + 5));
        return { status: res.status, dataFrame: bytes[0], holdsName: new TextDecoder().decode(bytes.subarray(5, 5 + first)).includes(name), trailer };
      },
      { url: `${s.httpUrl}/dodil.k3.storage.v1.StorageService/GetBucket`, auth: admin.auth, name: B },
    );
    expect(grpcWeb).toMatchObject({ status: 200, dataFrame: 0, holdsName: true, trailer: expect.stringMatching(/grpc-status: ?0/) });
    // A live watch of the bucket's jobs, read as a stream (EventSource cannot send a bearer token).
    const watch = await page.evaluate(
      async ({ url, auth }) => {
        const stop = new AbortController();
        const res = await fetch(url, { headers: auth, signal: stop.signal });
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        let text = "";
        while (!text.includes("event: synced")) {
          const { value, done } = await reader.read();
          if (done) break;
          text += new TextDecoder().decode(value);
        }
        stop.abort();
        return { status: res.status, type: res.headers.get("content-type"), synced: text.includes("event: synced") };
      },
      { url: `${s.httpUrl}/${B}/ingest/jobs:watch`, auth: admin.auth },
    );
    expect(watch).toEqual({ status: 200, type: expect.stringMatching(/^text\/event-stream/), synced: true });
  } finally {
    await page.close();
  }

  const elsewhere = await fetchFrom(stranger.origin, `${s.httpUrl}/admin/buckets/${B}`, { headers: admin.auth });
  expect(elsewhere.error).toMatch(/TypeError: Failed to fetch/);
  const pf = await preflight(s.httpUrl, `/admin/buckets/${B}`, stranger.origin, "GET", "authorization");
  expect(pf.status).toBe(403);
  expect(JSON.parse(pf.body.toString()).message).toBe(`origin "${stranger.origin}" may not call this server's API from a browser; allowed origins (K3_CORS_ORIGINS): "${app.origin}", "https://*.example.com"`);
  // A wildcard entry matches the subdomains it names.
  expect((await preflight(s.httpUrl, `/admin/buckets/${B}`, "https://console.example.com", "GET", "authorization")).status).toBe(204);

  expect(() => loadConfig({ K3_CORS_ORIGINS: "https://app.example.com/path" })).toThrow(
    'K3_CORS_ORIGINS: "https://app.example.com/path" is not an origin; give "*" or origins such as https://app.example.com, http://localhost:3000 or https://*.example.com (no path, at most one "*")',
  );
});
