/**
 * The CPU-heavy part of each template as pure functions of the object's bytes: run inline
 * for small objects, and in the sandbox process (sandbox.ts) for large ones and PDFs, so a
 * hostile file can cost its own bounded process, never the server's event loop or heap.
 * Every cap is checked before the allocation it protects.
 */
import { chunkCount, chunkText } from "./chunk";
import { hashEmbed } from "./embedder";
import { extractText, type ParseLimits } from "./extract";
import { PermanentError } from "./failures";
import { parseRows } from "./rows";

/** Input of the text task. */
export interface TextTaskParams {
  key: string;
  chunkSize: number;
  overlap: number;
  limits: ParseLimits;
  /** Embed with the local embedder at this many dimensions; 0 leaves embedding to the caller. */
  localDims: number;
  /** Dimensions the embeddings will have (for the cap on chunks × dimensions). */
  dims: number;
  maxVectorValues: number;
}

/** The chunks of an object's text, and their local embeddings when asked for (`dims` floats each). */
export interface TextTaskResult {
  pieces: string[];
  vectors?: Float32Array;
}

/** Extracts, chunks and (locally) embeds an object's text. */
export async function textTask(data: Uint8Array, p: TextTaskParams): Promise<TextTaskResult> {
  const text = await extractText(data, p.key, p.limits);
  const count = chunkCount(text.length, p.chunkSize, p.overlap);
  if (count * p.dims > p.maxVectorValues) {
    throw new PermanentError(
      "chunk",
      `object "${p.key}" would make ${count} chunks of ${p.dims} dimensions (${count * p.dims} vector values); the limit is ${p.maxVectorValues} (K3_MAX_VECTOR_VALUES): raise chunk_size or lower dimensions`,
    );
  }
  const pieces = chunkText(text, p.chunkSize, p.overlap);
  if (p.localDims === 0) return { pieces };
  const vectors = new Float32Array(pieces.length * p.localDims);
  pieces.forEach((piece, i) => hashEmbed(piece, p.localDims, vectors, i * p.localDims));
  return { pieces, vectors };
}

/** Input of the rows task. */
export interface RowsTaskParams {
  key: string;
  format: string;
  limits: ParseLimits;
}

/** Parses an object into rows, each already serialised as JSON. */
export function rowsTask(data: Uint8Array, p: RowsTaskParams): { rows: string[] } {
  return { rows: parseRows(data, p.format, p.key, p.limits) };
}
