/**
 * The in-memory vector index against exact cosine scoring done here, on chunks written
 * straight into PostgreSQL as a pipeline writes them: the same top k with the same exact
 * scores, unfiltered and under filters that pass few or most objects; after objects are
 * removed or re-ingested (rows compacted, stale ones gone); keys with quotes, backslashes
 * and non-ASCII letters among them; and a second index (another instance) answers the same.
 */
import { Client } from "pg";
import { VectorIndex } from "../src/search/vector-index";
import { seeded } from "./helpers/seeded";
import { startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(120_000);

const DIMS = 48;
const P = "pipe_index_test";
const scope = { org: "default", bucket: "kb-index" };

const next = seeded(7);
const rand = () => next() - 0.5;
const vec = () => Array.from({ length: DIMS }, rand);

let s: TestServers;
let db: Client;
const made: VectorIndex[] = [];
const newIndex = (...args: ConstructorParameters<typeof VectorIndex>) => {
  const index = new VectorIndex(...args);
  made.push(index);
  return index;
};
/** What the table holds: key → chunk vectors. */
const truth = new Map<string, number[][]>();

async function write(key: string, job: string, vectors: number[][]): Promise<void> {
  await db.query("DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = $4", [scope.org, scope.bucket, P, key]);
  await db.query(
    `INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at)
     SELECT $1, $2, $3, $4, i - 1, 'chunk', (SELECT string_agg(float4send(x::real), ''::bytea ORDER BY n) FROM json_array_elements_text($5::json -> (i - 1)) WITH ORDINALITY AS e(x, n)), $6, 0 FROM generate_series(1, $7) AS i`,
    [scope.org, scope.bucket, P, key, JSON.stringify(vectors), job, vectors.length],
  );
  await db.query(
    `INSERT INTO object_outputs (org, bucket, pipeline_id, object_key, job_id, updated_at) VALUES ($1, $2, $3, $4, $5, 0)
     ON CONFLICT (org, bucket, pipeline_id, object_key) DO UPDATE SET job_id = EXCLUDED.job_id`,
    [scope.org, scope.bucket, P, key, job],
  );
  // As PostgreSQL keeps them (real): scores here then differ from the index's only in the last bits, never at the fourth decimal.
  truth.set(key, vectors.map((v) => v.map(Math.fround)));
}

async function remove(key: string): Promise<void> {
  await db.query("DELETE FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = $4", [scope.org, scope.bucket, P, key]);
  await db.query("DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 AND object_key = $4", [scope.org, scope.bucket, P, key]);
  truth.delete(key);
}

/** The exact top k here: key#chunk and score. */
function exact(q: number[], k: number, accept: (key: string) => boolean): Array<[string, number]> {
  const qn = Math.hypot(...q);
  const all: Array<[string, number]> = [];
  for (const [key, vs] of truth) {
    if (!accept(key)) continue;
    vs.forEach((v, i) => all.push([`${key}#${i}`, v.reduce((s, x, d) => s + x * q[d], 0) / (Math.hypot(...v) * qn)]));
  }
  return all.sort((a, b) => b[1] - a[1]).slice(0, k);
}

async function expectExact(index: VectorIndex, k: number, accept: (key: string) => boolean, queries = 8): Promise<void> {
  for (let i = 0; i < queries; i++) {
    const q = vec().map(Math.fround);
    const got = (await index.search(scope, [P], Float32Array.from(q), k, accept)).map((h) => [`${h.key}#${h.chunkIndex}`, Number(h.score.toFixed(4))]);
    expect(got).toEqual(exact(q, k, accept).map(([id, score]) => [id, Number(score.toFixed(4))]));
  }
}

beforeAll(async () => {
  s = await startServers();
  db = new Client({ connectionString: s.db.url });
  await db.connect();
  // 1,500 objects of 1 to 8 chunks, written in a few statements.
  for (let o = 0; o < 1500; o++) await write(`doc/${String(o).padStart(4, "0")}`, "job_a", Array.from({ length: 1 + (o % 8) }, vec));
  for (const key of AWKWARD) await write(key, "job_a", Array.from({ length: 5 }, vec));
});
afterAll(async () => {
  for (const index of made) await index.close();
  await db.end();
  await s.stop();
});

// Small segments (256 rows): most are full, and every other full one lives on the scan thread.
const SMALL = { segmentBytes: 256 * DIMS };
/** Keys the index loads by literal (COPY takes no parameters): quotes, backslashes, non-ASCII. */
const AWKWARD = [`doc/it's "quoted" \\ back\\slash`, "doc/ü日本語 €", "doc/x'); DROP TABLE vector_chunks; --"];
const LAYOUTS: Array<[string, { threads?: number; segmentBytes?: number }]> = [
  ["one segment, this thread", { threads: 0 }],
  ["small segments shared with the scan thread", { threads: 1, ...SMALL }],
];

test.each(LAYOUTS)("the index answers what exact scoring answers: the same chunks, the same scores, for top 1, 10 and 100 (%s)", async (_name, opts) => {
  const index = newIndex(s.app.repo().vector, undefined, opts);
  for (const k of [1, 10, 100]) await expectExact(index, k, () => true, 4);
  await expectExact(index, 10, (key) => key.startsWith("doc/00")); // 100 objects of 1,500
  const { here, away } = index.placement();
  if (opts.threads) expect(away / (here + away)).toBeGreaterThan(0.4);
  else expect(away).toBe(0);
});

test("objects whose keys hold quotes, backslashes and non-ASCII letters are loaded whole", async () => {
  const index = newIndex(s.app.repo().vector, undefined, { threads: 0 });
  for (const key of AWKWARD) {
    const hits = await index.search(scope, [P], Float32Array.from(vec()), 10, (k) => k === key);
    expect(hits.map((h) => `${h.key}#${h.chunkIndex}`).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `${key}#${i}`));
  }
  await expectExact(index, 10, (key) => AWKWARD.includes(key));
});

