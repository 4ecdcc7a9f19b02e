-- The final write of an attempt in one call instead of a transaction of nine statements.
--
-- Ending an attempt with output took BEGIN, the object's lock, the attempt's check, the
-- current output's version, the delete of the old output, one insert per batch, the new
-- output's bookkeeping, the job's end and COMMIT: nine round trips, and on this kind of
-- machine each costs the server ~70 µs in writev alone, and PostgreSQL a parse and a plan.
-- These functions do the same in one statement for an output of one batch (the common
-- case); a larger output sends one call per batch inside a transaction. Each statement in
-- a (volatile) plpgsql function takes a fresh snapshot, so the reads after the lock see
-- what the previous holder committed, exactly as the separate statements did.

-- Writes one batch of an object's output for one pipeline; the first batch first deletes
-- what the pipeline wrote for the object before. The bench's bare loop calls it directly.
CREATE FUNCTION k3_output_batch(
  p_first boolean, p_kind text, p_org text, p_bucket text, p_pipeline text, p_key text, p_job text, p_now bigint,
  p_idx integer[], p_content text[], p_embedding text[], p_start integer[], p_end integer[], p_page integer[],
  p_heading text[], p_data jsonb[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF p_kind = 'vector' THEN
    IF p_first THEN
      DELETE FROM vector_chunks WHERE org = p_org AND bucket = p_bucket AND pipeline_id = p_pipeline AND object_key = p_key;
    END IF;
    INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at,
                               char_start, char_end, page, heading)
    SELECT p_org, p_bucket, p_pipeline, p_key, i, c, translate(e, '[]', '{}')::real[], p_job, p_now, cs, ce, pg, h
    FROM unnest(p_idx, p_content, p_embedding, p_start, p_end, p_page, p_heading) AS u(i, c, e, cs, ce, pg, h);
  ELSIF p_kind = 'warehouse' THEN
    IF p_first THEN
      DELETE FROM warehouse_rows WHERE org = p_org AND bucket = p_bucket AND pipeline_id = p_pipeline AND object_key = p_key;
    END IF;
    INSERT INTO warehouse_rows (org, bucket, pipeline_id, object_key, row_index, data, job_id, created_at)
    SELECT p_org, p_bucket, p_pipeline, p_key, i, d, p_job, p_now FROM unnest(p_idx, p_data) AS u(i, d);
  ELSE
    RAISE EXCEPTION 'unknown output kind %', p_kind;
  END IF;
END $$;

-- One batch of a running attempt's output. With p_first: the object's output lock (held to
-- the end of the transaction), the attempt's check (outcome 'gone': nothing written), and
-- the current output's version: when a newer version of the object is already indexed,
-- nothing is written and the job ends at once as superseded. With p_last (or superseded):
-- the object's output bookkeeping and the end of the attempt (outcome 'done', the job as
-- JSON); when the attempt was cancelled or taken away meanwhile, SQLSTATE K3A01 undoes the
-- whole transaction. Otherwise outcome 'more'.
CREATE FUNCTION k3_attempt_output(
  p_first boolean, p_last boolean, p_kind text, p_org text, p_bucket text, p_pipeline text, p_key text,
  p_job text, p_thread text, p_version numeric,
  p_idx integer[], p_content text[], p_embedding text[], p_start integer[], p_end integer[], p_page integer[],
  p_heading text[], p_data jsonb[],
  p_status text, p_chunks integer, p_embeddings integer, p_rows integer, p_size integer, p_batches integer,
  p_written integer, p_vector_status text, p_error text, p_details text
) RETURNS TABLE (outcome text, job_row jsonb) LANGUAGE plpgsql AS $$
DECLARE
  now_ms bigint := (extract(epoch from clock_timestamp()) * 1000)::bigint;
  current_job text;
  current_version numeric;
  superseded boolean := false;
  ended jobs;
BEGIN
  IF p_first THEN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_org || '/' || p_bucket || '/' || p_pipeline || '/' || p_key, 1798533317));
    PERFORM 1 FROM jobs WHERE job_id = p_job AND thread_id = p_thread AND status = 'processing' AND NOT cancel_requested;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'gone', NULL::jsonb;
      RETURN;
    END IF;
    SELECT o.job_id, o.source_version INTO current_job, current_version FROM object_outputs o
    WHERE o.org = p_org AND o.bucket = p_bucket AND o.pipeline_id = p_pipeline AND o.object_key = p_key;
    superseded := FOUND AND current_version > p_version;
  END IF;
  IF superseded THEN
    -- The output of a newer version of the object is already current: keep it.
    p_rows := 0; p_size := 0; p_batches := 0; p_written := 0;
    p_details := 'superseded: job ' || current_job || ' had already indexed a newer version of the object; this run''s output was discarded';
  ELSE
    PERFORM k3_output_batch(p_first, p_kind, p_org, p_bucket, p_pipeline, p_key, p_job, now_ms,
                            p_idx, p_content, p_embedding, p_start, p_end, p_page, p_heading, p_data);
    IF NOT p_last THEN
      RETURN QUERY SELECT 'more', NULL::jsonb;
      RETURN;
    END IF;
    INSERT INTO object_outputs (org, bucket, pipeline_id, object_key, job_id, source_version, updated_at)
    VALUES (p_org, p_bucket, p_pipeline, p_key, p_job, p_version, now_ms)
    ON CONFLICT (org, bucket, pipeline_id, object_key)
    DO UPDATE SET job_id = EXCLUDED.job_id, source_version = EXCLUDED.source_version, updated_at = EXCLUDED.updated_at;
  END IF;
  UPDATE jobs SET
    status = p_status, chunks_created = p_chunks, embeddings_created = p_embeddings, rows_written = p_rows, output_size = p_size,
    batches_received = p_batches, embeddings_written = p_written, vector_status = p_vector_status, error = p_error,
    error_details = p_details, lease_owner = NULL, lease_expires_at = NULL, finished_at = now_ms, updated_at = now_ms
  WHERE job_id = p_job AND thread_id = p_thread AND status = 'processing' AND NOT cancel_requested
  RETURNING * INTO ended;
  IF ended.job_id IS NULL THEN
    -- Cancelled or taken away while writing: nothing of this attempt stays.
    RAISE EXCEPTION 'attempt % of job % ended while its output was written', p_thread, p_job USING ERRCODE = 'K3A01';
  END IF;
  RETURN QUERY SELECT 'done', to_jsonb(ended);
END $$;
