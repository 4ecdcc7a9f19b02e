/**
 * The vector index's scan kernel (src/search/scan-kernel.wat, run through
 * scan-kernel.cjs): the committed binary is what the text assembles to; every score is
 * the dot product of the row's 4-bit codes and the 16-bit query over the codes' norm, at
 * every dimension and row count (odd ones too); the best rows come back in order; and the
 * rerank pool the index keeps (four times k, at least 64) holds the true top 10 on data
 * shaped like real embeddings, outlier dimensions included.
 */
import { readFileSync } from "node:fs";
import { Best, CodeBlock, encodeQuery } from "../src/search/scan-kernel.cjs";
import { seeded } from "./helpers/seeded";
import { assembleKernel, KERNEL_BINARY } from "./helpers/wasm";

const rand = seeded(11);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const uniform = (dims: number) => Float32Array.from({ length: dims }, () => rand() - 0.5);

/** The 4-bit codes of a vector as the kernel's documentation defines them: scaled so the largest component is ±7, rounded. */
const codesOf = (v: Float32Array) => {
  const max = Math.max(...Array.from(v, Math.abs));
  return Array.from(v, (x) => Math.round((x * 7) / max));
};
const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
};

test("the committed kernel binary is what scan-kernel.wat assembles to (npm run generate)", async () => {
  expect(Buffer.from(await assembleKernel()).equals(readFileSync(KERNEL_BINARY))).toBe(true);
});

test.each([1, 7, 31, 32, 33, 48, 384, 1000])("every score at %i dimensions is the codes' cosine to the 16-bit query (odd and even row counts)", (dims) => {
  for (const rows of [1, 2, 5, 64]) {
    const vectors = Array.from({ length: rows }, () => uniform(dims));
    const block = new CodeBlock(dims, rows);
    vectors.forEach((v, r) => expect(block.encode(r, v)).toBe(true));
    const query = encodeQuery(uniform(dims))!;
    const got = block.scan(query, rows, rows);
    expect(got.rows.length).toBe(rows);
    const want = vectors.map((v, r) => ({ r, s: cosine(codesOf(v), query.q.subarray(0, dims)) })).sort((a, b) => b.s - a.s || a.r - b.r);
    const scores = Array.from(got.scores, (s) => s / query.norm);
    expect(scores.map((s) => Number(s.toFixed(5)))).toEqual(want.map((w) => Number(w.s.toFixed(5))));
    // The order is the scores' order (rows of equal score may come either way).
    for (let i = 1; i < scores.length; i++) expect(scores[i]).toBeLessThanOrEqual(scores[i - 1]);
  }
});

test("a row copied, grown, picked or handed to another thread keeps its scores", () => {
  const dims = 96;
  const vectors = Array.from({ length: 9 }, () => uniform(dims));
  const a = new CodeBlock(dims, 9);
  vectors.forEach((v, r) => a.encode(r, v));
  const query = encodeQuery(uniform(dims))!;
  const scoresOf = (b: CodeBlock, rows: number) => {
    const m = b.scan(query, rows, rows);
    const out = new Map<number, number>();
    m.rows.forEach((r, i) => out.set(r, m.scores[i]));
    return out;
  };
  const base = scoresOf(a, 9);
  const grown = a.grown(20, 9);
  expect(grown.capacity).toBe(20);
  expect(scoresOf(grown, 9)).toEqual(base);
  const picked = a.picked([8, 2, 5]);
  expect([...scoresOf(picked, 3)].sort((x, y) => x[0] - y[0])).toEqual([base.get(8), base.get(2), base.get(5)].map((s, i) => [i, s]));
  const moved = CodeBlock.from(a.export(9));
  expect(scoresOf(moved, 9)).toEqual(base);
  const copy = new CodeBlock(dims, 1);
  copy.copyRow(0, a, 4);
  expect(scoresOf(copy, 1).get(0)).toBe(base.get(4));
});

