/**
 * The storage seam. The service layer talks to this interface only; implementations
 * return domain objects, never driver rows or proto messages.
 */
import type { Cursor } from "../domain/page-token";
import type { SyncStore } from "./postgres/sync-store";
import type { VectorStore } from "./postgres/vector-store";
import type { EventStore } from "./postgres/event-store";
import type { Job, JobCounters, JobProgress, JobFilter, NewJob, RunOutcome, Scope } from "../domain/job";
import type { StoredToken } from "../domain/auth";
import type { Bucket, BucketFields, BucketRow, CatalogEntry, MultipartUpload, ObjectIndexStatus, StoredObject, UploadedPart } from "../domain/bucket";
import type { BoundRule, Pipeline, PipelineFields, Rule, RuleFields } from "../domain/pipeline";

/** One page of a keyset listing plus the exact count of matching rows. */
export interface Page<T> {
  items: T[];
  /** True when more items follow the last one returned. */
  more: boolean;
  total: number;
}

/** Common paging parameters. */
export interface PageParams {
  after?: Cursor;
  limit: number;
  /** The call's signal: aborting it cancels the listing's queries. */
  signal?: AbortSignal;
}

/** Filters of a rule listing. */
export interface RuleFilter {
  org: string;
  bucket: string;
  sourceId?: string;
  pipelineId?: string;
}

/** Filters of a pipeline listing. */
export interface PipelineFilter {
  org: string;
  bucket: string;
  storeEntityKind?: string;
  storeEntityId?: string;
}

/** Everything the API needs from the database. */
export interface Repository {
  /** Sources, checkpoints and discoveries (postgres/sync-store.ts), on the same connections. */
  readonly sync: SyncStore;
  /** Engines, collection versions and chunks for search (postgres/vector-store.ts). */
  readonly vector: VectorStore;
  /** Job events for watchers and the webhook outbox (postgres/event-store.ts). */
  readonly events: EventStore;
  /** Inserts the job, or returns the existing one with the same (bucket, requestId). */
  jobInsert(job: NewJob): Promise<{ job: Job; created: boolean }>;
  jobGetById(scope: Scope, jobId: string): Promise<Job | undefined>;
  jobGetByRequestId(scope: Scope, requestId: string): Promise<Job | undefined>;
  jobList(filter: JobFilter, page: PageParams): Promise<Page<Job>>;
  /**
   * Cancels a PENDING job at once, or flags a PROCESSING one for its worker. Returns the
   * job after the change (changed = true), the unchanged job when it is already terminal
   * (changed = false), or undefined when it does not exist.
   */
  jobCancel(scope: Scope, jobId: string, nowMs: number): Promise<{ job: Job; changed: boolean } | undefined>;

  ruleInsert(rule: Rule): Promise<BoundRule>;
  ruleGetById(scope: Scope, ruleId: string): Promise<BoundRule | undefined>;
  ruleList(filter: RuleFilter, page: PageParams): Promise<Page<BoundRule>>;
  /** The enabled rules of a bucket that apply to objects without a source. */
  ruleListEnabledForDirect(scope: Scope): Promise<BoundRule[]>;
  /** Writes the given fields; returns undefined when the rule does not exist. */
  ruleUpdate(
    scope: Scope,
    ruleId: string,
    patch: Partial<RuleFields>,
    nowMs: number,
  ): Promise<BoundRule | undefined>;
  ruleDelete(scope: Scope, ruleId: string): Promise<boolean>;
  /** How many rules a bucket holds and how many glob characters they carry, leaving out `exceptRuleId`. */
  ruleBucketUsage(scope: Scope, exceptRuleId?: string): Promise<{ rules: number; globChars: number }>;

  pipelineInsert(pipeline: Pipeline): Promise<Pipeline>;
  pipelineGetById(scope: Scope, pipelineId: string): Promise<Pipeline | undefined>;
  pipelineList(filter: PipelineFilter, page: PageParams): Promise<Page<Pipeline>>;
  pipelineUpdate(
    scope: Scope,
    pipelineId: string,
    patch: Partial<PipelineFields>,
    nowMs: number,
  ): Promise<Pipeline | undefined>;
  /**
   * Deletes the pipeline unless a rule (enabled or not) binds it. Returns "deleted",
   * "not_found", or the IDs of the rules that still bind it.
   */
  /** Deletes a pipeline (with its jobs and outputs unless kept); the ids of the rules that bind it when they stop it. */
  pipelineDelete(scope: Scope, pipelineId: string, how: PipelineDeleteOptions): Promise<PipelineDeleted | "not_found" | string[]>;

  // ---- the worker's side: every write is fenced by the attempt (thread id), times come
  // ---- from the database clock

