/**
 * aws-chunked uploads and additional checksums, as the AWS SDKs send them: the decoder
 * against AWS's published signed-streaming example, the checksum algorithms against their
 * published check values, and end to end through the byte plane with @aws-sdk/client-s3
 * streaming a body (unsigned chunks, CRC32 trailer) and a signed-chunk upload; a tampered
 * chunk or a wrong checksum is refused with S3's code and stores nothing.
 */
import { createHash, createHmac } from "node:crypto";
import { Readable } from "node:stream";
import { decodeAwsChunked, type ChunkedResult } from "../src/s3/aws-chunked";
import { newChecksum } from "../src/s3/checksums";
import { signRequest } from "../src/s3/sigv4";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";

jest.setTimeout(60_000);

const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data).digest();
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
/** The SigV4 signing key, derived here independently of the server's code. */
const keyOf = (secret: string, date: string, region = "us-east-1") => hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), "s3"), "aws4_request");

/** A signed aws-chunked body: each chunk's signature chained from `seed`. */
function signedBody(chunks: Buffer[], key: Buffer, amzDate: string, scope: string, seed: string): Buffer {
  let prev = seed;
  const parts: Buffer[] = [];
  for (const c of [...chunks, Buffer.alloc(0)]) {
    prev = hmac(key, ["AWS4-HMAC-SHA256-PAYLOAD", amzDate, scope, prev, sha256(""), sha256(c)].join("\n")).toString("hex");
    parts.push(Buffer.from(`${c.length.toString(16)};chunk-signature=${prev}\r\n`), c, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

async function drain(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return Buffer.concat(out);
}

describe("against published values", () => {
  // https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html: 66,560 bytes of "a".
  const signing = {
    key: keyOf("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524"),
    amzDate: "20130524T000000Z",
    scope: "20130524/us-east-1/s3/aws4_request",
    seed: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
  };
  const published = (corrupt: boolean) => {
    const second = Buffer.alloc(1024, "a");
    if (corrupt) second[10] = 0x62;
    return Buffer.concat([
      Buffer.from("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"),
      Buffer.alloc(65536, "a"),
      Buffer.from("\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"),
      second,
      Buffer.from("\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"),
    ]);
  };
  /** The body cut into pieces of `size` bytes, as a network would deliver it. */
  async function* pieces(b: Buffer, size: number) {
    for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
  }

  test("AWS's signed streaming example decodes to its 66,560 bytes, whatever the network's piece size", async () => {
    for (const size of [1, 7, 4096, 70_000]) {
      const result: ChunkedResult = { decodedBytes: 0, trailers: new Map() };
      const data = await drain(decodeAwsChunked(pieces(published(false), size), { signing }, result));
      expect({ size, length: data.length, allA: data.every((c) => c === 0x61) }).toEqual({ size, length: 66_560, allA: true });
    }
  });

  test("one changed byte in the second chunk fails its signature", async () => {
    const result: ChunkedResult = { decodedBytes: 0, trailers: new Map() };
    await expect(drain(decodeAwsChunked(pieces(published(true), 4096), { signing }, result))).rejects.toMatchObject({ code: "SignatureDoesNotMatch", message: /chunk 1/ });
  });

  test("CRC32, CRC32C and CRC64/NVME give their catalogued check values for \"123456789\"", () => {
    const check = (a: "crc32" | "crc32c" | "crc64nvme") => {
      const c = newChecksum(a);
      c.update(Buffer.from("12345"));
      c.update(Buffer.from("6789"));
      return Buffer.from(c.digest(), "base64").toString("hex");
    };
    expect([check("crc32"), check("crc32c"), check("crc64nvme")]).toEqual(["cbf43926", "e3069283", "ae8b14860a799888"]);
  });
});

describe("through the byte plane", () => {
  let s: TestServers;
  let bearer = "";
  const keys = { id: "", secret: "" };
  const B = "kb-chunked";
  beforeAll(async () => {
    s = await startServers({ K3_AUTH: "on" });
    const t = await insertToken(s, "default", [{ bucket: "*", role: "admin" }], true);
    bearer = t.token;
    Object.assign(keys, { id: t.id, secret: t.secret });
    expect((await jsonClient(() => s.httpUrl, { authorization: `Bearer ${bearer}` })("POST", "/admin/buckets", { name: B })).status).toBe(200);
  });
  afterAll(() => s.stop());

  const get = (key: string) => fetch(`${s.httpUrl}/${B}/${key}`, { headers: { authorization: `Bearer ${bearer}` } });

  test("@aws-sdk/client-s3 streams a body (aws-chunked, CRC32 trailer) and sends checksums as headers; both land", async () => {
    const { S3Client, PutObjectCommand } = await import("@aws-sdk/client-s3");
    const client = new S3Client({ endpoint: s.httpUrl, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: keys.id, secretAccessKey: keys.secret } });
    try {
      const text = "streamed by the sdk ".repeat(5000); // 100,000 bytes, several network pieces
      await client.send(new PutObjectCommand({ Bucket: B, Key: "sdk/stream.txt", Body: Readable.from([Buffer.from(text.slice(0, 40_000)), Buffer.from(text.slice(40_000))]), ContentLength: text.length }));
      expect(await (await get("sdk/stream.txt")).text()).toBe(text);
      for (const algorithm of ["CRC32C", "SHA256", "CRC64NVME", "SHA1"] as const) {
        await client.send(new PutObjectCommand({ Bucket: B, Key: `sdk/${algorithm}.txt`, Body: Buffer.from(`checked with ${algorithm}`), ChecksumAlgorithm: algorithm }));
        expect(await (await get(`sdk/${algorithm}.txt`)).text()).toBe(`checked with ${algorithm}`);
      }
    } finally {
      client.destroy();
    }
  });

  test("a signed-chunk upload lands; a tampered chunk is SignatureDoesNotMatch and stores nothing", async () => {
    const chunks = [Buffer.alloc(70_000, "x"), Buffer.from("tail")];
    const send = async (key: string, tamper: boolean) => {
      const host = new URL(s.httpUrl).host;
      const decoded = chunks.reduce((n, c) => n + c.length, 0);
      const headers = { host, "content-encoding": "aws-chunked", "x-amz-decoded-content-length": String(decoded) };
      const signed = signRequest({ method: "PUT", path: `/${B}/${key}`, rawQuery: "", headers }, { accessKeyId: keys.id, secretAccessKey: keys.secret, region: "us-east-1" }, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
      const amzDate = signed["x-amz-date"];
      const seed = /Signature=([0-9a-f]+)/.exec(signed.authorization)?.[1] ?? "";
      const body = signedBody(chunks, keyOf(keys.secret, amzDate.slice(0, 8)), amzDate, `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`, seed);
      if (tamper) body[200] ^= 1;
      return fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: { ...headers, ...signed }, body });
    };
    expect((await send("signed/ok.bin", false)).status).toBe(200);
    expect((await (await get("signed/ok.bin")).arrayBuffer()).byteLength).toBe(70_004);
    const bad = await send("signed/bad.bin", true);
    expect(bad.status).toBe(403);
    expect(await bad.text()).toMatch(/<Code>SignatureDoesNotMatch<\/Code>[\s\S]*chunk 0/);
    expect((await get("signed/bad.bin")).status).toBe(404);
  });

  test("a wrong x-amz-checksum-crc32 is BadDigest; an unknown algorithm is named; nothing is stored", async () => {
    const put = (key: string, headers: Record<string, string>) =>
      fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: { authorization: `Bearer ${bearer}`, ...headers }, body: "payload" });
    const wrong = await put("sum/wrong.txt", { "x-amz-checksum-crc32": "AAAAAA==" });
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toMatch(/<Code>BadDigest<\/Code>[\s\S]*CRC32/);
    const unknown = await put("sum/unknown.txt", { "x-amz-checksum-md4": "AAAAAA==" });
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toMatch(/x-amz-checksum-md4 names an unknown checksum algorithm; accepted: crc32, crc32c, crc64nvme, sha1, sha256/);
    const c = newChecksum("crc32");
    c.update(Buffer.from("payload"));
    expect((await put("sum/right.txt", { "x-amz-checksum-crc32": c.digest() })).status).toBe(200);
    expect((await get("sum/wrong.txt")).status).toBe(404);
    expect((await get("sum/unknown.txt")).status).toBe(404);
  });
});
