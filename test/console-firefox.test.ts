/**
 * The web console in Debian's Firefox ESR (WebDriver BiDi, test/helpers/firefox.ts), against
 * a real server: sign in, trigger a job and see it reach COMPLETED without reloading (the live
 * rows read the SSE watch through fetch streams), narrow the jobs to a key prefix, open a job,
 * and see the status chart drawn from real counts. The Chromium tests (console.test.ts) cover
 * every view and action; this one proves the same modules run in the other engine.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { launchFirefox, FIREFOX, type Firefox, type FirefoxTab } from "./helpers/firefox";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";

const SHOTS = process.env.K3_SCREENSHOTS ? join(__dirname, "..", process.env.K3_SCREENSHOTS) : undefined;
const B = "kb-firefox";
let s: TestServers;
let firefox: Firefox;
let admin: string;
let api: ReturnType<typeof jsonClient>;
let noop: string;

jest.setTimeout(120_000);

beforeAll(async () => {
  if (!existsSync(FIREFOX)) throw new Error(`${FIREFOX} is missing: apt-get install firefox-esr (CI's .ci/run installs it), or set FIREFOX_PATH`);
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "50", K3_MAX_ATTEMPTS: "1" });
  admin = (await insertToken(s, "default", [{ bucket: "*", role: "admin" }])).token;
  api = jsonClient(() => s.httpUrl, { authorization: `Bearer ${admin}` });
  expect((await api("POST", "/admin/buckets", { name: B })).status).toBe(200);
  for (const key of ["docs/a.txt", "docs/b.txt", "img/c.txt"]) {
    expect((await fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: { authorization: `Bearer ${admin}` }, body: key })).status).toBe(200);
  }
  noop = (await api("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
  firefox = await launchFirefox();
});
afterAll(async () => {
  await firefox?.close();
  await s?.stop();
});

/** Sets an input's value the way typing would (an input event) and answers nothing. */
const type = (selector: string, value: string) =>
  `const el = document.querySelector(${JSON.stringify(selector)}); el.value = ${JSON.stringify(value)}; el.dispatchEvent(new Event("input", { bubbles: true }));`;
const clickButton = (name: string) =>
  `const b = [...document.querySelectorAll("button")].find((x) => x.textContent.trim() === ${JSON.stringify(name)}); if (!b) throw new Error("no button " + ${JSON.stringify(name)}); b.click();`;

async function signedIn(width = 1280, height = 800): Promise<FirefoxTab> {
  const tab = await firefox.newTab(width, height);
  await tab.goto(`${s.httpUrl}/console/`);
  await tab.until("the sign-in form", `return !!document.querySelector("#token")`);
  await tab.run(type("#token", admin) + clickButton("Sign in"));
  await tab.until("the buckets heading", `return [...document.querySelectorAll("h2")].some((h) => h.textContent === "Buckets")`);
  expect(await tab.run<string>(`return sessionStorage.getItem("k3-console-token")`)).toBe(admin);
  expect(await tab.run<string>(`return location.href`)).not.toContain(admin);
  return tab;
}

test(`Firefox ESR runs the console: a triggered job reaches COMPLETED live, and the jobs narrow to a key prefix`, async () => {
  const tab = await signedIn();
  expect(firefox.version).toMatch(/^\d+\./);
  await tab.goto(`${s.httpUrl}/console/#/b/${B}/jobs`);
  await tab.until("the live watch", `return document.querySelector(".live")?.textContent === "live"`);
  const loads = await tab.run<number>(`return performance.getEntriesByType("navigation").length`);
  await tab.run(type("#trigger-key", "docs/a.txt") + `document.querySelector("#trigger-pipeline").value = ${JSON.stringify(noop)};` + clickButton("Trigger"));
  const id = await tab.until<string>("the trigger message", `return document.querySelector("#status").textContent.match(/job (job_\\w+)/)?.[1]`);
  await tab.until(`${id} COMPLETED in its row`, `return document.querySelector('tr[data-job="${id}"] .badge')?.textContent === "COMPLETED"`);
  expect(await tab.run<number>(`return performance.getEntriesByType("navigation").length`)).toBe(loads);

  // Two more jobs, one under img/: the key prefix filter (a fresh list from the server) keeps the docs/ ones only.
  for (const key of ["docs/b.txt", "img/c.txt"]) expect((await api("POST", `/${B}/ingest`, { object: { key }, pipeline_id: noop })).status).toBe(200);
  await tab.run(`document.querySelector('input[name="prefix"]').value = "docs/";` + clickButton("Filter"));
  await tab.until("the filtered URL", `return location.hash.includes("prefix=docs%2F")`);
  const keys = await tab.until<string[]>("the docs/ rows", `const r = [...document.querySelectorAll("tbody tr td.key")].map((td) => td.textContent); return r.length === 2 && r`);
  expect(keys.sort()).toEqual(["docs/a.txt", "docs/b.txt"]);
  expect(await tab.run<string>(`return [...document.querySelectorAll("p")].find((p) => p.textContent.includes(" matching jobs"))?.textContent`)).toMatch(/^2 matching jobs/);
  if (SHOTS) await tab.screenshot(join(SHOTS, "console-firefox-jobs.png"));

  // The job's page.
  await tab.goto(`${s.httpUrl}/console/#/b/${B}/jobs/${id}`);
  await tab.until("the job heading", `return [...document.querySelectorAll("h2")].some((h) => h.textContent === "Job ${id}")`);
  expect(await tab.run<string>(`return document.querySelector("dl.fields").textContent`)).toContain("docs/a.txt");
  expect(tab.errors).toEqual([]);
});

test("Firefox ESR draws the status chart from the bucket's real counts, at phone width too", async () => {
  const tab = await signedIn(390, 800);
  const completed = Number((await api("GET", `/${B}/ingest/jobs?status_filter=INGEST_STATUS_COMPLETED&page_size=1`)).json.pagination.totalCount);
  expect(completed).toBeGreaterThan(0);
  await tab.goto(`${s.httpUrl}/console/#/b/${B}/charts`);
  await tab.until(
    `the chart's COMPLETED ${completed} label`,
    `return [...document.querySelectorAll('svg[aria-label="Jobs by status over time"] text')].some((t) => t.textContent === "COMPLETED ${completed}")`,
  );
  expect(await tab.run<number>(`return document.documentElement.scrollWidth`)).toBeLessThanOrEqual(391);
  expect(tab.errors).toEqual([]);
});
