/**
 * Push, not poll: WatchIngestJobs through every door across instances (triggered on A,
 * watched on B, run by a worker W), SSE resume with Last-Event-ID after a dropped
 * connection, OUT_OF_RANGE for a pruned resume point, the GetIngestStatus long poll,
 * progress stages of a running job, a slow watcher dropped, and one org never seeing
 * another's jobs.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { JobHub } from "../src/service/job-hub";
import { createLogger } from "../src/log";
import { DOORS } from "./helpers/clients";
import { startEmbedderServer, type EmbedderServer } from "./helpers/embedder-server";
import { jsonClient, type J } from "./helpers/http";
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { waitFor } from "./helpers/wait";
import { startWatch } from "./helpers/watch";

let a: TestServers;
let b: Awaited<ReturnType<typeof startPeer>>;
let w: Awaited<ReturnType<typeof startPeer>>;
let embedder: EmbedderServer;
const B = "kb-watch";
let noop: string;
let slow: string;
const onA = jsonClient(() => a.httpUrl);
const onB = jsonClient(() => b.httpUrl);
const COMPLETED = "INGEST_STATUS_COMPLETED";
/** Server A's log, as JSON lines. */
const logLines: string[] = [];

beforeAll(async () => {
  embedder = await startEmbedderServer(8);
  a = await startServers({ K3_ROLE: "api" }, { logLines });
  // Every instance reads the same objects (as they would share an S3 store).
  b = await startPeer(a, { K3_ROLE: "api", K3_DATA_DIR: a.dataDir });
  w = await startPeer(a, { K3_ROLE: "worker", K3_POLL_MS: "50", K3_EMBEDDINGS_URL: embedder.url, K3_DATA_DIR: a.dataDir });
  noop = (await onA("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
  slow = (await onA("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index", options: { chunk_size: "200", chunk_overlap: "0", batch_size: "1", dimensions: "8" } })).json.pipeline.pipelineId;
  for (let i = 0; i < 10; i++) a.putObject(B, `docs/${i}.txt`, `document ${i}`);
  a.putObject(B, "docs/long.txt", Array.from({ length: 40 }, (_, i) => `Paragraph ${i} has a few words about watching jobs.`).join("\n\n"));
}, 60_000);
afterAll(async () => {
  await w?.stop();
  await b?.stop();
  await a?.stop();
  await embedder?.close();
});

async function trigger(key: string, pipelineId = noop, http = onA): Promise<J> {
  const res = await http("POST", `/${B}/ingest`, { object: { key }, pipeline_id: pipelineId });
  expect(res.status).toBe(200);
  return res.json.job;
}

describe.each(DOORS)("a bucket watch through %s", (door) => {
  test("sees a job triggered on another instance through to COMPLETED, after the snapshot", async () => {
    const watch = startWatch(door, b, { bucket: B, pipeline_id: noop });
    try {
      const synced = await watch.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
      expect(synced.eventId).toMatch(/^\d+$/);
      const job = await trigger(`docs/${DOORS.indexOf(door)}.txt`);
      const done = await watch.until((m) => m.job?.jobId === job.jobId && m.job.status === COMPLETED);
      expect(done).toMatchObject({ type: "WATCH_EVENT_TYPE_CHANGE", job: { object: { bucket: B, key: job.object.key }, pipelineId: noop, attempts: 1 } });
      expect(Number(done.eventId)).toBeGreaterThan(Number(synced.eventId));
      // The creation was seen too, before the end, in order.
      const seen = watch.messages.filter((m) => m.job?.jobId === job.jobId).map((m) => m.job.status);
      expect(seen[seen.length - 1]).toBe(COMPLETED);
      if (door === "rest") expect(done.sseId).toBe(done.eventId);
      expect(watch.ended).toBeUndefined();
    } finally {
      watch.close();
    }
  });

  test("a key_prefix watch sees only the jobs of keys under that prefix", async () => {
    const watch = startWatch(door, b, { bucket: B, key_prefix: "docs/l" });
    try {
      await watch.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
      const other = await trigger("docs/9.txt");
      expect((await onA("GET", `/${B}/ingest/jobs/${other.jobId}?wait_ms=10000`)).json.job.status).toBe(COMPLETED);
      const mine = await trigger("docs/long.txt");
      // Events arrive in order: by the end of this job, the other job's whole life had passed the watch.
      await watch.until((m) => m.job?.jobId === mine.jobId && m.job.status === COMPLETED);
      expect(watch.messages.filter((m) => m.job).every((m) => m.job.object.key.startsWith("docs/l"))).toBe(true);
    } finally {
      watch.close();
    }
  });

  test("a watch of one job ends after its terminal state", async () => {
    const job = await trigger(`docs/${4 + DOORS.indexOf(door)}.txt`);
    const watch = startWatch(door, b, { bucket: B, job_id: job.jobId });
    try {
      expect(await watch.done()).toEqual({ code: "ok", message: "" });
      expect(watch.messages.some((m) => m.type === "WATCH_EVENT_TYPE_SYNCED")).toBe(true);
      const states = watch.messages.filter((m) => m.job).map((m) => m.job.status);
      expect(states[states.length - 1]).toBe(COMPLETED);
      expect(watch.messages.every((m) => !m.job || m.job.jobId === job.jobId)).toBe(true);
    } finally {
      watch.close();
    }
  });
});

test("bad watch requests get their error before any event, on every door", async () => {
  for (const door of DOORS) {
    const missing = startWatch(door, b, { bucket: B, job_id: "job_missing" });
    expect(await missing.done()).toMatchObject({ code: "not_found", message: expect.stringContaining("job_missing") });
    const bad = startWatch(door, b, { bucket: B, resume_after: "yesterday" });
    expect(await bad.done()).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("resume_after") });
    if (door === "rest") expect(bad.ended?.httpStatus).toBe(400);
  }
});

