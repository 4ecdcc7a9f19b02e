/** The destinations of the built-in pipelines: writing an attempt's output in its final transaction. */
import type { PoolClient } from "pg";
import type { Job, JobOutput } from "../../domain/job";
import * as SQL from "./sql";

/** Counters the destination write produced. */
export interface WriteCounters {
  rowsWritten: number;
  outputSize: number;
  batchesReceived: number;
  embeddingsWritten: number;
}

export const NO_WRITES: WriteCounters = { rowsWritten: 0, outputSize: 0, batchesReceived: 0, embeddingsWritten: 0 };

/**
 * Writes a run's output, replacing what the same pipeline wrote for the same object
 * before. Runs inside the transaction that ends the job, so readers never see a mix of
 * old and new rows, and an attempt that loses its lease or is cancelled writes nothing.
 */
export async function writeOutput(client: PoolClient, job: Job, output: Exclude<JobOutput, { kind: "none" }>): Promise<WriteCounters> {
  const now = Date.now();
  const counters: WriteCounters = { rowsWritten: 0, outputSize: 0, batchesReceived: 0, embeddingsWritten: 0 };
  const key = [job.org, job.bucket, job.pipelineId, job.key];
  if (output.kind === "vector") {
    await client.query(SQL.VECTOR_DELETE, key);
    for (let i = 0; i < output.chunks.length; i += output.batchSize) {
      const batch = output.chunks.slice(i, i + output.batchSize);
      const vectors = batch.map((c) => JSON.stringify(c.vector));
      await client.query(SQL.VECTOR_INSERT_BATCH, [
        ...key,
        job.jobId,
        now,
        batch.map((c) => c.index),
        batch.map((c) => c.text),
        vectors,
        batch.map((c) => c.start ?? 0),
        batch.map((c) => c.end ?? 0),
        batch.map((c) => c.page ?? 0),
        batch.map((c) => c.heading ?? ""),
      ]);
      counters.batchesReceived++;
      counters.embeddingsWritten += batch.length;
      // Bytes at the destination: the chunk text plus 4 bytes per vector component.
      counters.outputSize += batch.reduce((n, c) => n + Buffer.byteLength(c.text) + 4 * c.vector.length, 0);
    }
  } else if (output.kind === "warehouse") {
    await client.query(SQL.WAREHOUSE_DELETE, key);
    for (let i = 0; i < output.rows.length; i += output.batchSize) {
      const docs = output.rows.slice(i, i + output.batchSize);
      await client.query(SQL.WAREHOUSE_INSERT_BATCH, [...key, job.jobId, now, docs.map((_, j) => i + j), docs]);
      counters.batchesReceived++;
      counters.rowsWritten += docs.length;
      counters.outputSize += docs.reduce((n, d) => n + Buffer.byteLength(d), 0);
    }
  }
  return counters;
}
