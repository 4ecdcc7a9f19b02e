/**
 * Jobs as the API reads and creates them: inserts (group-committed), lookups, listings,
 * cancels, and the counts and retention the server keeps. What workers do to a job —
 * claim, lease, end — is the queue's (queue.ts).
 */
import type { Pool, QueryResultRow } from "pg";
import type { Job, JobFilter, NewJob, Scope } from "../../domain/job";
import type { Page, PageParams } from "../repository";
import { DomainError } from "../../domain/errors";
import { isConnectionError } from "./pg-errors";
import * as SQL from "./sql";
import { PgDb, type ListSpec } from "./db";
import { insertedJobs, jobInsertParams, num, toJob } from "./rows";
import { Batcher, type Pending } from "./batcher";

type Inserted = { job: Job; created: boolean };

export class JobStore extends PgDb {
  /** Concurrent inserts share one statement and one commit (at most 512 jobs, 2 statements in flight). */
  private readonly inserts = new Batcher<NewJob, Inserted>((batch) => this.insertBatch(batch), { maxBatch: 512, maxInFlight: 2 });

  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  /**
   * Inserts the job, or answers the existing one with the same (bucket, requestId). Each
   * caller is answered after the commit that holds its row.
   */
  jobInsert(job: NewJob): Promise<Inserted> {
    return this.inserts.add(job);
  }

  private async insertBatch(batch: Array<Pending<NewJob, Inserted>>): Promise<void> {
    let rows: QueryResultRow[];
    try {
      rows = await this.q(SQL.JOB_INSERT_BATCH, jobInsertParams(batch.map((p) => p.item)));
    } catch (err) {
      // One bad row must not fail its neighbours: retry each alone, unless the database is gone.
      if (batch.length > 1 && !isConnectionError(err) && !(err instanceof DomainError && err.kind === "unavailable")) {
        await Promise.all(batch.map((p) => this.insertBatch([p])));
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    const inserted = insertedJobs(batch.map((p) => p.item), rows as Array<{ job_id: string; source_id: string }>);
    for (const p of batch) {
      const job = inserted.get(p.item.jobId);
      if (job) {
        p.resolve({ job, created: true });
        continue;
      }
      // Lost the request_id race (in this batch or to an earlier one): answer with the winner.
      this.jobGetByRequestId(p.item, p.item.requestId).then(
        (existing) =>
          existing ? p.resolve({ job: existing, created: false }) : p.reject(new Error("job insert conflicted but no job holds the request_id")),
        p.reject,
      );
    }
  }

  async jobGetById(scope: Scope, jobId: string): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_GET_BY_ID, [scope.org, scope.bucket, jobId], scope.signal);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async jobGetByRequestId(scope: Scope, requestId: string): Promise<Job | undefined> {
    const rows = await this.q(SQL.JOB_GET_BY_REQUEST_ID, [scope.org, scope.bucket, requestId], scope.signal);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  jobList(filter: JobFilter, page: PageParams): Promise<Page<Job>> {
    return this.keysetPage(listSpec(filter), page, toJob);
  }

  /**
   * Listings of jobs under several filters read at one moment: a watch's snapshot of the
   * pending and the running jobs (read apart, a job claimed between the reads was in both).
   */
  jobListsTogether(filters: JobFilter[], page: PageParams): Promise<Array<Page<Job>>> {
    return this.readTogether(async (read) => {
      const pages: Array<Page<Job>> = [];
      for (const f of filters) pages.push(await this.keysetRead(read, listSpec(f), page, toJob));
      return pages;
    }, page.signal);
  }

  /**
   * Cancels a PENDING job at once, or flags a PROCESSING one for its worker. Returns the
   * job after the change (changed = true), the unchanged job when it is already terminal
   * (changed = false), or undefined when it does not exist.
   */
  async jobCancel(scope: Scope, jobId: string, nowMs: number): Promise<{ job: Job; changed: boolean } | undefined> {
    const rows = await this.q(SQL.JOB_CANCEL, [scope.org, scope.bucket, jobId, nowMs], scope.signal);
    if (rows[0]) {
      const job = toJob(rows[0]);
      // Tell the owning worker at once; the heartbeat would find out within a third of a lease.
      if (job.status === "processing") await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CANCEL, job.jobId]);
      return { job, changed: true };
    }
    const job = await this.jobGetById(scope, jobId);
    return job && { job, changed: false };
  }

  /** Which of these jobs wrote their object's live output for their pipeline. */
  async jobsWithCurrentOutput(scope: Scope, jobs: readonly Job[]): Promise<Set<string>> {
    if (jobs.length === 0) return new Set();
    const rows = await this.q(SQL.JOBS_WITH_CURRENT_OUTPUT, [scope.org, scope.bucket, jobs.map((j) => j.pipelineId), jobs.map((j) => j.key), jobs.map((j) => j.jobId)], scope.signal);
    return new Set(rows.map((r) => r.job_id as string));
  }

  /** An organization's jobs by status across its buckets, from the maintained counters. */
  async jobCountsByStatus(org: string): Promise<Record<string, number>> {
    const rows = await this.q(
      `SELECT status, sum(n)::bigint AS n FROM (SELECT status, n FROM job_counts WHERE org = $1 UNION ALL SELECT status, n FROM job_count_deltas WHERE org = $1) AS c GROUP BY status`,
      [org],
    );
    return Object.fromEntries(rows.map((r) => [r.status as string, Number(r.n)]));
  }

  /** created_at of an organization's oldest PENDING job (a walk of the pending index). */
  async oldestPendingCreatedAt(org: string): Promise<number | undefined> {
    const rows = await this.q("SELECT created_at FROM jobs WHERE status = 'pending' AND org = $1 ORDER BY created_at, job_id LIMIT 1", [org]);
    return rows[0] ? num(rows[0].created_at) : undefined;
  }

  /** Deletes up to `limit` jobs that finished before `before`; returns how many. */
  async jobPruneFinished(before: number, limit: number): Promise<number> {
    return this.exec(SQL.JOB_PRUNE, [before, limit]);
  }

  /** Folds count deltas into job_counts; false when another process is compacting. */
  jobCountsCompact(): Promise<boolean> {
    return this.foldDeltas(SQL.JOB_COUNTS_LOCK, SQL.JOB_COUNTS_COMPACT);
  }
}

/** A job listing's keyset spec: equality filters, counts from the counters, and the key prefix when asked for. */
function listSpec(filter: JobFilter): ListSpec {
  return {
    select: SQL.JOB_COLUMNS,
    from: "jobs",
    countFromCounters: true,
    alias: "",
    idColumn: "job_id",
    filters: [
      ["org", filter.org],
      ["bucket", filter.bucket],
      ["status", filter.status],
      ["pipeline_id", filter.pipelineId],
      ["rule_id", filter.ruleId],
      ["source_id", filter.sourceId],
    ],
    ...(filter.keyPrefix ? { prefix: ["object_key", filter.keyPrefix] as [string, string] } : {}),
  };
}
