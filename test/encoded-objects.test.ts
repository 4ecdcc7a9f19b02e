/**
 * An object uploaded with a Content-Encoding (`aws s3 cp --content-encoding gzip`) is
 * indexed as its decoded text — it was indexed as gzip bytes, which extraction refused —
 * while its bytes are kept and served as uploaded. The read limit applies to the decoded
 * bytes (a small archive of megabytes of text fails clearly), corrupt data fails clearly,
 * and text that merely starts like zlib data is read as it is.
 */
import { get } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { jsonClient, type J } from "./helpers/http";
import { s3Admin, type S3Admin } from "./helpers/s3-clients";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(90_000);

let s: TestServers;
let admin: S3Admin;
const B = "kb-encoded";
const work = mkdtempSync(join(tmpdir(), "k3-encoded-"));
const LIMIT = 1 << 20;

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on", K3_ROLE: "all", K3_POLL_MS: "50", K3_MAX_OBJECT_BYTES: String(LIMIT), K3_MAX_ATTEMPTS: "1" });
  admin = await s3Admin(s, work, [B]);
  const http = jsonClient(() => s.httpUrl, admin.auth);
  const pipe = (await http("POST", `/${B}/vector/pipelines`, { name: "docs", template_id: "text_embedding_index" })).json.embedPipelineId;
  expect((await http("POST", `/${B}/rules`, { name: "all", pipeline_id: pipe })).status).toBe(200);
});
afterAll(async () => {
  await s.stop();
  rmSync(work, { recursive: true, force: true });
});

async function upload(key: string, bytes: Buffer, encoding?: string): Promise<J> {
  const file = join(work, key.replaceAll("/", "_"));
  writeFileSync(file, bytes);
  await admin.aws(["s3", "cp", file, `s3://${B}/${key}`, "--no-progress", "--content-type", "text/plain", ...(encoding ? ["--content-encoding", encoding] : [])]);
  const http = jsonClient(() => s.httpUrl, admin.auth);
  return waitFor(`the job of ${key}`, async () => {
    const j = ((await http("GET", `/${B}/ingest/jobs?key_prefix=${encodeURIComponent(key)}`)).json.jobs as J[]).find((x) => x.object.key === key);
    return j && ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED"].includes(j.status) ? j : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

const search = async (text: string) =>
  ((await jsonClient(() => s.httpUrl, admin.auth)("POST", `/${B}/vector/search`, { text, include_content: true, top_k: 20 })).json.results as J[]).map((r) => [r.object.key, r.content]);

test("gzip, deflate and brotli uploads are indexed as their text; the bytes are served as uploaded", async () => {
  const text = (word: string) => `the ${word} migrate along the southern coast every winter`;
  const gz = gzipSync(text("penguins"));
  expect(await upload("packed/gz.txt", gz, "gzip")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await upload("packed/deflate.txt", deflateSync(text("albatrosses")), "deflate")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  // Brotli has no header to tell it by: its bytes are not text, so its stored encoding is looked up.
  expect(await upload("packed/br.txt", brotliCompressSync(text("terns")), "br")).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  const hits = await search("migrate southern coast");
  expect(hits).toEqual(expect.arrayContaining([["packed/gz.txt", text("penguins")], ["packed/deflate.txt", text("albatrosses")], ["packed/br.txt", text("terns")]]));
  // Kept and served as uploaded: the same gzip bytes, saying so.
  const raw = await new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
    get(`${s.httpUrl}/${B}/packed/gz.txt`, { headers: admin.auth }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c)).on("end", () => resolve({ encoding: res.headers["content-encoding"], body: Buffer.concat(parts) }));
    }).on("error", reject);
  });
  expect(raw).toEqual({ encoding: "gzip", body: gz });
});

test("the read limit applies to the decoded bytes; corrupt data fails clearly; text that starts like zlib data is read as it is", async () => {
  // 8 MiB of text in a gzip of a few KiB: over the 1 MiB limit once decoded.
  const bomb = await upload("packed/bomb.txt", gzipSync(Buffer.alloc(8 << 20, "a")), "gzip");
  expect(bomb.status).toBe("INGEST_STATUS_FAILED");
  expect(bomb.error).toMatch(new RegExp(`object "packed/bomb.txt" is more than \\d+ bytes once decoded \\(Content-Encoding gzip\\); that is the limit for it`));
  const corrupt = Buffer.concat([gzipSync("some text").subarray(0, 12), Buffer.from("not deflate data at all")]);
  const bad = await upload("packed/corrupt.txt", corrupt, "gzip");
  expect(bad.status).toBe("INGEST_STATUS_FAILED");
  expect(bad.error).toMatch(/object "packed\/corrupt.txt" could not be read once decoded \(Content-Encoding gzip\): /);
  // "x^" is a valid zlib header; without a Content-Encoding the text is read as it is.
  expect(await upload("plain/x.txt", Buffer.from("x^2 grows faster than x for every x above one"))).toMatchObject({ status: "INGEST_STATUS_COMPLETED", chunksCreated: 1 });
  expect(await search("grows faster")).toContainEqual(["plain/x.txt", "x^2 grows faster than x for every x above one"]);
  // Bytes that are not text, stored without an encoding, are read as they are (and refused as text).
  const binary = await upload("plain/binary.txt", Buffer.from([0x00, 0x01, 0x02, 0xff, 0xfe, 0x41]));
  expect(binary.status).toBe("INGEST_STATUS_FAILED");
  expect(binary.error).toMatch(/not valid UTF-8 text|binary/);
});
