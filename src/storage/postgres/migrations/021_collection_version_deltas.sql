-- A collection's version (search's change detector, migration 013) without a shared row.
-- k3_collection_bump upserted the collection's one collection_versions row in every chunk
-- write's transaction, so writes of one collection — every worker's output, every delete of
-- an indexed object — held its lock through their commits one after another (1,000 deletes
-- in parallel took as long as one after another). Now the statement triggers append deltas,
-- the compaction that folds job counts and bucket usage folds these too, and a reader adds
-- the deltas to the folded row in one statement: each commit still moves the sum, and a
-- fold leaves it as it was.

CREATE TABLE collection_version_deltas (
  org         text NOT NULL,
  bucket      text NOT NULL,
  pipeline_id text NOT NULL,
  version     bigint NOT NULL
);
CREATE INDEX collection_version_deltas_idx ON collection_version_deltas (org, bucket, pipeline_id);

CREATE OR REPLACE FUNCTION k3_collection_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO collection_version_deltas (org, bucket, pipeline_id, version)
    SELECT DISTINCT org, bucket, pipeline_id, 1 FROM new_rows;
  ELSE
    INSERT INTO collection_version_deltas (org, bucket, pipeline_id, version)
    SELECT DISTINCT org, bucket, pipeline_id, 1 FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