  /** Claims up to `limit` runnable jobs, oldest first, leased to `owner` for `leaseMs`; each gets a new attempt (thread id). */
  jobClaimAvailable(p: { owner: string; limit: number; leaseMs: number }): Promise<Job[]>;
  /** Extends the leases of the given attempts; those missing from the answer are gone (taken away or ended). */
  jobHeartbeat(p: { threadIds: string[]; leaseMs: number }): Promise<Array<{ jobId: string; threadId: string; cancelRequested: boolean }>>;
  /** Publishes progress counters of a running attempt; false when the attempt is gone. */
  jobRecordProgress(p: { jobId: string; threadId: string; counters: Pick<JobCounters, "chunksCreated" | "embeddingsCreated">; progress?: JobProgress }): Promise<boolean>;
  /**
   * Writes the attempt's output to its destination (replacing the object's previous
   * output) and ends the job, in one transaction, one object at a time. When the current
   * output came from a newer version of the object (`sourceVersion`), the job completes
   * as superseded and writes nothing. Undefined when the attempt is gone or a cancel was
   * requested: then nothing is written.
   */
  jobComplete(p: { job: Job; outcome: RunOutcome; sourceVersion: bigint }): Promise<Job | undefined>;
  /**
   * Ends many attempts that produced no output (kind "none") in one statement; returns the
   * ids it ended. One missing from the answer is gone or was cancelled.
   */
  jobCompleteMany(p: { items: Array<{ jobId: string; threadId: string; outcome: RunOutcome }> }): Promise<Set<string>>;
  /** Ends a failed attempt: PENDING again in `retryDelayMs` when given, otherwise FAILED (CANCELLED if asked meanwhile). */
  jobFailAttempt(p: { jobId: string; threadId: string; error: string; errorDetails: string; retryDelayMs?: number; permanent?: boolean }): Promise<Job | undefined>;
  /** Ends a running attempt as CANCELLED after its worker stopped it on request. */
  jobCancelRunning(p: { jobId: string; threadId: string }): Promise<Job | undefined>;
  /** Hands running attempts back to PENDING (shutdown); the interrupted attempt does not count. */
  jobRelease(p: { threadIds: string[] }): Promise<number>;
  /** Returns jobs with expired leases to PENDING (or FAILED/CANCELLED). */
  jobRescueExpired(p: { maxAttempts: number; maxLostAttempts: number }): Promise<Array<{ jobId: string; status: string }>>;

  // ---- buckets ----

  /** Creates a bucket and its internal source; AlreadyExists when the name is taken in the org. */
  bucketInsert(b: BucketRow): Promise<Bucket>;
  /**
   * Makes the row of a bucket that existed before buckets had rows (a folder, or only its
   * rules, pipelines and jobs), cataloguing the objects found on disk; nothing when it has one.
   */
  bucketAdopt(b: BucketRow, found: readonly CatalogEntry[]): Promise<void>;
  bucketGet(scope: Scope): Promise<Bucket | undefined>;
  /** Buckets newest first, filtered by a case-insensitive search and, when given, by name. */
  bucketList(filter: { org: string; search: string; names?: readonly string[] }, page: PageParams): Promise<Page<Bucket>>;
  bucketUpdate(scope: Scope, patch: Partial<BucketFields>, nowMs: number): Promise<Bucket | undefined>;
  /**
   * Deletes a bucket with its sources, rules, pipelines, jobs, outputs and catalog.
   * Refused (returns the object count) while it holds objects, unless forced.
   */
  bucketDelete(scope: Scope, force: boolean): Promise<"deleted" | "not_found" | { objects: number }>;
  /** Names of buckets the org has config or jobs for but no row yet (to adopt). */
  bucketNamesWithoutRow(org: string): Promise<string[]>;

  // ---- the object catalog ----

  objectGet(scope: Scope, key: string): Promise<StoredObject | undefined>;
  /**
   * Records an uploaded object and creates its jobs, in one transaction: once it returns,
   * both are durable. NotFound when the bucket has no row (or is being deleted).
   */
  objectPut(scope: Scope, object: StoredObject, jobs: readonly NewJob[]): Promise<Job[]>;
  /** Keys after `after` that start with `prefix`, in byte order. */
  objectList(scope: Scope, p: { prefix: string; after: string; limit: number }): Promise<StoredObject[]>;
  /**
   * Forgets an object: its catalog row, its outputs at every destination, and its
   * unfinished jobs (cancelled). False when it was not in the catalog.
   */
  objectDelete(scope: Scope, key: string, nowMs: number): Promise<boolean>;
  /** Per pipeline, the latest job of an object. */
  objectIndexStatus(scope: Scope, key: string): Promise<ObjectIndexStatus[]>;
  /** Which of these jobs wrote their object's live output for their pipeline. */
  jobsWithCurrentOutput(scope: Scope, jobs: readonly Job[]): Promise<Set<string>>;
  mpuCreate(scope: Scope, upload: MultipartUpload): Promise<void>;
  mpuGet(scope: Scope, uploadId: string): Promise<MultipartUpload | undefined>;
  mpuPartPut(uploadId: string, part: UploadedPart, nowMs: number): Promise<void>;
  mpuParts(uploadId: string): Promise<UploadedPart[]>;
  /** Forgets an upload and its parts; false when there was none. */
  mpuDelete(uploadId: string): Promise<boolean>;
  /** The enabled rules that apply to objects of a source (its own and the bucket-wide ones). */
  ruleListEnabledForSource(scope: Scope, sourceId: string): Promise<BoundRule[]>;

  // ---- tokens ----

  tokenInsert(token: StoredToken): Promise<void>;
  tokenFindByHash(secretHash: Buffer): Promise<StoredToken | undefined>;
  /** The token holding an S3 access key id. */
  tokenFindByAccessKey(accessKeyId: string): Promise<StoredToken | undefined>;
  tokenList(org?: string): Promise<StoredToken[]>;
  /** Revokes a token; false when there is no such token. Tells every API instance at once. */
  tokenRevoke(tokenId: string, now: number): Promise<boolean>;
  /**
   * Inserts `token` only when the table holds no token at all (first start); true when it
   * did. Safe when several instances start together.
   */
  tokenInsertIfNone(token: StoredToken): Promise<boolean>;

  /** Resolves when the database answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** How a pipeline is deleted. */
export interface PipelineDeleteOptions {
  keepOutputs: boolean;
  validateOnly: boolean;
}

/** What a pipeline's delete removed (or, kept or validate-only, what there is). */
export interface PipelineDeleted {
  jobs: number;
  chunks: number;
  rows: number;
  kept: boolean;
}
