/**
 * `k3-ingest jobs retry`: replays ended jobs through TriggerIngest `retry_of`, so each new
 * job names the one it retries. `jobs retry JOB_ID` replays one job; `jobs retry -b B`
 * replays the newest FAILED and PARTIAL job of each object and pipeline (`--status` picks
 * FAILED, PARTIAL or CANCELLED), leaving out permanent failures unless
 * `--include-permanent`. Every replay is checked first (validate_only), so a dry run and a
 * real run count the same and a run never stops halfway on something checkable; what
 * cannot be retried is listed with the reason.
 */
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { IngestJobSchema, IngestStatus, type IngestJob, type IngestService } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { UsageError, type Out } from "./common";

const RETRYABLE = [IngestStatus.FAILED, IngestStatus.PARTIAL, IngestStatus.CANCELLED];

/** `--status` of a retry: FAILED, PARTIAL or CANCELLED, or (absent) FAILED and PARTIAL. */
export function retryStatuses(given: IngestStatus | undefined): IngestStatus[] {
  if (given === undefined) return [IngestStatus.FAILED, IngestStatus.PARTIAL];
  if (!RETRYABLE.includes(given)) {
    throw new UsageError(`jobs retry takes --status FAILED, PARTIAL or CANCELLED (default: FAILED and PARTIAL); ${IngestStatus[given]} jobs have nothing to retry`);
  }
  return [given];
}

interface Refused {
  jobId: string;
  key: string;
  reason: string;
}

export async function retryCommand(c: {
  ingest: Client<typeof IngestService>;
  bucket: string;
  jobId?: string;
  statuses: IngestStatus[];
  pipelineId: string;
  ruleId: string;
  includePermanent: boolean;
  dryRun: boolean;
  asJson: boolean;
  out: Out;
  table(rows: string[][]): string;
  row(job: IngestJob): string[];
  header: string[];
}): Promise<number> {
  const replay = (jobId: string, validateOnly: boolean) => c.ingest.triggerIngest({ bucket: c.bucket, retryOf: jobId, validateOnly });
  if (c.jobId) {
    const job = (await replay(c.jobId, c.dryRun)).job!;
    if (c.asJson) c.out.write(JSON.stringify({ dryRun: c.dryRun, job: toJson(IngestJobSchema, job, { alwaysEmitImplicit: true }) }, null, 2) + "\n");
    else c.out.write((c.dryRun ? `would retry ${c.jobId} as:\n` : "") + c.table([c.header, c.row(job)]));
    return 0;
  }
  // Newest first; the first job seen of an object and pipeline is its newest of these statuses.
  const listed: IngestJob[] = [];
  for (const status of c.statuses) {
    let pageToken = "";
    do {
      const res = await c.ingest.listIngestJobs({ bucket: c.bucket, statusFilter: status, pipelineId: c.pipelineId, ruleId: c.ruleId, pageSize: 1000, pageToken });
      listed.push(...res.jobs);
      pageToken = res.pagination?.nextPageToken ?? "";
    } while (pageToken);
  }
  listed.sort((a, b) => Number(b.createdAt - a.createdAt) || (a.jobId < b.jobId ? 1 : -1));
  const seen = new Set<string>();
  const newest = listed.filter((j) => {
    const k = `${j.object?.key}\u0000${j.pipelineId}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  const permanent = newest.filter((j) => j.permanentFailure && !c.includePermanent);
  const superseded: IngestJob[] = [];
  const refused: Refused[] = [];
  const planned: IngestJob[] = [];
  for (const j of newest.filter((x) => !permanent.includes(x))) {
    try {
      await replay(j.jobId, true);
      planned.push(j);
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.FailedPrecondition && /is not the newest job/.test(e.rawMessage)) superseded.push(j);
      else refused.push({ jobId: j.jobId, key: j.object?.key ?? "", reason: e.rawMessage });
    }
  }
  const created: IngestJob[] = [];
  if (!c.dryRun) {
    for (const j of planned) {
      try {
        created.push((await replay(j.jobId, false)).job!);
      } catch (err) {
        // Changed between the check and the run (a newer job, a pipeline deleted): said, and the rest go on.
        refused.push({ jobId: j.jobId, key: j.object?.key ?? "", reason: ConnectError.from(err).rawMessage });
      }
    }
  }
  const summary = {
    dryRun: c.dryRun,
    matched: listed.length,
    retried: c.dryRun ? planned.length : created.length,
    superseded: superseded.length,
    permanentSkipped: permanent.length,
    refused,
    jobs: created.map((j) => toJson(IngestJobSchema, j, { alwaysEmitImplicit: true })),
  };
  if (c.asJson) {
    c.out.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    if (created.length) c.out.write(c.table([c.header, ...created.map(c.row)]));
    const names = c.statuses.map((s) => IngestStatus[s]).join("/");
    const lines = [
      `${c.dryRun ? "would retry" : "retried"} ${summary.retried} of ${listed.length} ${names} jobs (the newest of each object and pipeline)`,
      superseded.length ? `${superseded.length} left: a newer job of the same object and pipeline exists` : "",
      permanent.length ? `${permanent.length} permanent failures left (a retry cannot fix them); --include-permanent retries them too` : "",
      ...refused.map((r) => `cannot retry ${r.jobId} (${r.key}): ${r.reason}`),
    ];
    c.out.write(lines.filter(Boolean).join("\n") + "\n");
  }
  return refused.length ? 1 : 0;
}
