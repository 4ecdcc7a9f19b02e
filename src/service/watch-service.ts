/**
 * Push instead of poll: WatchIngestJobs (a server stream on every door; Server-Sent Events
 * on REST) and the long poll of GetIngestStatus (wait_ms). Both ride this process's JobHub,
 * so a change committed by any instance reaches watchers on every instance.
 *
 * A watch sends the current state of the matching jobs (SNAPSHOT messages), a SYNCED
 * marker, then every change (CHANGE). Each message's event_id is a resume point: a watch
 * started again with resume_after replays the events since (each job as it is now) instead
 * of the snapshot, and is refused with OUT_OF_RANGE when retention already pruned them.
 */
import type { HandlerContext } from "@connectrpc/connect";
import { WatchEventType, type WatchIngestJobsRequest, type WatchIngestJobsResponse } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { InvalidArgument, NotFound, OutOfRange, Unimplemented } from "../domain/errors";
import { isTerminal, type Job, type JobStatus, type Scope } from "../domain/job";
import { checkBucket, checkLength, quote } from "../domain/validate";
import { scopeOf } from "./caller";
import { jobToProto, statusFromProto } from "./convert";
import type { ServiceDeps } from "./deps";
import type { JobHub } from "./job-hub";

/** The longest GetIngestStatus wait_ms accepted. */
export const MAX_WAIT_MS = 60_000;
/** Jobs sent as the initial state of a bucket watch, at most, per status. */
const SNAPSHOT_LIMIT = 1000;
/** Events read per statement when replaying after a resume point. */
const REPLAY_PAGE = 1000;

type Message = Omit<WatchIngestJobsResponse, "$typeName" | "job"> & { job?: ReturnType<typeof jobToProto> };

function hubOf(deps: ServiceDeps): JobHub {
  if (!deps.hub) throw new Unimplemented("this process serves no job events (it runs without the API's listener)");
  return deps.hub;
}

/** The resume point of a request: a decimal event id. */
function resumePoint(raw: string): number | undefined {
  if (raw === "") return undefined;
  if (!/^\d{1,15}$/.test(raw)) {
    throw new InvalidArgument(`resume_after ${quote(raw)} is not an event id; pass the event_id of a message a watch sent (decimal digits)`, "resume_after");
  }
  return Number(raw);
}

