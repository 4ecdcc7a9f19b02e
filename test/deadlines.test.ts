/**
 * A client deadline or disconnect aborts the server-side work of its call, database
 * queries included: with the jobs table locked by another session, a List that times
 * out (gRPC deadline, Connect timeout) or whose client goes away (REST) leaves no query
 * of ours waiting on the lock.
 */
import * as grpc from "@grpc/grpc-js";
import { Client } from "pg";
import { create, toBinary } from "@bufbuild/protobuf";
import { ListIngestJobsRequestSchema } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

let s: TestServers;
let locker: Client;
/**
 * Watches pg_stat_activity from outside the locker's transaction: inside a transaction
 * PostgreSQL shows the activity of every session as it was at the transaction's first
 * look, so the locker would keep seeing one moment for the whole file.
 */
let observer: Client;
const B = "kb-deadline";

/** Our server's sessions that are waiting on a lock right now. */
async function waitingQueries(): Promise<number> {
  const { rows } = await observer.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'k3-ingest' AND wait_event_type = 'Lock' AND datname = current_database()",
  );
  return rows[0].n;
}

beforeAll(async () => {
  s = await startServers();
  locker = new Client({ connectionString: s.db.url });
  await locker.connect();
  await locker.query("BEGIN");
  await locker.query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE");
  observer = new Client({ connectionString: s.db.url });
  await observer.connect();
});
afterAll(async () => {
  await locker.query("ROLLBACK").catch(() => undefined);
  await locker.end();
  await observer.end();
  await s.stop();
});

test("a gRPC deadline cancels the blocked query", async () => {
  const client = new grpc.Client(s.grpcAddress, grpc.credentials.createInsecure());
  const started = Date.now();
  const code = await new Promise<number>((resolve) =>
    client.makeUnaryRequest(
      "/dodil.k3.ingest.v1.IngestService/ListIngestJobs",
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      toBinary(ListIngestJobsRequestSchema, create(ListIngestJobsRequestSchema, { bucket: B })),
      new grpc.Metadata(),
      { deadline: Date.now() + 300 },
      (err) => resolve(err?.code ?? 0),
    ),
  );
  client.close();
  expect(code).toBe(grpc.status.DEADLINE_EXCEEDED);
  expect(Date.now() - started).toBeLessThan(3000);
  await waitFor("the server's query to be cancelled", async () => ((await waitingQueries()) === 0 ? true : undefined), { timeoutMs: 5000 });
});

test("a Connect timeout cancels the blocked query", async () => {
  const res = await fetch(`${s.httpUrl}/dodil.k3.ingest.v1.IngestService/ListIngestJobs`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-timeout-ms": "300" },
    body: JSON.stringify({ bucket: B }),
  });
  expect(((await res.json()) as { code: string }).code).toBe("deadline_exceeded");
  await waitFor("the server's query to be cancelled", async () => ((await waitingQueries()) === 0 ? true : undefined), { timeoutMs: 5000 });
});

test("a REST client that goes away cancels the blocked query", async () => {
  const abort = new AbortController();
  const pending = fetch(`${s.httpUrl}/${B}/ingest/jobs`, { signal: abort.signal }).catch((e: Error) => e);
  await waitFor("the query to block on the lock", async () => ((await waitingQueries()) > 0 ? true : undefined), { timeoutMs: 20_000 });
  abort.abort();
  expect(((await pending) as Error).name).toBe("AbortError");
  await waitFor("the server's query to be cancelled", async () => ((await waitingQueries()) === 0 ? true : undefined), { timeoutMs: 5000 });
});

test("once the lock is gone the server serves again", async () => {
  await locker.query("ROLLBACK");
  const res = await fetch(`${s.httpUrl}/${B}/ingest/jobs`);
  expect(res.status).toBe(200);
});

test("a deadline that passes while the call waits for a database connection is honoured", async () => {
  const one = await startServers({ K3_DB_POOL_SIZE: "1" });
  const lock = new Client({ connectionString: one.db.url });
  await lock.connect();
  try {
    await lock.query("BEGIN");
    await lock.query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE");
    // The first call takes the only connection and blocks on the lock.
    const first = fetch(`${one.httpUrl}/${B}/ingest/jobs/job_first`).catch((e: Error) => e);
    await waitFor("the first call to hold the connection", () => (one.app.repo().pool.idleCount === 0 && one.app.repo().pool.totalCount === 1 ? true : undefined));
    const started = Date.now();
    const res = await fetch(`${one.httpUrl}/dodil.k3.ingest.v1.IngestService/GetIngestStatus`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "300" },
      body: JSON.stringify({ bucket: B, jobId: "job_second" }),
    });
    expect(((await res.json()) as { code: string }).code).toBe("deadline_exceeded");
    // Before, the checkout waited its full 5 s connection timeout and answered UNAVAILABLE.
    expect(Date.now() - started).toBeLessThan(2000);
    await lock.query("ROLLBACK");
    expect(((await first) as Response).status).toBe(404);
  } finally {
    await lock.end();
    await one.stop();
  }
});
