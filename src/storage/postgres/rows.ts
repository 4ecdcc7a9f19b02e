/** Database rows -> domain objects: the one place that knows the column names of each table. */
import type { QueryResultRow } from "pg";
import type { StoredToken } from "../../domain/auth";
import type { Bucket, BucketRow, StoredObject } from "../../domain/bucket";
import type { CorsRule } from "../../domain/cors";
import { storedBucketPolicy } from "../../domain/bucket-policy";
import { unstartedJob, type Job, type JobStatus, type NewJob } from "../../domain/job";
import type { BoundRule, Pipeline } from "../../domain/pipeline";

/** A bigint column (pg returns strings) or a count as a number. */
export const num = (v: unknown): number => (typeof v === "number" ? v : Number(v ?? 0));

export function toJob(r: QueryResultRow): Job {
  return {
    jobId: r.job_id,
    org: r.org,
    bucket: r.bucket,
    key: r.object_key,
    status: r.status as JobStatus,
    pipelineId: r.pipeline_id,
    pipelineName: r.pipeline_name,
    pipelineKind: r.pipeline_kind,
    template: r.template,
    ruleId: r.rule_id,
    options: r.options ?? {},
    requestId: r.request_id,
    traceId: r.trace_id,
    chunksCreated: r.chunks_created,
    embeddingsCreated: r.embeddings_created,
    rowsWritten: r.rows_written,
    outputSize: r.output_size,
    batchesReceived: r.batches_received,
    embeddingsWritten: r.embeddings_written,
    threadId: r.thread_id,
    vectorStatus: r.vector_status,
    error: r.error,
    errorDetails: r.error_details,
    attempts: r.attempts,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    startedAt: num(r.started_at),
    finishedAt: num(r.finished_at),
    sourceId: r.source_id ?? "",
    objectVersion: r.object_version ?? "",
    retryOf: r.retry_of ?? "",
    permanentFailure: r.permanent_failure ?? false,
    nextAttemptAt: r.status === "pending" && r.attempts > 0 ? num(r.run_after) : 0,
    ...(r.status === "processing" && r.stage ? { progress: { stage: r.stage, done: r.stage_done, total: r.stage_total, unit: r.stage_unit } } : {}),
  };
}

/** A jobs row as to_jsonb wrote it (bigints as numbers, options as an object) -> Job. */
export const jobFromJson = (j: Record<string, unknown>): Job => toJob(j as QueryResultRow);

/**
 * The jobs of `sent` that a jobs insert put in, by id, from the rows it returned
 * (`job_id`, `source_id`): each is what was sent, with the source the database filled in.
 */
export function insertedJobs(sent: readonly NewJob[], rows: ReadonlyArray<{ job_id: string; source_id: string }>): Map<string, Job> {
  const sources = new Map(rows.map((r) => [r.job_id, r.source_id]));
  const out = new Map<string, Job>();
  for (const j of sent) {
    const sourceId = sources.get(j.jobId);
    if (sourceId !== undefined) out.set(j.jobId, unstartedJob(j, sourceId));
  }
  return out;
}

/**
 * The JOB_INSERT_BATCH parameter of a batch of new jobs: one JSON array, an object per job
 * keyed as the statement's jsonb_to_recordset reads it (one parameter, where sixteen text
 * arrays cost pg's array-literal escaping of every value on the event loop).
 */
export function jobInsertParams(jobs: readonly NewJob[]): unknown[] {
  return [
    JSON.stringify(
      jobs.map((j) => ({
        j: j.jobId, g: j.org, b: j.bucket, k: j.key, p: j.pipelineId, pn: j.pipelineName, pk: j.pipelineKind, t: j.template, r: j.ruleId,
        o: j.options, rq: j.requestId, tr: j.traceId, c: j.createdAt, s: j.sourceId ?? "", v: j.objectVersion ?? "", rt: j.retryOf ?? "",
      })),
    ),
  ];
}

export function toRule(r: QueryResultRow): BoundRule {
  return {
    ruleId: r.rule_id,
    org: r.org,
    bucket: r.bucket,
    sourceId: r.source_id,
    pipelineId: r.pipeline_id,
    name: r.name,
    description: r.description,
    includePatterns: r.include_patterns,
    excludePatterns: r.exclude_patterns,
    includeMimeTypes: r.include_mime_types,
    excludeMimeTypes: r.exclude_mime_types,
    minSizeBytes: num(r.min_size_bytes),
    maxSizeBytes: num(r.max_size_bytes),
    enabled: r.enabled,
    priority: r.priority,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    bindingName: r.binding_name,
    bindingKind: r.binding_kind,
  };
}

export function toToken(r: QueryResultRow): StoredToken {
  return {
    tokenId: r.token_id,
    org: r.org,
    secretHash: r.secret_hash,
    name: r.name,
    grants: r.grants,
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    revokedAt: num(r.revoked_at),
    ...(r.access_key_id ? { accessKeyId: r.access_key_id as string, secretSealed: r.secret_sealed as Buffer } : {}),
  };
}

export function toBucketRow(r: QueryResultRow): BucketRow {
  return {
    org: r.org,
    name: r.name,
    description: r.description,
    status: r.status,
    accessMode: r.access_mode,
    storageQuotaBytes: num(r.storage_quota_bytes),
    internalSourceId: r.internal_source_id,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    ...(r.cors ? { cors: r.cors as CorsRule[] } : {}),
    ...(r.policy ? { policy: storedBucketPolicy(r.policy, r.name) } : {}),
  };
}

export function toBucket(r: QueryResultRow): Bucket {
  return {
    ...toBucketRow(r),
    objectCount: num(r.object_count),
    storageUsedBytes: num(r.storage_used_bytes),
    sourceCount: num(r.source_count),
    ruleCount: num(r.rule_count),
    indexCount: num(r.index_count),
  };
}

export function toObject(r: QueryResultRow): StoredObject {
  return {
    key: r.object_key,
    size: num(r.size),
    etag: r.etag,
    contentType: r.content_type,
    metadata: r.metadata ?? {},
    version: BigInt(r.version as string),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function toPipeline(r: QueryResultRow): Pipeline {
  return {
    pipelineId: r.pipeline_id,
    org: r.org,
    bucket: r.bucket,
    name: r.name,
    description: r.description,
    template: r.template,
    options: r.options ?? {},
    storeEntityId: r.store_entity_id,
    storeEntityKind: r.store_entity_kind,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}
