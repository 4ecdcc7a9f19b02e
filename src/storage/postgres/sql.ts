/**
 * SQL of the PostgreSQL repository, as named constants (the worker's own are in
 * queue-sql.ts). Every statement is parameterised; no user string is ever spliced into
 * SQL text. The few statements built at run time (filters, partial updates) only splice
 * fixed column names chosen in code.
 */

/** The channel that wakes workers when jobs are inserted or retried. */
export const CHANNEL_JOBS = "k3_jobs";
/** The channel that tells the owning worker a running job was cancelled (payload: job id). */
export const CHANNEL_CANCEL = "k3_job_cancel";
/** The channel that tells API instances a token changed (payload: token id). */
export const CHANNEL_TOKENS = "k3_tokens";
/** The channel that tells API instances a pipeline or rule changed (payload: org/bucket). */
export const CHANNEL_CONFIG = "k3_config";

export const JOB_COLUMNS = `job_id, org, bucket, object_key, status, pipeline_id, pipeline_name, pipeline_kind,
  template, rule_id, options, request_id, trace_id, chunks_created, embeddings_created, rows_written, output_size,
  batches_received, embeddings_written, thread_id, vector_status, error, error_details, attempts,
  created_at, updated_at, started_at, finished_at, source_id, object_version, retry_of, permanent_failure, run_after,
  stage, stage_done, stage_total, stage_unit`;

/**
 * The INSERT of a batch of new jobs from $1, a JSON array of one object per job (as
 * jobInsertParams makes it), inserting only when `when` holds. It returns what only the
 * database knows of each job — whether it went in (a taken request_id skips it) and its
 * source; the rest of a new job is what was sent (unstartedJob).
 */
const jobsInsert = (when = "true") => `
  INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, pipeline_name, pipeline_kind, template, rule_id,
                    options, request_id, trace_id, created_at, updated_at, source_id, object_version, retry_of)
  -- A job with no source (a direct trigger) belongs to its bucket's internal source.
  SELECT j, g, b, k, p, pn, pk, t, r, o, rq, tr, c, c,
         CASE WHEN s <> '' THEN s ELSE coalesce((SELECT internal_source_id FROM buckets WHERE org = g AND name = b), '') END, v, rt
  FROM jsonb_to_recordset($1::jsonb)
       AS u(j text, g text, b text, k text, p text, pn text, pk text, t text, r text, o jsonb, rq text, tr text, c bigint, s text, v text, rt text)
  WHERE ${when}
  ON CONFLICT (org, bucket, request_id) WHERE request_id <> '' DO NOTHING
  RETURNING job_id, source_id`;

/**
 * Inserts a batch of jobs (one JSON parameter) and wakes idle workers with one
 * NOTIFY for the whole batch: PostgreSQL serialises the commits of notifying transactions,
 * so a NOTIFY per job would cost a group commit per job (shared/notes/performance.md).
 * Identical notifications within a transaction are folded into one.
 */
export const JOB_INSERT_BATCH = `
WITH ins AS (${jobsInsert()}
)
SELECT ins.* FROM ins CROSS JOIN (SELECT pg_notify('${CHANNEL_JOBS}', '')) AS wake`;

export const JOB_GET_BY_REQUEST_ID = `SELECT ${JOB_COLUMNS} FROM jobs WHERE org = $1 AND bucket = $2 AND request_id = $3`;

export const JOB_GET_BY_ID = `SELECT ${JOB_COLUMNS} FROM jobs WHERE org = $1 AND bucket = $2 AND job_id = $3`;

/** PENDING -> CANCELLED at once; PROCESSING keeps running with cancel_requested set. */
export const JOB_CANCEL = `
UPDATE jobs SET
  status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
  finished_at = CASE WHEN status = 'pending' THEN $4::bigint ELSE finished_at END,
  cancel_requested = true,
  updated_at = $4
WHERE org = $1 AND bucket = $2 AND job_id = $3 AND status IN ('pending', 'processing')
RETURNING ${JOB_COLUMNS}`;

