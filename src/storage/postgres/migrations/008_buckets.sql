-- Buckets, their sources and the catalog of their objects. A bucket row is made by
-- CreateBucket, or when a bucket that existed only as a folder (or only by its rules,
-- pipelines and jobs) is first used: it is adopted, nothing lost.

CREATE TABLE buckets (
  org                 text NOT NULL,
  name                text NOT NULL,
  description         text NOT NULL DEFAULT '',
  status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active')),
  access_mode         text NOT NULL DEFAULT 'private' CHECK (access_mode IN ('private')),
  storage_quota_bytes bigint NOT NULL DEFAULT 0 CHECK (storage_quota_bytes >= 0),
  internal_source_id  text NOT NULL,
  created_at          bigint NOT NULL,
  updated_at          bigint NOT NULL,
  PRIMARY KEY (org, name)
);
CREATE INDEX buckets_created_idx ON buckets (org, created_at DESC, name DESC);

-- Sources of a bucket. Every bucket has one internal source (its own byte plane).
CREATE TABLE sources (
  source_id  text PRIMARY KEY,
  org        text NOT NULL,
  bucket     text NOT NULL,
  provider   text NOT NULL,
  name       text NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE INDEX sources_bucket_idx ON sources (org, bucket, created_at DESC, source_id DESC);
CREATE UNIQUE INDEX sources_one_internal ON sources (org, bucket) WHERE provider = 'internal_s3';

-- The object catalog: what the byte plane stored (and what adoption found on disk).
CREATE TABLE objects (
  org          text NOT NULL,
  bucket       text NOT NULL,
  object_key   text COLLATE "C" NOT NULL,  -- S3 lists keys in byte order
  size         bigint NOT NULL CHECK (size >= 0),
  etag         text NOT NULL DEFAULT '',
  content_type text NOT NULL DEFAULT '',
  metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Modification time in nanoseconds: the version re-ingests are ordered by.
  version      numeric(24, 0) NOT NULL DEFAULT 0,
  created_at   bigint NOT NULL,
  updated_at   bigint NOT NULL,
  PRIMARY KEY (org, bucket, object_key)
);

-- Exact object count and bytes per bucket, maintained by a trigger on the catalog.
CREATE TABLE bucket_usage (
  org     text NOT NULL,
  bucket  text NOT NULL,
  objects bigint NOT NULL DEFAULT 0,
  bytes   bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org, bucket)
);

CREATE FUNCTION k3_bucket_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO bucket_usage AS u (org, bucket, objects, bytes) VALUES (NEW.org, NEW.bucket, 1, NEW.size)
    ON CONFLICT (org, bucket) DO UPDATE SET objects = u.objects + 1, bytes = u.bytes + NEW.size;
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    UPDATE bucket_usage SET objects = objects - 1, bytes = bytes - OLD.size WHERE org = OLD.org AND bucket = OLD.bucket;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER objects_usage AFTER INSERT OR UPDATE OF size, org, bucket OR DELETE ON objects
  FOR EACH ROW EXECUTE FUNCTION k3_bucket_usage();
