/**
 * How the CLI shows jobs: status names, the jobs table (times in local time, duration and
 * attempts), and the one-line progress of a waited-for job (attempt, percent when known,
 * the last error and the next retry while it is retried).
 */
import { IngestStatus, type IngestJob } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { UsageError } from "./common";

const STATUS_NAMES = Object.keys(IngestStatus).filter((k) => Number.isNaN(Number(k)));

export function statusName(s: IngestStatus): string {
  return `INGEST_STATUS_${IngestStatus[s]}`;
}

export function parseStatus(text: string): IngestStatus {
  const short = text.toUpperCase().replace(/^INGEST_STATUS_/, "");
  if (!STATUS_NAMES.includes(short) || short === "UNSPECIFIED") {
    throw new UsageError(`--status ${JSON.stringify(text)} must be one of ${STATUS_NAMES.filter((s) => s !== "UNSPECIFIED").join(", ")}`);
  }
  return IngestStatus[short as keyof typeof IngestStatus];
}

/** Epoch milliseconds as local time, to the second ("" for 0). */
export function localTime(ms: bigint | number): string {
  const n = Number(ms);
  if (n === 0) return "";
  const d = new Date(n);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A duration in milliseconds, short: 850ms, 12.3s, 4m05s, 2h03m. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export const JOB_HEADER = ["JOB", "STATUS", "KEY", "PIPELINE", "COUNTERS", "ATTEMPTS", "CREATED", "FINISHED", "DURATION", "ERROR"];

function counters(j: IngestJob): string {
  return j.pipelineKind === "warehouse" ? `rows ${j.rowsWritten}` : `chunks ${j.chunksCreated} embedded ${j.embeddingsWritten}`;
}

export function jobRow(j: IngestJob): string[] {
  const ran = j.startedAt > 0n ? Number((j.finishedAt > 0n ? j.finishedAt : BigInt(Date.now())) - j.startedAt) : 0;
  return [
    j.jobId,
    statusName(j.status).replace("INGEST_STATUS_", ""),
    j.object?.key ?? "",
    j.pipelineName,
    counters(j),
    String(j.attempts),
    localTime(j.createdAt),
    localTime(j.finishedAt),
    j.startedAt > 0n ? duration(ran) : "",
    j.error,
  ];
}

/**
 * The progress line of a waited-for job: status and counters, the attempt, the percent
 * embedded when the chunk count is known, and while it waits for a retry, the last error
 * and when it runs again.
 */
export function progressLine(j: IngestJob): string {
  const parts = [j.jobId, statusName(j.status), counters(j)];
  const p = j.progress;
  if (j.status === IngestStatus.PROCESSING && p?.stage) parts.push(p.total > 0 ? `${p.stage} ${p.done}/${p.total} ${p.unit} (${Math.floor((100 * p.done) / p.total)}%)` : p.stage);
  else if (j.status === IngestStatus.PROCESSING && j.chunksCreated > 0) parts.push(`${Math.floor((100 * j.embeddingsCreated) / j.chunksCreated)}%`);
  if (j.attempts > 1 || j.nextAttemptAt > 0n) parts.push(`attempt ${j.attempts}`);
  if (j.nextAttemptAt > 0n) parts.push(`retry at ${localTime(j.nextAttemptAt)} after: ${j.error}`);
  return parts.join("  ");
}

/** What a cancel answer means for the job: where it ends. */
export function cancelOutcome(j: IngestJob): string {
  return j.status === IngestStatus.CANCELLED
    ? `job ${j.jobId} is CANCELLED`
    : `job ${j.jobId} is ${statusName(j.status).replace("INGEST_STATUS_", "")}: cancel requested; it ends CANCELLED when its worker stops it (seconds at most)`;
}
