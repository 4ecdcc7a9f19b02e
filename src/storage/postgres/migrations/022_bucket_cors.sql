-- A bucket's CORS rules (S3's CORSConfiguration, PutBucketCors): which web origins may call
-- its byte plane from a browser. NULL: none (a browser's cross-origin requests are refused).
-- A preflight names a bucket but carries no credentials, so the rules are also looked up by
-- the bucket's name alone.
ALTER TABLE buckets ADD COLUMN cors jsonb;
CREATE INDEX buckets_cors_name_idx ON buckets (name) WHERE cors IS NOT NULL;
