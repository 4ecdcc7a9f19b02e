-- Exact job counts per (org, bucket, status, pipeline, rule), so that a list's totalCount
-- never needs a COUNT(*) over a bucket of millions of jobs.
--
-- Statement-level triggers append signed deltas to job_count_deltas: insert-only, so
-- concurrent writers never wait on a shared counter row. A compaction task folds the
-- deltas into job_counts every second. A count reads both tables in one statement (one
-- snapshot), so it is exact at that snapshot whether or not compaction has run.

CREATE TABLE job_counts (
  org         text NOT NULL,
  bucket      text NOT NULL,
  status      text NOT NULL,
  pipeline_id text NOT NULL,
  rule_id     text NOT NULL,
  n           bigint NOT NULL,
  PRIMARY KEY (org, bucket, status, pipeline_id, rule_id)
);

CREATE TABLE job_count_deltas (
  org         text NOT NULL,
  bucket      text NOT NULL,
  status      text NOT NULL,
  pipeline_id text NOT NULL,
  rule_id     text NOT NULL,
  n           bigint NOT NULL
);

CREATE FUNCTION k3_job_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, count(*) FROM new_rows
  GROUP BY org, bucket, status, pipeline_id, rule_id;
  RETURN NULL;
END $$;

CREATE FUNCTION k3_job_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, sum(n) FROM (
    SELECT org, bucket, status, pipeline_id, rule_id, -1 AS n FROM old_rows
    UNION ALL
    SELECT org, bucket, status, pipeline_id, rule_id, 1 AS n FROM new_rows
  ) AS d
  GROUP BY org, bucket, status, pipeline_id, rule_id
  HAVING sum(n) <> 0;
  RETURN NULL;
END $$;

CREATE FUNCTION k3_job_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, -count(*) FROM old_rows
  GROUP BY org, bucket, status, pipeline_id, rule_id;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_job_counts_insert();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_job_counts_update();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_job_counts_delete();

-- Counts for jobs that existed before this migration.
INSERT INTO job_counts (org, bucket, status, pipeline_id, rule_id, n)
SELECT org, bucket, status, pipeline_id, rule_id, count(*) FROM jobs
GROUP BY org, bucket, status, pipeline_id, rule_id;
