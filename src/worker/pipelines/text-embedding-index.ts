/**
 * `text_embedding_index` (kind vector): extract text, chunk it, embed the chunks in
 * batches, and hand the chunks with their vectors to the engine. A batch the embedder
 * rejects for good is skipped when earlier batches succeeded (the job ends PARTIAL);
 * when the very first batch is rejected the job fails at once, since every batch would be.
 */
import type { VectorChunk } from "../../domain/job";
import { chunkText } from "../chunk";
import { extractText } from "../extract";
import { PermanentError, describeFailure } from "../failures";
import { intOption, type PipelineExecutor } from "./types";

export const textEmbeddingIndex: PipelineExecutor = {
  readsObject: true,
  template: "text_embedding_index",
  async run(ctx) {
    const size = intOption(ctx.options, "chunk_size", 1000);
    const overlap = intOption(ctx.options, "chunk_overlap", 150);
    const batchSize = intOption(ctx.options, "batch_size", 64);
    const text = await extractText(ctx.path, ctx.job.key, ctx.signal, {
      maxBytes: ctx.limits.maxObjectBytes,
      pdfTimeoutMs: ctx.limits.pdfTimeoutMs,
    });
    const pieces = chunkText(text, size, overlap);
    ctx.progress({ chunksCreated: pieces.length, embeddingsCreated: 0 });
    const embedder = ctx.embedder(ctx.options);
    const chunks: VectorChunk[] = [];
    let failedBatches = 0;
    let lastFailure: PermanentError | undefined;
    for (let start = 0; start < pieces.length; start += batchSize) {
      ctx.signal.throwIfAborted();
      const batch = pieces.slice(start, start + batchSize);
      let vectors: number[][];
      try {
        vectors = await embedder.embed(batch, ctx.signal);
      } catch (err) {
        if (!(err instanceof PermanentError) || chunks.length === 0) throw err;
        failedBatches++;
        lastFailure = err;
        continue;
      }
      batch.forEach((t, i) => chunks.push({ index: start + i, text: t, vector: vectors[i] }));
      ctx.progress({ chunksCreated: pieces.length, embeddingsCreated: chunks.length });
    }
    const partial = failedBatches > 0;
    const failure = lastFailure ? describeFailure(lastFailure) : undefined;
    return {
      status: partial ? "partial" : "completed",
      output: { kind: "vector", chunks, batchSize },
      chunksCreated: pieces.length,
      embeddingsCreated: chunks.length,
      vectorStatus: partial ? "partial" : "success",
      error: failure ? `${failedBatches} of ${Math.ceil(pieces.length / batchSize)} embedding batches failed: ${failure.error}` : "",
      errorDetails: failure?.errorDetails ?? "",
    };
  },
};
