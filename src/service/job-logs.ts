/**
 * ListIngestJobLogs: the log lines about a job that this process still holds in memory
 * (log.ts LogRing). A line belongs to a job when it carries the job's id (the worker's
 * lines), or its trace id together with its organization (the lines of the request that
 * created it) — a trace id alone is a client's x-request-id and may be anyone's.
 */
import { hostname } from "node:os";
import type { HandlerContext } from "@connectrpc/connect";
import type { ListIngestJobLogsRequest } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { NotFound } from "../domain/errors";
import { checkBucket, checkLength, checkRequired, quote } from "../domain/validate";
import { scopeOf } from "./caller";
import type { ServiceDeps } from "./deps";

const INSTANCE = `${hostname()}:${process.pid}`;

export function createJobLogMethods(deps: ServiceDeps) {
  return {
    async listIngestJobLogs(req: ListIngestJobLogsRequest, ctx: HandlerContext) {
      checkBucket(req.bucket);
      checkRequired(req.jobId, "job_id");
      checkLength(req.jobId, 128, "job_id");
      const scope = scopeOf(ctx, req.bucket);
      const job = await deps.repo.jobs.jobGetById(scope, req.jobId);
      if (!job) throw new NotFound(`job_id ${quote(req.jobId)} not found in bucket ${quote(req.bucket)}`);
      const byJob = `"job":${JSON.stringify(job.jobId)}`;
      const byTrace = job.traceId ? `"requestId":${JSON.stringify(job.traceId)}` : undefined;
      const byOrg = `"org":${JSON.stringify(scope.org)}`;
      const lines = deps.log?.recent?.filter((l) => l.includes(byJob) || (byTrace !== undefined && l.includes(byTrace) && l.includes(byOrg))) ?? [];
      return { lines, traceId: job.traceId, instance: INSTANCE };
    },
  };
}
