/**
 * The CLI's push path: `trigger --wait` follows its job and `jobs watch` a bucket through
 * the WatchIngestJobs stream (no polling). A dropped stream (a restarted server, a proxy)
 * is opened again with resume_after, so nothing is missed. On a terminal the progress is
 * one line rewritten in place; otherwise each change is a line of its own (`jobs watch`
 * prints JSON lines then, one message each).
 */
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  IngestService,
  IngestStatus,
  WatchEventType,
  WatchIngestJobsResponseSchema,
  type IngestJob,
  type WatchIngestJobsRequest,
  type WatchIngestJobsResponse,
} from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import type { Out } from "./common";
import { localTime, progressLine, statusName } from "./job-view";

/** The fields of a watch request (bucket required). */
export type WatchRequest = { bucket: string } & Partial<Pick<WatchIngestJobsRequest, "jobId" | "statusFilter" | "pipelineId" | "ruleId" | "sourceId" | "resumeAfter">>;

const isTTY = (o: Out) => (o as { isTTY?: boolean }).isTTY === true;

/**
 * Runs a watch to its end (or forever, for a bucket), calling `onMessage` for each message;
 * reconnects after UNAVAILABLE or a dropped connection, resuming after the last event id.
 */
export async function followWatch(
  ingest: Client<typeof IngestService>,
  request: WatchRequest,
  onMessage: (m: WatchIngestJobsResponse) => void,
  signal?: AbortSignal,
): Promise<void> {
  let resumeAfter = request.resumeAfter ?? "";
  for (let retries = 0; ; ) {
    try {
      for await (const m of ingest.watchIngestJobs({ ...request, resumeAfter }, { signal })) {
        retries = 0;
        if (m.eventId) resumeAfter = m.eventId;
        onMessage(m);
      }
      return;
    } catch (err) {
      const ce = ConnectError.from(err);
      const transient = ce.code === Code.Unavailable || ce.code === Code.Unknown || ce.code === Code.Internal || /ECONNRESET|socket hang up|terminated/i.test(ce.rawMessage);
      if (signal?.aborted || !transient || resumeAfter === "" || ++retries > 30) throw err;
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * retries)));
    }
  }
}

/** `trigger --wait`: the job's progress on `err` until it is terminal; the job at the end. */
export async function waitForJob(ingest: Client<typeof IngestService>, bucket: string, job: IngestJob, err: Out): Promise<IngestJob> {
  const tty = isTTY(err);
  let last = "";
  const show = (j: IngestJob) => {
    const line = progressLine(j);
    if (line === last) return;
    last = line;
    err.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  };
  show(job);
  let current = job;
  await followWatch(ingest, { bucket, jobId: job.jobId }, (m) => {
    if (!m.job) return;
    current = m.job;
    show(current);
  });
  if (tty) err.write("\n");
  return current;
}

/** One line of `jobs watch` on a terminal. */
function watchLine(m: WatchIngestJobsResponse): string | undefined {
  if (m.type === WatchEventType.SYNCED) return `-- watching (event ${m.eventId}); changes follow`;
  const j = m.job;
  if (!j) return undefined;
  const when = localTime(j.updatedAt).slice(11);
  const mark = m.type === WatchEventType.SNAPSHOT ? "now" : "   ";
  return `${when} ${mark} ${j.object?.key ?? ""}  ${progressLine(j).replace(statusName(IngestStatus.PROCESSING), "PROCESSING")}`;
}

/** `jobs watch`: every change of the bucket's matching jobs until interrupted (or the one job ends). */
export async function watchCommand(ingest: Client<typeof IngestService>, request: WatchRequest, asJson: boolean, out: Out, signal?: AbortSignal): Promise<number> {
  const json = asJson || !isTTY(out);
  await followWatch(
    ingest,
    request,
    (m) => {
      if (json) {
        out.write(JSON.stringify(toJson(WatchIngestJobsResponseSchema, m, { alwaysEmitImplicit: true })) + "\n");
        return;
      }
      const line = watchLine(m);
      if (line) out.write(line + "\n");
    },
    signal,
  );
  return 0;
}
