"use strict";
/**
 * Rows of 4-bit vector codes in WebAssembly memory, and their exact scan by the kernel of
 * scan-kernel.wat (SIMD; about 8 ms per 500,000 rows of 384 dimensions on one core of the
 * bench machine, where usearch's 8-bit cosine took 15).
 *
 * A row is a vector scaled so its largest component is ±7 (cosine does not see the scale),
 * one nibble per dimension, with the inverse norm of its codes beside it; a query is scaled
 * to 16 bits. A row's score is the dot product of the two times that inverse norm: the
 * cosine up to the query's norm, off from the real vectors' cosine only by the rounding of
 * the row to 4 bits, which the caller's rerank with the real vectors takes back out.
 *
 * Plain CommonJS: the scan thread (scan-threads.ts) loads this file as it is, without the
 * TypeScript loader. Types: scan-kernel.d.cts.
 */
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const KERNEL = new WebAssembly.Module(readFileSync(join(__dirname, "scan-kernel.wasm")));
const PAGE = 65536;

/** Blocks of 32 dimensions (16 bytes of codes, 64 of query) a vector of `dims` takes. */
function blocksOf(dims) {
  return Math.ceil(dims / 32);
}

/** Bytes of codes of one row of `dims` dimensions. */
function rowBytes(dims) {
  return blocksOf(dims) * 16;
}

/** The largest magnitude among the first `dims` components; NaN when one is not a number. */
function maxAbs(v, dims) {
  let max = 0;
  for (let d = 0; d < dims; d++) max = Math.max(max, Math.abs(v[d]));
  return max;
}

/** A vector worth encoding: some component not zero, none infinite or NaN. */
const usable = (max) => max > 0 && Number.isFinite(max);

/**
 * A query as the kernel reads it: 16-bit, zero-padded to whole blocks, with the correction
 * for the codes' +8 offset; undefined for a zero (or not finite) vector, which matches
 * nothing. The scale keeps every sum inside 32 bits at any dimension.
 */
function encodeQuery(v) {
  const dims = v.length;
  const blocks = blocksOf(dims);
  const max = maxAbs(v, dims);
  if (!usable(max)) return undefined;
  const top = Math.min(32767, Math.floor(0x7fffffff / (16 * blocks * 32)));
  const scale = top / max;
  const q = new Int16Array(blocks * 32);
  let sum = 0;
  for (let d = 0; d < dims; d++) {
    q[d] = Math.round(v[d] * scale);
    sum += q[d];
  }
  let norm = 0;
  for (let d = 0; d < dims; d++) norm += q[d] * q[d];
  return { dims, q, corr: 8 * sum, norm: Math.sqrt(norm) };
}

/** Scores looked at per call of the kernel's `above` once a floor is known. */
const BATCH = 16384;

/**
 * The best `want` rows among the scores of one or more blocks (a search's segments, taken
 * one after another): row numbers, a caller's tag per block, scores. The floor set by the
 * blocks already taken carries over, so past the first block only the few rows above it
 * are looked at. A NaN score is never taken; ties go to the lower tag, then the lower row.
 */
class Best {
  constructor(want) {
    this.want = Math.max(0, want);
    this.cap = Math.max(4 * this.want, 64);
    this.at = new Int32Array(this.cap);
    this.tags = new Int32Array(this.cap);
    this.sc = new Float32Array(this.cap);
    this.n = 0;
    this.floor = -Infinity;
  }

  /** Keeps the `want` best of those held, best first, and raises the floor to the last of them when there are that many. */
  keep() {
    const { at, tags, sc, n } = this;
    const order = new Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => sc[b] - sc[a] || tags[a] - tags[b] || at[a] - at[b]);
    const k = Math.min(this.want, n);
    const next = { at: new Int32Array(k), tags: new Int32Array(k), sc: new Float32Array(k) };
    for (let w = 0; w < k; w++) {
      next.at[w] = at[order[w]];
      next.tags[w] = tags[order[w]];
      next.sc[w] = sc[order[w]];
    }
    at.set(next.at);
    tags.set(next.tags);
    sc.set(next.sc);
    this.n = k;
    if (k === this.want && k > 0) this.floor = sc[k - 1];
  }

  push(row, tag, score) {
    this.at[this.n] = row;
    this.tags[this.n] = tag;
    this.sc[this.n] = score;
    if (++this.n === this.cap) this.keep();
  }

  /** Offers the first `rows` scores of `block` (as its score() left them), tagged `tag`. */
  take(block, rows, tag) {
    if (this.want === 0) return;
    const scores = block.scores;
    let start = 0;
    // Until `want` are held there is no floor: every row is a candidate.
    for (; start < rows && this.floor === -Infinity; start++) {
      const s = scores[start];
      if (s === s) this.push(start, tag, s);
    }
    // Short batches while the floor may still rise fast, longer ones after.
    for (let len = 4 * this.cap; start < rows; start += len, len = Math.min(2 * len, BATCH)) {
      const found = block.above(block.scoresAt + start * 4, Math.min(len, rows - start), this.floor, block.hitsAt);
      const hits = block.hits;
      for (let i = 0; i < found; i++) {
        const r = start + hits[i];
        const s = scores[r];
        // The floor may have risen since the batch began.
        if (s > this.floor) this.push(r, tag, s);
      }
    }
  }

  /** The best rows taken, best first. */
  result() {
    this.keep();
    const n = this.n;
    return { rows: this.at.slice(0, n), tags: this.tags.slice(0, n), scores: this.sc.slice(0, n) };
  }
}

