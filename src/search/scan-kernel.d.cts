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
  scan(query: KernelQuery, rows: number, want: number): ScanResult;
  top(rows: number, want: number): ScanResult;
}
