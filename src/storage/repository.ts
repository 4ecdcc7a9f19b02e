/**
 * The storage seam. The service layer and the worker talk to these interfaces only; the
 * stores return domain objects, never driver rows or proto messages.
 */
import type { Cursor } from "../domain/page-token";
import type { BucketStore } from "./postgres/bucket-store";
import type { ConfigStore } from "./postgres/config-store";
import type { EventStore } from "./postgres/event-store";
import type { JobStore } from "./postgres/job-store";
import type { ObjectCatalog } from "./postgres/object-catalog";
import type { JobQueue } from "./postgres/queue";
import type { SyncStore } from "./postgres/sync-store";
import type { TokenStore } from "./postgres/token-store";
import type { VectorStore } from "./postgres/vector-store";
import type { CollectionStore } from "./postgres/collection-store";
import type { CredentialStore } from "./postgres/credential-store";

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

/**
 * What the API needs from the database: one store per seam, each a module of
 * storage/postgres/ (the stores' methods carry their contracts).
 */
export interface Repository {
  /** Jobs as the API creates, reads, lists and cancels them, with their counts and retention. */
  readonly jobs: JobStore;
  /** Pipelines and rules, cached briefly for TriggerIngest. */
  readonly config: ConfigStore;
  readonly buckets: BucketStore;
  /** The object catalog and multipart uploads. */
  readonly catalog: ObjectCatalog;
  readonly tokens: TokenStore;
  /** Sources, checkpoints and discoveries. */
  readonly sync: SyncStore;
  /** Engines, collection versions and chunks for search. */
  readonly vector: VectorStore;
  /** Collections of pushed vectors (AddVectorCollection) and their writes. */
  readonly collections: CollectionStore;
  /** An organization's credentials (SourceService StoreCredential …). */
  readonly credentials: CredentialStore;
  /** Job events for watchers and the webhook outbox. */
  readonly events: EventStore;
  /** Resolves when the database answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** What a worker needs: the queue it claims from, and the reads its runs make (the API's own stores). */
export interface WorkerRepository extends Pick<Repository, "config" | "catalog" | "vector" | "credentials" | "ping" | "close"> {
  /** Claims, leases, heartbeats, progress and the end of attempts, fenced by the attempt. */
  readonly queue: JobQueue;
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
