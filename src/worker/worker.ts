/**
 * The worker engine: PostgreSQL is the only coordinator, so any number of workers and
 * API instances can share one database.
 *
 * - Claim: one statement (`FOR UPDATE SKIP LOCKED`) takes up to as many PENDING jobs as
 *   there are free slots, oldest first, and leases them to this worker. Each claim is a
 *   new attempt with its own thread id, and every later write of the attempt (progress,
 *   heartbeat, output, end state) is fenced by that id, so a stale run — even this
 *   worker's own, after its lease expired and the job came back to it — can never write.
 *   Lease and schedule times come from the database clock.
 * - Wake-up: LISTEN/NOTIFY on inserts and retries (polling every `pollMs` as the fallback). Lease: a heartbeat every third of a lease renews the leases of running attempts. An
 *   attempt missing from the heartbeat's answer was taken away (its lease expired and it
 *   was rescued), so its run is aborted and never writes. The heartbeat also reports
 *   cancels, the fallback for a lost cancel NOTIFY.
 * - Rescue: expired leases (a killed worker) go back to PENDING, or FAILED past their attempts.
 * - End: the output and the final state are written in one transaction, one object at a
 *   time (newest object version wins), ending with the attempt-guarded update of the job
 *   row, so heartbeats and cancels never wait behind a long write; a transient failure
 *   goes back to PENDING with exponential backoff and jitter, a permanent one (or the last
 *   attempt) ends FAILED, and a cancel asked for meanwhile ends CANCELLED on every path.
 * - Stop: stop claiming, let running jobs finish within the grace period, hand the rest back
 *   (their runs aborted, a final write in flight cancelled; stop waits for them a bounded time).
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { InvalidArgument } from "../domain/errors";
import type { Job } from "../domain/job";
import { checkTemplateOptions, getTemplate } from "../domain/templates";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import { CHANNEL_CANCEL, CHANNEL_JOBS } from "../storage/postgres/sql";
import type { WorkerRepository } from "../storage/repository";
import type { Embedder } from "./embedder";
import { AbortReason, PermanentError, describeFailure } from "./failures";
import { startListener, type Listener } from "../storage/postgres/listener";
import { executorFor } from "./pipelines/registry";
import type { ExecutorLimits } from "./pipelines/types";
import { ProgressReporter } from "./progress";
import { ObjectUnreadable, type ObjectHandle, type ObjectStore, type ReadLimits } from "../storage/object-store";
import { ENCODED_HEAD_BYTES, mayBeEncoded } from "../storage/decoded-object";
import { STORED_HEADER_PREFIX } from "../domain/bucket";

/** Tunables of a worker. */
export interface WorkerConfig {
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  maxAttempts: number;
  /** Attempts that may lose their worker (crash, kill) before the job ends FAILED. */
  maxLostAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  graceMs: number;
  maxObjectBytes: number;
  /** Longest an object read may take (ms). */
  readTimeoutMs: number;
  /** Bounds of parsing and its sandbox. */
  limits: ExecutorLimits;
}

/** What a worker depends on. */
export interface WorkerDeps {
  repo: WorkerRepository;
  objects: ObjectStore;
  /** The store a job's object is read from (its source's; `objects` when not given). */
  objectsFor?: (job: Job) => Promise<ObjectStore | undefined>;
  /** URL for the LISTEN connection. */
  connectionString: string;
  embedder: (options: Readonly<Record<string, string>>) => Embedder;
  /** True when the embedder is the built-in local one. */
  localEmbedding: boolean;
  log: Logger;
  metrics?: Metrics;
  now?: () => number;
}

interface Running {
  job: Job;
  abort: AbortController;
  done: Promise<void>;
}

const PROGRESS_INTERVAL_MS = 250;
/** How long stop() waits for runs it aborted before it stops without them. */
const ABORTED_RUN_WAIT_MS = 5_000;

/** Whether all of `runs` ended within `ms` (waits no longer). */
async function endedWithin(runs: readonly Running[], ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  const ended = await Promise.race([Promise.all(runs.map((r) => r.done)).then(() => true as const), late]);
  clearTimeout(timer);
  return ended;
}

/** Delay before retry `attempt` (1-based): exponential, capped, with "equal jitter". */
export function retryDelay(attempt: number, baseMs: number, maxMs: number): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(d / 2 + Math.random() * (d / 2));
}