export const RULE_COLUMNS = `r.rule_id, r.org, r.bucket, r.source_id, r.pipeline_id, r.name, r.description,
  r.include_patterns, r.exclude_patterns, r.include_mime_types, r.exclude_mime_types,
  r.min_size_bytes, r.max_size_bytes, r.enabled, r.priority, r.created_at, r.updated_at,
  coalesce(p.name, '') AS binding_name, coalesce(p.store_entity_kind, '') AS binding_kind`;

export const RULE_FROM = `rules r LEFT JOIN pipelines p ON p.pipeline_id = r.pipeline_id AND p.org = r.org AND p.bucket = r.bucket`;

export const RULE_INSERT = `
INSERT INTO rules (rule_id, bucket, source_id, pipeline_id, name, description, include_patterns,
                   exclude_patterns, include_mime_types, exclude_mime_types, min_size_bytes,
                   max_size_bytes, enabled, priority, created_at, updated_at, org)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16)`;

export const RULE_GET_BY_ID = `SELECT ${RULE_COLUMNS} FROM ${RULE_FROM} WHERE r.org = $1 AND r.bucket = $2 AND r.rule_id = $3`;

export const RULE_LIST_ENABLED_DIRECT = `
SELECT ${RULE_COLUMNS} FROM ${RULE_FROM}
WHERE r.org = $1 AND r.bucket = $2 AND r.enabled
  AND (r.source_id = '' OR r.source_id = (SELECT internal_source_id FROM buckets WHERE org = $1 AND name = $2))
ORDER BY r.priority DESC, r.created_at, r.rule_id`;

export const RULE_DELETE = `DELETE FROM rules WHERE org = $1 AND bucket = $2 AND rule_id = $3`;

export const PIPELINE_COLUMNS = `pipeline_id, org, bucket, name, description, template, options,
  store_entity_id, store_entity_kind, created_at, updated_at`;

export const PIPELINE_INSERT = `
INSERT INTO pipelines (pipeline_id, bucket, name, description, template, options, store_entity_id,
                       store_entity_kind, created_at, updated_at, org)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
RETURNING ${PIPELINE_COLUMNS}`;

export const PIPELINE_GET_BY_ID = `SELECT ${PIPELINE_COLUMNS} FROM pipelines WHERE org = $1 AND bucket = $2 AND pipeline_id = $3`;

/**
 * Deletes only when no rule binds the pipeline, enabled or not: a disabled rule that
 * outlived its pipeline would strand every trigger it matches once re-enabled.
 */
export const PIPELINE_DELETE = `
DELETE FROM pipelines p
WHERE p.org = $1 AND p.bucket = $2 AND p.pipeline_id = $3
  AND NOT EXISTS (SELECT 1 FROM rules r WHERE r.org = p.org AND r.bucket = p.bucket AND r.pipeline_id = p.pipeline_id)
RETURNING p.pipeline_id`;

/** A pipeline's jobs, chunks and rows (what deleting it removes). */
export const PIPELINE_OUTPUT_COUNTS = `
SELECT (SELECT count(*) FROM jobs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3) AS jobs,
       (SELECT count(*) FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3) AS chunks,
       (SELECT count(*) FROM warehouse_rows WHERE org = $1 AND bucket = $2 AND pipeline_id = $3) AS rows`;

/** A pipeline's outputs and jobs, in an order that keeps the counts' triggers consistent. */
export const PIPELINE_DELETE_OUTPUTS = [
  `DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND pipeline_id = $3`,
  `DELETE FROM warehouse_rows WHERE org = $1 AND bucket = $2 AND pipeline_id = $3`,
  `DELETE FROM object_outputs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3`,
  `DELETE FROM jobs WHERE org = $1 AND bucket = $2 AND pipeline_id = $3`,
];

export const PIPELINE_BINDING_RULES = `
SELECT rule_id FROM rules WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 ORDER BY created_at LIMIT 20`;

/** Rules of a bucket and the glob characters they hold, leaving out rule $3. */
export const RULE_BUCKET_USAGE = `
SELECT count(*)::int AS rules,
       coalesce(sum((SELECT coalesce(sum(length(p)), 0) FROM unnest(include_patterns || exclude_patterns) AS p)), 0)::int AS glob_chars
FROM rules WHERE org = $1 AND bucket = $2 AND rule_id <> $3`;

