-- An object's jobs, newest first: per-pipeline index status (GetObjectInfo) reads this.
CREATE INDEX jobs_object_idx ON jobs (org, bucket, object_key, created_at DESC, job_id DESC);
