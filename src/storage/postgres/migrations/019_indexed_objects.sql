-- Indexed objects without a join over the jobs table. A source's status (GetSource,
-- ListSources, GetSyncStatus) counted the objects whose current version has a COMPLETED
-- job by joining the catalog to the jobs on every call: a scan of every job of every bucket
-- (~95 ms at 100,000 objects and 300,000 jobs, growing with the whole table; now 0.1 ms;
-- the backfill below took 1.5 s for those). Now each catalog row says whether its current
-- version was indexed: the jobs' statement trigger (004) sets the flag when a job for it completes, a new version clears it (the upserts of
-- OBJECT_PUT and of a discovery's checkpoint), and the bucket usage deltas of 018 carry the
-- count of flagged objects, so the internal source's count is read like its object count.
-- An external source counts its flags in one pass over its own catalog rows.
-- The flag stays when retention later deletes the job: the object's output is still there.

ALTER TABLE objects ADD COLUMN indexed boolean NOT NULL DEFAULT false;
ALTER TABLE source_objects ADD COLUMN indexed boolean NOT NULL DEFAULT false;
ALTER TABLE bucket_usage ADD COLUMN indexed bigint NOT NULL DEFAULT 0;
ALTER TABLE bucket_usage_deltas ADD COLUMN indexed bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION k3_bucket_usage_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bucket_usage_deltas (org, bucket, objects, bytes, indexed)
  SELECT org, bucket, count(*), sum(size), count(*) FILTER (WHERE indexed) FROM new_rows GROUP BY org, bucket;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION k3_bucket_usage_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bucket_usage_deltas (org, bucket, objects, bytes, indexed)
  SELECT org, bucket, sum(n), sum(b), sum(i) FROM (
    SELECT org, bucket, -1 AS n, -size AS b, -indexed::int AS i FROM old_rows
    UNION ALL
    SELECT org, bucket, 1 AS n, size AS b, indexed::int AS i FROM new_rows
  ) AS d
  GROUP BY org, bucket
  HAVING sum(n) <> 0 OR sum(b) <> 0 OR sum(i) <> 0;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION k3_bucket_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bucket_usage_deltas (org, bucket, objects, bytes, indexed)
  SELECT org, bucket, -count(*), -sum(size), -count(*) FILTER (WHERE indexed) FROM old_rows GROUP BY org, bucket;
  RETURN NULL;
END $$;

-- The flags of what is there now, by the rule the status query used: a COMPLETED job of the
-- object's key, of its source (a bucket's direct jobs count for its internal source), for
-- its current version or for no version in particular (TriggerIngest reads what is there).
UPDATE objects o SET indexed = true
WHERE EXISTS (
  SELECT 1 FROM jobs j
  WHERE j.org = o.org AND j.bucket = o.bucket AND j.object_key = o.object_key AND j.status = 'completed'
    AND j.object_version IN (o.version::text, '')
    AND (j.source_id = '' OR j.source_id = (SELECT b.internal_source_id FROM buckets b WHERE b.org = o.org AND b.name = o.bucket)));

UPDATE source_objects o SET indexed = true
WHERE EXISTS (
  SELECT 1 FROM jobs j JOIN sources s ON s.source_id = o.source_id
  WHERE j.org = s.org AND j.bucket = s.bucket AND j.object_key = o.object_key AND j.status = 'completed'
    AND j.source_id = o.source_id AND j.object_version = o.version);

-- Jobs that reached COMPLETED in a statement flag their objects. Rows already flagged are
-- not written, and a row another transaction holds is skipped, never waited for: its holder
-- is deleting the object or writing a new version of it (which is not indexed yet) — and a
-- completion that waited would deadlock with an object delete, which deletes the row first
-- and then cancels the object's jobs, whose rows the completion holds. Done in the jobs'
-- count trigger (004), which every UPDATE of jobs runs already: a trigger of its own cost
-- the PostgreSQL-alone drain of 20,000 no-op jobs 5 %.
CREATE OR REPLACE FUNCTION k3_job_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, source_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, source_id, sum(n) FROM (
    SELECT org, bucket, status, pipeline_id, rule_id, source_id, -1 AS n FROM old_rows
    UNION ALL
    SELECT org, bucket, status, pipeline_id, rule_id, source_id, 1 AS n FROM new_rows
  ) AS d
  GROUP BY org, bucket, status, pipeline_id, rule_id, source_id
  HAVING sum(n) <> 0;

  IF NOT EXISTS (SELECT 1 FROM new_rows WHERE status = 'completed') THEN
    RETURN NULL;
  END IF;
  WITH done AS (
    SELECT DISTINCT org, bucket, object_key, object_version, source_id FROM new_rows WHERE status = 'completed'
  ), flag AS (
    SELECT o.org, o.bucket, o.object_key FROM objects o JOIN done d
      ON o.org = d.org AND o.bucket = d.bucket AND o.object_key = d.object_key
    WHERE NOT o.indexed AND (d.object_version = '' OR o.version::text = d.object_version)
      AND (d.source_id = '' OR d.source_id = (SELECT b.internal_source_id FROM buckets b WHERE b.org = o.org AND b.name = o.bucket))
    ORDER BY o.org, o.bucket, o.object_key
    FOR NO KEY UPDATE OF o SKIP LOCKED
  )
  UPDATE objects o SET indexed = true FROM flag f
  WHERE o.org = f.org AND o.bucket = f.bucket AND o.object_key = f.object_key;

  WITH done AS (
    SELECT DISTINCT object_key, object_version, source_id FROM new_rows WHERE status = 'completed' AND source_id <> ''
  ), flag AS (
    SELECT o.source_id, o.object_key FROM source_objects o JOIN done d
      ON o.source_id = d.source_id AND o.object_key = d.object_key AND o.version = d.object_version
    WHERE NOT o.indexed
    ORDER BY o.source_id, o.object_key
    FOR NO KEY UPDATE OF o SKIP LOCKED
  )
  UPDATE source_objects o SET indexed = true FROM flag f
  WHERE o.source_id = f.source_id AND o.object_key = f.object_key;
  RETURN NULL;
END $$;