export const TOKEN_COLUMNS = `token_id, org, secret_hash, name, grants, created_at, expires_at, revoked_at, access_key_id, secret_sealed`;

export const TOKEN_INSERT = `
INSERT INTO api_tokens (token_id, org, secret_hash, name, grants, created_at, expires_at, access_key_id, secret_sealed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`;

export const TOKEN_FIND_BY_ACCESS_KEY = `SELECT ${TOKEN_COLUMNS} FROM api_tokens WHERE access_key_id = $1`;

export const TOKEN_FIND_BY_HASH = `SELECT ${TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = $1`;

export const TOKEN_REVOKE = `
UPDATE api_tokens SET revoked_at = $2 WHERE token_id = $1 AND revoked_at = 0 RETURNING token_id`;

/** Serialises first-start bootstrap across instances (transaction-level advisory lock). */
export const TOKEN_BOOTSTRAP_LOCK = `SELECT pg_advisory_xact_lock(1798533315)`;

/**
 * Folds a deltas table into its totals: the DELETE takes exactly the deltas visible to its
 * snapshot (deltas committed meanwhile wait for the next round), sums them by `keys` and
 * adds them to the totals row of each key. Run under a try-lock (PgDb.foldDeltas), so one
 * compactor at a time does it.
 */
function foldSql(deltas: string, totals: string, keys: readonly string[], values: readonly string[]): string {
  const k = keys.join(", ");
  return `
WITH moved AS (
  DELETE FROM ${deltas} RETURNING ${k}, ${values.join(", ")}
), summed AS (
  SELECT ${k}, ${values.map((v) => `sum(${v})::bigint AS ${v}`).join(", ")} FROM moved GROUP BY ${k}
)
INSERT INTO ${totals} AS t (${k}, ${values.join(", ")})
SELECT * FROM summed
ON CONFLICT (${k}) DO UPDATE SET ${values.map((v) => `${v} = t.${v} + EXCLUDED.${v}`).join(", ")}`;
}

/** Folds the pending count deltas into job_counts. */
export const JOB_COUNTS_COMPACT = foldSql("job_count_deltas", "job_counts", ["org", "bucket", "status", "pipeline_id", "rule_id", "source_id"], ["n"]);

export const JOB_COUNTS_LOCK = `SELECT pg_try_advisory_xact_lock(1798533316) AS locked`;

/** Folds the pending bucket usage deltas into bucket_usage (migration 018). */
export const BUCKET_USAGE_COMPACT = foldSql("bucket_usage_deltas", "bucket_usage", ["org", "bucket"], ["objects", "bytes", "indexed"]);

export const BUCKET_USAGE_LOCK = `SELECT pg_try_advisory_xact_lock(1798533318) AS locked`;

/** Folds the pending collection version deltas into collection_versions (migration 021). */
export const COLLECTION_VERSIONS_COMPACT = foldSql("collection_version_deltas", "collection_versions", ["org", "bucket", "pipeline_id"], ["version"]);

export const COLLECTION_VERSIONS_LOCK = `SELECT pg_try_advisory_xact_lock(1798533319) AS locked`;

/** Collections' versions (org $1, bucket $2, pipelines $3): the folded row plus the deltas not folded yet, at one snapshot. */
export const COLLECTION_VERSIONS = `
SELECT pipeline_id, sum(version)::bigint AS version FROM (
  SELECT pipeline_id, version FROM collection_versions WHERE org = $1 AND bucket = $2 AND pipeline_id = ANY($3::text[])
  UNION ALL
  SELECT pipeline_id, version FROM collection_version_deltas WHERE org = $1 AND bucket = $2 AND pipeline_id = ANY($3::text[])
) AS v GROUP BY pipeline_id`;

/**
 * A bucket's usage as columns object_count, storage_used_bytes and indexed_objects (objects
 * whose current version was indexed, migration 019), exact at the statement's snapshot
 * (migration 018): the folded row plus the deltas not folded yet, joined to the
 * bucket named by `org` and `bucket`. Per bucket, so a listing's LIMIT bounds the lookups
 * (a view aggregating both tables made a page of buckets aggregate every bucket).
 */
