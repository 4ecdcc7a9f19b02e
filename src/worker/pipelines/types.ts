/** The contract between the worker engine and a pipeline template's executor. */
import type { Job, RunOutcome } from "../../domain/job";
import type { Logger } from "../../log";
import type { ObjectHandle } from "../../storage/object-store";
import type { Embedder } from "../embedder";
import type { ProgressReport } from "../progress";
import { extname } from "node:path";
import { PACKED_EXTENSIONS, type ParseLimits } from "../extract";
import type { SandboxLimits } from "../sandbox";

/** The bounds every executor works within. */
export interface ExecutorLimits {
  parse: ParseLimits;
  sandbox: SandboxLimits;
  /** Objects larger than this are parsed in the sandbox process, not inline. */
  inlineBytes: number;
  /** Most vector values (chunks × dimensions) one object may produce. */
  maxVectorValues: number;
}

/** What a running pipeline gets from the engine. */
export interface RunContext {
  job: Job;
  /** The job's effective options (pipeline options overlaid by the trigger's). */
  options: Readonly<Record<string, string>>;
  /** The object, opened once and checked by the engine (undefined for templates that do not read it). */
  object?: ObjectHandle;
  /** True when embeddings come from the built-in local embedder (computed with the chunks). */
  localEmbedding: boolean;
  /** Aborted on cancel, shutdown or a lost lease; executors pass it on and check it. */
  signal: AbortSignal;
  /** The embedder configured for this server, for the given options. */
  embedder(options: Readonly<Record<string, string>>): Embedder;
  /** Publishes counters and the stage while the job runs (throttled by the engine). */
  progress(report: ProgressReport): void;
  log: Logger;
  limits: ExecutorLimits;
}

/**
 * A template's executor. It reads and transforms; it never writes to the destination:
 * the engine writes the returned output in the transaction that ends the job, so a
 * cancelled or superseded run leaves nothing behind.
 */
export interface PipelineExecutor {
  template: string;
  /** False for templates that never read the object (the engine then skips reading it). */
  readsObject: boolean;
  /** Largest object (bytes) worth reading for this key; larger ones fail before being read. */
  readLimit?(key: string, limits: ExecutorLimits): number;
  run(ctx: RunContext): Promise<RunOutcome>;
}

/** An integer option, with its default. Values were validated against the template already. */
export function intOption(options: Readonly<Record<string, string>>, name: string, fallback: number): number {
  const raw = options[name];
  return raw === undefined || raw.trim() === "" ? fallback : Number.parseInt(raw, 10);
}

/** Text formats never hold more characters than bytes: past four bytes a character, the text cap is passed for sure (packed formats, PDF and Office, are bounded by their extraction). */
export function textReadLimit(key: string, limits: ExecutorLimits): number {
  return PACKED_EXTENSIONS.has(extname(key).toLowerCase()) ? Number.MAX_SAFE_INTEGER : limits.parse.maxTextChars * 4;
}

/** The object of a run; only templates with `readsObject` get one. */
export function objectOf(ctx: RunContext): ObjectHandle {
  if (!ctx.object) throw new Error(`template ${ctx.job.template} reads objects but the engine opened none`);
  return ctx.object;
}
