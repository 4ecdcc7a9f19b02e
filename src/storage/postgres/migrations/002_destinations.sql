-- Destinations of the built-in pipelines. An object's output for one pipeline is keyed by
-- (org, bucket, pipeline_id, object_key); a re-ingest replaces it in one transaction.

CREATE TABLE vector_chunks (
  org          text NOT NULL,
  bucket       text NOT NULL,
  pipeline_id  text NOT NULL,
  object_key   text NOT NULL,
  chunk_index  integer NOT NULL,
  content      text NOT NULL,
  embedding    real[] NOT NULL,
  job_id       text NOT NULL,
  created_at   bigint NOT NULL,
  PRIMARY KEY (org, bucket, pipeline_id, object_key, chunk_index)
);

CREATE TABLE warehouse_rows (
  org          text NOT NULL,
  bucket       text NOT NULL,
  pipeline_id  text NOT NULL,
  object_key   text NOT NULL,
  row_index    integer NOT NULL,
  data         jsonb NOT NULL,
  job_id       text NOT NULL,
  created_at   bigint NOT NULL,
  PRIMARY KEY (org, bucket, pipeline_id, object_key, row_index)
);