test("SSE resumes with Last-Event-ID after a dropped connection, without a gap", async () => {
  const first = startWatch("rest", b, { bucket: B, pipeline_id: noop });
  const synced = await first.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
  first.close();
  // While nobody watches: three jobs run to the end.
  const jobs = [await trigger("docs/7.txt"), await trigger("docs/8.txt"), await trigger("docs/9.txt")];
  for (const j of jobs) await waitFor(`job ${j.jobId} done`, async () => ((await onA("GET", `/${B}/ingest/jobs/${j.jobId}`)).json.job.status === COMPLETED ? true : undefined));
  const again = startWatch("rest", a, { bucket: B, pipeline_id: noop }, { lastEventId: synced.sseId });
  try {
    for (const j of jobs) await again.until((m) => m.job?.jobId === j.jobId && m.job.status === COMPLETED);
    // A resume replays the changes, not a snapshot, then marks where live changes start.
    expect(again.messages.some((m) => m.type === "WATCH_EVENT_TYPE_SNAPSHOT")).toBe(false);
    await again.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
  } finally {
    again.close();
  }
});

test("a resume point older than the retained events is refused plainly (OUT_OF_RANGE), on every door", async () => {
  await trigger("docs/1.txt");
  const repo = a.app.repo();
  const pruned = await repo.events.prune(Date.now() + 60_000, 1_000_000);
  expect(pruned).toBeGreaterThan(0);
  for (const door of DOORS) {
    const old = startWatch(door, b, { bucket: B, resume_after: "1" });
    const ended = await old.done();
    expect(ended).toMatchObject({ code: "out_of_range", message: expect.stringMatching(/older than the events still retained.*without resume_after/) });
    if (door === "rest") expect(old.ended?.httpStatus).toBe(400);
  }
});

test("GetIngestStatus wait_ms answers as soon as the job is terminal, and bounds the wait", async () => {
  const apiOnly = jsonClient(() => b.httpUrl);
  // A job nobody runs: an api-only server with a pipeline no worker... the worker W runs
  // everything, so the job is made terminal by a cancel instead, from the other instance.
  const res = await onA("POST", `/${B}/ingest`, { object: { key: "docs/long.txt" }, pipeline_id: slow });
  const job = res.json.job;
  embedder.setDelay(400);
  try {
    const t0 = Date.now();
    const waiting = apiOnly("GET", `/${B}/ingest/jobs/${job.jobId}?wait_ms=30000`);
    await new Promise((r) => setTimeout(r, 300));
    const cancelled = await onA("POST", `/${B}/ingest/jobs/${job.jobId}:cancel`, {});
    expect(cancelled.status).toBe(200);
    const answer = await waiting;
    const arrived = Date.now();
    expect(answer.status).toBe(200);
    expect(answer.json.job.status).toBe("INGEST_STATUS_CANCELLED");
    // It answered on the change, long before its 30 s were up (the bench measures how soon).
    expect(arrived - t0).toBeLessThan(10_000);
    expect(arrived - Number(answer.json.job.finishedAt)).toBeLessThan(2_000);
  } finally {
    embedder.setDelay(0);
  }
  // A wait that runs out answers the job as it is.
  const pending = await trigger("docs/2.txt", slow, onB);
  embedder.setDelay(1500);
  try {
    const t = Date.now();
    const out = await onB("GET", `/${B}/ingest/jobs/${pending.jobId}?wait_ms=200`);
    expect(out.status).toBe(200);
    expect(Date.now() - t).toBeGreaterThanOrEqual(150);
    expect(["INGEST_STATUS_PENDING", "INGEST_STATUS_PROCESSING"]).toContain(out.json.job.status);
  } finally {
    embedder.setDelay(0);
  }
  const bad = await onB("GET", `/${B}/ingest/jobs/${pending.jobId}?wait_ms=60001`);
  expect(bad.status).toBe(400);
  expect(bad.json.message).toMatch(/wait_ms 60001 .* 60000/);
});

