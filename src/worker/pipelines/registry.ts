/**
 * The executors by template name. Adding a template: describe it (kind, options) in
 * src/domain/templates.ts, write its executor as one module here, and list it below.
 */
import { noop } from "./noop";
import { structuredRows } from "./structured-rows";
import { textEmbeddingIndex } from "./text-embedding-index";
import type { PipelineExecutor } from "./types";

const EXECUTORS: readonly PipelineExecutor[] = [textEmbeddingIndex, structuredRows, noop];

/** Returns the executor of a template, or undefined when this server has none. */
export function executorFor(template: string): PipelineExecutor | undefined {
  return EXECUTORS.find((e) => e.template === template);
}
