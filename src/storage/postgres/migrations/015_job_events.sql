-- Push instead of poll: every change of a job that a client can see (creation, status,
-- counters, progress, error) appends an event, in the transaction that made the change,
-- so watchers on any instance and the webhook outbox see exactly what committed.
--
-- Statement-level triggers (one INSERT … SELECT per statement, however many jobs it
-- touched) keep the cost low: a claim of 32 jobs is one event insert. No NOTIFY: it would
-- serialise the commits of every job transaction (measured: single-row job inserts at half
-- the rate); a process with watchers reads new events every 25 ms instead. Only a change
-- that owes webhook deliveries NOTIFYs (k3_webhooks), and only buckets with subscriptions
-- owe any.

-- What a running job is doing, written with its progress counters at a bounded rate.
ALTER TABLE jobs
  ADD COLUMN stage text NOT NULL DEFAULT '',
  ADD COLUMN stage_done integer NOT NULL DEFAULT 0,
  ADD COLUMN stage_total integer NOT NULL DEFAULT 0,
  ADD COLUMN stage_unit text NOT NULL DEFAULT '';

CREATE TABLE job_events (
  seq    bigserial PRIMARY KEY,
  org    text NOT NULL,
  bucket text NOT NULL,
  job_id text NOT NULL,
  status text NOT NULL,
  at     bigint NOT NULL
);

-- Events up to `upto` were pruned by retention: a resume point below it is refused.
CREATE TABLE job_events_pruned (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  upto bigint NOT NULL
);
INSERT INTO job_events_pruned (upto) VALUES (0);

-- Webhook subscriptions of a bucket, and their durable outbox: a delivery row is written in
-- the transaction of the job change it reports, so no committed change is missed by a crash.
CREATE TABLE webhooks (
  webhook_id  text PRIMARY KEY,
  org         text NOT NULL,
  bucket      text NOT NULL,
  url         text NOT NULL,
  events      text[] NOT NULL,
  description text NOT NULL DEFAULT '',
  -- The signing secret (base64 of the key bytes), sealed with the server's secret box.
  secret      bytea NOT NULL,
  created_at  bigint NOT NULL
);
CREATE INDEX webhooks_bucket_idx ON webhooks (org, bucket);

CREATE TABLE webhook_deliveries (
  delivery_id   bigserial PRIMARY KEY,
  webhook_id    text NOT NULL REFERENCES webhooks ON DELETE CASCADE,
  org           text NOT NULL,
  bucket        text NOT NULL,
  job_id        text NOT NULL,
  event_seq     bigint NOT NULL,
  event_type    text NOT NULL,
  -- The job as it was when the event happened (the jobs row as JSON).
  job           jsonb NOT NULL,
  state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts      integer NOT NULL DEFAULT 0,
  next_at       bigint NOT NULL,
  lease_until   bigint NOT NULL DEFAULT 0,
  created_at    bigint NOT NULL,
  delivered_at  bigint NOT NULL DEFAULT 0
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_list_idx ON webhook_deliveries (webhook_id, delivery_id DESC);

CREATE TABLE webhook_attempts (
  delivery_id bigint NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
  at          bigint NOT NULL,
  status_code integer NOT NULL,
  error       text NOT NULL,
  duration_ms integer NOT NULL
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, at);

-- Appends an event per inserted job, or per updated job whose visible state changed (not a
-- lease renewal), and the webhook deliveries they owe; then announces the range.
CREATE FUNCTION k3_job_events_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE owed bigint;
BEGIN
  IF TG_OP = 'INSERT' THEN
    WITH ins AS (
      INSERT INTO job_events (org, bucket, job_id, status, at)
      SELECT org, bucket, job_id, status, updated_at FROM new_rows ORDER BY job_id
      RETURNING seq, org, bucket, job_id, status
    ), hooks AS (
      INSERT INTO webhook_deliveries (webhook_id, org, bucket, job_id, event_seq, event_type, job, next_at, created_at)
      SELECT w.webhook_id, i.org, i.bucket, i.job_id, i.seq, 'ingest.job.changed', to_jsonb(n), n.updated_at, n.updated_at
      FROM ins i JOIN new_rows n ON n.job_id = i.job_id
      JOIN webhooks w ON w.org = i.org AND w.bucket = i.bucket AND 'ingest.job.changed' = ANY (w.events)
      RETURNING 1
    )
    SELECT count(*) INTO owed FROM hooks;
  ELSE
    WITH changed AS (
      SELECT n.* FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id
      WHERE (n.status, n.chunks_created, n.embeddings_created, n.rows_written, n.error, n.stage, n.stage_done, n.attempts, n.cancel_requested)
            IS DISTINCT FROM
            (o.status, o.chunks_created, o.embeddings_created, o.rows_written, o.error, o.stage, o.stage_done, o.attempts, o.cancel_requested)
    ), ins AS (
      INSERT INTO job_events (org, bucket, job_id, status, at)
      SELECT org, bucket, job_id, status, updated_at FROM changed ORDER BY job_id
      RETURNING seq, org, bucket, job_id, status
    ), hooks AS (
      INSERT INTO webhook_deliveries (webhook_id, org, bucket, job_id, event_seq, event_type, job, next_at, created_at)
      SELECT w.webhook_id, i.org, i.bucket, i.job_id, i.seq,
             CASE WHEN i.status IN ('completed', 'failed', 'partial', 'cancelled') AND ('ingest.job.' || i.status) = ANY (w.events)
                  THEN 'ingest.job.' || i.status ELSE 'ingest.job.changed' END,
             to_jsonb(c), c.updated_at, c.updated_at
      FROM ins i JOIN changed c ON c.job_id = i.job_id
      JOIN webhooks w ON w.org = i.org AND w.bucket = i.bucket
      WHERE 'ingest.job.changed' = ANY (w.events)
         OR (i.status IN ('completed', 'failed', 'partial', 'cancelled') AND ('ingest.job.' || i.status) = ANY (w.events))
      RETURNING 1
    )
    SELECT count(*) INTO owed FROM hooks;
  END IF;
  IF owed > 0 THEN
    PERFORM pg_notify('k3_webhooks', '');
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_events_insert AFTER INSERT ON jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_job_events_append();
CREATE TRIGGER jobs_events_update AFTER UPDATE ON jobs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION k3_job_events_append();