const BUCKET_USAGE = (org: string, bucket: string) => ({
  columns: `(coalesce(u.objects, 0) + coalesce(d.objects, 0))::bigint AS object_count,
  (coalesce(u.bytes, 0) + coalesce(d.bytes, 0))::bigint AS storage_used_bytes,
  (coalesce(u.indexed, 0) + coalesce(d.indexed, 0))::bigint AS indexed_objects`,
  joins: `LEFT JOIN bucket_usage u ON u.org = ${org} AND u.bucket = ${bucket}
LEFT JOIN LATERAL (SELECT sum(objects) AS objects, sum(bytes) AS bytes, sum(indexed) AS indexed
  FROM bucket_usage_deltas ud WHERE ud.org = ${org} AND ud.bucket = ${bucket}) d ON true`,
});

/** Of external source $1, from its catalog rows in one pass: object_count, storage_used_bytes and indexed_objects. */
export const SOURCE_OBJECTS_TOTALS = `SELECT count(*) AS object_count, coalesce(sum(size), 0) AS storage_used_bytes,
  count(*) FILTER (WHERE indexed) AS indexed_objects FROM source_objects WHERE source_id = $1`;

/** Of bucket $2 in org $1: object_count, storage_used_bytes and indexed_objects. */
export const BUCKET_USAGE_GET = (() => {
  const u = BUCKET_USAGE("k.org", "k.bucket");
  return `SELECT ${u.columns} FROM (SELECT $1::text AS org, $2::text AS bucket) AS k ${u.joins}`;
})();

/**
 * Deletes up to $2 finished jobs that ended before $1, oldest first. SKIP LOCKED keeps the
 * pruner out of the way of any writer holding one of those rows; small batches keep each
 * transaction short. The delete trigger keeps the counts exact.
 */
export const JOB_PRUNE = `
DELETE FROM jobs WHERE job_id IN (
  SELECT job_id FROM jobs
  WHERE finished_at > 0 AND finished_at < $1
    AND status IN ('completed', 'failed', 'partial', 'cancelled')
  ORDER BY finished_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)`;

/**
 * The SET clause of a catalog upsert (objects, source_objects as `table`) for the indexed
 * flag (migration 019): kept while the version stays, cleared by a new version.
 */
export const KEEP_INDEXED = (table: string) => `indexed = ${table}.indexed AND ${table}.version = EXCLUDED.version`;

/** The columns of a bucket's own row (rows.ts toBucketRow), from `buckets b`. */
const BUCKET_ROW_COLUMNS = `b.org, b.name, b.description, b.status, b.access_mode, b.storage_quota_bytes, b.internal_source_id,
  b.created_at, b.updated_at, b.cors, b.policy`;

/** A bucket with its aggregates: exact counts from the catalog usage and the config tables. */
export const BUCKET_SELECT = (() => {
  const u = BUCKET_USAGE("b.org", "b.name");
  return `
SELECT ${BUCKET_ROW_COLUMNS}, ${u.columns},
  (SELECT count(*) FROM sources s WHERE s.org = b.org AND s.bucket = b.name) AS source_count,
  (SELECT count(*) FROM rules r WHERE r.org = b.org AND r.bucket = b.name) AS rule_count,
  (SELECT count(*) FROM pipelines p WHERE p.org = b.org AND p.bucket = b.name AND p.store_entity_kind <> '') AS index_count
FROM buckets b ${u.joins}`;
})();

/** A bucket's own row (BUCKET_SELECT without the aggregates). */
/** A bucket's CORS rules ($3: JSON, or NULL for none). */
export const BUCKET_CORS_SET = `UPDATE buckets SET cors = $3::jsonb, updated_at = $4 WHERE org = $1 AND name = $2`;

/** The CORS rules of the buckets of a name, every organization's. */
export const BUCKET_CORS_BY_NAME = `SELECT cors FROM buckets WHERE name = $1 AND cors IS NOT NULL ORDER BY org`;

