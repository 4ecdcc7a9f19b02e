/**
 * Sources and sync over REST, on a real server with its worker: a folder bucket's internal
 * source discovers files dropped in by hand (once), spawns nothing when nothing changed,
 * spawns exactly the touched ones, removes the chunks of deleted ones; full_sync
 * re-dispatches everything; TriggerIngestion with retry_failed replays exactly the failed
 * jobs as linked jobs; bad input is answered by name; a second trigger while one runs is
 * refused naming the running one.
 */
import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "pg";
import { IngestService } from "../gen/dodil/k3/ingest/v1/ingest_pb";
import { SourceService } from "../gen/dodil/k3/source/v1/source_pb";
import { connectClients, DOORS } from "./helpers/clients";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(180_000);

let s: TestServers;
const B = "kb-sync";
const N = 1000;
const http = jsonClient(() => s.httpUrl);
let internal = "";
let embed = "";

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "50", K3_WORKER_CONCURRENCY: "8", K3_DISCOVERY_BATCH: "200" });
  internal = (await http("POST", "/admin/buckets", { name: B })).json.bucket.internalSourceId;
  embed = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  await http("POST", `/${B}/rules`, { name: "all", pipeline_id: embed, include_patterns: ["**"] });
  // Files dropped into the bucket's folder by hand: only a discovery finds them.
  for (let i = 0; i < N; i++) s.putObject(B, `notes/n${String(i).padStart(4, "0")}.txt`, `note number ${i} about sync`);
  s.putObject(B, "broken/a.pdf", "%PDF-1.4 not really");
  s.putObject(B, "broken/b.pdf", "%PDF-1.4 not really either");
});
afterAll(() => s.stop());

/** Starts a discovery and waits for it to end; returns its final state. */
async function discover(body: J = {}): Promise<J> {
  const started = await http("POST", `/${B}/sources/${internal}/discover`, body);
  expect(started).toMatchObject({ status: 200, json: { accepted: true, message: "Discovery scan started" } });
  const id = started.json.jobId;
  expect(id).toMatch(/^disc_/);
  return waitFor(`discovery ${id}`, async () => {
    const st = (await http("GET", `/${B}/sources/${internal}/sync`)).json;
    return !st.syncing && st.last?.discoveryId === id ? st.last : undefined;
  }, { timeoutMs: 60_000, intervalMs: 100 });
}

/** Waits until no job of the source is pending or processing; `each` sees every status read. */
async function allTerminal(each: (st: J) => void = () => {}, intervalMs = 200): Promise<J> {
  return waitFor("every job to end", async () => {
    const st = (await http("GET", `/${B}/sources/${internal}/sync`)).json;
    each(st);
    const c = st.jobCounts ?? {};
    return !c.INGEST_STATUS_PENDING && !c.INGEST_STATUS_PROCESSING ? st : undefined;
  }, { timeoutMs: 120_000, intervalMs });
}

async function jobCount(): Promise<number> {
  return Number((await http("GET", `/${B}/ingest/jobs?source_id=${internal}&page_size=1`)).json.pagination.totalCount);
}

test("the internal source of a folder bucket: discover once, nothing twice, the touched ten, the deleted five, full_sync", async () => {
  const source = (await http("GET", `/${B}/sources/${internal}`)).json.source;
  expect(source).toMatchObject({ provider: "SOURCE_PROVIDER_INTERNAL_S3", syncIntervalSeconds: "0", enabled: true, status: "SOURCE_STATUS_ACTIVE" });

  const first = await discover();
  expect(first).toMatchObject({ state: "completed", scanned: String(N + 2), newObjects: String(N + 2), modified: "0", unchanged: "0", deleted: "0", dispatched: String(N + 2) });
  // The planner knows the catalog the discovery filled before the discovery is reported
  // done (until autovacuum came, a fresh catalog looked empty and the status below took a
  // nested loop over every job per object).
  const stats = new Client({ connectionString: s.db.url });
  await stats.connect();
  try {
    const { rows } = await stats.query("SELECT relname, reltuples FROM pg_class WHERE oid IN ('objects'::regclass, 'jobs'::regclass) ORDER BY relname");
    expect(rows.map((r) => [r.relname, Number(r.reltuples) >= N + 2])).toEqual([["jobs", true], ["objects", true]]);
  } finally {
    await stats.end();
  }
  // One job per object so far: every status read while they run counts as many indexed
  // objects as completed jobs (its counts are of one snapshot).
  const seen: string[] = [];
  const st = await allTerminal((read) => seen.push(`${read.jobCounts?.INGEST_STATUS_COMPLETED ?? "0"}/${read.indexedObjects}`), 10);
  expect(seen.filter((x) => x.split("/")[0] !== x.split("/")[1])).toEqual([]);
  expect(st.jobCounts).toEqual({ INGEST_STATUS_COMPLETED: String(N), INGEST_STATUS_FAILED: "2" });
  expect(st).toMatchObject({ totalObjects: String(N + 2), indexedObjects: String(N) });
  expect(Number(st.lastSuccessAt)).toBeGreaterThan(0);

  const second = await discover();
  expect(second).toMatchObject({ state: "completed", scanned: String(N + 2), newObjects: "0", modified: "0", unchanged: String(N + 2), dispatched: "0" });
  expect(await jobCount()).toBe(N + 2);

  const dir = join(s.dataDir, "buckets", B, "notes");
  const later = new Date(Date.now() + 60_000);
  for (let i = 0; i < 10; i++) utimesSync(join(dir, `n${String(i * 7).padStart(4, "0")}.txt`), later, later);
  const third = await discover();
  expect(third).toMatchObject({ modified: "10", unchanged: String(N - 8), dispatched: "10" });
  expect(await jobCount()).toBe(N + 12);
  await allTerminal();

  // Chunks of the five files removed by hand go with them.
  const db = new Client({ connectionString: s.db.url });
  await db.connect();
  try {
    const gone = ["n0500", "n0501", "n0502", "n0503", "n0504"].map((n) => `notes/${n}.txt`);
    const chunks = async () => Number((await db.query("SELECT count(*) AS n FROM vector_chunks WHERE object_key = ANY($1)", [gone])).rows[0].n);
    expect(await chunks()).toBe(5);
    for (const k of gone) rmSync(join(s.dataDir, "buckets", B, k));
    const fourth = await discover();
    expect(fourth).toMatchObject({ deleted: "5", dispatched: "0" });
    expect(await chunks()).toBe(0);
    expect((await http("GET", `/${B}/objects/notes/n0500.txt/info`)).status).toBe(404);
  } finally {
    await db.end();
  }

  const full = await discover({ full_sync: true });
  expect(full).toMatchObject({ unchanged: String(N - 3), dispatched: String(N - 3) });
  await allTerminal();
});

