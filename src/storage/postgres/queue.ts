/**
 * The worker's side of jobs: claims, leases, heartbeats, progress, and the end of an
 * attempt. Every write is fenced by the attempt (its thread id), so a run that lost its
 * lease changes nothing; times come from the database clock.
 */
import type { Pool, QueryResultRow } from "pg";
import type { Job, JobCounters, JobProgress, RunOutcome } from "../../domain/job";
import * as SQL from "./queue-sql";
import { CHANNEL_JOBS } from "./sql";
import { PgDb, ROLLBACK_ONLY } from "./db";
import { ATTEMPT_ENDED, ATTEMPT_OUTPUT, batchCount, outputBatches, outputCounters } from "./destinations";
import { jobFromJson, toJob } from "./rows";
import { Batcher } from "./batcher";

/** An attempt that ended without output, to be written with others. */
export interface Completion {
  jobId: string;
  threadId: string;
  outcome: RunOutcome;
}

export class JobQueue extends PgDb {
  /**
   * Output-less ends share one statement: a burst of short jobs costs a few round trips
   * instead of a transaction each (at most 500 per statement, 2 statements in flight).
   */
  private readonly completions = new Batcher<Completion, boolean>(
    async (batch) => {
      const done = await this.jobCompleteMany({ items: batch.map((p) => p.item) });
      for (const p of batch) p.resolve(done.has(p.item.jobId));
    },
    { maxBatch: 500, maxInFlight: 2 },
  );

  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  /** Claims up to `limit` runnable jobs, oldest first, leased to `owner` for `leaseMs`; each gets a new attempt (thread id). */
  async jobClaimAvailable(p: { owner: string; limit: number; leaseMs: number }): Promise<Job[]> {
    const rows = await this.q(SQL.JOB_CLAIM, [p.owner, p.limit, p.leaseMs]);
    return rows.map(toJob).sort((a, b) => a.createdAt - b.createdAt || (a.jobId < b.jobId ? -1 : 1));
  }

  /** Extends the leases of the given attempts; those missing from the answer are gone (taken away or ended). */
  async jobHeartbeat(p: { threadIds: string[]; leaseMs: number }): Promise<Array<{ jobId: string; threadId: string; cancelRequested: boolean }>> {
    const rows = await this.q(SQL.JOB_HEARTBEAT, [p.threadIds, p.leaseMs]);
    return rows.map((r) => ({ jobId: r.job_id as string, threadId: r.thread_id as string, cancelRequested: r.cancel_requested as boolean }));
  }

  /** Publishes progress counters of a running attempt; false when the attempt is gone. */
  async jobRecordProgress(p: { jobId: string; threadId: string; counters: Pick<JobCounters, "chunksCreated" | "embeddingsCreated">; progress?: JobProgress }): Promise<boolean> {
    const s = p.progress ?? { stage: "", done: 0, total: 0, unit: "" };
    const changed = await this.exec(SQL.JOB_PROGRESS, [p.jobId, p.threadId, p.counters.chunksCreated, p.counters.embeddingsCreated, s.stage, s.done, s.total, s.unit]);
    return changed > 0;
  }

