/**
 * `k3-ingest collections` and `k3-ingest vectors` against a running server: a collection of
 * pushed vectors made, filled from a JSON-lines file and from stdin in as many calls as the
 * API's limits need, refused lines named, vectors replaced, deleted, searched, and the
 * collection removed.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cliRunner } from "./helpers/cli";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(120_000);

const B = "kb-cli-vectors";
let s: TestServers;
let token: string;
const cli = cliRunner(() => ({ DODIL_TOKEN: token, K3_ENDPOINT: s.httpUrl }));
const dir = mkdtempSync(join(tmpdir(), "k3-cli-vectors-"));

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  token = readFileSync(join(s.dataDir, "admin-token"), "utf8").trim();
  expect((await jsonClient(() => s.httpUrl, { authorization: `Bearer ${token}` })("POST", "/admin/buckets", { name: B })).status).toBe(200);
});
afterAll(() => s.stop());

/** A JSON-lines file of `n` vectors of `dims`, vector i pointing along axis i % dims. */
function vectorsFile(name: string, n: number, dims: number, first = 0): string {
  const lines = Array.from({ length: n }, (_, j) => {
    const i = first + j;
    const values = Array.from({ length: dims }, (_, d) => (d === i % dims ? 1 : 0));
    return JSON.stringify({ id: `v${i}`, values, content: `vector number ${i}`, metadata: { parity: i % 2 ? "odd" : "even" } });
  });
  const path = join(dir, name);
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
}

test("a collection is made, filled in calls of at most 1,000, listed, searched, partly deleted and removed", async () => {
  const made = await cli(["collections", "create", "-b", B, "faq", "--dimensions", "8", "-d", "answers we embed ourselves"]);
  expect(made.code).toBe(0);
  expect(made.stdout).toMatch(/^col_\S+\s+faq\s+EXTERNAL\s+8\s+-\s+0$/m);

  const file = vectorsFile("faq.jsonl", 2500, 8);
  const pushed = await cli(["vectors", "push", "-b", B, "faq", file, "-o", "json"]);
  expect([pushed.code, pushed.stderr]).toEqual([0, ""]);
  expect(JSON.parse(pushed.stdout)).toEqual({ written: 2500, calls: 3 });
  expect((await cli(["collections", "ls", "-b", B])).stdout).toMatch(/^col_\S+\s+faq\s+EXTERNAL\s+8\s+-\s+2500$/m);

  // Pushed again: the first call is refused whole (ids already there), nothing after it is sent.
  const again = await cli(["vectors", "push", "-b", B, "faq", file]);
  expect(again.code).toBe(6);
  expect(again.stderr).toMatch(/^AlreadyExists: lines 1–1000 were refused, and nothing after them sent: vectors: ids "v0", .* are in the collection already/m);
  // --upsert replaces them (the content changes with the file).
  writeFileSync(file, readFileSync(file, "utf8").replace(/vector number (\d+)"/g, 'replaced $1"'));
  const upserted = await cli(["vectors", "push", "-b", B, "faq", file, "--upsert"]);
  expect([upserted.code, upserted.stdout]).toEqual([0, "upserted 2500 vectors into faq\n"]);

  const http = jsonClient(() => s.httpUrl, { authorization: `Bearer ${token}` });
  const hit = await http("POST", `/${B}/vector/search`, { vector: { values: [0, 0, 0, 1, 0, 0, 0, 0] }, top_k: 3, collection_name: "faq", include_content: true });
  // Every vector along axis 3 (i % 8 == 3) scores 1: the top 3 are such vectors, with the upserted content.
  const found = hit.json.results.map((r: { content: string; score: number }) => [/^replaced (\d+)$/.exec(r.content)?.[1], r.score]);
  expect(found).toHaveLength(3);
  for (const [n, score] of found) expect([Number(n) % 8, Math.round(score * 1e5) / 1e5]).toEqual([3, 1]);

  const removed = await cli(["vectors", "rm", "-b", B, "faq", "v0", "v1", "no-such-id"]);
  expect([removed.code, removed.stdout]).toEqual([0, "deleted 2 of 3\n"]);
  const gone = await cli(["collections", "rm", "-b", B, "faq"]);
  expect([gone.code, gone.stdout]).toEqual([0, "deleted, with 2498 vectors\n"]);
  expect((await cli(["collections", "ls", "-b", B])).stdout).not.toMatch(/faq/);
});

test("stdin feeds a push; wide vectors go in calls that fit the server's body limit", async () => {
  expect((await cli(["collections", "create", "-b", B, "wide", "--dimensions", "1024"])).code).toBe(0);
  // 300 vectors of 1,024 floats are ~1.2 MB as protobuf: more than the 1 MiB a call may carry.
  const lines = readFileSync(vectorsFile("wide.jsonl", 300, 1024), "utf8");
  const pushed = await cli(["vectors", "push", "-b", B, "wide", "-", "-o", "json"], {}, lines);
  expect([pushed.code, pushed.stderr]).toEqual([0, ""]);
  expect(JSON.parse(pushed.stdout)).toEqual({ written: 300, calls: 2 });
});

test("bad lines and bad flags are usage errors naming the line or the flag; a server refusal names the lines of its call", async () => {
  const bad = join(dir, "bad.jsonl");
  writeFileSync(bad, '{"id": "a", "values": [1, 0]}\n\n{"id": "b", "values": [1, 0]\nnot json\n');
  const r = await cli(["vectors", "push", "-b", B, "wide", bad]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/^line 3 is not JSON \(.*\); each line is a vector: \{"id": "…", "values": \[0\.1, …\]/m);
  writeFileSync(bad, '{"id": "a", "values": ["x"]}\n');
  expect((await cli(["vectors", "push", "-b", B, "wide", bad])).stderr).toMatch(/^line 1: "values" must be a non-empty array of numbers/m);
  expect((await cli(["collections", "create", "-b", B, "x", "--dimensions", "many"])).stderr).toMatch(/^--dimensions many: give the vectors' length, a whole number \(1 to 8192\)/m);
  expect((await cli(["vectors", "push", "-b", B, "wide", bad, "--dimensions", "3"])).stderr).toMatch(/^vectors push does not take --dimensions; it takes --bucket, --upsert/m);
  // Two dimensions where the collection has 1,024: the server's refusal, with the lines it concerns.
  writeFileSync(bad, '{"id": "a", "values": [1, 0]}\n{"id": "b", "values": [0, 1]}\n');
  const refused = await cli(["vectors", "push", "-b", B, "wide", bad]);
  expect(refused.code).toBe(3);
  expect(refused.stderr).toMatch(/^InvalidArgument: lines 1–2 were refused, and nothing after them sent: vectors\[0\]\.values has 2 values; collection "wide" has 1024 dimensions/m);
});
