/** Types of scan-kernel.cjs (plain CommonJS, so the scan thread can load it as it is). */

/** A query as the kernel reads it (encodeQuery). */
export interface KernelQuery {
  dims: number;
  q: Int16Array;
  corr: number;
  /** The norm of `q`: a row's score over it is the row's cosine to the query. */
  norm: number;
}

/** The best rows of one scan: row numbers and scores, best first. */
export interface ScanResult {
  rows: Int32Array;
  scores: Float32Array;
}

/** Rows handed from one thread to another. */
export interface ExportedRows {
  dims: number;
  rows: number;
  codes: Uint8Array<ArrayBuffer>;
  inv: Float32Array<ArrayBuffer>;
}

/** The best rows of a scan over several blocks: each row's number and its block's tag, best first. */
export interface TaggedResult extends ScanResult {
  tags: Int32Array;
}

/** The best `want` rows among the scores of one or more blocks; the floor of those taken carries over to the next. */
export class Best {
  readonly want: number;
  constructor(want: number);
  take(block: CodeBlock, rows: number, tag: number): void;
  result(): TaggedResult;
}

export function encodeQuery(v: ArrayLike<number>): KernelQuery | undefined;

/** Bytes of codes of one row of `dims` dimensions. */
export function rowBytes(dims: number): number;

export class CodeBlock {
  readonly dims: number;
  readonly capacity: number;
  readonly rowBytes: number;
  codes: Uint8Array;
  inv: Float32Array;
  constructor(dims: number, capacity: number);
  bytes(): number;
  encode(row: number, v: ArrayLike<number>): boolean;
  copyRow(row: number, from: CodeBlock, fromRow: number): void;
  grown(capacity: number, rows: number): CodeBlock;
  picked(keep: ArrayLike<number>, capacity?: number): CodeBlock;
  export(rows: number): ExportedRows;
  static from(x: ExportedRows): CodeBlock;
  readonly scores: Float32Array;
  score(query: KernelQuery, rows: number): void;
  scan(query: KernelQuery, rows: number, want: number): ScanResult;
  top(rows: number, want: number): ScanResult;
}
