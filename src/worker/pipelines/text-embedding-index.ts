/**
 * `text_embedding_index` (kind vector): extract text, chunk it, embed the chunks in
 * batches, and hand the chunks with their vectors to the engine. Large objects and PDFs
 * are extracted, chunked and (with the local embedder) embedded in the sandbox process.
 * A batch the remote embedder rejects for good is skipped when earlier batches succeeded
 * (the job ends PARTIAL); when the very first batch is rejected the job fails at once,
 * since every batch would be.
 */
import { extname } from "node:path";
import type { VectorChunk } from "../../domain/job";
import { checkTextExtension, PACKED_EXTENSIONS } from "../extract";
import { PermanentError, describeFailure } from "../failures";
import { textTaskSandboxed } from "../sandbox";
import { textTask, type TextTaskParams } from "../tasks";
import { intOption, objectOf, textReadLimit, type PipelineExecutor } from "./types";

/** Dimensions assumed for the cap on chunks × dimensions when a remote model does not say. */
const REMOTE_DIMS_ESTIMATE = 1536;

export const textEmbeddingIndex: PipelineExecutor = {
  readsObject: true,
  readLimit: textReadLimit,
  template: "text_embedding_index",
  async run(ctx) {
    const size = intOption(ctx.options, "chunk_size", 1000);
    const overlap = intOption(ctx.options, "chunk_overlap", 150);
    const batchSize = intOption(ctx.options, "batch_size", 64);
    const dims = intOption(ctx.options, "dimensions", ctx.localEmbedding ? 384 : REMOTE_DIMS_ESTIMATE);
    checkTextExtension(ctx.job.key);
    const params: TextTaskParams = {
      key: ctx.job.key,
      encoding: ctx.options.encoding ?? "auto",
      chunkSize: size,
      overlap,
      limits: ctx.limits.parse,
      localDims: ctx.localEmbedding ? dims : 0,
      dims,
      maxVectorValues: ctx.limits.maxVectorValues,
    };
    const object = objectOf(ctx);
    ctx.progress({ stage: "extracting" });
    const isolate = object.size > ctx.limits.inlineBytes || PACKED_EXTENSIONS.has(extname(ctx.job.key).toLowerCase());
    const { pieces, places, vectors } = isolate
      ? await textTaskSandboxed(object, params, ctx.signal, ctx.limits.sandbox)
      : await textTask(await object.readAll(), params);
    ctx.progress({ chunksCreated: pieces.length, embeddingsCreated: 0, stage: "embedding", done: 0, total: pieces.length, unit: "chunks" });
    const chunks: VectorChunk[] = [];
    if (vectors) {
      pieces.forEach((text, i) => chunks.push({ index: i, text, vector: Array.from(vectors.subarray(i * dims, (i + 1) * dims)), ...places[i] }));
      ctx.progress({ chunksCreated: pieces.length, embeddingsCreated: chunks.length, done: chunks.length });
      return { status: "completed", output: { kind: "vector", chunks, batchSize }, chunksCreated: pieces.length, embeddingsCreated: chunks.length, vectorStatus: "success", error: "", errorDetails: "" };
    }
    const embedder = ctx.embedder(ctx.options);
    let failedBatches = 0;
    let lastFailure: PermanentError | undefined;
    for (let start = 0; start < pieces.length; start += batchSize) {
      ctx.signal.throwIfAborted();
      const batch = pieces.slice(start, start + batchSize);
      let got: number[][];
      try {
        got = await embedder.embed(batch, ctx.signal);
      } catch (err) {
        if (!(err instanceof PermanentError) || chunks.length === 0) throw err;
        failedBatches++;
        lastFailure = err;
        continue;
      }
      batch.forEach((t, i) => chunks.push({ index: start + i, text: t, vector: got[i], ...places[start + i] }));
      ctx.progress({ chunksCreated: pieces.length, embeddingsCreated: chunks.length, done: chunks.length });
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
