/**
 * SQL of the PostgreSQL repository, as named constants. Every statement is
 * parameterised; no user string is ever spliced into SQL text. The few statements built
 * at run time (filters, partial updates) only splice fixed column names chosen in code.
 */

export const JOB_COLUMNS = `job_id, bucket, object_key, status, pipeline_id, pipeline_name, pipeline_kind,
  rule_id, options, request_id, chunks_created, embeddings_created, rows_written, output_size,
  batches_received, embeddings_written, thread_id, vector_status, error, error_details, attempts,
  created_at, updated_at, started_at, finished_at`;

export const JOB_INSERT = `
INSERT INTO jobs (job_id, bucket, object_key, pipeline_id, pipeline_name, pipeline_kind, rule_id,
                  options, request_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
ON CONFLICT (bucket, request_id) WHERE request_id <> '' DO NOTHING
RETURNING ${JOB_COLUMNS}`;

export const JOB_GET_BY_REQUEST_ID = `SELECT ${JOB_COLUMNS} FROM jobs WHERE bucket = $1 AND request_id = $2`;

export const JOB_GET_BY_ID = `SELECT ${JOB_COLUMNS} FROM jobs WHERE bucket = $1 AND job_id = $2`;

/** PENDING -> CANCELLED at once; PROCESSING keeps running with cancel_requested set. */
export const JOB_CANCEL = `
UPDATE jobs SET
  status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
  finished_at = CASE WHEN status = 'pending' THEN $3 ELSE finished_at END,
  cancel_requested = true,
  updated_at = $3
WHERE bucket = $1 AND job_id = $2 AND status IN ('pending', 'processing')
RETURNING ${JOB_COLUMNS}`;

export const RULE_COLUMNS = `r.rule_id, r.bucket, r.source_id, r.pipeline_id, r.name, r.description,
  r.include_patterns, r.exclude_patterns, r.include_mime_types, r.exclude_mime_types,
  r.min_size_bytes, r.max_size_bytes, r.enabled, r.priority, r.created_at, r.updated_at,
  coalesce(p.name, '') AS binding_name, coalesce(p.store_entity_kind, '') AS binding_kind`;

export const RULE_FROM = `rules r LEFT JOIN pipelines p ON p.pipeline_id = r.pipeline_id AND p.bucket = r.bucket`;

export const RULE_INSERT = `
INSERT INTO rules (rule_id, bucket, source_id, pipeline_id, name, description, include_patterns,
                   exclude_patterns, include_mime_types, exclude_mime_types, min_size_bytes,
                   max_size_bytes, enabled, priority, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)`;

export const RULE_GET_BY_ID = `SELECT ${RULE_COLUMNS} FROM ${RULE_FROM} WHERE r.bucket = $1 AND r.rule_id = $2`;

export const RULE_LIST_ENABLED_DIRECT = `
SELECT ${RULE_COLUMNS} FROM ${RULE_FROM}
WHERE r.bucket = $1 AND r.enabled AND r.source_id = ''
ORDER BY r.priority DESC, r.created_at, r.rule_id`;

export const RULE_DELETE = `DELETE FROM rules WHERE bucket = $1 AND rule_id = $2`;

export const PIPELINE_COLUMNS = `pipeline_id, bucket, name, description, template, options,
  store_entity_id, store_entity_kind, created_at, updated_at`;

export const PIPELINE_INSERT = `
INSERT INTO pipelines (pipeline_id, bucket, name, description, template, options, store_entity_id,
                       store_entity_kind, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
RETURNING ${PIPELINE_COLUMNS}`;

export const PIPELINE_GET_BY_ID = `SELECT ${PIPELINE_COLUMNS} FROM pipelines WHERE bucket = $1 AND pipeline_id = $2`;

/** Deletes only when no enabled rule binds the pipeline. */
export const PIPELINE_DELETE = `
DELETE FROM pipelines p
WHERE p.bucket = $1 AND p.pipeline_id = $2
  AND NOT EXISTS (SELECT 1 FROM rules r WHERE r.bucket = p.bucket AND r.pipeline_id = p.pipeline_id AND r.enabled)
RETURNING p.pipeline_id`;

export const PIPELINE_BINDING_RULES = `
SELECT rule_id FROM rules WHERE bucket = $1 AND pipeline_id = $2 AND enabled ORDER BY created_at LIMIT 20`;
