/**
 * The CPU-heavy part of each template as pure functions of the object's bytes: run inline
 * for small objects, and in the sandbox process (sandbox.ts) for large ones and PDFs, so a
 * hostile file can cost its own bounded process, never the server's event loop or heap.
 * Every cap is checked before the allocation it protects.
 */
import { chunkCount, chunkSpans, type Chunk } from "./chunk";
import { hashEmbed } from "./embedder";
import { extractDocument, type ExtractedDocument, type ParseLimits } from "./extract";
import { PermanentError } from "./failures";
import { parseRows, type RowsOptions } from "./rows";

/** Input of the text task. */
export interface TextTaskParams {
  key: string;
  /** How the object's bytes are text: "auto" or an encoding's label (decodeText). */
  encoding: string;
  chunkSize: number;
  overlap: number;
  limits: ParseLimits;
  /** Embed with the local embedder at this many dimensions; 0 leaves embedding to the caller. */
  localDims: number;
  /** Dimensions the embeddings will have (for the cap on chunks × dimensions). */
  dims: number;
  maxVectorValues: number;
}

/** Where a chunk lies: code-point offsets, its PDF page (1-based, 0 unknown), its heading path. */
export interface ChunkPlace {
  start: number;
  end: number;
  page: number;
  heading: string;
}

/** The chunks of an object's text, where they lie, and their local embeddings when asked for (`dims` floats each). */
export interface TextTaskResult {
  pieces: string[];
  places: ChunkPlace[];
  vectors?: Float32Array;
}

/** The page and heading path at a chunk's start. */
function placeOf(doc: ExtractedDocument, start: number, end: number, cursor: { page: number; heading: number; path: string[] }): ChunkPlace {
  while (cursor.page + 1 < doc.pageStarts.length && doc.pageStarts[cursor.page + 1] <= start) cursor.page++;
  while (cursor.heading < doc.headings.length && doc.headings[cursor.heading].at <= start) {
    const h = doc.headings[cursor.heading++];
    cursor.path = [...cursor.path.slice(0, h.level - 1), h.title];
  }
  return { start, end, page: doc.pageStarts.length ? cursor.page + 1 : 0, heading: cursor.path.filter(Boolean).join(" > ") };
}

/** A CSV's header line, when it leaves room for rows (at most half a chunk). */
function csvHeader(text: string, chunkSize: number): string | undefined {
  const end = text.indexOf("\n");
  const header = end < 0 ? "" : text.slice(0, end).replace(/\r$/, "");
  return header && [...header].length <= chunkSize / 2 ? header : undefined;
}

/** The rows of a CSV (after its header) in chunks that leave room for the header; offsets in the whole text. */
function csvChunks(text: string, header: string, chunkSize: number, overlap: number): Chunk[] {
  const skip = text.indexOf("\n") + 1;
  const shift = [...text.slice(0, skip)].length;
  const size = chunkSize - [...header].length - 1;
  return chunkSpans(text.slice(skip), size, Math.min(overlap, Math.floor(size / 2)), true).map((c) => ({ ...c, start: c.start + shift, end: c.end + shift }));
}

/** Extracts, chunks and (locally) embeds an object's text. */
export async function textTask(data: Uint8Array, p: TextTaskParams): Promise<TextTaskResult> {
  const doc = await extractDocument(data, p.key, p.limits, p.encoding);
  const tooMany = (count: number) =>
    new PermanentError(
      "chunk",
      `object "${p.key}" would make ${count} chunks of ${p.dims} dimensions (${count * p.dims} vector values); the limit is ${p.maxVectorValues} (K3_MAX_VECTOR_VALUES): raise chunk_size or lower dimensions`,
    );
  // Checked before chunking (fixed windows' count), and again on the real count before any vector exists.
  const estimate = chunkCount(doc.text.length, p.chunkSize, p.overlap);
  if (estimate * p.dims > p.maxVectorValues) throw tooMany(estimate);
  const header = p.key.toLowerCase().endsWith(".csv") ? csvHeader(doc.text, p.chunkSize) : undefined;
  const chunks = header ? csvChunks(doc.text, header, p.chunkSize, p.overlap) : chunkSpans(doc.text, p.chunkSize, p.overlap);
  if (chunks.length * p.dims > p.maxVectorValues) throw tooMany(chunks.length);
  const cursor = { page: 0, heading: 0, path: [] as string[] };
  const places = chunks.map((c) => placeOf(doc, c.start, c.end, cursor));
  // A CSV chunk is its header line and whole rows, so every chunk says what its columns are.
  const pieces = chunks.map((c) => (header ? `${header}\n${c.text}` : c.text));
  if (p.localDims === 0) return { pieces, places };
  const vectors = new Float32Array(pieces.length * p.localDims);
  pieces.forEach((piece, i) => hashEmbed(piece, p.localDims, vectors, i * p.localDims));
  return { pieces, places, vectors };
}

/** Input of the rows task. */
export interface RowsTaskParams {
  key: string;
  format: string;
  how: RowsOptions;
  limits: ParseLimits;
}

/** Parses an object into rows, each already serialised as JSON. */
export function rowsTask(data: Uint8Array, p: RowsTaskParams): { rows: string[] } {
  return { rows: parseRows(data, p.format, p.key, p.limits, p.how) };
}