/** A bucket's policy ($3: the document, or NULL for none; $4: whether it lets anyone in). */
export const BUCKET_POLICY_SET = `UPDATE buckets SET policy = $3, policy_public = $4, updated_at = $5 WHERE org = $1 AND name = $2`;

/** The organizations whose bucket of a name has a policy that lets anyone in. */
export const BUCKET_PUBLIC_ORGS = `SELECT org FROM buckets WHERE name = $1 AND policy_public ORDER BY org`;

export const BUCKET_ROW_GET = `SELECT ${BUCKET_ROW_COLUMNS} FROM buckets b WHERE b.org = $1 AND b.name = $2`;

export const BUCKET_INSERT = `
INSERT INTO buckets (org, name, description, status, access_mode, storage_quota_bytes, internal_source_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`;

/** The same, for adoption: nothing when the bucket has a row already. */
export const BUCKET_INSERT_IF_NONE = `${BUCKET_INSERT} ON CONFLICT (org, name) DO NOTHING RETURNING name`;

export const SOURCE_INSERT_INTERNAL = `
INSERT INTO sources (source_id, org, bucket, provider, name, created_at, updated_at)
VALUES ($1, $2, $3, 'internal_s3', 'internal', $4, $4)`;

/** Catalogues objects found on disk (adoption); objects already catalogued are left alone. */
export const OBJECT_CATALOG_MANY = `
INSERT INTO objects (org, bucket, object_key, size, content_type, version, created_at, updated_at)
SELECT $1, $2, k, s, c, v::numeric, $3, $3 FROM unnest($4::text[], $5::bigint[], $6::text[], $7::text[]) AS u(k, s, c, v)
ON CONFLICT (org, bucket, object_key) DO NOTHING`;

/** Buckets an org has pipelines, rules or jobs in, but no row for. */
export const BUCKET_NAMES_WITHOUT_ROW = `
SELECT DISTINCT bucket FROM (
  SELECT bucket FROM pipelines WHERE org = $1
  UNION SELECT bucket FROM rules WHERE org = $1
  -- Buckets that still have jobs: counts and deltas together (a deleted bucket leaves rows
  -- that sum to 0 until the compaction folds them).
  UNION SELECT bucket FROM (
    SELECT bucket, n FROM job_counts WHERE org = $1 UNION ALL SELECT bucket, n FROM job_count_deltas WHERE org = $1
  ) AS c GROUP BY bucket HAVING sum(n) <> 0
) AS used
WHERE NOT EXISTS (SELECT 1 FROM buckets b WHERE b.org = $1 AND b.name = used.bucket)
LIMIT 1000`;

/** Everything of a bucket, in an order that keeps the counts' triggers consistent. */
export const BUCKET_DELETE_ALL = [
  `DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2`,
  `DELETE FROM warehouse_rows WHERE org = $1 AND bucket = $2`,
  `DELETE FROM object_outputs WHERE org = $1 AND bucket = $2`,
  `DELETE FROM jobs WHERE org = $1 AND bucket = $2`,
  `DELETE FROM webhooks WHERE org = $1 AND bucket = $2`,
  `DELETE FROM rules WHERE org = $1 AND bucket = $2`,
  `DELETE FROM pipelines WHERE org = $1 AND bucket = $2`,
  `DELETE FROM objects WHERE org = $1 AND bucket = $2`,
  // The deltas before the folded row: a compaction folding this bucket's deltas meanwhile
  // is waited for here, so its upsert of the row is gone with the next statement.
  `DELETE FROM bucket_usage_deltas WHERE org = $1 AND bucket = $2`,
  `DELETE FROM bucket_usage WHERE org = $1 AND bucket = $2`,
  `DELETE FROM sources WHERE org = $1 AND bucket = $2`,
  `DELETE FROM vector_collections WHERE org = $1 AND bucket = $2`,
  `DELETE FROM buckets WHERE org = $1 AND name = $2`,
  // Remembered, so that nothing but creating it again brings it back (migration 020).
  `INSERT INTO deleted_buckets (org, name, deleted_at) VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000)::bigint)
   ON CONFLICT (org, name) DO UPDATE SET deleted_at = EXCLUDED.deleted_at`,
];

