/**
 * How the CLI words a job it watches: the percent embedded while a job runs, the attempt,
 * the error and the next retry while it waits for one, and where a cancelled job ends.
 * (test/cli.test.ts watches real jobs; these are the states a test cannot hold still.)
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { IngestJobSchema, IngestStatus } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { cancelOutcome, duration, localTime, progressLine } from "../src/cli/job-view";

const job = (over: MessageInitShape<typeof IngestJobSchema>) => create(IngestJobSchema, { jobId: "job_1", pipelineKind: "vector", ...over });

test("a running job shows the percent of its chunks embedded", () => {
  expect(progressLine(job({ status: IngestStatus.PROCESSING, chunksCreated: 40, embeddingsCreated: 10, attempts: 1 }))).toBe("job_1  INGEST_STATUS_PROCESSING  chunks 40 embedded 0  25%");
  // Before the chunk count is known there is no percent.
  expect(progressLine(job({ status: IngestStatus.PROCESSING, attempts: 1 }))).toBe("job_1  INGEST_STATUS_PROCESSING  chunks 0 embedded 0");
});

test("a job waiting for a retry shows the attempt, when it runs again and why", () => {
  const at = Date.UTC(2026, 11, 6, 3, 4, 5);
  const line = progressLine(job({ status: IngestStatus.PENDING, attempts: 2, nextAttemptAt: BigInt(at), error: "embedder unreachable" }));
  expect(line).toBe(`job_1  INGEST_STATUS_PENDING  chunks 0 embedded 0  attempt 2  retry at ${localTime(at)} after: embedder unreachable`);
  expect(localTime(at)).toMatch(/^2026-12-0[5-7] \d\d:04:05$/);
});

test("cancel says where the job ends", () => {
  expect(cancelOutcome(job({ status: IngestStatus.CANCELLED }))).toBe("job job_1 is CANCELLED");
  expect(cancelOutcome(job({ status: IngestStatus.PROCESSING }))).toBe("job job_1 is PROCESSING: cancel requested; it ends CANCELLED when its worker stops it (seconds at most)");
});

test("durations read short", () => {
  expect([850, 12_340, 245_000, 7_380_000].map(duration)).toEqual(["850ms", "12.3s", "4m05s", "2h03m"]);
});