test("zero and not finite vectors match nothing; the best rows come best first, never a NaN one, at most as many as there are", () => {
  const block = new CodeBlock(4, 2);
  expect(block.encode(0, new Float32Array(4))).toBe(false);
  expect(block.encode(0, Float32Array.from([1, NaN, 0, 0]))).toBe(false);
  expect(block.encode(0, Float32Array.from([1, Infinity, 0, 0]))).toBe(false);
  expect(encodeQuery(new Float32Array(8))).toBeUndefined();
  expect(encodeQuery(Float32Array.from([0, NaN]))).toBeUndefined();
  // top() reads the scores scan() leaves in the block's memory; written here by hand.
  const top = (values: number[], want: number) => {
    const b = new CodeBlock(1, values.length);
    b.scores.set(values);
    const m = b.top(values.length, want);
    return Array.from(m.rows, (r, i) => [r, m.scores[i]]);
  };
  expect(top([0.5, NaN, 0.9, -1, NaN], 10)).toEqual([[2, Math.fround(0.9)], [0, 0.5], [3, -1]]);
  expect(top([0.5, NaN, 0.9, -1, NaN], 1)).toEqual([[2, Math.fround(0.9)]]);
  // Past the first rows, only those above the floor count, NaN among them or not; the best
  // may come last, and rows of equal score come in row order.
  const many = Array.from({ length: 100_003 }, (_, i) => (i % 7 === 3 ? NaN : (i * 7919) % 100_003));
  many[100_002] = 1e9;
  const expected = many.map((v, r) => [r, v]).filter(([, v]) => !Number.isNaN(v)).sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 70);
  expect(top(many, 70)).toEqual(expected);
});

test("one selection over several blocks keeps the best of them all, carrying its floor from block to block", () => {
  // Three blocks of scores, as a search's segments leave them: the best rows are spread
  // over all three, the last block's best comes last, ties and NaN in each.
  const values = [
    Array.from({ length: 30_001 }, (_, i) => (i % 11 === 5 ? NaN : (i * 104_729) % 30_011)),
    Array.from({ length: 7 }, (_, i) => [40_000, NaN, 5, 30_000, 30_000, -2, 29_999][i]),
    Array.from({ length: 50_000 }, (_, i) => (i === 49_999 ? 50_000 : i % 13 === 0 ? NaN : (i * 7_919) % 30_013)),
  ];
  const blocks = values.map((v) => {
    const b = new CodeBlock(1, v.length);
    b.scores.set(v);
    return b;
  });
  const expected = values
    .flatMap((v, tag) => v.map((score, row) => ({ tag, row, score })))
    .filter((x) => !Number.isNaN(x.score))
    .sort((a, b) => b.score - a.score || a.tag - b.tag || a.row - b.row)
    .slice(0, 90);
  const best = new Best(90);
  blocks.forEach((b, tag) => best.take(b, values[tag].length, tag));
  const m = best.result();
  expect(Array.from(m.rows, (row, i) => ({ tag: m.tags[i], row, score: m.scores[i] }))).toEqual(expected);
  // Fewer rows than asked for: all of them, best first, NaN left out.
  const few = new Best(10);
  few.take(blocks[1], 7, 4);
  expect(Array.from(few.result().scores)).toEqual([40_000, 30_000, 30_000, 29_999, 5, -2]);
});

test("the rerank pool (four times k, at least 64) holds the true top 10 on embedding-shaped data with outlier dimensions", () => {
  // Real sentence embeddings: roughly normal components, a few dimensions far larger in
  // every vector (which is what costs a 4-bit scale the most), and neighbours that are
  // noisy copies of a topic vector.
  const dims = 384;
  const rows = 5_000;
  const outliers = [3, 77, 200, 311];
  const gaussians = (n: number) => {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = gauss();
    return v;
  };
  const topics = Array.from({ length: 50 }, () => gaussians(dims));
  const make = (t: Float32Array) => {
    const v = gaussians(dims);
    for (let d = 0; d < dims; d++) v[d] = t[d] + 1.5 * v[d];
    for (const d of outliers) v[d] = 8 + 2 * gauss();
    return v;
  };
  const vectors = Array.from({ length: rows }, (_, i) => make(topics[i % topics.length]));
  const block = new CodeBlock(dims, rows);
  vectors.forEach((v, r) => block.encode(r, v));
  const norms = vectors.map((v) => Math.sqrt(dot(v, v)));
  // For 20 queries: the true top 10, and the codes' best 64 in their order.
  const runs = Array.from({ length: 20 }, (_, i) => {
    const q = make(topics[(i * 37) % topics.length]);
    const scores = new Float32Array(rows);
    for (let r = 0; r < rows; r++) scores[r] = dot(vectors[r], q) / norms[r];
    const truth = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a]).slice(0, 10);
    return { truth, ranked: Array.from(block.scan(encodeQuery(q)!, rows, 64).rows) };
  });
  const recallAt = (pool: number) => runs.reduce((n, { truth, ranked }) => n + truth.filter((r) => ranked.slice(0, pool).includes(r)).length, 0) / (runs.length * 10);
  // Measured: 0.81 at 10, 0.95 at 16, 0.995 at 32, 1.0 at 64.
  expect(recallAt(64)).toBeGreaterThanOrEqual(0.99);
  // What the pool is for: the codes' own top 10 is not the true top 10.
  expect(recallAt(10)).toBeLessThan(0.99);
});
