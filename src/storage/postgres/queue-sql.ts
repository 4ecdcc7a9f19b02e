/**
 * The worker's statements (queue.ts): claims, leases, heartbeats, progress and the end of
 * an attempt — each write fenced by the attempt's thread id. (An attempt with output ends in
 * one call of k3_attempt_output, migration 017.) Every time in them is the database's clock.
 */
import { JOB_COLUMNS } from "./sql";

/**
 * Now, in Unix epoch milliseconds, by the database's clock. Every lease, schedule and
 * worker-written time uses it, so workers on machines whose clocks disagree still agree
 * on when a lease expired or a retry is due.
 */
const DB_NOW = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/**
 * The clock read once for a whole statement, as `now.ms`: clock_timestamp() moves while a
 * statement runs, so two columns set from DB_NOW itself could differ by a millisecond.
 */
const AT_NOW = `WITH now AS (SELECT ${DB_NOW} AS ms)`;

/**
 * Claims up to $2 runnable jobs, oldest first, for worker $1 with a lease of $3 ms.
 * SKIP LOCKED lets concurrent workers claim disjoint jobs without waiting on each other.
 * Each attempt gets a fresh thread id — the fence every later write of the attempt is
 * guarded by — and fresh counters. A job asked to cancel is never claimed. The picked rows
 * are updated by their tuple ids (a TID scan): joining them back on job_id let the planner
 * hash the whole table when it is small (a quarter of a 500-job claim at 20,000 jobs); the
 * rows are locked, so their tuple ids cannot change before the UPDATE.
 */
export const JOB_CLAIM = `
${AT_NOW},
picked AS (
  SELECT jobs.ctid FROM jobs, now
  WHERE status = 'pending' AND run_after <= now.ms AND NOT cancel_requested
  ORDER BY created_at, job_id
  LIMIT $2
  FOR UPDATE OF jobs SKIP LOCKED
)
UPDATE jobs j SET
  status = 'processing',
  lease_owner = $1,
  lease_expires_at = now.ms + $3,
  attempts = j.attempts + 1,
  -- A job never starts before it exists (created_at comes from the API's clock).
  started_at = CASE WHEN j.started_at = 0 THEN greatest(now.ms, j.created_at) ELSE j.started_at END,
  thread_id = 'thread_' || replace(gen_random_uuid()::text, '-', ''),
  chunks_created = 0, embeddings_created = 0, rows_written = 0, output_size = 0,
  batches_received = 0, embeddings_written = 0, vector_status = '',
  stage = '', stage_done = 0, stage_total = 0, stage_unit = '',
  updated_at = greatest(now.ms, j.created_at)
FROM now
WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM picked))
RETURNING ${JOB_COLUMNS.split(",").map((c) => `j.${c.trim()}`).join(", ")}`;

/** Extends the leases of the attempts $1 still holds by $2 ms; reports which were cancelled. */
export const JOB_HEARTBEAT = `
UPDATE jobs SET lease_expires_at = ${DB_NOW} + $2
WHERE thread_id = ANY($1::text[]) AND status = 'processing'
RETURNING job_id, thread_id, cancel_requested`;

/** Progress counters and stage of a running attempt. */
export const JOB_PROGRESS = `
UPDATE jobs SET chunks_created = $3, embeddings_created = $4, stage = $5, stage_done = $6, stage_total = $7, stage_unit = $8,
  updated_at = ${DB_NOW}
WHERE job_id = $1 AND thread_id = $2 AND status = 'processing'`;

/** Ends a live attempt that wrote no output (one with output ends in k3_attempt_output). */
export const JOB_COMPLETE = `
${AT_NOW}
UPDATE jobs SET
  status = $3, chunks_created = $4, embeddings_created = $5, rows_written = $6, output_size = $7,
  batches_received = $8, embeddings_written = $9, vector_status = $10, error = $11, error_details = $12,
  lease_owner = NULL, lease_expires_at = NULL, finished_at = now.ms, updated_at = now.ms
FROM now
WHERE job_id = $1 AND thread_id = $2 AND status = 'processing' AND NOT cancel_requested
RETURNING ${JOB_COLUMNS}`;

/**
 * A failed attempt: back to PENDING in $5 ms when $5 > 0, otherwise FAILED; CANCELLED
 * when a cancel was asked for meanwhile.
 */
