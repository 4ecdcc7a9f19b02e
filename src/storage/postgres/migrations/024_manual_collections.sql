-- Collections whose vectors the caller pushes (AddVectorCollection: embedding_source
-- EXTERNAL), beside the ones a vector pipeline fills. A collection's vectors live with the
-- pipelines' chunks in vector_chunks (pipeline_id = the collection's id, `col_…`; object_key
-- = the vector's id; chunk_index 0), and each has an object_outputs row naming the write
-- that made it, so the in-memory index loads and refreshes them as it does objects. An id
-- is not an object key: deleting an object never touches a collection's vectors (the
-- deletes of objects' outputs leave `col_` collections alone).
CREATE TABLE vector_collections (
  org           text NOT NULL,
  bucket        text NOT NULL,
  collection_id text NOT NULL,
  name          text NOT NULL,
  description   text NOT NULL DEFAULT '',
  dimensions    integer NOT NULL CHECK (dimensions BETWEEN 1 AND 8192),
  embed_model   text NOT NULL DEFAULT '',
  created_at    bigint NOT NULL,
  updated_at    bigint NOT NULL,
  PRIMARY KEY (org, bucket, collection_id),
  CONSTRAINT vector_collections_name_key UNIQUE (org, bucket, name)
);

-- A pushed vector's metadata (search filters match it as they match objects' metadata).
ALTER TABLE vector_chunks ADD COLUMN metadata jsonb;
CREATE INDEX vector_chunks_metadata_idx ON vector_chunks USING gin (metadata jsonb_path_ops) WHERE metadata IS NOT NULL;
