/**
 * What scenario 3 is measured against: the same extract + chunk + embed + insert code the
 * worker runs for `text_embedding_index` (textTask with the local embedder, then the
 * output's batches through k3_output_batch, the function the worker's own write wraps), in a bare loop — no server, no queue, no job rows, no
 * object store — with as many objects in flight as the worker runs. The end-to-end path can
 * at best reach it.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Pool } from "pg";
import { loadConfig } from "../../src/config";
import type { VectorChunk } from "../../src/domain/job";
import { OUTPUT_BATCH, outputBatches, type Output } from "../../src/storage/postgres/destinations";
import { textTask } from "../../src/worker/tasks";

const DIMS = 384;

/** Objects per second through the bare loop, `lanes` at a time; `dir` holds the `keys`. */
export async function bareTextEmbedding(url: string, scope: { org: string; bucket: string }, dir: string, keys: string[], lanes: number): Promise<number> {
  const limits = loadConfig({}).worker.limits;
  const pool = new Pool({ connectionString: url, max: lanes });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < keys.length) {
        const key = keys[next++];
        const bytes = await readFile(join(dir, key));
        const { pieces, places, vectors } = await textTask(bytes, { key, encoding: "auto", chunkSize: 1000, overlap: 150, limits: limits.parse, localDims: DIMS, dims: DIMS, maxVectorValues: limits.maxVectorValues });
        if (!vectors) throw new Error("the local embedder gave no vectors");
        const chunks: VectorChunk[] = pieces.map((text, i) => ({ index: i, text, vector: Array.from(vectors.subarray(i * DIMS, (i + 1) * DIMS)), ...places[i] }));
        const output: Output = { kind: "vector", chunks, batchSize: 64 };
        const call = (first: boolean, batch: unknown[]) => [first, "vector", scope.org, scope.bucket, "pipe_bare_loop", key, "job_bare_loop", Date.now(), ...batch];
        const batches = [...outputBatches(output)];
        if (batches.length === 1) {
          await pool.query(OUTPUT_BATCH, call(true, batches[0]));
          continue;
        }
        const client = await pool.connect();
        try {
          await client.query("BEGIN");
          for (const [i, batch] of batches.entries()) await client.query(OUTPUT_BATCH, call(i === 0, batch));
          await client.query("COMMIT");
        } finally {
          client.release();
        }
      }
    }),
  );
  const perSecond = keys.length / ((performance.now() - t0) / 1000);
  await pool.end();
  return perSecond;
}
