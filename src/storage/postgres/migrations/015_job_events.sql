-- Push instead of poll: every change of a job that a client can see (creation, status,
-- counters, progress, error) appends an event, in the transaction that made the change,
-- so watchers on any instance and the webhook outbox see exactly what committed.
--
-- Row triggers (below) keep the cost low. No NOTIFY: it would
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

-- Appends the event of one job change (an insert, or an update that changed what a client
-- sees: not a lease renewal) and the webhook deliveries it owes. A row trigger with a WHEN
-- condition: unchanged rows never call the function, and each call is one small insert
-- (measured: a statement trigger joining the transition tables made the worker 4× slower).
CREATE FUNCTION k3_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ev bigint;
BEGIN
  INSERT INTO job_events (org, bucket, job_id, status, at) VALUES (NEW.org, NEW.bucket, NEW.job_id, NEW.status, NEW.updated_at)
  RETURNING seq INTO ev;
  INSERT INTO webhook_deliveries (webhook_id, org, bucket, job_id, event_seq, event_type, job, next_at, created_at)
  SELECT w.webhook_id, NEW.org, NEW.bucket, NEW.job_id, ev,
         CASE WHEN TG_OP = 'UPDATE' AND NEW.status IN ('completed', 'failed', 'partial', 'cancelled') AND ('ingest.job.' || NEW.status) = ANY (w.events)
              THEN 'ingest.job.' || NEW.status ELSE 'ingest.job.changed' END,
         to_jsonb(NEW), NEW.updated_at, NEW.updated_at
  FROM webhooks w
  WHERE w.org = NEW.org AND w.bucket = NEW.bucket
    AND ('ingest.job.changed' = ANY (w.events)
         OR (TG_OP = 'UPDATE' AND NEW.status IN ('completed', 'failed', 'partial', 'cancelled') AND ('ingest.job.' || NEW.status) = ANY (w.events)));
  IF FOUND THEN
    -- Identical notifications of one transaction are folded into one.
    PERFORM pg_notify('k3_webhooks', '');
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_events_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION k3_job_event();
CREATE TRIGGER jobs_events_update AFTER UPDATE ON jobs FOR EACH ROW
  WHEN ((NEW.status, NEW.chunks_created, NEW.embeddings_created, NEW.rows_written, NEW.error, NEW.stage, NEW.stage_done, NEW.attempts, NEW.cancel_requested)
        IS DISTINCT FROM
        (OLD.status, OLD.chunks_created, OLD.embeddings_created, OLD.rows_written, OLD.error, OLD.stage, OLD.stage_done, OLD.attempts, OLD.cancel_requested))
  EXECUTE FUNCTION k3_job_event();