/** Rows of one dimension's codes in a memory of their own, with room for the kernel's query and scores. */
class CodeBlock {
  constructor(dims, capacity) {
    this.dims = dims;
    this.blocks = blocksOf(dims);
    this.rowBytes = rowBytes(dims);
    // The kernel scores rows two at a time: an odd last row has a (never read) neighbour.
    this.capacity = Math.max(2, capacity + (capacity & 1));
    const queryBytes = this.blocks * 64;
    // Per row: its codes, its inverse norm, and room for its score and its number in above()'s answer.
    const bytes = queryBytes + this.capacity * (this.rowBytes + 12);
    this.memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / PAGE) });
    const kernel = new WebAssembly.Instance(KERNEL, { env: { memory: this.memory } }).exports;
    this.kernel = kernel.scan;
    this.above = kernel.above;
    const buf = this.memory.buffer;
    this.codesAt = queryBytes;
    this.invAt = this.codesAt + this.capacity * this.rowBytes;
    this.scoresAt = this.invAt + this.capacity * 4;
    this.hitsAt = this.scoresAt + this.capacity * 4;
    this.query = new Int16Array(buf, 0, this.blocks * 32);
    this.codes = new Uint8Array(buf, this.codesAt, this.capacity * this.rowBytes);
    this.inv = new Float32Array(buf, this.invAt, this.capacity);
    this.scores = new Float32Array(buf, this.scoresAt, this.capacity);
    this.hits = new Int32Array(buf, this.hitsAt, this.capacity);
  }

  /** Bytes of memory held. */
  bytes() {
    return this.memory.buffer.byteLength;
  }

  /** Writes `v` (of this block's dimension) as row `row`; false for a zero or not finite vector (it matches nothing). */
  encode(row, v) {
    const dims = this.dims;
    const max = maxAbs(v, dims);
    if (!usable(max)) return false;
    const scale = 7 / max;
    const at = row * this.rowBytes;
    // Padding dimensions hold code 0 (+8), as a query's padding holds 0.
    this.codes.fill(0x88, at, at + this.rowBytes);
    let norm = 0;
    for (let d = 0; d < dims; d++) {
      const c = Math.round(v[d] * scale);
      norm += c * c;
      // Block d >> 5; in it, lane d & 7 (two bytes, little-endian), nibble (d >> 3) & 3.
      const k = (d >> 3) & 3;
      const byte = at + (d >> 5) * 16 + (d & 7) * 2 + (k >> 1);
      const shift = (k & 1) * 4;
      this.codes[byte] = (this.codes[byte] & ~(15 << shift)) | ((c + 8) << shift);
    }
    this.inv[row] = 1 / Math.sqrt(norm);
    return true;
  }

  /** Copies row `fromRow` of `from` (same dimension) into row `row`. */
  copyRow(row, from, fromRow) {
    const n = this.rowBytes;
    this.codes.set(from.codes.subarray(fromRow * n, (fromRow + 1) * n), row * n);
    this.inv[row] = from.inv[fromRow];
  }

  /** A new block of `capacity` rows holding this one's first `rows` rows. */
  grown(capacity, rows) {
    const b = new CodeBlock(this.dims, capacity);
    b.codes.set(this.codes.subarray(0, rows * this.rowBytes));
    b.inv.set(this.inv.subarray(0, rows));
    return b;
  }

  /** A new block holding rows `keep` (row numbers here, in their new order). */
  picked(keep, capacity = keep.length) {
    const b = new CodeBlock(this.dims, capacity);
    for (let w = 0; w < keep.length; w++) b.copyRow(w, this, keep[w]);
    return b;
  }

  /** Copies of the first `rows` rows, to hand to another thread (CodeBlock.from there). */
  export(rows) {
    return { dims: this.dims, rows, codes: this.codes.slice(0, rows * this.rowBytes), inv: this.inv.slice(0, rows) };
  }

  static from(x) {
    const b = new CodeBlock(x.dims, x.rows);
    b.codes.set(x.codes);
    b.inv.set(x.inv);
    return b;
  }

  /** Scores the first `rows` rows for `query` (encodeQuery, same dimension) into `scores`: cosine times the query's 16-bit norm. */
  score(query, rows) {
    if (rows <= 0) return;
    this.query.set(query.q);
    this.kernel(this.codesAt, rows + (rows & 1), this.blocks, 0, this.invAt, this.scoresAt, query.corr);
  }

  /** The `want` best of the first `rows` rows for `query`: row numbers and scores, best first. */
  scan(query, rows, want) {
    this.score(query, rows);
    return this.top(rows, want);
  }

  /** The `want` highest of the first `rows` scores (as score() left them), best first; a NaN score is never taken. */
  top(rows, want) {
    const best = new Best(Math.min(want, Math.max(rows, 0)));
    best.take(this, rows, 0);
    const { rows: at, scores } = best.result();
    return { rows: at, scores };
  }
}

module.exports = { Best, CodeBlock, encodeQuery, rowBytes };
