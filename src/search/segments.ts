/**
 * Rows of 4-bit vector codes, as the search index keeps them (scan-kernel.cjs holds the
 * codes and scans them), in segments that grow to a fixed size; each row remembers its
 * object and chunk, and rows of removed objects stay dead until the segment is compacted.
 */
import { CodeBlock, rowBytes } from "./scan-kernel.cjs";

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
  /** The codes; undefined once the segment is away. */
  block: CodeBlock | undefined;
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
    this.block = new CodeBlock(dims, rows);
    this.owners = new Array<ObjectEntry | null>(rows).fill(null);
    this.chunks = new Int32Array(rows);
  }
  get rows(): number {
    return this.chunks.length;
  }
  /** Bytes held for this segment here (its codes' memory) or on the scan thread (the same, estimated). */
  bytes(): number {
    const codes = this.block?.bytes() ?? this.rows * (rowBytes(this.dims) + 12);
    return codes + this.chunks.byteLength + this.owners.length * 8;
  }
  /** Room for `n` more rows, growing geometrically up to `maxRows`, in new arrays (a scan in flight keeps the old ones). */
  reserve(n: number): void {
    if (this.used + n <= this.rows) return;
    let rows = Math.max(this.rows, 64);
    while (rows < this.used + n) rows *= 2;
    rows = Math.min(rows, this.maxRows);
    this.block = this.block?.grown(rows, this.used);
    const chunks = new Int32Array(rows);
    chunks.set(this.chunks.subarray(0, this.used));
    const owners = this.owners.slice(0, this.used);
    owners.length = rows;
    this.chunks = chunks;
    this.owners = owners.fill(null, this.used);
  }
  /**
   * Moves the live rows down over the dead ones, and the parts with them, into new arrays (a
   * scan in flight keeps the old ones, whose rows keep their meaning). Returns the old row
   * numbers kept, in order: what the scan thread applies to a segment it holds.
   */
  compact(): Int32Array {
    const keep = new Int32Array(this.live);
    const chunks = new Int32Array(this.rows);
    const owners = new Array<ObjectEntry | null>(this.rows).fill(null);
    let w = 0;
    for (let r = 0; r < this.used; r++) {
      const owner = this.owners[r];
      if (!owner) continue;
      const part = owner.parts.find((p) => p.seg === this && p.start === r);
      if (part) part.start = w;
      chunks[w] = this.chunks[r];
      owners[w] = owner;
      keep[w++] = r;
    }
    const kept = keep.subarray(0, w);
    this.block = this.block?.picked(kept, this.rows);
    this.chunks = chunks;
    this.owners = owners;
    this.used = w;
    return kept;
  }
}