  /**
   * Writes the attempt's output to its destination (replacing the object's previous
   * output) and ends the job, in one transaction, one object at a time (k3_attempt_output:
   * one call for an output of one batch, otherwise one per batch in a transaction). When
   * the current output came from a newer version of the object (`sourceVersion`), the job
   * completes as superseded and writes nothing. Undefined when the attempt is gone or a
   * cancel was requested: then nothing is written. `signal` (the run's) cancels the write
   * when the run is aborted: a shutdown handing the job back must not wait for a write
   * stuck behind the object's lock.
   */
  async jobComplete(p: { job: Job; outcome: RunOutcome; sourceVersion: bigint; signal?: AbortSignal }): Promise<Job | undefined> {
    const { job, outcome: o } = p;
    if (o.output.kind === "none") {
      const rows = await this.q(SQL.JOB_COMPLETE, [job.jobId, job.threadId, o.status, o.chunksCreated, o.embeddingsCreated, 0, 0, 0, 0, o.vectorStatus, o.error, o.errorDetails]);
      return rows[0] ? toJob(rows[0]) : undefined;
    }
    const output = o.output;
    const w = outputCounters(output);
    const count = batchCount(output);
    const head = [output.kind, job.org, job.bucket, job.pipelineId, job.key, job.jobId, job.threadId, p.sourceVersion.toString()];
    const end = [o.status, o.chunksCreated, o.embeddingsCreated, w.rowsWritten, w.outputSize, w.batchesReceived, w.embeddingsWritten, o.vectorStatus, o.error, o.errorDetails];
    const params = (i: number, batch: unknown[]) => [i === 0, i === count - 1, ...head, ...batch, ...end];
    // The object's lock is the object's, not the job row's, so heartbeats and cancels of
    // this job never wait for the write; the job row is locked only at the very end.
    const ended = (r: QueryResultRow) => (r.outcome === "done" ? jobFromJson(r.job_row) : undefined);
    try {
      if (count === 1) {
        const [batch] = outputBatches(output);
        return ended((await this.q(ATTEMPT_OUTPUT, params(0, batch), p.signal))[0]);
      }
      return await this.tx<Job | undefined>(async (client) => {
        let i = 0;
        for (const batch of outputBatches(output)) {
          p.signal?.throwIfAborted();
          const { rows } = await client.query(ATTEMPT_OUTPUT, params(i++, batch));
          if (rows[0].outcome !== "more") return ended(rows[0]) ?? ROLLBACK_ONLY;
        }
        throw new Error(`k3_attempt_output asked for more than the ${count} batches of job ${job.jobId}`);
      }, undefined, p.signal);
    } catch (err) {
      // Cancelled or taken away while writing: the transaction is undone, nothing stays.
      if ((err as { code?: unknown } | undefined)?.code === ATTEMPT_ENDED) return undefined;
      throw err;
    }
  }

  /** Ends an output-less attempt together with others ending now; false when it was gone or cancelled. */
  jobCompleteWithoutOutput(c: Completion): Promise<boolean> {
    return this.completions.add(c);
  }

  /**
   * Ends many attempts that produced no output (kind "none") in one statement; returns the
   * ids it ended. One missing from the answer is gone or was cancelled.
   */
  async jobCompleteMany(p: { items: Completion[] }): Promise<Set<string>> {
    const col = <T>(f: (o: RunOutcome) => T) => p.items.map((i) => f(i.outcome));
    const rows = await this.q(SQL.JOB_COMPLETE_MANY, [
      p.items.map((i) => i.jobId),
      p.items.map((i) => i.threadId),
      col((o) => o.status),
      col((o) => o.chunksCreated),
      col((o) => o.embeddingsCreated),
      col((o) => o.vectorStatus),
      col((o) => o.error),
      col((o) => o.errorDetails),
    ]);
    return new Set(rows.map((r) => r.job_id as string));
  }

  /** Ends a failed attempt: PENDING again in `retryDelayMs` when given, otherwise FAILED (CANCELLED if asked meanwhile). */
  async jobFailAttempt(p: { jobId: string; threadId: string; error: string; errorDetails: string; retryDelayMs?: number; permanent?: boolean }): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_FAIL_ATTEMPT, [p.jobId, p.threadId, p.error, p.errorDetails, p.retryDelayMs ?? 0, p.permanent ?? false]);
    if (rows[0]?.status === "pending") await this.q("SELECT pg_notify($1, '')", [CHANNEL_JOBS]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  /** Ends a running attempt as CANCELLED after its worker stopped it on request. */
  async jobCancelRunning(p: { jobId: string; threadId: string }): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_CANCEL_RUNNING, [p.jobId, p.threadId]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  /** Hands running attempts back to PENDING (shutdown); the interrupted attempt does not count. */
  async jobRelease(p: { threadIds: string[] }): Promise<number> {
    if (p.threadIds.length === 0) return 0;
    const released = await this.exec(SQL.JOB_RELEASE, [p.threadIds]);
    if (released > 0) await this.q("SELECT pg_notify($1, '')", [CHANNEL_JOBS]);
    return released;
  }

  /** Returns jobs with expired leases to PENDING (or FAILED/CANCELLED). */
  async jobRescueExpired(p: { maxAttempts: number; maxLostAttempts: number }): Promise<Array<{ jobId: string; status: string }>> {
    const rows = await this.q(SQL.JOB_RESCUE, [p.maxAttempts, p.maxLostAttempts]);
    if (rows.some((r) => r.status === "pending")) await this.q("SELECT pg_notify($1, '')", [CHANNEL_JOBS]);
    return rows.map((r) => ({ jobId: r.job_id as string, status: r.status as string }));
  }
}
