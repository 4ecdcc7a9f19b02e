/**
 * Ingest jobs and their state machine.
 *
 *                 ┌──────────── cancel ─────────────┐
 *                 │                                 ▼
 *   (trigger) ─► PENDING ──claim──► PROCESSING ──► COMPLETED | PARTIAL | FAILED | CANCELLED
 *                 ▲                     │
 *                 └── retry / rescue ───┘   (transient failure with attempts left, expired lease)
 *
 * PENDING and PROCESSING are live; the four states on the right are terminal and never
 * change again. A job is created PENDING. Cancelling a PENDING job makes it CANCELLED at
 * once; cancelling a PROCESSING job asks its worker to stop (it then ends CANCELLED);
 * cancelling a terminal job is a FailedPrecondition. The SQL that writes states guards
 * every write with the state it expects, so the database enforces this diagram too.
 */

/** Where an entity lives: an organization's bucket (and, inside a call, the call's signal). */
export interface Scope {
  org: string;
  bucket: string;
  /** Aborted when the call's deadline passes or its client goes away; storage cancels its queries then. */
  signal?: AbortSignal;
}

/** A job's lifecycle state. */
export type JobStatus = "pending" | "processing" | "completed" | "failed" | "partial" | "cancelled";

/** Every status, in enum order. */
export const JOB_STATUSES: readonly JobStatus[] = [
  "pending",
  "processing",
  "completed",
  "failed",
  "partial",
  "cancelled",
];

const TERMINAL: ReadonlySet<JobStatus> = new Set(["completed", "failed", "partial", "cancelled"]);

const TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  pending: ["processing", "cancelled"],
  processing: ["pending", "completed", "failed", "partial", "cancelled"],
  completed: [],
  failed: [],
  partial: [],
  cancelled: [],
};

/** True when the status never changes again. */
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

/** True when the diagram above allows moving from `from` to `to`. */
export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The counters a pipeline fills while it runs. */
export interface JobCounters {
  chunksCreated: number;
  embeddingsCreated: number;
  rowsWritten: number;
  outputSize: number;
  batchesReceived: number;
  embeddingsWritten: number;
}

/** An ingest job as the domain sees it. Times are Unix epoch milliseconds. */
export interface Job extends JobCounters {
  jobId: string;
  org: string;
  bucket: string;
  key: string;
  status: JobStatus;
  pipelineId: string;
  pipelineName: string;
  pipelineKind: string;
  /** The template the job runs, copied from the pipeline when it was triggered. */
  template: string;
  ruleId: string;
  createdAt: number;
  updatedAt: number;
  startedAt: number;
  finishedAt: number;
  threadId: string;
  vectorStatus: string;
  error: string;
  errorDetails: string;
  attempts: number;
  options: Record<string, string>;
  requestId: string;
  /** The request id (x-request-id) of the call that created the job, for its log lines. */
  traceId: string;
  /** The source the object came from ('' for jobs older than sources). */
  sourceId: string;
  /** The object version the job was made for ('' when unknown). */
  objectVersion: string;
  /** The job this one replays, if any. */
  retryOf: string;
  /** FAILED for a cause a retry cannot fix. */
  permanentFailure: boolean;
  /** When a PENDING job whose last attempt failed runs again (0 otherwise). */
  nextAttemptAt: number;
  /** What a PROCESSING job is doing (absent otherwise, or before its first report). */
  progress?: JobProgress;
}

/** The stage of a running job: "extracting", "embedding", "writing"; done of total units when known. */
export interface JobProgress {
  stage: string;
  done: number;
  total: number;
  unit: string;
}

/** The fields a caller supplies to create a job; the rest start at their zero value. */
export type NewJob = Pick<
  Job,
  | "jobId"
  | "org"
  | "bucket"
  | "key"
  | "pipelineId"
  | "pipelineName"
  | "pipelineKind"
  | "template"
  | "ruleId"
  | "options"
  | "requestId"
  | "traceId"
  | "createdAt"
> &
  Partial<Pick<Job, "sourceId" | "objectVersion" | "retryOf">>;

/** Filters of a job listing; undefined means "no filter". */
export interface JobFilter {
  org: string;
  bucket: string;
  status?: JobStatus;
  pipelineId?: string;
  ruleId?: string;
  sourceId?: string;
  /** Object keys starting with this (byte-wise). */
  keyPrefix?: string;
}

/** One chunk of text and its embedding, as written to the vector destination. */
export interface VectorChunk {
  index: number;
  text: string;
  vector: number[];
  /** Code-point offsets in the extracted text, PDF page (1-based, 0 unknown), Markdown heading path. */
  start?: number;
  end?: number;
  page?: number;
  heading?: string;
}

/** What a pipeline run produced, for the engine to write together with the job's end state. */
export type JobOutput =
  | { kind: "vector"; chunks: VectorChunk[]; batchSize: number }
  /** Rows as JSON text, one object each. */
  | { kind: "warehouse"; rows: string[]; batchSize: number }
  | { kind: "none" };

/** The end of a successful (or partly successful) run. */
export interface RunOutcome {
  status: "completed" | "partial";
  output: JobOutput;
  /** Counters the pipeline computed itself; write counters are added by the storage. */
  chunksCreated: number;
  embeddingsCreated: number;
  vectorStatus: string;
  /** For PARTIAL: what failed. */
  error: string;
  errorDetails: string;
}

/**
 * A new job as it stands before its first run: what a validate_only trigger answers
 * (without its id), and what an insert answers, with `sourceId` the source the database
 * filled in (the insert returns only that and which rows went in).
 */
export function unstartedJob(j: NewJob, sourceId?: string): Job {
  return {
    objectVersion: "",
    retryOf: "",
    ...j,
    sourceId: sourceId ?? j.sourceId ?? "",
    status: "pending",
    updatedAt: j.createdAt,
    startedAt: 0,
    finishedAt: 0,
    threadId: "",
    vectorStatus: "",
    error: "",
    errorDetails: "",
    attempts: 0,
    chunksCreated: 0,
    embeddingsCreated: 0,
    rowsWritten: 0,
    outputSize: 0,
    batchesReceived: 0,
    embeddingsWritten: 0,
    permanentFailure: false,
    nextAttemptAt: 0,
  };
}
