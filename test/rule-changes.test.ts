/**
 * Every upload runs the bucket's rules as they are now, on every instance, and every
 * request of the byte plane sees the bucket's row as it is now. Rules and buckets' rows are
 * cached for a few seconds per instance; a write on one instance clears the cache of that
 * instance at once and of the others through NOTIFY, well before the cache would expire.
 * Two instances on one database, requests through the byte plane of each.
 */
import { startPeer, startServers, type TestServers } from "./helpers/servers";
import { jsonClient } from "./helpers/http";
import { waitFor } from "./helpers/wait";

let a: TestServers;
let b: Awaited<ReturnType<typeof startPeer>>;
const B = "kb-rule-changes";
let n = 0;

beforeAll(async () => {
  a = await startServers();
  b = await startPeer(a, { K3_DATA_DIR: a.dataDir });
});
afterAll(async () => {
  await b.stop();
  await a.stop();
});

/** PUTs a new object through `base`'s byte plane; the ids of the jobs its rules started. */
async function put(base: string): Promise<string[]> {
  const res = await fetch(`${base}/${B}/docs/${n++}.txt`, { method: "PUT", body: "hello" });
  expect(res.status).toBe(200);
  return (res.headers.get("x-k3-jobs") ?? "").split(",").filter(Boolean);
}

// Well under the cache's five seconds: only an invalidation can make a change show up in time.
const SOON = { timeoutMs: 3000, intervalMs: 20 };

test("a rule created, disabled and re-enabled on one instance applies to the next uploads on both", async () => {
  const api = jsonClient(() => a.httpUrl);
  const onB = jsonClient(() => b.httpUrl);
  expect((await api("POST", "/admin/buckets", { name: B })).status).toBe(200);
  const pipe = (await api("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
  // Both instances have now read (and cached) the bucket's empty rule set.
  expect(await put(a.httpUrl)).toEqual([]);
  expect(await put(b.httpUrl)).toEqual([]);

  const rule = (await api("POST", `/${B}/rules`, { name: "all", pipeline_id: pipe, include_patterns: ["docs/**"] })).json.rule.ruleId;
  expect(await put(a.httpUrl)).toHaveLength(1);
  await waitFor("instance B to apply the new rule", async () => ((await put(b.httpUrl)).length === 1 ? true : undefined), SOON);

  expect((await onB("PATCH", `/${B}/rules/${rule}`, { enabled: false })).status).toBe(200);
  expect(await put(b.httpUrl)).toEqual([]);
  await waitFor("instance A to stop applying the disabled rule", async () => ((await put(a.httpUrl)).length === 0 ? true : undefined), SOON);

  expect((await api("PATCH", `/${B}/rules/${rule}`, { enabled: true })).status).toBe(200);
  expect(await put(a.httpUrl)).toHaveLength(1);
  await waitFor("instance B to apply the re-enabled rule", async () => ((await put(b.httpUrl)).length === 1 ? true : undefined), SOON);
});

test("a bucket's quota set, lifted, or the bucket deleted and made again on one instance holds for the next requests on both", async () => {
  const Q = "kb-row-changes";
  const api = jsonClient(() => a.httpUrl);
  const onB = jsonClient(() => b.httpUrl);
  const putQ = (base: string) => fetch(`${base}/${Q}/q/${n++}.txt`, { method: "PUT", body: "twenty bytes of text" });
  expect((await api("POST", "/admin/buckets", { name: Q })).status).toBe(200);
  // Both instances have now read (and cached) the bucket's row: no quota.
  expect((await putQ(a.httpUrl)).status).toBe(200);
  expect((await putQ(b.httpUrl)).status).toBe(200);

  expect((await api("PATCH", `/admin/buckets/${Q}`, { storageQuotaBytes: "50" })).status).toBe(200);
  const over = await putQ(a.httpUrl);
  expect(over.status).toBe(403);
  expect(await over.text()).toMatch(/<Code>QuotaExceeded<\/Code>/);
  await waitFor("instance B to enforce the new quota", async () => ((await putQ(b.httpUrl)).status === 403 ? true : undefined), SOON);

  expect((await onB("PATCH", `/admin/buckets/${Q}`, { storageQuotaBytes: "0" })).status).toBe(200);
  expect((await putQ(b.httpUrl)).status).toBe(200);
  await waitFor("instance A to lift the quota", async () => ((await putQ(a.httpUrl)).status === 200 ? true : undefined), SOON);

  expect((await api("DELETE", `/admin/buckets/${Q}?force=true`)).status).toBe(200);
  expect((await fetch(`${a.httpUrl}/${Q}`, { method: "HEAD" })).status).toBe(404);
  await waitFor("instance B to see the bucket gone", async () => ((await fetch(`${b.httpUrl}/${Q}`, { method: "HEAD" })).status === 404 ? true : undefined), SOON);
  // Made again on B: a bucket that was not found is not cached, so A finds it at once.
  expect((await onB("POST", "/admin/buckets", { name: Q })).status).toBe(200);
  expect((await fetch(`${a.httpUrl}/${Q}`, { method: "HEAD" })).status).toBe(200);
  const listed = await fetch(`${a.httpUrl}/${Q}?list-type=2`);
  expect(await listed.text()).toMatch(/<KeyCount>0<\/KeyCount>/);
});
