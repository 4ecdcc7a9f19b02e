/** Inserts rows directly, for states the API cannot reach yet (finished jobs, counters). */
import type { Pool } from "pg";
import { newId } from "../../src/domain/ids";
import type { Job } from "../../src/domain/job";

const TERMINAL = new Set(["completed", "failed", "partial", "cancelled"]);

/** Inserts a job row; unspecified fields get plausible values. Returns the job id. */
export async function insertJob(pool: Pool, fields: Partial<Job> & Pick<Job, "bucket" | "pipelineId">): Promise<string> {
  const createdAt = fields.createdAt ?? Date.now();
  const jobId = fields.jobId ?? newId("job", createdAt);
  const status = fields.status ?? "pending";
  const processing = status === "processing";
  await pool.query(
    `INSERT INTO jobs (job_id, org, bucket, object_key, status, pipeline_id, pipeline_name, pipeline_kind, rule_id,
       chunks_created, embeddings_created, rows_written, output_size, batches_received, embeddings_written,
       thread_id, vector_status, error, attempts, lease_owner, lease_expires_at, created_at, updated_at, started_at, finished_at)
     VALUES ($1,$25,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24)`,
    [
      jobId,
      fields.bucket,
      fields.key ?? "docs/a.txt",
      status,
      fields.pipelineId,
      fields.pipelineName ?? "p",
      fields.pipelineKind ?? "vector",
      fields.ruleId ?? "",
      fields.chunksCreated ?? 0,
      fields.embeddingsCreated ?? 0,
      fields.rowsWritten ?? 0,
      fields.outputSize ?? 0,
      fields.batchesReceived ?? 0,
      fields.embeddingsWritten ?? 0,
      fields.threadId ?? "",
      fields.vectorStatus ?? "",
      fields.error ?? "",
      fields.attempts ?? 0,
      processing ? "test-worker" : null,
      processing ? createdAt + 60_000 : null,
      createdAt,
      fields.updatedAt ?? createdAt,
      fields.startedAt ?? (status === "pending" ? 0 : createdAt),
      fields.finishedAt ?? (TERMINAL.has(status) ? (fields.updatedAt ?? createdAt) : 0),
      fields.org ?? "default",
    ],
  );
  return jobId;
}
