/**
 * Job events (migration 015) and the webhook outbox. Events are appended by triggers on
 * the jobs table in the transaction of each change; here they are read back — as they
 * commit (the hub's poll), after a resume point, or pruned — always
 * joined to the job's current row, so a reader sees each job as it is now. Webhook
 * subscriptions, their deliveries (claimed with leases, so several instances deliver each
 * once) and the attempt log live here too. Shares the repository's pool.
 */
import type { Pool, QueryResultRow } from "pg";
import type { Job, Scope } from "../../domain/job";
import { PgDb } from "./db";
import { jobFromJson, num, toJob } from "./rows";
import { JOB_COLUMNS } from "./sql";

/** The NOTIFY channel the triggers use when a change owes webhook deliveries. */
export const CHANNEL_WEBHOOKS = "k3_webhooks";

/** One event: its number and the job as it is now (with whether its output is the live one). */
export interface JobEvent {
  seq: number;
  job: Job;
  outputCurrent: boolean;
}

export interface WebhookRow {
  webhookId: string;
  org: string;
  bucket: string;
  url: string;
  events: string[];
  description: string;
  createdAt: number;
  /** The sealed signing secret. */
  secret: Buffer;
}

/** A delivery claimed for one POST. */
export interface ClaimedDelivery {
  deliveryId: number;
  webhookId: string;
  url: string;
  secret: Buffer;
  eventType: string;
  eventSeq: number;
  job: Job;
  attempts: number;
  createdAt: number;
  /** Whether the job's output is its object's live output now. */
  outputCurrent: boolean;
}

export interface DeliveryRow {
  deliveryId: number;
  eventType: string;
  jobId: string;
  state: string;
  attempts: number;
  createdAt: number;
  nextAt: number;
  deliveredAt: number;
  log: Array<{ at: number; statusCode: number; error: string; durationMs: number }>;
}

const J = JOB_COLUMNS.split(",").map((c) => `j.${c.trim()}`).join(", ");
const CURRENT = `EXISTS (SELECT 1 FROM object_outputs o WHERE o.org = j.org AND o.bucket = j.bucket AND o.pipeline_id = j.pipeline_id
  AND o.object_key = j.object_key COLLATE "default" AND o.job_id = j.job_id) AS output_current`;

const toEvent = (r: QueryResultRow): JobEvent => ({ seq: num(r.seq), job: toJob(r), outputCurrent: r.output_current === true });

