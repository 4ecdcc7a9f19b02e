-- Pipelines, rules and jobs. Times are Unix epoch milliseconds (bigint). Every row belongs
-- to an organization; the API never reads or writes across organizations.

CREATE TABLE pipelines (
  pipeline_id       text PRIMARY KEY,
  org               text NOT NULL,
  bucket            text NOT NULL,
  name              text NOT NULL,
  description       text NOT NULL DEFAULT '',
  template          text NOT NULL,
  options           jsonb NOT NULL DEFAULT '{}'::jsonb,
  store_entity_id   text NOT NULL DEFAULT '',
  store_entity_kind text NOT NULL DEFAULT '' CHECK (store_entity_kind IN ('', 'vector', 'warehouse')),
  created_at        bigint NOT NULL,
  updated_at        bigint NOT NULL,
  CONSTRAINT pipelines_bucket_name_key UNIQUE (org, bucket, name)
);
CREATE INDEX pipelines_bucket_created_idx ON pipelines (org, bucket, created_at DESC, pipeline_id DESC);

CREATE TABLE rules (
  rule_id            text PRIMARY KEY,
  org                text NOT NULL,
  bucket             text NOT NULL,
  source_id          text NOT NULL DEFAULT '',
  pipeline_id        text NOT NULL,
  name               text NOT NULL,
  description        text NOT NULL DEFAULT '',
  include_patterns   text[] NOT NULL DEFAULT '{}',
  exclude_patterns   text[] NOT NULL DEFAULT '{}',
  include_mime_types text[] NOT NULL DEFAULT '{}',
  exclude_mime_types text[] NOT NULL DEFAULT '{}',
  min_size_bytes     bigint NOT NULL DEFAULT 0 CHECK (min_size_bytes >= 0),
  max_size_bytes     bigint NOT NULL DEFAULT 0 CHECK (max_size_bytes >= 0),
  enabled            boolean NOT NULL DEFAULT true,
  priority           integer NOT NULL DEFAULT 0,
  created_at         bigint NOT NULL,
  updated_at         bigint NOT NULL,
  CONSTRAINT rules_size_range CHECK (max_size_bytes = 0 OR max_size_bytes >= min_size_bytes)
);
CREATE INDEX rules_bucket_created_idx ON rules (org, bucket, created_at DESC, rule_id DESC);
CREATE INDEX rules_pipeline_idx ON rules (pipeline_id);

CREATE TABLE jobs (
  job_id             text PRIMARY KEY,
  org                text NOT NULL,
  bucket             text NOT NULL,
  object_key         text NOT NULL,
  status             text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'partial', 'cancelled')),
  pipeline_id        text NOT NULL,
  pipeline_name      text NOT NULL DEFAULT '',
  pipeline_kind      text NOT NULL DEFAULT '',
  template           text NOT NULL DEFAULT '',
  rule_id            text NOT NULL DEFAULT '',
  options            jsonb NOT NULL DEFAULT '{}'::jsonb,
  request_id         text NOT NULL DEFAULT '',
  -- The x-request-id of the TriggerIngest call, carried into the job's log lines.
  trace_id           text NOT NULL DEFAULT '',
  chunks_created     integer NOT NULL DEFAULT 0,
  embeddings_created integer NOT NULL DEFAULT 0,
  rows_written       integer NOT NULL DEFAULT 0,
  output_size        integer NOT NULL DEFAULT 0,
  batches_received   integer NOT NULL DEFAULT 0,
  embeddings_written integer NOT NULL DEFAULT 0,
  thread_id          text NOT NULL DEFAULT '',
  vector_status      text NOT NULL DEFAULT '',
  error              text NOT NULL DEFAULT '',
  error_details      text NOT NULL DEFAULT '',
  attempts           integer NOT NULL DEFAULT 0,
  cancel_requested   boolean NOT NULL DEFAULT false,
  lease_owner        text,
  lease_expires_at   bigint,
  run_after          bigint NOT NULL DEFAULT 0,
  created_at         bigint NOT NULL,
  updated_at         bigint NOT NULL,
  started_at         bigint NOT NULL DEFAULT 0,
  finished_at        bigint NOT NULL DEFAULT 0,
  -- A PROCESSING job always has a lease; no other state holds one.
  CONSTRAINT jobs_lease_iff_processing CHECK ((status = 'processing') = (lease_owner IS NOT NULL)),
  -- Terminal jobs carry their finish time.
  CONSTRAINT jobs_finished_iff_terminal
    CHECK ((status IN ('completed', 'failed', 'partial', 'cancelled')) = (finished_at > 0))
);

-- Listing: every filter combination is an index prefix followed by the sort key.
CREATE INDEX jobs_bucket_idx          ON jobs (org, bucket, created_at DESC, job_id DESC);
CREATE INDEX jobs_status_idx          ON jobs (org, bucket, status, created_at DESC, job_id DESC);
CREATE INDEX jobs_pipeline_idx        ON jobs (org, bucket, pipeline_id, created_at DESC, job_id DESC);
CREATE INDEX jobs_rule_idx            ON jobs (org, bucket, rule_id, created_at DESC, job_id DESC) WHERE rule_id <> '';
CREATE INDEX jobs_status_pipeline_idx ON jobs (org, bucket, status, pipeline_id, created_at DESC, job_id DESC);
CREATE INDEX jobs_status_rule_idx     ON jobs (org, bucket, status, rule_id, created_at DESC, job_id DESC) WHERE rule_id <> '';
CREATE INDEX jobs_pipeline_rule_idx   ON jobs (org, bucket, pipeline_id, rule_id, created_at DESC, job_id DESC) WHERE rule_id <> '';
-- Idempotent triggers: one job per (org, bucket, request_id).
CREATE UNIQUE INDEX jobs_request_id_key ON jobs (org, bucket, request_id) WHERE request_id <> '';
-- Workers claim the oldest runnable job first.
CREATE INDEX jobs_pending_idx ON jobs (created_at, job_id) WHERE status = 'pending';
-- The rescuer finds expired leases.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'processing';