export const JOB_FAIL_ATTEMPT = `
${AT_NOW}
UPDATE jobs SET
  status = CASE WHEN cancel_requested THEN 'cancelled' WHEN $5::bigint > 0 THEN 'pending' ELSE 'failed' END,
  run_after = CASE WHEN $5::bigint > 0 THEN now.ms + $5::bigint ELSE run_after END,
  finished_at = CASE WHEN $5::bigint > 0 AND NOT cancel_requested THEN 0 ELSE now.ms END,
  error = CASE WHEN cancel_requested THEN 'cancelled while processing' ELSE $3 END,
  error_details = CASE WHEN cancel_requested THEN '' ELSE $4 END,
  permanent_failure = $6::boolean AND NOT cancel_requested,
  vector_status = CASE WHEN pipeline_kind = 'vector' AND ($5::bigint = 0 OR cancel_requested) THEN 'failed' ELSE vector_status END,
  lease_owner = NULL, lease_expires_at = NULL, updated_at = now.ms
FROM now
WHERE job_id = $1 AND thread_id = $2 AND status = 'processing'
RETURNING ${JOB_COLUMNS}`;

/** A running attempt whose cancellation the worker has honoured. */
export const JOB_CANCEL_RUNNING = `
${AT_NOW}
UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
  error = 'cancelled while processing', finished_at = now.ms, updated_at = now.ms
FROM now
WHERE job_id = $1 AND thread_id = $2 AND status = 'processing' AND cancel_requested
RETURNING ${JOB_COLUMNS}`;

/** Hands attempts back at shutdown: PENDING again, and the interrupted attempt does not count. */
export const JOB_RELEASE = `
${AT_NOW}
UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
  finished_at = CASE WHEN cancel_requested THEN now.ms ELSE 0 END,
  attempts = greatest(attempts - 1, 0), lease_owner = NULL, lease_expires_at = NULL, updated_at = now.ms
FROM now
WHERE thread_id = ANY($1::text[]) AND status = 'processing'`;

/**
 * Jobs whose lease expired (their worker died): cancelled when a cancel was asked for,
 * FAILED when the attempts are used up or when this is the $2th attempt that lost its
 * worker (a job that crashes its worker is not retried into a crash loop), otherwise
 * PENDING again.
 */
export const JOB_RESCUE = `
${AT_NOW},
expired AS (
  SELECT job_id FROM jobs, now
  WHERE status = 'processing' AND lease_expires_at < now.ms
  ORDER BY lease_expires_at
  LIMIT 1000
  FOR UPDATE OF jobs SKIP LOCKED
)
UPDATE jobs j SET
  status = CASE WHEN j.cancel_requested THEN 'cancelled' WHEN j.attempts >= $1 OR j.lost_attempts + 1 >= $2 THEN 'failed' ELSE 'pending' END,
  finished_at = CASE WHEN j.cancel_requested OR j.attempts >= $1 OR j.lost_attempts + 1 >= $2 THEN now.ms ELSE 0 END,
  lost_attempts = j.lost_attempts + 1,
  error = CASE WHEN j.cancel_requested THEN 'cancelled while processing'
               WHEN j.lost_attempts + 1 >= $2 AND j.attempts < $1
                 THEN 'worker lost ' || (j.lost_attempts + 1) || ' times while running this job (a crash, an out-of-memory kill or kill -9); not retried again'
               ELSE 'worker lost: lease expired during attempt ' || j.attempts END,
  error_details = 'stage: lease; worker ' || j.lease_owner || ' stopped renewing its lease',
  lease_owner = NULL, lease_expires_at = NULL, updated_at = now.ms
FROM expired, now
WHERE j.job_id = expired.job_id
RETURNING j.job_id, j.status`;

/** Ends many output-less attempts in one statement, each guarded by its attempt and cancel. */
export const JOB_COMPLETE_MANY = `
${AT_NOW}
UPDATE jobs j SET
  status = u.status, chunks_created = u.cc, embeddings_created = u.ec, rows_written = 0, output_size = 0,
  batches_received = 0, embeddings_written = 0, vector_status = u.vs, error = u.err, error_details = u.det,
  lease_owner = NULL, lease_expires_at = NULL, finished_at = now.ms, updated_at = now.ms
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::text[], $8::text[])
  AS u(id, thread, status, cc, ec, vs, err, det), now
WHERE j.job_id = u.id AND j.thread_id = u.thread AND j.status = 'processing' AND NOT j.cancel_requested
RETURNING j.job_id`;
