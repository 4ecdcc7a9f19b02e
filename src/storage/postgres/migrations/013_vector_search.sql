-- Search over the vector pipelines' chunks: a bucket's engine row, full-text ranking for
-- hybrid search, and a version per collection that every write bumps, so that each API
-- instance's in-memory index knows at once (one primary-key read per search) whether it
-- is current.

CREATE TABLE vector_engines (
  org        text NOT NULL,
  bucket     text NOT NULL,
  engine_id  text NOT NULL,
  mode       text NOT NULL DEFAULT 'auto',
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  PRIMARY KEY (org, bucket)
);

-- Where each chunk lies in its object's text: code-point offsets, PDF page, heading path.
ALTER TABLE vector_chunks
  ADD COLUMN char_start integer NOT NULL DEFAULT 0,
  ADD COLUMN char_end   integer NOT NULL DEFAULT 0,
  ADD COLUMN page       integer NOT NULL DEFAULT 0,
  ADD COLUMN heading    text NOT NULL DEFAULT '';

ALTER TABLE vector_chunks ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
CREATE INDEX vector_chunks_tsv_idx ON vector_chunks USING gin (content_tsv);

CREATE TABLE collection_versions (
  org         text NOT NULL,
  bucket      text NOT NULL,
  pipeline_id text NOT NULL,
  version     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org, bucket, pipeline_id)
);

CREATE FUNCTION k3_collection_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO collection_versions AS v (org, bucket, pipeline_id, version)
    SELECT DISTINCT org, bucket, pipeline_id, 1 FROM new_rows
    ON CONFLICT (org, bucket, pipeline_id) DO UPDATE SET version = v.version + 1;
  ELSE
    INSERT INTO collection_versions AS v (org, bucket, pipeline_id, version)
    SELECT DISTINCT org, bucket, pipeline_id, 1 FROM old_rows
    ON CONFLICT (org, bucket, pipeline_id) DO UPDATE SET version = v.version + 1;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER vector_chunks_bump_insert AFTER INSERT ON vector_chunks
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_collection_bump();
CREATE TRIGGER vector_chunks_bump_delete AFTER DELETE ON vector_chunks
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_collection_bump();
