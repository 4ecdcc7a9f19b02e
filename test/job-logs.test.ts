/**
 * A job's log lines through the API (ListIngestJobLogs), from a real server process: the
 * lines answered are the lines the process wrote to its log about that job (the worker's,
 * and the audit line of the console call that triggered it), nothing of another job or of
 * another organization, on every door; the job carries the trace id to search other
 * instances' logs for.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { connectClients, DOORS, type Clients } from "./helpers/clients";
import { createTestDb, type TestDb } from "./helpers/db";
import { jsonClient, type J } from "./helpers/http";
import { serveOn, type Child } from "./helpers/processes";
import { LogRing } from "../src/log";

jest.setTimeout(60_000);

const B = "kb-logs";
let db: TestDb;
let server: { child: Child; url: string };
let http: ReturnType<typeof jsonClient>;
let token: string;
let clients: Clients;
let dataDir: string;

beforeAll(async () => {
  db = await createTestDb();
  dataDir = mkdtempSync(join(tmpdir(), "k3-logs-"));
  chmodSync(dataDir, 0o755);
  server = await serveOn(db.url, dataDir, { K3_POLL_MS: "50", K3_MAX_ATTEMPTS: "1" });
  token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  http = jsonClient(() => server.url, { authorization: `Bearer ${token}` });
  expect((await http("POST", "/admin/buckets", { name: B })).status).toBe(200);
  for (const key of ["a.txt", "b.pdf"]) {
    expect((await fetch(`${server.url}/${B}/${key}`, { method: "PUT", headers: { authorization: `Bearer ${token}` }, body: "not much" })).status).toBe(200);
  }
  const grpcPort = /"grpcPort":(\d+)/.exec(server.child.output())![1];
  clients = connectClients(server.url, `127.0.0.1:${grpcPort}`);
});
afterAll(async () => {
  clients?.close();
  server?.child.proc.kill("SIGTERM");
  await server?.child.exited;
  await db?.drop();
});

/** The process's log lines (stderr) that mention `text`, parsed. */
const logged = (text: string) =>
  server.child
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes(text))
    .map((l) => JSON.parse(l) as J);

async function finished(jobId: string): Promise<J> {
  return (await http("GET", `/${B}/ingest/jobs/${jobId}?wait_ms=20000`)).json.job;
}

test("a job's log lines are the process's lines about it: the console's audit line and the worker's end, on every door", async () => {
  const noop = (await http("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
  const embed = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  // As the console sends it: its x-k3-client header, and a request id of our choosing.
  const res = await fetch(`${server.url}/${B}/ingest`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-k3-client": "console", "x-request-id": "trace-logs-1" },
    body: JSON.stringify({ object: { key: "a.txt" }, pipeline_id: noop }),
  });
  expect(res.status).toBe(200);
  const job = ((await res.json()) as J).job;
  expect(job.traceId).toBe("trace-logs-1");
  expect((await finished(job.jobId)).status).toBe("INGEST_STATUS_COMPLETED");
  // Another job, which fails: none of its lines are the first job's.
  const other = (await http("POST", `/${B}/ingest`, { object: { key: "b.pdf" }, pipeline_id: embed })).json.job;
  expect((await finished(other.jobId)).status).toBe("INGEST_STATUS_FAILED");

  const audit = logged('"console action"').filter((l) => l.requestId === "trace-logs-1");
  expect(audit).toEqual([expect.objectContaining({ method: "TriggerIngest", bucket: B, org: "default", code: "ok" })]);
  const worker = logged(`"job":"${job.jobId}"`);
  expect(worker.map((l) => l.msg)).toContain("job finished");
  const want = [...audit, ...worker].map((l) => JSON.stringify(l)).sort();

  for (const door of DOORS) {
    const r = await clients.call(door, IngestService, "ListIngestJobLogs", { bucket: B, jobId: job.jobId }, { authorization: `Bearer ${token}` });
    if (!r.ok) throw new Error(`${door}: ${r.code} ${r.message}`);
    const body = r.body as { lines: string[]; traceId: string; instance: string };
    expect({ door, lines: body.lines.map((l) => JSON.stringify(JSON.parse(l))).sort() }).toEqual({ door, lines: want });
    expect(body.traceId).toBe("trace-logs-1");
    expect(body.instance).toMatch(/:\d+$/);
  }
  const failedLines = (await http("GET", `/${B}/ingest/jobs/${other.jobId}/logs`)).json.lines as string[];
  expect(failedLines.length).toBeGreaterThan(0);
  expect(failedLines.every((l) => l.includes(other.jobId) && !l.includes(job.jobId))).toBe(true);
});

test("another organization's token cannot read a job's lines, and an unknown job is NOT_FOUND", async () => {
  const jobId = (await http("GET", `/${B}/ingest/jobs?page_size=1`)).json.jobs[0].jobId;
  // A token of another organization, made as an operator makes one.
  const theirs = execFileSync(process.execPath, ["-r", join(__dirname, "helpers", "ts-register.cjs"), join(__dirname, "..", "src", "main.ts"), "tokens", "create", "--org", "other", "--bucket", "*", "--role", "admin", "--json"], {
    env: { ...process.env, DATABASE_URL: db.url, K3_DATA_DIR: dataDir },
    encoding: "utf8",
  });
  const other = JSON.parse(theirs.trim().split("\n").pop()!).token as string;
  const spy = await fetch(`${server.url}/${B}/ingest/jobs/${jobId}/logs`, { headers: { authorization: `Bearer ${other}` } });
  expect(spy.status).toBe(404);
  const own = await fetch(`${server.url}/${B}/ingest/jobs/${jobId}/logs`, { headers: { authorization: `Bearer ${token}` } });
  expect(own.status).toBe(200);
  const res = await fetch(`${server.url}/${B}/ingest/jobs/job_nope/logs`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(404);
  expect(((await res.json()) as J).message).toContain('job_id "job_nope" not found');
  const anonymous = await fetch(`${server.url}/${B}/ingest/jobs/job_nope/logs`);
  expect(anonymous.status).toBe(401);
});

test("a process keeps only its last K3_LOG_LINES lines, oldest first", () => {
  const ring = new LogRing(3);
  for (let i = 1; i <= 5; i++) ring.push(`{"n":${i}}\n`);
  expect(ring.filter(() => true)).toEqual(['{"n":3}', '{"n":4}', '{"n":5}']);
  expect(ring.filter((l) => l.includes("4"))).toEqual(['{"n":4}']);
  const young = new LogRing(3);
  young.push("a\n");
  expect(young.filter(() => true)).toEqual(["a"]);
});