test("a running job shows its stage and progress through Get, List and the watch", async () => {
  embedder.setDelay(150);
  const watch = startWatch("grpc", b, { bucket: B, pipeline_id: slow });
  try {
    await watch.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
    const job = await trigger("docs/long.txt", slow);
    const embedding = await watch.until((m) => m.job?.jobId === job.jobId && ((m.job.progress?.stage === "embedding" && m.job.progress.done > 0) || m.job.status === "INGEST_STATUS_FAILED"), 30_000);
    expect(embedding.job.error).toBe("");
    expect(embedding.job.status).toBe("INGEST_STATUS_PROCESSING");
    expect(embedding.job.progress).toMatchObject({ unit: "chunks" });
    expect(embedding.job.progress.total).toBeGreaterThan(embedding.job.progress.done);
    const got = (await onB("GET", `/${B}/ingest/jobs/${job.jobId}`)).json.job;
    expect(got.progress.stage).toBe("embedding");
    const listed = (await onB("GET", `/${B}/ingest/jobs?status_filter=INGEST_STATUS_PROCESSING`)).json.jobs.find((j: J) => j.jobId === job.jobId);
    expect(listed.progress.stage).toBe("embedding");
    embedder.setDelay(0);
    const done = await watch.until((m) => m.job?.jobId === job.jobId && m.job.status === COMPLETED, 30_000);
    // A finished job carries no stage; its counters are final.
    expect(done.job.progress).toBeUndefined();
    expect(done.job.embeddingsCreated).toBe(done.job.chunksCreated);
    // Progress came at a bounded rate: far fewer messages than embedding batches.
    const updates = watch.messages.filter((m) => m.job?.jobId === job.jobId).length;
    expect(updates).toBeLessThan(done.job.chunksCreated + 4);
  } finally {
    embedder.setDelay(0);
    watch.close();
  }
}, 60_000);

test("a server that drains ends its watches with UNAVAILABLE, and a watch resumed elsewhere misses nothing", async () => {
  const c = await startPeer(a, { K3_ROLE: "api", K3_DATA_DIR: a.dataDir });
  const watch = startWatch("grpc", c, { bucket: B, pipeline_id: noop });
  const synced = await watch.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
  await c.stop();
  expect(await watch.done()).toMatchObject({ code: "unavailable", message: expect.stringContaining("resume_after") });
  const job = await trigger("docs/3.txt");
  const elsewhere = startWatch("grpc", b, { bucket: B, pipeline_id: noop, resume_after: synced.eventId });
  try {
    await elsewhere.until((m) => m.job?.jobId === job.jobId && m.job.status === COMPLETED);
  } finally {
    elsewhere.close();
  }
});

