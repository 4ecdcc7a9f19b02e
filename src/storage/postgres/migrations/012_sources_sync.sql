-- Sources and sync: the documented Source fields, the checkpoint of external sources,
-- durable discoveries, and jobs that know their source, the object version they were
-- made for and the job they replay.

ALTER TABLE sources
  ADD COLUMN description           text NOT NULL DEFAULT '',
  ADD COLUMN root_path             text NOT NULL DEFAULT '',
  ADD COLUMN provider_account      text NOT NULL DEFAULT '',
  ADD COLUMN sync_interval_seconds bigint NOT NULL DEFAULT 0 CHECK (sync_interval_seconds >= 0),
  ADD COLUMN enabled               boolean NOT NULL DEFAULT true,
  -- External location (endpoint, bucket, region, access_key_id); never the secret.
  ADD COLUMN config                jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- The secret access key sealed with the server's secrets key (storage/secrets.ts).
  ADD COLUMN secret_sealed         text NOT NULL DEFAULT '',
  ADD COLUMN last_sync_at          bigint NOT NULL DEFAULT 0,
  ADD COLUMN last_success_at       bigint NOT NULL DEFAULT 0,
  ADD COLUMN last_error            text NOT NULL DEFAULT '',
  -- When the next scheduled discovery is due (sync_interval_seconds > 0).
  ADD COLUMN next_sync_at          bigint NOT NULL DEFAULT 0;
CREATE INDEX sources_due_idx ON sources (next_sync_at) WHERE enabled AND sync_interval_seconds > 0;

-- What the last discoveries of an external source found: one row per object, in key order.
-- (The internal source's checkpoint is the object catalog itself.)
CREATE TABLE source_objects (
  source_id    text NOT NULL REFERENCES sources (source_id) ON DELETE CASCADE,
  object_key   text COLLATE "C" NOT NULL,
  size         bigint NOT NULL CHECK (size >= 0),
  etag         text NOT NULL DEFAULT '',
  content_type text NOT NULL DEFAULT '',
  -- The version jobs are made for: the etag, or the modification time in ns.
  version      text NOT NULL DEFAULT '',
  updated_at   bigint NOT NULL,
  PRIMARY KEY (source_id, object_key)
);

-- A discovery is a durable job of its own: claimed with a lease, resumed after its last
-- committed key, at most one pending or running per source.
CREATE TABLE discoveries (
  discovery_id     text PRIMARY KEY,
  org              text NOT NULL,
  bucket           text NOT NULL,
  source_id        text NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  full_sync        boolean NOT NULL DEFAULT false,
  rule_id          text NOT NULL DEFAULT '',
  -- Every key up to this one is done ('' before the first batch).
  checkpoint_key   text COLLATE "C" NOT NULL DEFAULT '',
  scanned          bigint NOT NULL DEFAULT 0,
  new_objects      bigint NOT NULL DEFAULT 0,
  modified         bigint NOT NULL DEFAULT 0,
  unchanged        bigint NOT NULL DEFAULT 0,
  deleted          bigint NOT NULL DEFAULT 0,
  failed           bigint NOT NULL DEFAULT 0,
  dispatched       bigint NOT NULL DEFAULT 0,
  attempts         integer NOT NULL DEFAULT 0,
  lease_owner      text,
  lease_expires_at bigint,
  error            text NOT NULL DEFAULT '',
  created_at       bigint NOT NULL,
  started_at       bigint NOT NULL DEFAULT 0,
  finished_at      bigint NOT NULL DEFAULT 0,
  CONSTRAINT discoveries_lease_iff_running CHECK ((state = 'running') = (lease_owner IS NOT NULL))
);
CREATE UNIQUE INDEX discoveries_one_active ON discoveries (source_id) WHERE state IN ('pending', 'running');
CREATE INDEX discoveries_source_idx ON discoveries (source_id, created_at DESC, discovery_id DESC);

ALTER TABLE jobs
  ADD COLUMN source_id      text NOT NULL DEFAULT '',
  ADD COLUMN object_version text NOT NULL DEFAULT '',
  ADD COLUMN retry_of       text NOT NULL DEFAULT '';
CREATE INDEX jobs_source_idx ON jobs (org, bucket, source_id, created_at DESC, job_id DESC);

-- Exact counts gain the source dimension (ListIngestJobs?source_id=…, GetSyncStatus).
ALTER TABLE job_counts ADD COLUMN source_id text NOT NULL DEFAULT '';
ALTER TABLE job_counts DROP CONSTRAINT job_counts_pkey;
ALTER TABLE job_counts ADD PRIMARY KEY (org, bucket, status, pipeline_id, rule_id, source_id);
ALTER TABLE job_count_deltas ADD COLUMN source_id text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION k3_job_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, source_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, source_id, count(*) FROM new_rows
  GROUP BY org, bucket, status, pipeline_id, rule_id, source_id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION k3_job_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, source_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, source_id, sum(n) FROM (
    SELECT org, bucket, status, pipeline_id, rule_id, source_id, -1 AS n FROM old_rows
    UNION ALL
    SELECT org, bucket, status, pipeline_id, rule_id, source_id, 1 AS n FROM new_rows
  ) AS d
  GROUP BY org, bucket, status, pipeline_id, rule_id, source_id
  HAVING sum(n) <> 0;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION k3_job_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count_deltas (org, bucket, status, pipeline_id, rule_id, source_id, n)
  SELECT org, bucket, status, pipeline_id, rule_id, source_id, -count(*) FROM old_rows
  GROUP BY org, bucket, status, pipeline_id, rule_id, source_id;
  RETURN NULL;
END $$;
