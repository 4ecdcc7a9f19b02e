-- Multipart uploads in progress and their parts. The parts' bytes wait under
-- <dataDir>/tmp/mpu-<upload_id>/ until the upload is completed (assembled into the
-- object) or aborted.
CREATE TABLE multipart_uploads (
  upload_id    text PRIMARY KEY,
  org          text NOT NULL,
  bucket       text NOT NULL,
  object_key   text COLLATE "C" NOT NULL,
  content_type text NOT NULL DEFAULT '',
  metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   bigint NOT NULL
);
CREATE INDEX multipart_uploads_bucket_idx ON multipart_uploads (org, bucket, object_key);

CREATE TABLE multipart_parts (
  upload_id   text NOT NULL REFERENCES multipart_uploads (upload_id) ON DELETE CASCADE,
  part_number integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
  size        bigint NOT NULL,
  etag        text NOT NULL,
  updated_at  bigint NOT NULL,
  PRIMARY KEY (upload_id, part_number)
);
