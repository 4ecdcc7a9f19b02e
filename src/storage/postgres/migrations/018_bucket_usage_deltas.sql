-- A bucket's object count and bytes without a shared counter row. The row trigger of 008
-- upserted the bucket's one bucket_usage row in every upload's transaction, so uploads
-- into one bucket held its lock through their commits one after another. Now statement
-- triggers append signed deltas (insert-only, as job counts do since 004), the compaction
-- that folds job count deltas folds these too, and a reader adds the deltas to the folded
-- row in one statement (BUCKET_USAGE in sql.ts), so the usage is exact at its snapshot.

CREATE TABLE bucket_usage_deltas (
  org     text NOT NULL,
  bucket  text NOT NULL,
  objects bigint NOT NULL,
  bytes   bigint NOT NULL
);
-- A page of buckets looks up each one's deltas: a burst of uploads leaves thousands before
-- the next fold.
CREATE INDEX bucket_usage_deltas_bucket_idx ON bucket_usage_deltas (org, bucket);

DROP TRIGGER objects_usage ON objects;
DROP FUNCTION k3_bucket_usage();

CREATE FUNCTION k3_bucket_usage_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bucket_usage_deltas (org, bucket, objects, bytes)
  SELECT org, bucket, count(*), sum(size) FROM new_rows GROUP BY org, bucket;
  RETURN NULL;
END $$;

CREATE FUNCTION k3_bucket_usage_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bucket_usage_deltas (org, bucket, objects, bytes)
  SELECT org, bucket, sum(n), sum(b) FROM (
    SELECT org, bucket, -1 AS n, -size AS b FROM old_rows
    UNION ALL
    SELECT org, bucket, 1 AS n, size AS b FROM new_rows
  ) AS d
  GROUP BY org, bucket
  HAVING sum(n) <> 0 OR sum(b) <> 0;
  RETURN NULL;
END $$;

CREATE FUNCTION k3_bucket_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bucket_usage_deltas (org, bucket, objects, bytes)
  SELECT org, bucket, -count(*), -sum(size) FROM old_rows GROUP BY org, bucket;
  RETURN NULL;
END $$;

CREATE TRIGGER objects_usage_insert AFTER INSERT ON objects
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_bucket_usage_insert();
CREATE TRIGGER objects_usage_update AFTER UPDATE ON objects
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_bucket_usage_update();
CREATE TRIGGER objects_usage_delete AFTER DELETE ON objects
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_bucket_usage_delete();