/** Builds the watch methods (watchIngestJobs) and the long poll used by getIngestStatus. */
export function createWatchMethods(deps: ServiceDeps) {
  const { repo } = deps;

  /** The job states a bucket watch starts with: the matching jobs of the status asked, or the unfinished ones. */
  async function snapshot(scope: Scope, req: WatchIngestJobsRequest, status: JobStatus | undefined): Promise<Job[]> {
    const base = {
      org: scope.org,
      bucket: scope.bucket,
      pipelineId: req.pipelineId || undefined,
      ruleId: req.ruleId || undefined,
      ...(req.sourceId ? { sourceId: req.sourceId } : {}),
      ...(req.keyPrefix ? { keyPrefix: req.keyPrefix } : {}),
    };
    const statuses: JobStatus[] = status ? [status] : ["pending", "processing"];
    const pages = await repo.jobs.jobListsTogether(statuses.map((s) => ({ ...base, status: s })), { limit: SNAPSHOT_LIMIT, signal: scope.signal });
    return pages.flatMap((p) => p.items);
  }

  async function* watchIngestJobs(req: WatchIngestJobsRequest, ctx: HandlerContext): AsyncGenerator<Message> {
    checkBucket(req.bucket);
    const scope = scopeOf(ctx, req.bucket);
    const status = statusFromProto(req.statusFilter, "status_filter");
    for (const [v, f] of [[req.jobId, "job_id"], [req.pipelineId, "pipeline_id"], [req.ruleId, "rule_id"], [req.sourceId, "source_id"]] as const) checkLength(v, 128, f);
    checkLength(req.keyPrefix, 1024, "key_prefix");
    const resume = resumePoint(req.resumeAfter);
    const matches = (j: Job) =>
      (!req.jobId || j.jobId === req.jobId) &&
      (!status || j.status === status) &&
      (!req.pipelineId || j.pipelineId === req.pipelineId) &&
      (!req.ruleId || j.ruleId === req.ruleId) &&
      (!req.sourceId || j.sourceId === req.sourceId) &&
      j.key.startsWith(req.keyPrefix);
    const change = (type: WatchEventType, j: Job, eventId: number, current: boolean): Message => ({ type, job: jobToProto(j, current), eventId: String(eventId) });
    // Subscribed before anything is read, so no change falls between the read and the stream.
    const sub = hubOf(deps).subscribe(scope);
    try {
      const { head, prunedUpTo } = await repo.events.bounds();
      let after = 0;
      const replayed = new Set<number>();
      if (resume !== undefined) {
        if (resume < prunedUpTo) {
          throw new OutOfRange(`resume_after ${resume} is older than the events still retained (they start after ${prunedUpTo}); watch again without resume_after (or Last-Event-ID) to start from the current state`);
        }
        if (resume > head) throw new InvalidArgument(`resume_after ${resume} is newer than the newest event (${head}); pass an event_id a watch sent`, "resume_after");
        let ended = false;
        for (let from = resume; ; ) {
          const page = await repo.events.after(scope, from, REPLAY_PAGE, req.jobId || undefined);
          for (const ev of page) {
            replayed.add(ev.seq);
            if (!matches(ev.job)) continue;
            yield change(WatchEventType.CHANGE, ev.job, ev.seq, ev.outputCurrent);
            ended ||= req.jobId !== "" && isTerminal(ev.job.status);
          }
          if (page.length < REPLAY_PAGE) break;
          from = page[page.length - 1].seq;
        }
        for (const seq of replayed) after = Math.max(after, seq);
        after = Math.max(after, resume);
        // A job watch resumed after its job ended (an EventSource reconnecting) ends at once.
        if (req.jobId && !ended) {
          const job = await repo.jobs.jobGetById(scope, req.jobId);
          if (!job) throw new NotFound(`job_id ${quote(req.jobId)} not found in bucket ${quote(req.bucket)}`);
          ended = isTerminal(job.status);
        }
        yield { type: WatchEventType.SYNCED, eventId: String(after) };
        if (ended) return;
      } else if (req.jobId) {
        const job = await repo.jobs.jobGetById(scope, req.jobId);
        if (!job) throw new NotFound(`job_id ${quote(req.jobId)} not found in bucket ${quote(req.bucket)}`);
        const current = await repo.jobs.jobsWithCurrentOutput(scope, [job]);
        yield change(WatchEventType.SNAPSHOT, job, head, current.has(job.jobId));
        yield { type: WatchEventType.SYNCED, eventId: String(head) };
        if (isTerminal(job.status)) return;
      } else {
        const jobs = await snapshot(scope, req, status);
        const current = await repo.jobs.jobsWithCurrentOutput(scope, jobs);
        for (const j of jobs) yield change(WatchEventType.SNAPSHOT, j, head, current.has(j.jobId));
        yield { type: WatchEventType.SYNCED, eventId: String(head) };
      }
      const signal = ctx.signal;
      for (;;) {
        const ev = await sub.next(signal);
        if (!ev) return;
        if (replayed.has(ev.seq) || !matches(ev.job)) continue;
        yield change(WatchEventType.CHANGE, ev.job, ev.seq, ev.outputCurrent);
        if (req.jobId && isTerminal(ev.job.status)) return;
      }
    } finally {
      sub.end();
    }
  }

  /**
   * The job once it is terminal, or as it is when `waitMs` has passed (or the call ended):
   * the long poll of GetIngestStatus.
   */
  async function waitForJob(scope: Scope, jobId: string, waitMs: number, signal: AbortSignal): Promise<Job | undefined> {
    const sub = hubOf(deps).subscribe(scope);
    try {
      let job = await repo.jobs.jobGetById(scope, jobId);
      const deadline = Date.now() + waitMs;
      while (job && !isTerminal(job.status)) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const ev = await sub.next(signal, left).catch(() => undefined);
        if (!ev) break;
        if (ev.job.jobId === jobId) job = ev.job;
      }
      return job && !isTerminal(job.status) ? repo.jobs.jobGetById(scope, jobId) : job;
    } finally {
      sub.end();
    }
  }

  return { watchIngestJobs, waitForJob };
}