test.each(LAYOUTS)("filters that pass few objects and filters that pass most answer exactly too (%s)", async (_name, opts) => {
  const index = newIndex(s.app.repo().vector, undefined, opts);
  await expectExact(index, 10, (key) => key.startsWith("doc/00")); // 100 objects of 1,500
  await expectExact(index, 10, (key) => !key.endsWith("7")); // nine in ten
  await expectExact(index, 10, (key) => key === "doc/0042");
  await expectExact(index, 10, () => false, 1);
});

test("removed and re-ingested objects leave the answers at once, on this index and on a fresh one (segments compacted here and on the scan thread)", async () => {
  const index = newIndex(s.app.repo().vector, undefined, { threads: 1, ...SMALL });
  await expectExact(index, 10, () => true, 2);
  const bytesBefore = index.heldBytes();
  // Two in three objects go (their rows die and segments compact), a tenth are re-ingested.
  for (let o = 0; o < 1500; o++) {
    const key = `doc/${String(o).padStart(4, "0")}`;
    if (o % 3 !== 0) await remove(key);
    else if (o % 10 === 0) await write(key, "job_b", Array.from({ length: 3 }, vec));
  }
  await expectExact(index, 10, () => true);
  await expectExact(index, 20, (key) => key.startsWith("doc/01"));
  expect(index.heldBytes()).toBeLessThanOrEqual(bytesBefore);
  expect(index.placement().away).toBeGreaterThan(0);
  await expectExact(newIndex(s.app.repo().vector, undefined, { threads: 0 }), 10, () => true);
  await expectExact(newIndex(s.app.repo().vector, undefined, { threads: 1, ...SMALL }), 10, () => true);
});

test("a zero query matches nothing; a query of another dimension finds nothing", async () => {
  const index = newIndex(s.app.repo().vector);
  expect(await index.search(scope, [P], new Float32Array(DIMS), 10, () => true)).toEqual([]);
  expect(await index.search(scope, [P], Float32Array.from(vec().slice(1)), 10, () => true)).toEqual([]);
  expect(await index.dimensionOf(scope, P)).toBe(DIMS);
});