/**
 * A bucket name's lock for the rest of the transaction (org $1, name $2): a delete, a
 * create and an adoption of one name take it first, so an adoption's look at
 * deleted_buckets sees a delete that committed while it waited.
 */
export const BUCKET_NAME_LOCK = `SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 2025))`;
export const BUCKET_DELETED = `SELECT 1 FROM deleted_buckets WHERE org = $1 AND name = $2`;
export const BUCKET_UNDELETE = `DELETE FROM deleted_buckets WHERE org = $1 AND name = $2`;

export const OBJECT_COLUMNS = `object_key, size, etag, content_type, metadata, version::text AS version, created_at, updated_at`;

export const OBJECT_GET = `SELECT ${OBJECT_COLUMNS} FROM objects WHERE org = $1 AND bucket = $2 AND object_key = $3`;

/** The advisory lock key of an object (a 64-bit hash: two keys that share one only wait for each other). */
function objectLockKey(org: string, bucket: string, key: string): string {
  return `hashtextextended(${org} || '/' || ${bucket} || '/' || ${key}, 7340)`;
}

/**
 * An uploaded object recorded and its jobs made, in one statement (one round trip, its own
 * transaction): the bucket's row shared first (a bucket delete, which locks it, waits for
 * the upload or the upload finds no bucket), then the catalog row (created or replaced),
 * then the jobs ($1 as JOB_INSERT_BATCH; an empty array for none), with one NOTIFY when
 * there are any. Object: org $2, bucket $3, key $4, size $5, etag $6, content type $7,
 * metadata $8, version $9, time $10. Answers bucket_found and the jobs that went in, and
 * with $11 lets go of the key's lock (OBJECT_LOCK) the session took before placing the bytes
 * — as of the commit: the statement holds the lock at transaction level too (a session's
 * second hold of a lock it has is granted at once) and drops the session's, so a delete
 * waiting for the lock sees the row it must delete (let go mid-statement, it took the lock,
 * found no committed row and removed the bytes, and the row then committed).
 */
export const OBJECT_PUT = `
WITH bucket AS (
  SELECT 1 FROM buckets WHERE org = $2 AND name = $3 FOR SHARE
), obj AS (
  INSERT INTO objects (org, bucket, object_key, size, etag, content_type, metadata, version, created_at, updated_at)
  SELECT $2, $3, $4, $5::bigint, $6, $7, $8::jsonb, $9::numeric, $10::bigint, $10::bigint FROM bucket
  ON CONFLICT (org, bucket, object_key) DO UPDATE SET
    size = EXCLUDED.size, etag = EXCLUDED.etag, content_type = EXCLUDED.content_type, metadata = EXCLUDED.metadata,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, ${KEEP_INDEXED("objects")}
  RETURNING 1
), ins AS (${jobsInsert("EXISTS (SELECT 1 FROM obj)")}
)
SELECT EXISTS (SELECT 1 FROM bucket) AS bucket_found,
  (SELECT coalesce(jsonb_agg(to_jsonb(ins)), '[]'::jsonb) FROM ins) AS jobs,
  (SELECT pg_notify('${CHANNEL_JOBS}', '') WHERE EXISTS (SELECT 1 FROM ins)) AS woke,
  (SELECT CASE WHEN pg_advisory_xact_lock(${objectLockKey("$2", "$3", "$4")}) IS NOT NULL
     THEN pg_advisory_unlock(${objectLockKey("$2", "$3", "$4")}) END WHERE $11::boolean) AS unlocked`;

/**
 * Objects' locks across instances (org $1, bucket $2, keys $3, taken in one order so that
 * two takers of several never wait for each other): a session advisory lock per key
 * held from before an upload places its bytes until OBJECT_PUT has written their row, so
 * uploads (and deletes) of one key land their bytes and their rows in the same order.
 */
