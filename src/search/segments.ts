/**
 * Rows of 8-bit vector codes, as the search index keeps them: each vector scaled so its
 * largest component is ±127 (cosine does not see the scale), one byte per dimension, in
 * segments that grow to a fixed size; each row remembers its object and chunk, and rows of
 * removed objects stay dead until the segment is compacted.
 */

/** The 8-bit codes of a vector into `out` at `at`; false for a zero vector (it matches nothing). */
export function quantize(v: Float32Array, dims: number, out: Int8Array, at: number): boolean {
  let max = 0;
  for (let d = 0; d < dims; d++) max = Math.max(max, Math.abs(v[d]));
  if (max === 0) return false;
  const scale = 127 / max;
  for (let d = 0; d < dims; d++) out[at + d] = Math.round(v[d] * scale);
  return true;
}

/** A run of one object's chunks inside a segment. */
export interface Part {
  seg: Segment;
  start: number;
  count: number;
}

/** One object of a collection: the job whose chunks are held, and where its rows lie. */
export interface ObjectEntry {
  key: string;
  jobId: string;
  dims: number;
  parts: Part[];
}

let segmentIds = 0;

/**
 * Rows of codes of one dimension; rows of removed objects are dead until compaction. A full
 * segment may live on the scan thread (`away`): its codes are there, its rows' owners here.
 */
export class Segment {
  readonly id = segmentIds++;
  codes: Int8Array;
  owners: Array<ObjectEntry | null>;
  chunks: Int32Array;
  used = 0;
  live = 0;
  away = false;
  constructor(
    readonly dims: number,
    readonly maxRows: number,
    rows: number,
  ) {
    this.codes = new Int8Array(rows * dims);
    this.owners = new Array<ObjectEntry | null>(rows).fill(null);
    this.chunks = new Int32Array(rows);
  }
  get rows(): number {
    return this.chunks.length;
  }
  bytes(): number {
    return this.rows * this.dims + this.chunks.byteLength + this.owners.length * 8;
  }
  /** Room for `n` more rows, growing geometrically up to `maxRows`. */
  reserve(n: number): void {
    if (this.used + n <= this.rows) return;
    let rows = Math.max(this.rows, 64);
    while (rows < this.used + n) rows *= 2;
    rows = Math.min(rows, this.maxRows);
    const codes = new Int8Array(rows * this.dims);
    codes.set(this.codes.subarray(0, this.used * this.dims));
    const chunks = new Int32Array(rows);
    chunks.set(this.chunks.subarray(0, this.used));
    const owners = this.owners.slice(0, this.used);
    owners.length = rows;
    this.codes = codes;
    this.chunks = chunks;
    this.owners = owners.fill(null, this.used);
  }
  /**
   * Moves the live rows down over the dead ones, and the parts with them, into new arrays (a
   * scan in flight keeps the old ones, whose rows keep their meaning). Returns the old row
   * numbers kept, in order: what the scan thread applies to a segment it holds.
   */
  compact(): Int32Array {
    const d = this.dims;
    const keep = new Int32Array(this.live);
    const codes = this.away ? this.codes : new Int8Array(this.rows * d);
    const chunks = new Int32Array(this.rows);
    const owners = new Array<ObjectEntry | null>(this.rows).fill(null);
    let w = 0;
    for (let r = 0; r < this.used; r++) {
      const owner = this.owners[r];
      if (!owner) continue;
      const part = owner.parts.find((p) => p.seg === this && p.start === r);
      if (part) part.start = w;
      if (!this.away) codes.set(this.codes.subarray(r * d, (r + 1) * d), w * d);
      chunks[w] = this.chunks[r];
      owners[w] = owner;
      keep[w++] = r;
    }
    this.codes = codes;
    this.chunks = chunks;
    this.owners = owners;
    this.used = w;
    return keep.subarray(0, w);
  }
}

