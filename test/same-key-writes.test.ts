/**
 * Uploads and deletes of one key at the same moment, through one instance and through two
 * instances on one database and one data folder: whichever lands last, the object a GET
 * returns is described by its catalog row — its ETag is the MD5 of the bytes sent back, the
 * listing's size and ETag are the same — or the object is gone everywhere. (Before, the
 * renames could land in one order and the catalog rows in the other: more than half of the
 * rounds through one instance ended with an ETag of other bytes.)
 */
import { createHash } from "node:crypto";
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { jsonClient } from "./helpers/http";

let a: TestServers;
let b: Awaited<ReturnType<typeof startPeer>>;
const B = "kb-same-key";

beforeAll(async () => {
  a = await startServers();
  b = await startPeer(a, { K3_DATA_DIR: a.dataDir });
  expect((await jsonClient(() => a.httpUrl)("POST", "/admin/buckets", { name: B })).status).toBe(200);
});
afterAll(async () => {
  await b.stop();
  await a.stop();
});

const md5 = (bytes: Buffer) => createHash("md5").update(bytes).digest("hex");

/** What a reader sees of `key`: the bytes and headers of a GET, and the key's entry in a listing. */
async function observe(base: string, key: string) {
  const got = await fetch(`${base}/${B}/${key}`);
  const bytes = Buffer.from(await got.arrayBuffer());
  const listing = await (await fetch(`${base}/${B}?list-type=2&prefix=${encodeURIComponent(key)}`)).text();
  const entry = /<Contents><Key>[^<]*<\/Key><LastModified>[^<]*<\/LastModified><ETag>&quot;([0-9a-f]+)&quot;<\/ETag><Size>(\d+)<\/Size>/.exec(listing);
  return { status: got.status, etag: got.headers.get("etag")?.replace(/"/g, ""), bytes, listed: entry ? { etag: entry[1], size: Number(entry[2]) } : undefined };
}

/** Rounds of eight concurrent writes of one key (bodies of different sizes), spread over `bases`; the rounds that ended inconsistent. */
async function race(bases: string[], rounds: number, withDelete: boolean): Promise<string[]> {
  const bad: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const key = `race/${bases.length}/${withDelete ? "d" : "p"}/${round % 4}.txt`;
    const bodies = Array.from({ length: 8 }, (_, i) => `round ${round} writer ${i} `.repeat(1 + i * 40));
    const answers = await Promise.all(
      bodies.map((body, i) =>
        withDelete && i === 3
          ? fetch(`${bases[i % bases.length]}/${B}/${key}`, { method: "DELETE" }).then((r) => r.status)
          : fetch(`${bases[i % bases.length]}/${B}/${key}`, { method: "PUT", body }).then((r) => r.status),
      ),
    );
    expect(answers.every((s) => s === 200 || s === 204)).toBe(true);
    for (const base of bases) {
      const seen = await observe(base, key);
      if (seen.status === 404) {
        if (seen.listed) bad.push(`round ${round}: GET 404 but listed`);
        continue;
      }
      const ok =
        seen.status === 200 &&
        bodies.includes(seen.bytes.toString()) &&
        seen.etag === md5(seen.bytes) &&
        seen.listed?.etag === seen.etag &&
        seen.listed?.size === seen.bytes.length;
      if (!ok) bad.push(`round ${round} via ${base}: ${seen.status}, ${seen.bytes.length} bytes, ETag ${seen.etag} (MD5 ${md5(seen.bytes)}), listed ${JSON.stringify(seen.listed)}`);
    }
  }
  return bad;
}

test("concurrent uploads of one key through one instance: the object read back is the one its row describes", async () => {
  expect(await race([a.httpUrl], 60, false)).toEqual([]);
});

test("concurrent uploads of one key through two instances sharing a data folder: the same on both", async () => {
  expect(await race([a.httpUrl, b.httpUrl], 100, false)).toEqual([]);
});

test("a delete among concurrent uploads of one key: the object is whole or gone, on both instances", async () => {
  expect(await race([a.httpUrl, b.httpUrl], 60, true)).toEqual([]);
});
