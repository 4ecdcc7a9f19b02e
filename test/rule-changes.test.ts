/**
 * Every upload runs the bucket's rules as they are now, on every instance. Rules are
 * cached for a few seconds per instance; a rule written on one instance clears the cache
 * of that instance at once and of the others through NOTIFY, well before the cache would
 * expire. Two instances on one database, PUTs through the byte plane of each.
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