export class EventStore extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  /** The numbers and buckets of up to `limit` events after `after`, and of those among `holes` that are visible now. */
  async newer(after: number, holes: number[], limit: number): Promise<Array<{ seq: number; org: string; bucket: string }>> {
    const rows = await this.q(
      `(SELECT seq, org, bucket FROM job_events WHERE seq > $1 ORDER BY seq LIMIT $3)
       UNION ALL (SELECT seq, org, bucket FROM job_events WHERE seq = ANY($2::bigint[]) AND seq <= $1)
       ORDER BY seq`,
      [after, holes, limit],
    );
    return rows.map((r) => ({ seq: num(r.seq), org: r.org, bucket: r.bucket }));
  }

  /** The events of these numbers, of the given buckets, joined to their jobs. */
  async bySeq(seqs: number[], buckets: { orgs: string[]; names: string[] }): Promise<JobEvent[]> {
    const rows = await this.q(
      `SELECT e.seq, ${J}, ${CURRENT} FROM job_events e JOIN jobs j ON j.job_id = e.job_id
       WHERE e.seq = ANY($1::bigint[]) AND (e.org, e.bucket) IN (SELECT * FROM unnest($2::text[], $3::text[]))
       ORDER BY e.seq`,
      [seqs, buckets.orgs, buckets.names],
    );
    return rows.map(toEvent);
  }

  /** Up to `limit` events of a bucket (or of one job) after `after`, oldest first. */
  async after(scope: Scope, after: number, limit: number, jobId?: string): Promise<JobEvent[]> {
    const rows = await this.q(
      `SELECT e.seq, ${J}, ${CURRENT} FROM job_events e JOIN jobs j ON j.job_id = e.job_id
       WHERE e.seq > $3 AND e.org = $1 AND e.bucket = $2 AND ($4::text IS NULL OR e.job_id = $4)
       ORDER BY e.seq LIMIT $5`,
      [scope.org, scope.bucket, after, jobId ?? null, limit],
      scope.signal,
    );
    return rows.map(toEvent);
  }

  /** The newest event number, and the number up to which events were pruned. */
  async bounds(): Promise<{ head: number; prunedUpTo: number }> {
    const rows = await this.q("SELECT (SELECT coalesce(max(seq), 0) FROM job_events) AS head, (SELECT upto FROM job_events_pruned) AS pruned");
    return { head: num(rows[0].head), prunedUpTo: num(rows[0].pruned) };
  }

  /** Deletes up to `limit` of the oldest events written before `before`; how many went. */
  async prune(before: number, limit: number): Promise<number> {
    const rows = await this.q(
      `WITH gone AS (
         DELETE FROM job_events WHERE seq IN (SELECT seq FROM job_events WHERE at < $1 ORDER BY seq LIMIT $2) RETURNING seq
       ), mark AS (
         UPDATE job_events_pruned SET upto = greatest(upto, (SELECT max(seq) FROM gone)) WHERE EXISTS (SELECT 1 FROM gone)
       )
       SELECT count(*) AS n FROM gone`,
      [before, limit],
    );
    return num(rows[0].n);
  }

  /** Deletes up to `limit` ended deliveries (and their attempt logs) created before `before`. */
  async pruneDeliveries(before: number, limit: number): Promise<number> {
    return this.exec(
      `DELETE FROM webhook_deliveries WHERE delivery_id IN (
         SELECT delivery_id FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1 ORDER BY delivery_id LIMIT $2)`,
      [before, limit],
    );
  }

  // ---- webhooks ----

  async webhookInsert(w: WebhookRow): Promise<void> {
    await this.q(
      "INSERT INTO webhooks (webhook_id, org, bucket, url, events, description, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      [w.webhookId, w.org, w.bucket, w.url, w.events, w.description, w.secret, w.createdAt],
    );
  }

  async webhookList(scope: Scope): Promise<WebhookRow[]> {
    const rows = await this.q("SELECT * FROM webhooks WHERE org = $1 AND bucket = $2 ORDER BY created_at, webhook_id", [scope.org, scope.bucket], scope.signal);
    return rows.map((r) => ({ webhookId: r.webhook_id, org: r.org, bucket: r.bucket, url: r.url, events: r.events, description: r.description, createdAt: num(r.created_at), secret: r.secret }));
  }

  async webhookCount(scope: Scope): Promise<number> {
    const rows = await this.q("SELECT count(*) AS n FROM webhooks WHERE org = $1 AND bucket = $2", [scope.org, scope.bucket], scope.signal);
    return num(rows[0].n);
  }

  /** Deletes a subscription (its deliveries and attempts go with it); false when there was none. */
  async webhookDelete(scope: Scope, webhookId: string): Promise<boolean> {
    return (await this.exec("DELETE FROM webhooks WHERE org = $1 AND bucket = $2 AND webhook_id = $3", [scope.org, scope.bucket, webhookId])) > 0;
  }

  /** A subscription's deliveries, newest first, after the delivery id `before` (0: from the newest). */
  async deliveries(scope: Scope, webhookId: string, before: number, limit: number): Promise<{ items: DeliveryRow[]; total: number }> {
    const { rows, total } = await this.rowsAndCount(
      [
        `SELECT d.delivery_id, d.event_type, d.job_id, d.state, d.attempts, d.created_at, d.next_at, d.delivered_at,
                coalesce((SELECT json_agg(json_build_object('at', a.at, 'statusCode', a.status_code, 'error', a.error, 'durationMs', a.duration_ms) ORDER BY a.at)
                          FROM webhook_attempts a WHERE a.delivery_id = d.delivery_id), '[]') AS log
         FROM webhook_deliveries d
         WHERE d.webhook_id = $1 AND d.org = $2 AND d.bucket = $3 AND ($4::bigint = 0 OR d.delivery_id < $4)
         ORDER BY d.delivery_id DESC LIMIT $5`,
        [webhookId, scope.org, scope.bucket, before, limit],
      ],
      ["SELECT count(*) AS n FROM webhook_deliveries WHERE webhook_id = $1 AND org = $2 AND bucket = $3", [webhookId, scope.org, scope.bucket]],
      scope.signal,
    );
    return {
      total,
      items: rows.map((r) => ({
        deliveryId: num(r.delivery_id),
        eventType: r.event_type,
        jobId: r.job_id,
        state: r.state,
        attempts: r.attempts,
        createdAt: num(r.created_at),
        nextAt: num(r.next_at),
        deliveredAt: num(r.delivered_at),
        log: (r.log as Array<{ at: unknown; statusCode: number; error: string; durationMs: number }>).map((a) => ({ ...a, at: num(a.at) })),
      })),
    };
  }

  /** Claims up to `limit` due deliveries for `leaseMs` (each claim counts an attempt). */
  async claimDeliveries(now: number, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    const rows = await this.q(
      `WITH due AS (
         SELECT delivery_id FROM webhook_deliveries
         WHERE state = 'pending' AND next_at <= $1 AND lease_until <= $1
         ORDER BY next_at, delivery_id LIMIT $2 FOR UPDATE SKIP LOCKED
       )
       UPDATE webhook_deliveries d SET lease_until = $1 + $3, attempts = d.attempts + 1
       FROM due, webhooks w WHERE d.delivery_id = due.delivery_id AND w.webhook_id = d.webhook_id
       RETURNING d.delivery_id, d.webhook_id, w.url, w.secret, d.event_type, d.event_seq, d.job, d.attempts, d.created_at,
         EXISTS (SELECT 1 FROM object_outputs o WHERE o.org = d.org AND o.bucket = d.bucket AND o.job_id = d.job_id
                 AND o.pipeline_id = d.job->>'pipeline_id' AND o.object_key = d.job->>'object_key') AS output_current`,
      [now, limit, leaseMs],
    );
    return rows.map((r) => ({
      deliveryId: num(r.delivery_id),
      webhookId: r.webhook_id,
      url: r.url,
      secret: r.secret,
      eventType: r.event_type,
      eventSeq: num(r.event_seq),
      job: jobFromJson(r.job),
      attempts: r.attempts,
      createdAt: num(r.created_at),
      outputCurrent: r.output_current === true,
    }));
  }

  /**
   * Records one attempt and the delivery's new state: delivered, failed for good, or due
   * again at `nextAt`. Only while this claim's lease holds (`attempts` is the claim's count).
   */
  async deliveryAttempted(p: { deliveryId: number; attempts: number; at: number; statusCode: number; error: string; durationMs: number; state: "delivered" | "failed" | "pending"; nextAt: number }): Promise<void> {
    await this.tx(async (client) => {
      const { rowCount } = await client.query(
        `UPDATE webhook_deliveries SET state = $3, next_at = $4, lease_until = 0, delivered_at = CASE WHEN $3 = 'delivered' THEN $5::bigint ELSE delivered_at END
         WHERE delivery_id = $1 AND attempts = $2 AND state = 'pending'`,
        [p.deliveryId, p.attempts, p.state, p.nextAt, p.at],
      );
      if (rowCount) {
        await client.query("INSERT INTO webhook_attempts (delivery_id, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)", [p.deliveryId, p.at, p.statusCode, p.error, p.durationMs]);
      }
      return undefined;
    }, undefined);
  }

  /** When the next pending delivery is due (undefined when none is). */
  async nextDeliveryAt(): Promise<number | undefined> {
    const rows = await this.q("SELECT min(greatest(next_at, lease_until)) AS at FROM webhook_deliveries WHERE state = 'pending'");
    return rows[0].at === null ? undefined : num(rows[0].at);
  }
}