test("watchers see only their organization's jobs", async () => {
  const s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "50" });
  try {
    const mine = await insertToken(s, "default", [{ bucket: "*", role: "admin" }]);
    const theirs = await insertToken(s, "other-org", [{ bucket: "*", role: "admin" }]);
    const http = jsonClient(() => s.httpUrl, { authorization: `Bearer ${mine.token}` });
    const p = (await http("POST", `/shared/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
    s.putObject("shared", "a.txt", "a");
    const spy = startWatch("connect", s, { bucket: "shared" }, { headers: { authorization: `Bearer ${theirs.token}` } });
    const own = startWatch("connect", s, { bucket: "shared" }, { headers: { authorization: `Bearer ${mine.token}` } });
    try {
      await spy.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
      await own.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
      const job = (await http("POST", `/shared/ingest`, { object: { key: "a.txt" }, pipeline_id: p })).json.job;
      await own.until((m) => m.job?.jobId === job.jobId && m.job.status === COMPLETED);
      expect(spy.messages.filter((m) => m.job)).toEqual([]);
      const anonymous = startWatch("rest", s, { bucket: "shared" });
      expect(await anonymous.done()).toMatchObject({ code: "unauthenticated", httpStatus: 401 });
    } finally {
      spy.close();
      own.close();
    }
  } finally {
    await s.stop();
  }
}, 60_000);

test("a watcher that falls too far behind is dropped with RESOURCE_EXHAUSTED and its resume point", async () => {
  const hub = new JobHub(a.app.repo().events, createLogger("silent"));
  // A bucket nothing happens in: only the events pushed here reach the watcher.
  const sub = hub.subscribe({ org: "default", bucket: "kb-quiet" });
  const job = (await onA("GET", `/${B}/ingest/jobs?page_size=1`)).json.jobs[0];
  const ev = { seq: 1, job: { ...job, org: "default", bucket: "kb-quiet", status: "completed" }, outputCurrent: false };
  // It takes two events, then stops reading while 1,000 more arrive.
  sub.push({ ...ev, seq: 1 } as never);
  sub.push({ ...ev, seq: 2 } as never);
  const signal = new AbortController().signal;
  expect((await sub.next(signal))?.seq).toBe(1);
  expect((await sub.next(signal))?.seq).toBe(2);
  for (let i = 3; i < 1100; i++) sub.push({ ...ev, seq: i } as never);
  expect(hub.watchers).toBe(0);
  let err: unknown;
  try {
    for (;;) if (!(await sub.next(signal))) break;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConnectError);
  expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  expect((err as ConnectError).rawMessage).toMatch(/fell 1000 events behind.*resume_after "2"/);
});

test("watchers that leave while changes are being written to them leave nothing behind: no stack on stderr, no error in the log", async () => {
  const bucket = "kb-watch-leavers";
  const pipe = (await onA("POST", `/${bucket}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId as string;
  a.putObject(bucket, "doc.txt", "x");
  const stderr = jest.spyOn(console, "error");
  const errorsBefore = logLines.filter((l) => JSON.parse(l).level === "error").length;
  try {
    for (const door of ["connect", "grpcweb"] as const) {
      const watches = Array.from({ length: 10 }, () => startWatch(door, a, { bucket }));
      for (const watch of watches) await watch.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
      // A burst of jobs (each a few changes) while every watcher leaves after its first change.
      let left = 200;
      const burst = Promise.all(Array.from({ length: 8 }, async () => {
        while (left-- > 0) expect((await onA("POST", `/${bucket}/ingest`, { object: { key: "doc.txt" }, pipeline_id: pipe })).status).toBe(200);
      }));
      for (const watch of watches) {
        await watch.until((m) => m.type === "WATCH_EVENT_TYPE_CHANGE");
        watch.close();
      }
      await burst;
    }
    // The server has seen every watcher leave.
    await new Promise((r) => setTimeout(r, 500));
    expect(stderr.mock.calls.map((c) => String(c[0]))).toEqual([]);
    expect(logLines.filter((l) => JSON.parse(l).level === "error").slice(errorsBefore)).toEqual([]);
  } finally {
    stderr.mockRestore();
  }
});

test("a watch's snapshot holds each unfinished job once, read at one moment, while a worker claims them", async () => {
  const bucket = "kb-watch-snapshot";
  const pipe = (await onA("POST", `/${bucket}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId as string;
  a.putObject(bucket, "doc.txt", "x");
  let writing = true;
  const writers = Promise.all(Array.from({ length: 4 }, async () => {
    while (writing) expect((await onA("POST", `/${bucket}/ingest`, { object: { key: "doc.txt" }, pipeline_id: pipe })).status).toBe(200);
  }));
  const twice: string[] = [];
  try {
    for (let i = 0; i < 60; i++) {
      // Watches on B, whose snapshot reads the pending and the running jobs while W claims them.
      const watches = Array.from({ length: 4 }, () => startWatch("connect", b, { bucket }));
      for (const watch of watches) {
        await watch.until((m) => m.type === "WATCH_EVENT_TYPE_SYNCED");
        const ids = watch.messages.filter((m) => m.type === "WATCH_EVENT_TYPE_SNAPSHOT").map((m) => m.job.jobId as string);
        twice.push(...ids.filter((id, k) => ids.indexOf(id) !== k));
        watch.close();
      }
    }
  } finally {
    writing = false;
    await writers;
  }
  expect(twice).toEqual([]);
});
