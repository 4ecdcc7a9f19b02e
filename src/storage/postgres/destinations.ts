/**
 * The destinations of the built-in pipelines: an attempt's output cut into the batches the
 * database functions of migration 017 write (k3_output_batch, and k3_attempt_output around
 * it for a running attempt), and the counters the write reports.
 */
import type { JobOutput } from "../../domain/job";
import { vectorHex } from "./vector-bytes";

/** Counters the destination write produced. */
export interface WriteCounters {
  rowsWritten: number;
  outputSize: number;
  batchesReceived: number;
  embeddingsWritten: number;
}

export type Output = Exclude<JobOutput, { kind: "none" }>;

/** What writing `output` reports: batches, embeddings or rows, and bytes at the destination. */
export function outputCounters(output: Output): WriteCounters {
  if (output.kind === "vector") {
    return {
      rowsWritten: 0,
      batchesReceived: Math.ceil(output.chunks.length / output.batchSize),
      embeddingsWritten: output.chunks.length,
      // Bytes at the destination: the chunk text plus 4 bytes per vector component.
      outputSize: output.chunks.reduce((n, c) => n + Buffer.byteLength(c.text) + 4 * c.vector.length, 0),
    };
  }
  return {
    rowsWritten: output.rows.length,
    batchesReceived: Math.ceil(output.rows.length / output.batchSize),
    embeddingsWritten: 0,
    outputSize: output.rows.reduce((n, d) => n + Buffer.byteLength(d), 0),
  };
}

/** How many calls write `output`: one per batch, and one (that only deletes) when it is empty. */
export function batchCount(output: Output): number {
  const n = output.kind === "vector" ? output.chunks.length : output.rows.length;
  return Math.max(1, Math.ceil(n / output.batchSize));
}

/**
 * The batch columns of each call, in the functions' order (index, content, embedding as
 * the hex of its stored bytes, start, end, page, heading, data). Made one batch at a time,
 * so a large output's parameters never exist all at once.
 */
export function* outputBatches(output: Output): Generator<unknown[]> {
  const count = batchCount(output);
  for (let b = 0; b < count; b++) {
    const from = b * output.batchSize;
    if (output.kind === "vector") {
      const batch = output.chunks.slice(from, from + output.batchSize);
      yield [
        batch.map((c) => c.index),
        batch.map((c) => c.text),
        batch.map((c) => vectorHex(c.vector)),
        batch.map((c) => c.start ?? 0),
        batch.map((c) => c.end ?? 0),
        batch.map((c) => c.page ?? 0),
        batch.map((c) => c.heading ?? ""),
        null,
      ];
    } else {
      const docs = output.rows.slice(from, from + output.batchSize);
      yield [docs.map((_, j) => from + j), null, null, null, null, null, null, docs];
    }
  }
}

/** The batch parameters' types, as both functions declare them. */
const BATCH_TYPES = `$i::integer[], $i::text[], $i::text[], $i::integer[], $i::integer[], $i::integer[], $i::text[], $i::jsonb[]`;

/** Numbers `$i` placeholders from `first` on. */
function numbered(text: string, first: number): string {
  let n = first;
  return text.replace(/\$i/g, () => `$${n++}`);
}

/**
 * One batch of an object's output outside any job (the bench's bare loop): the first
 * batch deletes what the pipeline wrote for the object before.
 * Parameters: first, kind, org, bucket, pipeline, key, job id, now (ms), then the batch.
 */
export const OUTPUT_BATCH = `SELECT k3_output_batch($1::boolean, $2, $3, $4, $5, $6, $7, $8::bigint, ${numbered(BATCH_TYPES, 9)})`;

/**
 * One batch of a running attempt's output (k3_attempt_output). Parameters: first, last,
 * kind, org, bucket, pipeline, key, job id, thread id, object version, the batch, then the
 * job's end: status, chunks, embeddings, rows, bytes, batches, embeddings written, vector
 * status, error, error details.
 */
export const ATTEMPT_OUTPUT = `SELECT outcome, job_row FROM k3_attempt_output($1::boolean, $2::boolean, $3, $4, $5, $6, $7, $8, $9, $10::numeric,
  ${numbered(BATCH_TYPES, 11)}, $19, $20::integer, $21::integer, $22::integer, $23::integer, $24::integer, $25::integer, $26, $27, $28)`;

/** The SQLSTATE k3_attempt_output raises when the attempt ended while its output was written. */
export const ATTEMPT_ENDED = "K3A01";