test("TriggerIngestion: nothing to do when all is indexed; retry_failed replays exactly the failed jobs, linked", async () => {
  const before = await jobCount();
  const plain = await http("POST", `/${B}/sources/${internal}/ingest`, {});
  // Only the two broken PDFs lack a successful job for their current version.
  expect(plain.json).toMatchObject({ accepted: true, dispatched: "2" });
  await allTerminal();
  // A replay of a failed object is linked to the failure it retries.
  const failed = (await http("GET", `/${B}/ingest/jobs?source_id=${internal}&status_filter=INGEST_STATUS_FAILED&page_size=100`)).json.jobs as J[];
  const latestFailed = ["broken/a.pdf", "broken/b.pdf"].map((k) => failed.find((j) => j.object.key === k) as J);
  expect(latestFailed.every((j) => j.retryOf !== "" && failed.some((f) => f.jobId === j.retryOf))).toBe(true);
  const retry = await http("POST", `/${B}/sources/${internal}/ingest`, { retry_failed: true });
  expect(retry.json).toMatchObject({ accepted: true, dispatched: "2" });
  const replays = ((await http("GET", `/${B}/ingest/jobs?source_id=${internal}&page_size=3`)).json.jobs as J[]).slice(0, 2);
  expect(replays.map((j) => j.retryOf).sort()).toEqual(latestFailed.map((j) => j.jobId).sort());
  const one = (await http("GET", `/${B}/ingest/jobs/${replays[0].jobId}`)).json.job;
  expect(one).toMatchObject({ sourceId: internal, retryOf: replays[0].retryOf, object: { key: expect.stringMatching(/^broken\//) } });
  expect(await jobCount()).toBe(before + 4);
  await allTerminal();
  // One object only.
  const single = await http("POST", `/${B}/sources/${internal}/ingest`, { retry_failed: true, source_object_id: "broken/a.pdf" });
  expect(single.json).toMatchObject({ dispatched: "1", considered: "1" });
  await allTerminal();
});

test("a file or folder dropped in under a name that is not UTF-8 is counted as failed, and the rest is discovered", async () => {
  const L = "kb-latin";
  const source = (await http("POST", "/admin/buckets", { name: L })).json.bucket.internalSourceId;
  const dir = join(s.dataDir, "buckets", L);
  s.putObject(L, "plain.txt", "plain");
  s.putObject(L, "z.txt", "last");
  // Names from a Latin-1 archive: "café.txt", and "déjà/" with a file in it.
  writeFileSync(Buffer.concat([Buffer.from(`${dir}/caf`), Buffer.from([0xe9]), Buffer.from(".txt")]), "latin");
  const folder = Buffer.concat([Buffer.from(`${dir}/d`), Buffer.from([0xe9]), Buffer.from("j"), Buffer.from([0xe0])]);
  mkdirSync(folder);
  writeFileSync(Buffer.concat([folder, Buffer.from("/inner.txt")]), "inside");
  const id = (await http("POST", `/${L}/sources/${source}/discover`, {})).json.jobId;
  const last = await waitFor("the discovery", async () => {
    const st = (await http("GET", `/${L}/sources/${source}/sync`)).json;
    return !st.syncing && st.last?.discoveryId === id ? st.last : undefined;
  });
  expect(last).toMatchObject({ state: "completed", scanned: "4", newObjects: "2", failed: "2", error: "" });
  expect(((await http("GET", `/${L}/objects`)).json.objects as J[]).map((o) => o.key)).toEqual(["plain.txt", "z.txt"]);
});

test("bad input: unknown source, another bucket's source, unknown rule, the internal source's delete, a discovery already running", async () => {
  expect(await http("POST", `/${B}/sources/src_nope/discover`, {})).toMatchObject({ status: 404, json: { message: expect.stringMatching(/source_id "src_nope" not found in bucket "kb-sync"/) } });
  s.putObject("kb-other", "x.txt", "x");
  const otherInternal = (await http("GET", "/kb-other/sources")).json.sources[0].sourceId;
  expect((await http("GET", `/${B}/sources/${otherInternal}`)).status).toBe(404);
  expect((await http("POST", `/${B}/sources/${otherInternal}/ingest`, {})).status).toBe(404);
  expect(await http("POST", `/${B}/sources/${internal}/discover`, { rule_id: "rule_nope" })).toMatchObject({ status: 404, json: { message: expect.stringMatching(/rule_id "rule_nope" is not an enabled rule/) } });
  expect(await http("DELETE", `/${B}/sources/${internal}`)).toMatchObject({ status: 400, json: { code: "failed_precondition" } });
  expect(await http("POST", `/${B}/sources`, { provider: "SOURCE_PROVIDER_GITHUB", name: "gh" })).toMatchObject({ status: 501, json: { code: "unimplemented", message: expect.stringMatching(/SOURCE_PROVIDER_GITHUB sources are not implemented by this server; accepted: SOURCE_PROVIDER_EXTERNAL_S3/) } });
  expect(await http("POST", `/${B}/sources`, { provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: "x", external_s3: { endpoint: "ftp://h", bucket: "b", access_key_id: "k", secret_access_key: "s" } })).toMatchObject({ status: 400, json: { message: expect.stringMatching(/external_s3\.endpoint "ftp:\/\/h" must be an http\(s\) base URL/) } });
  expect(await http("POST", `/${B}/rules`, { name: "r", pipeline_id: embed, source_id: "src_nope" })).toMatchObject({ status: 404 });

  // Two triggers at once: one is accepted, the other names it.
  const [a, b] = await Promise.all([http("POST", `/${B}/sources/${internal}/discover`, {}), http("POST", `/${B}/sources/${internal}/discover`, {})]);
  const accepted = [a, b].filter((r) => r.json.accepted);
  const refused = [a, b].filter((r) => !r.json.accepted);
  expect(accepted).toHaveLength(1);
  expect(refused).toHaveLength(1);
  expect(refused[0].json.jobId).toBe(accepted[0].json.jobId);
  expect(refused[0].json.message).toContain(accepted[0].json.jobId);
  await waitFor("the discovery to end", async () => ((await http("GET", `/${B}/sources/${internal}/sync`)).json.syncing ? undefined : true), { timeoutMs: 60_000 });
});

test("every door serves the sources and sync RPCs alike", async () => {
  const clients = connectClients(s.httpUrl, s.grpcAddress);
  try {
    const seen = new Set<string>();
    for (const door of DOORS) {
      const list = await clients.call(door, SourceService, "ListSources", { bucket: B });
      const status = await clients.call(door, IngestService, "GetSyncStatus", { bucket: B, sourceId: internal });
      expect({ door, list: list.ok, status: status.ok }).toEqual({ door, list: true, status: true });
      const sources = (list as { body: J }).body.sources as J[];
      seen.add(JSON.stringify([sources[0].sourceId, sources[0].provider, (status as { body: J }).body.totalObjects]));
      const missing = await clients.call(door, SourceService, "GetSource", { bucket: B, sourceId: "src_nope" });
      expect({ door, ok: missing.ok, code: (missing as { code?: string }).code }).toEqual({ door, ok: false, code: "not_found" });
    }
    expect(seen.size).toBe(1);
  } finally {
    clients.close();
  }
});

test("ListIngestJobs?source_id= pages through the source's jobs with keyset tokens and an exact total", async () => {
  const ids = new Set<string>();
  let token = "";
  let total = 0;
  do {
    const page = (await http("GET", `/${B}/ingest/jobs?source_id=${internal}&page_size=400${token ? `&page_token=${token}` : ""}`)).json;
    for (const j of page.jobs as J[]) {
      expect(j.sourceId).toBe(internal);
      ids.add(j.jobId);
    }
    total = Number(page.pagination.totalCount);
    token = page.pagination.nextPageToken ?? "";
  } while (token);
  expect(ids.size).toBe(total);
  expect(total).toBeGreaterThan(2000);
  // A token of the source listing is refused for another filter, by name.
  const first = (await http("GET", `/${B}/ingest/jobs?source_id=${internal}&page_size=1`)).json.pagination.nextPageToken;
  expect((await http("GET", `/${B}/ingest/jobs?page_size=1&page_token=${first}`)).json.message).toMatch(/page_token was issued for different filters/);
});
