-- Which job's output is current for each (org, bucket, pipeline, object), and which
-- version of the object it was made from. Final writes of one object are serialised (an
-- advisory lock on this key) and compare versions here, so an older read of an object
-- never overwrites the output of a newer one, and concurrent re-ingests never collide.
CREATE TABLE object_outputs (
  org            text NOT NULL,
  bucket         text NOT NULL,
  pipeline_id    text NOT NULL,
  object_key     text NOT NULL,
  job_id         text NOT NULL,
  -- The object's modification time in nanoseconds when the job read it (0: unknown).
  source_version numeric(24, 0) NOT NULL DEFAULT 0,
  updated_at     bigint NOT NULL,
  PRIMARY KEY (org, bucket, pipeline_id, object_key)
);

INSERT INTO object_outputs (org, bucket, pipeline_id, object_key, job_id, updated_at)
SELECT DISTINCT ON (org, bucket, pipeline_id, object_key) org, bucket, pipeline_id, object_key, job_id, created_at
FROM (SELECT org, bucket, pipeline_id, object_key, job_id, created_at FROM vector_chunks
      UNION ALL
      SELECT org, bucket, pipeline_id, object_key, job_id, created_at FROM warehouse_rows) AS o
ORDER BY org, bucket, pipeline_id, object_key, created_at DESC;

-- Worker writes are fenced by the attempt (thread_id), which is unique per claim.
CREATE INDEX jobs_thread_idx ON jobs (thread_id) WHERE status = 'processing';