/** A worker process's job runner. */
export class Worker {
  readonly id = `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  private readonly running = new Map<string, Running>();
  private readonly now: () => number;
  private state: "idle" | "running" | "stopping" | "stopped" = "idle";
  /** When the claim loop last reached the database (or found every slot busy). */
  private lastHealthyAt = 0;
  private loopDone: Promise<void> = Promise.resolve();
  private stopDone: Promise<void> | undefined;
  private wakePending = false;
  private wakeUp: (() => void) | undefined;
  private listener: Listener | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private rescueTimer: NodeJS.Timeout | undefined;
  /**
   * Jobs whose pipeline is still running. A job whose run has ended but whose outcome is
   * still being written no longer takes a slot, so the next claim overlaps the writes
   * (the jobs stay in `running`, leased and heart-beaten, until the write lands).
   */
  private executing = 0;

  constructor(
    private readonly deps: WorkerDeps,
    private readonly config: WorkerConfig,
  ) {
    this.now = deps.now ?? Date.now;
  }

  /** Jobs this worker runs right now. */
  get busy(): number {
    return this.running.size;
  }

  /** Starts claiming; idempotent. */
  start(): void {
    if (this.state !== "idle") return;
    this.state = "running";
    this.listener = startListener({
      connectionString: this.deps.connectionString,
      channels: [CHANNEL_JOBS, CHANNEL_CANCEL],
      onNotify: (channel, payload) => {
        if (channel === CHANNEL_CANCEL) this.abortJob(payload, "cancel");
        else this.wake();
      },
      onReconnect: () => this.wake(),
      log: this.deps.log,
    });
    const beat = Math.max(50, Math.floor(this.config.leaseMs / 3));
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), beat);
    const rescue = Math.max(100, Math.floor(this.config.leaseMs / 2));
    this.rescueTimer = setInterval(() => void this.rescue(), rescue);
    this.deps.metrics?.workerSlots.set(this.config.concurrency);
    this.loopDone = this.loop();
    this.deps.log.info("worker started", { worker: this.id, concurrency: this.config.concurrency });
  }

  /** Stops claiming, waits for running jobs up to the grace period, hands back the rest; idempotent. */
  stop(): Promise<void> {
    if (this.state === "idle") {
      this.state = "stopped";
      return Promise.resolve();
    }
    this.stopDone ??= this.shutdown();
    return this.stopDone;
  }

  private async shutdown(): Promise<void> {
    this.state = "stopping";
    this.wake();
    clearInterval(this.rescueTimer);
    await this.loopDone;
    if (this.running.size > 0) await endedWithin([...this.running.values()], this.config.graceMs);
    const left = [...this.running.values()];
    if (left.length > 0) {
      for (const r of left) r.abort.abort(new AbortReason("shutdown"));
      const ids = left.map((r) => r.job.jobId);
      const released = await this.deps.repo.queue
        .jobRelease({ threadIds: left.map((r) => r.job.threadId) })
        .catch((err: unknown) => {
          this.deps.log.error("could not hand jobs back; their leases will expire", { err, jobs: ids });
          return 0;
        });
      this.deps.log.info("handed running jobs back", { released, jobs: ids });
      // An aborted run ends at its next await (its statements are cancelled with it); one
      // stuck where no signal reaches must not hold the process: its job is handed back and
      // any write it still makes is fenced by its attempt.
      if (!(await endedWithin(left, ABORTED_RUN_WAIT_MS))) {
        const late = left.filter((r) => this.running.has(r.job.threadId)).map((r) => r.job.jobId);
        this.deps.log.warn("runs still going after their abort; stopping without them", { jobs: late, waitedMs: ABORTED_RUN_WAIT_MS });
      }
    }
    clearInterval(this.heartbeatTimer);
    await this.listener?.stop();
    this.state = "stopped";
    this.deps.log.info("worker stopped", { worker: this.id });
  }

  private wake(): void {
    this.wakePending = true;
    this.wakeUp?.();
  }

  private waitForWake(ms: number): Promise<void> {
    if (this.wakePending) {
      this.wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakeUp = undefined;
        self.wakePending = false;
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private async loop(): Promise<void> {
    let backoffMs = 0;
    // Claim in batches: wait until a quarter of the slots are free (or the worker is idle),
    // so a busy worker makes a few large claims instead of one claim per finished job.
    const batch = Math.max(1, Math.floor(this.config.concurrency / 4));
    while (this.state === "running") {
      // Runs being written back count half, bounding the jobs held at 2 × concurrency.
      const free = Math.min(this.config.concurrency - this.executing, 2 * this.config.concurrency - this.running.size);
      if (free >= batch || (free > 0 && this.executing === 0) || (free > 0 && this.config.concurrency <= 4)) {
        try {
          const jobs = await this.deps.repo.queue.jobClaimAvailable({ owner: this.id, limit: free, leaseMs: this.config.leaseMs });
          backoffMs = 0;
          this.lastHealthyAt = Date.now();
          for (const job of jobs) this.launch(job);
          if (jobs.length === free) continue; // there may be more
        } catch (err) {
          // Database trouble: back off without spinning; the rescuer will requeue anything lost.
          backoffMs = Math.min(Math.max(backoffMs * 2, 200), 5000);
          this.deps.log.warn("claiming jobs failed; retrying", { err: (err as Error).message, retryInMs: backoffMs });
          await this.waitForWake(backoffMs);
          continue;
        }
      } else {
        this.lastHealthyAt = Date.now(); // every slot busy: running, not claiming
      }
      await this.waitForWake(this.config.pollMs);
    }
  }

  /** Whether the claim loop reached the database within `withinMs` (what a worker's healthcheck asks). */
  healthy(withinMs: number): boolean {
    return this.state === "running" && Date.now() - this.lastHealthyAt <= withinMs;
  }

  private launch(job: Job): void {
    // This worker may hold an older attempt of the same job (its lease expired while it
    // was blocked, and the job came back to it): that run is stale, stop it.
    for (const r of this.running.values()) {
      if (r.job.jobId === job.jobId && !r.abort.signal.aborted) r.abort.abort(new AbortReason("lease_lost"));
    }
    const abort = new AbortController();
    const entry: Running = { job, abort, done: Promise.resolve() };
    this.running.set(job.threadId, entry);
    this.executing++;
    this.deps.metrics?.workerBusy.set(this.executing);
    entry.done = this.execute(job, abort.signal)
      .catch((err: unknown) => this.deps.log.error("job bookkeeping failed", { job: job.jobId, err }))
      .finally(() => {
        this.running.delete(job.threadId);
        this.wake();
      });
  }

  /** Aborts the running attempts of a job (a cancel NOTIFY names the job). */
  private abortJob(jobId: string, kind: AbortReason["kind"]): void {
    for (const r of this.running.values()) {
      if (r.job.jobId === jobId && !r.abort.signal.aborted) r.abort.abort(new AbortReason(kind));
    }
  }

  private abortAttempt(threadId: string, kind: AbortReason["kind"]): void {
    const r = this.running.get(threadId);
    if (r && !r.abort.signal.aborted) r.abort.abort(new AbortReason(kind));
  }

  /**
   * A bucket's own object as its content: one stored with a Content-Encoding (kept in the
   * catalog) is decoded. Looked up only when its first bytes may be encoded (gzip's or
   * zlib's header, or not text). (An S3 source's objects are decoded as they are downloaded.)
   */
  private async contentOf(job: Job, object: ObjectHandle, store: ObjectStore, limits: ReadLimits): Promise<ObjectHandle> {
    const head = Buffer.alloc(ENCODED_HEAD_BYTES);
    const { bytesRead } = await object.read(head, 0, ENCODED_HEAD_BYTES, 0);
    if (!mayBeEncoded(head.subarray(0, bytesRead))) return object;
    const row = await this.deps.repo.catalog.objectGet(job, job.key);
    const encoding = row?.metadata[`${STORED_HEADER_PREFIX}content-encoding`];
    return encoding ? store.decoded(object, encoding, limits, job.key) : object;
  }

  private async execute(job: Job, signal: AbortSignal): Promise<void> {
    const { repo } = this.deps;
    // Every line about this job carries its id and the request id of the call that made it.
    const log = this.deps.log.child({ job: job.jobId, requestId: job.traceId });
    const attempt = { jobId: job.jobId, threadId: job.threadId };
    const started = this.now();
    log.debug("job started", { template: job.template, attempt: job.attempts, thread: job.threadId });
    const progress = new ProgressReporter((s) => repo.queue.jobRecordProgress({ ...attempt, ...s }), PROGRESS_INTERVAL_MS, () => this.now());
    let slotHeld = true;
    const releaseSlot = () => {
      if (!slotHeld) return;
      slotHeld = false;
      this.executing--;
      this.deps.metrics?.workerBusy.set(this.executing);
      this.wake();
    };
    let object: ObjectHandle | undefined;
    let sourceVersion = 0n;
    try {
      const executor = executorFor(job.template);
      if (!executor) throw new PermanentError("start", `template "${job.template}" is not known to this worker`);
      try {
        checkTemplateOptions(getTemplate(job.template), job.options);
      } catch (err) {
        if (err instanceof InvalidArgument) throw new PermanentError("options", err.message);
        throw err;
      }
      if (executor.readsObject) {
        try {
          const maxBytes = Math.min(this.config.maxObjectBytes, executor.readLimit?.(job.key, this.config.limits) ?? Number.MAX_SAFE_INTEGER);
          const store = this.deps.objectsFor ? await this.deps.objectsFor(job) : this.deps.objects;
          if (!store) throw new PermanentError("read", `the source "${job.sourceId}" of object "${job.key}" no longer exists`);
          const limits = { maxBytes, timeoutMs: this.config.readTimeoutMs, signal };
          object = await store.open(job, job.key, limits);
          if (object && store === this.deps.objects) object = await this.contentOf(job, object, store, limits);
        } catch (err) {
          if (err instanceof ObjectUnreadable) throw new PermanentError("read", err.message);
          throw err;
        }
        if (!object) throw new PermanentError("read", `object "${job.key}" no longer exists in bucket "${job.bucket}"`);
        sourceVersion = object.version;
      }
      const outcome = await executor.run({
        job,
        options: job.options,
        object,
        localEmbedding: this.deps.localEmbedding,
        signal,
        embedder: this.deps.embedder,
        progress: (r) => progress.report(r),
        log,
        limits: this.config.limits,
      });
      await object?.close();
      object = undefined;
      releaseSlot();
      signal.throwIfAborted();
      const writes = outcome.output.kind === "vector" ? outcome.output.chunks.length : outcome.output.kind === "warehouse" ? outcome.output.rows.length : 0;
      await progress.stop(outcome.output.kind === "none" ? undefined : { stage: "writing", done: 0, total: writes, unit: outcome.output.kind === "vector" ? "chunks" : "rows" });
      if (outcome.output.kind === "none") {
        // Nothing to write at a destination: end it together with other such runs.
        if (await this.deps.repo.queue.jobCompleteWithoutOutput({ jobId: job.jobId, threadId: job.threadId, outcome })) {
          this.deps.metrics?.jobSeconds.observe({ template: job.template, outcome: outcome.status }, (this.now() - started) / 1000);
          log.info("job finished", { status: outcome.status, ms: this.now() - started });
          return;
        }
      } else {
        const finished = await repo.queue.jobComplete({ job, outcome, sourceVersion, signal });
        if (finished) {
          this.deps.metrics?.jobSeconds.observe({ template: job.template, outcome: finished.status }, (this.now() - started) / 1000);
          log.info("job finished", { status: finished.status, ms: this.now() - started });
          return;
        }
      }
      // No longer ours to finish: a cancel arrived (end it), or the lease was lost (leave it).
      if (!(await repo.queue.jobCancelRunning(attempt))) {
        log.warn("job lease lost before it could finish; its output was discarded", {});
      }
    } catch (err) {
      await object?.close();
      object = undefined;
      releaseSlot();
      await progress.stop();
      const reason: unknown = signal.aborted ? signal.reason : undefined;
      if (reason instanceof AbortReason) {
        if (reason.kind === "cancel") {
          await repo.queue.jobCancelRunning(attempt);
          log.info("job cancelled while processing", {});
        } else if (reason.kind === "lease_lost") {
          log.warn("job lease lost; run aborted", {});
        }
        return; // shutdown: stop() hands the job back
      }
      const f = describeFailure(err);
      const retry = !f.permanent && job.attempts < this.config.maxAttempts;
      const retryDelayMs = retry ? retryDelay(job.attempts, this.config.retryBaseMs, this.config.retryMaxMs) : undefined;
      const error = retry || f.permanent ? f.error : `${f.error} (gave up after ${job.attempts} attempts)`;
      const ended = await repo.queue.jobFailAttempt({ ...attempt, error, errorDetails: f.errorDetails, retryDelayMs, permanent: f.permanent });
      if (!ended) {
        log.warn("job attempt failed after it was taken away; nothing recorded", { error });
        return;
      }
      if (retry) this.deps.metrics?.retries.inc({ template: job.template });
      this.deps.metrics?.jobSeconds.observe({ template: job.template, outcome: retry ? "retry" : "failed" }, (this.now() - started) / 1000);
      log[retry ? "warn" : "info"](retry ? "job attempt failed; will retry" : "job failed", {
        attempt: job.attempts,
        error,
        retryInMs: retryDelayMs,
      });
    }
  }

  private async heartbeat(): Promise<void> {
    const threads = [...this.running.keys()];
    if (threads.length === 0) return;
    try {
      const held = await this.deps.repo.queue.jobHeartbeat({ threadIds: threads, leaseMs: this.config.leaseMs });
      const still = new Map(held.map((h) => [h.threadId, h.cancelRequested]));
      for (const thread of threads) {
        if (!this.running.has(thread)) continue; // finished meanwhile
        if (!still.has(thread)) this.abortAttempt(thread, "lease_lost");
        else if (still.get(thread)) this.abortAttempt(thread, "cancel");
      }
    } catch (err) {
      this.deps.log.warn("lease heartbeat failed", { err: (err as Error).message });
    }
  }

  private async rescue(): Promise<void> {
    if (this.state !== "running") return;
    try {
      const rescued = await this.deps.repo.queue.jobRescueExpired({ maxAttempts: this.config.maxAttempts, maxLostAttempts: this.config.maxLostAttempts });
      if (rescued.length > 0) this.deps.log.warn("rescued jobs with expired leases", { jobs: rescued });
      for (const r of rescued) this.deps.metrics?.rescues.inc({ outcome: r.status });
    } catch (err) {
      this.deps.log.debug("rescue pass failed", { err: (err as Error).message });
    }
  }
}
