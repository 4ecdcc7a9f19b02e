/** The only seam between proto messages and domain objects. */
import { create } from "@bufbuild/protobuf";
import {
  IngestJobSchema,
  IngestRuleSchema,
  IngestStatus,
  PaginationSchema,
  type IngestJob,
  type IngestRule,
  type Pagination,
} from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import {
  PaginationSchema as PipelinePaginationSchema,
  PipelineSchema,
  type Pagination as PipelinePagination,
  type Pipeline as PipelineMessage,
} from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import {
  BucketAccessMode,
  BucketSchema,
  BucketStatus,
  ObjectInfoSchema,
  PaginationSchema as StoragePaginationSchema,
  type ObjectInfo as ObjectInfoMessage,
  type Bucket as BucketMessage,
  type Pagination as StoragePagination,
} from "../../gen/dodil/k3/storage/v1/storage_pb";
import { userMetadata, type Bucket, type ObjectIndexStatus, type StoredObject } from "../domain/bucket";
import { tagsOf } from "../s3/tagging";
import { InvalidArgument } from "../domain/errors";
import { JOB_STATUSES, type Job, type JobStatus } from "../domain/job";
import type { BoundRule, Pipeline } from "../domain/pipeline";

/** Domain status -> proto enum. */
export function statusToProto(status: JobStatus): IngestStatus {
  return (JOB_STATUSES.indexOf(status) + 1) as IngestStatus;
}

/** Proto enum -> domain status; UNSPECIFIED means "none"; unknown numbers are rejected. */
export function statusFromProto(value: IngestStatus, field: string): JobStatus | undefined {
  if (value === IngestStatus.UNSPECIFIED) return undefined;
  const status = JOB_STATUSES[value - 1];
  if (!status) throw new InvalidArgument(`${field} ${value} is not a known IngestStatus`, field);
  return status;
}

/** The enum name of a status, as clients see it (`INGEST_STATUS_COMPLETED`). */
export function statusName(status: JobStatus): string {
  return `INGEST_STATUS_${status.toUpperCase()}`;
}

/** Domain job -> IngestJob message. */
/** A job as the API shows it; `outputCurrent`: whether its output is its object's live one (when looked up). */
export function jobToProto(j: Job, outputCurrent = false): IngestJob {
  return create(IngestJobSchema, {
    jobId: j.jobId,
    object: { bucket: j.bucket, key: j.key },
    status: statusToProto(j.status),
    pipelineId: j.pipelineId,
    pipelineName: j.pipelineName,
    pipelineKind: j.pipelineKind,
    ruleId: j.ruleId,
    chunksCreated: j.chunksCreated,
    embeddingsCreated: j.embeddingsCreated,
    rowsWritten: j.rowsWritten,
    createdAt: BigInt(j.createdAt),
    updatedAt: BigInt(j.updatedAt),
    threadId: j.threadId,
    vectorStatus: j.vectorStatus,
    outputSize: j.outputSize,
    batchesReceived: j.batchesReceived,
    embeddingsWritten: j.embeddingsWritten,
    error: j.error,
    errorDetails: j.errorDetails,
    attempts: j.attempts,
    startedAt: BigInt(j.startedAt),
    finishedAt: BigInt(j.finishedAt),
    options: j.options,
    requestId: j.requestId,
    sourceId: j.sourceId,
    objectVersion: j.objectVersion,
    retryOf: j.retryOf,
    traceId: j.traceId,
    permanentFailure: j.permanentFailure,
    outputCurrent,
    nextAttemptAt: BigInt(j.nextAttemptAt),
    progress: j.progress,
  });
}

/** Domain rule -> IngestRule message. */
export function ruleToProto(r: BoundRule): IngestRule {
  return create(IngestRuleSchema, {
    ruleId: r.ruleId,
    bucket: r.bucket,
    sourceId: r.sourceId,
    pipelineId: r.pipelineId,
    name: r.name,
    description: r.description,
    includePatterns: r.includePatterns,
    excludePatterns: r.excludePatterns,
    includeMimeTypes: r.includeMimeTypes,
    excludeMimeTypes: r.excludeMimeTypes,
    minSizeBytes: BigInt(r.minSizeBytes),
    maxSizeBytes: BigInt(r.maxSizeBytes),
    enabled: r.enabled,
    priority: r.priority,
    binding: { pipelineName: r.bindingName, pipelineKind: r.bindingKind },
    createdAt: BigInt(r.createdAt),
    updatedAt: BigInt(r.updatedAt),
  });
}

/** Domain pipeline -> Pipeline message. */
export function pipelineToProto(p: Pipeline): PipelineMessage {
  return create(PipelineSchema, {
    pipelineId: p.pipelineId,
    bucket: p.bucket,
    name: p.name,
    description: p.description,
    scriptumTemplate: p.template,
    options: p.options,
    storeEntityId: p.storeEntityId,
    storeEntityKind: p.storeEntityKind,
    createdAt: BigInt(p.createdAt),
    updatedAt: BigInt(p.updatedAt),
  });
}

/** Pagination block of the ingest package. */
export function ingestPagination(nextPageToken: string, total: number): Pagination {
  return create(PaginationSchema, { nextPageToken, totalCount: BigInt(total) });
}

/** Pagination block of the pipeline package. */
export function pipelinePagination(nextPageToken: string, total: number): PipelinePagination {
  return create(PipelinePaginationSchema, { nextPageToken, totalCount: BigInt(total) });
}

/** Converts an int64 field to a safe JS number or rejects it naming the field. */
export function int64ToNumber(value: bigint, field: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgument(`${field} ${value} must be between 0 and ${Number.MAX_SAFE_INTEGER}`, field);
  }
  return Number(value);
}

/** Domain bucket -> Bucket message. */
export function bucketToProto(b: Bucket): BucketMessage {
  return create(BucketSchema, {
    name: b.name,
    description: b.description,
    status: BucketStatus.ACTIVE,
    internalSourceId: b.internalSourceId,
    storageUsedBytes: BigInt(b.storageUsedBytes),
    storageQuotaBytes: BigInt(b.storageQuotaBytes),
    objectCount: BigInt(b.objectCount),
    sourceCount: BigInt(b.sourceCount),
    ruleCount: BigInt(b.ruleCount),
    indexCount: BigInt(b.indexCount),
    createdAt: BigInt(b.createdAt),
    updatedAt: BigInt(b.updatedAt),
    accessMode: BucketAccessMode.PRIVATE,
  });
}

/** The pagination message of StorageService lists. */
export function storagePagination(nextPageToken: string, total: number): StoragePagination {
  return create(StoragePaginationSchema, { nextPageToken, totalCount: BigInt(total) });
}

/** Catalog object (and its per-pipeline jobs) -> ObjectInfo message. */
export function objectInfoToProto(
  bucket: string,
  o: StoredObject,
  status: readonly ObjectIndexStatus[],
): ObjectInfoMessage {
  return create(ObjectInfoSchema, {
    bucket,
    key: o.key,
    size: BigInt(o.size),
    etag: o.etag,
    contentType: o.contentType,
    lastModified: BigInt(o.updatedAt),
    metadata: userMetadata(o.metadata),
    tags: Object.fromEntries(tagsOf(o.metadata)),
    indexStatus: status.map((s) => ({ pipelineId: s.pipelineId, pipelineName: s.pipelineName, jobId: s.jobId, status: statusToProto(s.status), updatedAt: BigInt(s.updatedAt), error: s.error })),
  });
}