export const OBJECT_LOCK = `SELECT pg_advisory_lock(k) FROM (SELECT DISTINCT ${objectLockKey("$1", "$2", "key")} AS k FROM unnest($3::text[]) AS key ORDER BY 1) AS locks`;
export const OBJECT_UNLOCK = `SELECT pg_advisory_unlock(k) FROM (SELECT DISTINCT ${objectLockKey("$1", "$2", "key")} AS k FROM unnest($3::text[]) AS key) AS locks`;

/** Keys after $3 under prefix $4, in key order (byte order: "C" collation). */
export const OBJECT_LIST = `
SELECT ${OBJECT_COLUMNS} FROM objects
WHERE org = $1 AND bucket = $2 AND object_key > $3 AND starts_with(object_key, $4)
ORDER BY object_key LIMIT $5`;

/**
 * Holds the credential a source's new config names (parameters `org`, `config`: its JSON) in
 * key-share mode until the write commits, so a DeleteCredential racing the write either
 * waits and then finds the source (refused), or wins, and the write finds no credential and
 * changes nothing. True for a config that names none.
 */
export const credentialHeld = (org: string, config: string) =>
  `(coalesce(${config}::jsonb ->> 'credential_id', '') = '' OR EXISTS (SELECT 1 FROM credentials c WHERE c.org = ${org} AND c.credential_id = ${config}::jsonb ->> 'credential_id' FOR KEY SHARE))`;

/** The sources of an organization ($1) that sign with the stored credential $2 (their config's credential_id). */
export const SOURCES_USING_CREDENTIAL = `SELECT source_id FROM sources WHERE org = $1 AND config->>'credential_id' = $2 ORDER BY created_at LIMIT 20`;

/**
 * Outputs that came from objects: not the vectors pushed into a collection (`col_…`,
 * migration 024), whose ids may look like object keys.
 */
export const FROM_OBJECTS = `pipeline_id NOT LIKE 'col\\_%'`;

/** Everything an object left behind: its outputs at every destination. */
export const OBJECT_DELETE_OUTPUTS = [
  `DELETE FROM vector_chunks WHERE org = $1 AND bucket = $2 AND object_key = ANY($3::text[]) AND ${FROM_OBJECTS}`,
  `DELETE FROM warehouse_rows WHERE org = $1 AND bucket = $2 AND object_key = ANY($3::text[])`,
  `DELETE FROM object_outputs WHERE org = $1 AND bucket = $2 AND object_key = ANY($3::text[]) AND ${FROM_OBJECTS}`,
];

/** Cancels objects' ($3, keys) unfinished jobs: PENDING ones at once, PROCESSING ones by request. */
export const OBJECT_CANCEL_JOBS = `
UPDATE jobs SET
  status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
  finished_at = CASE WHEN status = 'pending' THEN $4::bigint ELSE finished_at END,
  error = CASE WHEN status = 'pending' THEN 'cancelled: the object was deleted' ELSE error END,
  cancel_requested = true, updated_at = $4
WHERE org = $1 AND bucket = $2 AND object_key = ANY($3::text[]) AND status IN ('pending', 'processing')
RETURNING job_id, status, object_key`;

export const RULE_LIST_ENABLED_FOR_SOURCE = `
SELECT ${RULE_COLUMNS} FROM ${RULE_FROM}
WHERE r.org = $1 AND r.bucket = $2 AND r.enabled AND (r.source_id = '' OR r.source_id = $3)
ORDER BY r.priority DESC, r.created_at, r.rule_id`;

/** Of some jobs, those whose output is their object's live output (primary-key lookups). */
export const JOBS_WITH_CURRENT_OUTPUT = `
SELECT o.job_id FROM unnest($3::text[], $4::text[], $5::text[]) AS r(p, k, j)
JOIN object_outputs o ON o.org = $1 AND o.bucket = $2 AND o.pipeline_id = r.p AND o.object_key = r.k AND o.job_id = r.j`;

/** Per pipeline, the latest job of an object. */
export const OBJECT_INDEX_STATUS = `
SELECT DISTINCT ON (pipeline_id) pipeline_id, pipeline_name, job_id, status, updated_at, error
FROM jobs WHERE org = $1 AND bucket = $2 AND object_key = $3
ORDER BY pipeline_id, created_at DESC, job_id DESC`;
