/**
 * The web console in a real browser: Debian's Chromium driven by playwright-core against
 * a real server. Sign in, create a pipeline and a rule, trigger a job and see it reach
 * COMPLETED without reloading, filter to FAILED and bulk-retry them, open a job, see a
 * chart drawn from real data; a reader token sees no action buttons and a forged action
 * gets 403. With K3_SCREENSHOTS=docs it writes the README's screenshots.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./helpers/chromium";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { waitFor } from "./helpers/wait";

// What the functions run inside the page use (the project's types have no DOM).
declare const sessionStorage: { getItem(key: string): string | null };
declare const document: { querySelector(s: string): { getAttribute(n: string): string | null } | null; documentElement: { scrollWidth: number }; activeElement: { textContent: string | null } | null };

const SHOTS = process.env.K3_SCREENSHOTS ? join(__dirname, "..", process.env.K3_SCREENSHOTS) : undefined;
const B = "kb-console";
let s: TestServers;
let browser: Browser;
let admin: string;
let reader: string;
let api: ReturnType<typeof jsonClient>;
const logLines: string[] = [];

jest.setTimeout(120_000);

beforeAll(async () => {
  // The server's log lines are kept (as a real process keeps them) for the job page's log section.
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "50", K3_MAX_ATTEMPTS: "1", K3_METRICS_AUTH: "on" }, { logLines });
  admin = (await insertToken(s, "default", [{ bucket: "*", role: "admin" }])).token;
  reader = (await insertToken(s, "default", [{ bucket: "*", role: "reader" }])).token;
  api = jsonClient(() => s.httpUrl, { authorization: `Bearer ${admin}` });
  expect((await api("POST", "/admin/buckets", { name: B, description: "console test" })).status).toBe(200);
  // Uploaded through the byte plane, as users do (no rules yet: no jobs).
  for (const [key, body] of [["docs/a.txt", "hello console"], ["docs/b.txt", "second document"], ["bad/1.pdf", "not a pdf"], ["bad/2.pdf", "not a pdf either"]]) {
    const tagged: Record<string, string> = key === "bad/2.pdf" ? { "x-amz-tagging": "stage=rejected&source=scan" } : {};
    const put = await fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: { authorization: `Bearer ${admin}`, ...tagged }, body });
    expect(put.status).toBe(200);
  }
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

async function signedIn(token: string, width = 1280, height = 800): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height } });
  page.on("pageerror", (err) => {
    throw err;
  });
  await page.goto(`${s.httpUrl}/console/`);
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Buckets" }).waitFor();
  // The token is in session storage, never in the URL.
  expect(page.url()).not.toContain(token);
  expect(await page.evaluate(() => sessionStorage.getItem("k3-console-token"))).toBe(token);
  return page;
}

test("an operator signs in, sets up a pipeline and a rule, and watches a triggered job complete without reloading", async () => {
  const page = await signedIn(admin);
  await page.getByRole("link", { name: B }).click();
  await page.getByRole("link", { name: "Pipelines & rules" }).click();
  await page.getByLabel("Name", { exact: true }).first().fill("noop");
  await page.getByLabel("Template").selectOption("noop");
  await page.getByRole("button", { name: "Create pipeline" }).click();
  await page.getByRole("cell", { name: "noop", exact: true }).first().waitFor();
  await page.locator("#rule-name").fill("docs");
  await page.locator("#rule-pipeline").selectOption({ label: "noop" });
  await page.locator("#rule-include").fill("docs/**");
  await page.getByRole("button", { name: "Create rule" }).click();
  await page.getByRole("cell", { name: "docs/**" }).waitFor();
  // Which rule would catch a key: the answer names the rule.
  await page.locator("#check-key").fill("docs/b.txt");
  await page.getByRole("button", { name: "Check" }).click();
  await page.getByText('Rule "docs" catches it: pipeline noop.').waitFor();

  await page.getByRole("link", { name: "Jobs" }).click();
  await page.locator(".live", { hasText: "live" }).waitFor();
  const loads = await page.evaluate(() => performance.getEntriesByType("navigation" as never).length);
  await page.locator("#trigger-key").fill("docs/a.txt");
  await page.getByRole("button", { name: "Trigger" }).click();
  const id = (await page.locator("#status").textContent())?.match(/job (job_\w+)/)?.[1] ?? (await waitFor("the trigger message", async () => (await page.locator("#status").textContent())?.match(/job (job_\w+)/)?.[1]));
  const row = page.locator(`tr[data-job="${id}"]`);
  await row.locator(".badge", { hasText: "COMPLETED" }).waitFor({ timeout: 15_000 });
  expect(await page.evaluate(() => performance.getEntriesByType("navigation" as never).length)).toBe(loads);
  if (SHOTS) await page.screenshot({ path: join(SHOTS, "console-jobs.png"), fullPage: true });
  await page.close();
});

test("failed jobs are filtered, counted, and bulk-retried after a confirmation; a job's page shows its error and retry chain", async () => {
  const embed = (await api("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  const failed: J[] = [];
  for (const key of ["bad/1.pdf", "bad/2.pdf"]) failed.push((await api("POST", `/${B}/ingest`, { object: { key }, pipeline_id: embed })).json.job);
  for (const j of failed) await waitFor(`${j.jobId} FAILED`, async () => ((await api("GET", `/${B}/ingest/jobs/${j.jobId}`)).json.job.status === "INGEST_STATUS_FAILED" ? true : undefined));

  const page = await signedIn(admin);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/jobs`);
  await page.getByLabel("Status").selectOption("FAILED");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/status=FAILED/);
  await page.locator("tbody tr").first().waitFor();
  const shown = await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: { job: string } }).dataset.job));
  expect(shown.sort()).toEqual(failed.map((j) => j.jobId).sort());
  await page.getByRole("button", { name: "Retry all matching…" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Retry 2 FAILED jobs matching this filter?").waitFor();
  await dialog.getByRole("button", { name: "Confirm" }).click();
  await page.getByText("retry: 2 done.").waitFor();
  const retried = (await api("GET", `/${B}/ingest/jobs?pipeline_id=${embed}&page_size=10`)).json.jobs.filter((j: J) => j.retryOf);
  expect(retried.map((j: J) => j.retryOf).sort()).toEqual(failed.map((j) => j.jobId).sort());

  // A job's page: its fields, its error, the chain back to the job it replays.
  await page.goto(`${s.httpUrl}/console/#/b/${B}/jobs/${retried[0].jobId}`);
  await page.getByRole("heading", { name: `Job ${retried[0].jobId}` }).waitFor();
  await page.getByRole("heading", { name: "Retry chain" }).waitFor();
  await page.getByRole("link", { name: retried[0].retryOf }).waitFor();
  await page.locator(".err").first().waitFor();
  expect(await page.locator("dl.fields").textContent()).toContain(retried[0].object.key);
  // Its log lines, as the server logged them: the console's own (audited) retry call, and
  // the worker's failed attempt.
  const failedLine = page.locator("ol.log li", { hasText: "job failed" });
  await failedLine.first().waitFor();
  expect(await failedLine.first().textContent()).toContain(retried[0].jobId);
  expect(await page.locator("ol.log li", { hasText: "console action" }).first().textContent()).toContain('"method":"TriggerIngest"');
  expect(logLines.some((l) => l.includes('"job failed"') && l.includes(retried[0].jobId))).toBe(true);
  if (SHOTS) await page.screenshot({ path: join(SHOTS, "console-job.png"), fullPage: true });
  await page.close();
});

test("the objects view lists keys by prefix with each object's latest job per pipeline", async () => {
  const page = await signedIn(admin);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/objects`);
  await page.getByLabel("Key prefix").fill("bad/");
  await page.getByRole("button", { name: "List" }).click();
  await page.waitForURL(/prefix=bad/);
  const rows = page.locator("tbody tr");
  await rows.first().waitFor();
  expect(await rows.count()).toBe(2);
  // bad/1.pdf ran the embed pipeline (failed, then retried and failed again).
  const first = rows.filter({ hasText: "bad/1.pdf" });
  await first.getByText("embed:").waitFor();
  await first.locator(".badge", { hasText: "FAILED" }).waitFor();
  // An object's S3 tags show in their own column.
  expect(await rows.filter({ hasText: "bad/2.pdf" }).locator("td").nth(4).innerText()).toBe("stage=rejected, source=scan");
  await page.close();
});

test("the sources view: Sync now finds a file dropped into the bucket's folder, the row following the discovery to its end; a reader gets no buttons", async () => {
  mkdirSync(join(s.dataDir, "buckets", B, "dropped"), { recursive: true });
  writeFileSync(join(s.dataDir, "buckets", B, "dropped", "by-hand.txt"), "copied in by hand");
  const page = await signedIn(admin);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/sources`);
  const own = page.locator("tbody tr").filter({ hasText: "INTERNAL_S3" });
  await own.waitFor();
  const objects = Number(await own.locator("td").nth(4).innerText());
  await own.getByRole("button", { name: "Sync now" }).click();
  await page.getByText("Discovery scan started").waitFor();
  // No reload: the row shows the discovery's end.
  await own.getByText(/^completed .*: 1 new, 0 modified, 0 deleted$/).waitFor({ timeout: 30_000 });
  expect(Number(await own.locator("td").nth(4).innerText())).toBe(objects + 1);
  // Its name leads to its jobs (no rule here routes dropped/).
  await own.getByRole("link", { name: "internal" }).click();
  await page.waitForURL(/jobs\?source=src_/);
  const sourceId = new URL(page.url().replace("#/", "")).searchParams.get("source");
  expect(await page.locator('input[name="source"]').inputValue()).toBe(sourceId);
  await page.close();
  const read = await signedIn(reader);
  await read.goto(`${s.httpUrl}/console/#/b/${B}/sources`);
  await read.locator("tbody tr").first().waitFor();
  expect(await read.getByRole("button", { name: "Sync now" }).count()).toBe(0);
  await read.close();
});

test("the charts draw the bucket's real job counts", async () => {
  const page = await signedIn(admin);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/charts`);
  const chart = page.getByRole("img", { name: "Jobs by status over time" });
  await chart.waitFor();
  const completed = Number((await api("GET", `/${B}/ingest/jobs?status_filter=INGEST_STATUS_COMPLETED&page_size=1`)).json.pagination.totalCount);
  expect(completed).toBeGreaterThan(0);
  await chart.locator("text", { hasText: `COMPLETED ${completed}` }).waitFor();
  // A second sample draws the throughput line.
  await page.waitForFunction(() => /^M[\d.,]+L/.test(document.querySelector('svg[aria-label^="Throughput"] path')?.getAttribute("d") ?? ""), undefined, { timeout: 10_000 });
  await page.getByText(/Oldest PENDING job \(organization\)/).waitFor();
  // Durations by template come from this server's worker (the job duration histogram).
  await page.getByRole("img", { name: /Job duration by template/ }).locator("rect").first().waitFor();
  if (SHOTS) await page.screenshot({ path: join(SHOTS, "console-charts.png"), fullPage: true });
  await page.close();
});

test("the access view shows the bucket's policy statements and CORS rules as set, and says when there are none", async () => {
  const page = await signedIn(reader);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/access`);
  await page.getByText("No policy: only tokens' own grants reach this bucket.").waitFor();
  await page.getByText("No CORS rules: web pages on other origins cannot use this bucket's byte plane.").waitFor();
  const policy = { Statement: [{ Sid: "Reports", Effect: "Allow", Principal: "*", Action: ["s3:GetObject"], Resource: `arn:aws:s3:::${B}/docs/*` }, { Sid: "NoDeletes", Effect: "Deny", Principal: "*", Action: "s3:DeleteObject", Resource: `arn:aws:s3:::${B}/*` }] };
  expect((await api("PUT", `/admin/buckets/${B}/policy`, { policy })).status).toBe(200);
  expect((await api("PUT", `/admin/buckets/${B}/cors`, { rules: [{ id: "app", allowed_origins: ["https://app.example.com"], allowed_methods: ["GET", "PUT"] }] })).status).toBe(200);
  await page.reload();
  await page.getByText(/^Public:/).waitFor();
  const rows = page.getByRole("table", { name: "Policy statements" }).locator("tbody tr");
  expect(await rows.allInnerTexts()).toEqual([`Reports\tAllow\t*\ts3:GetObject\tarn:aws:s3:::${B}/docs/*`, `NoDeletes\tDeny\t*\ts3:DeleteObject\tarn:aws:s3:::${B}/*`]);
  const cors = page.getByRole("table", { name: /CORS rules/ }).locator("tbody tr");
  expect(await cors.allInnerTexts()).toEqual(["app\thttps://app.example.com\tGET, PUT\t\t\t"]);
  expect((await api("DELETE", `/admin/buckets/${B}/policy`)).status).toBe(200);
  expect((await api("DELETE", `/admin/buckets/${B}/cors`)).status).toBe(200);
  await page.close();
});

test("a reader sees no action buttons, and an action forged from the page is refused with 403", async () => {
  const page = await signedIn(reader);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/jobs`);
  await page.getByText("Read-only token: no actions.").waitFor();
  expect(await page.getByRole("button", { name: "Trigger" }).count()).toBe(0);
  expect(await page.getByRole("button", { name: /all matching/ }).count()).toBe(0);
  const job = (await api("GET", `/${B}/ingest/jobs?page_size=1`)).json.jobs[0];
  const forged = await page.evaluate(
    async ([bucket, id]) => {
      const res = await fetch(`/${bucket}/ingest/jobs/${id}:cancel`, { method: "POST", headers: { authorization: `Bearer ${sessionStorage.getItem("k3-console-token")}` } });
      return { status: res.status, body: (await res.json()) as { code: string } };
    },
    [B, job.jobId],
  );
  expect(forged.status).toBe(403);
  expect(forged.body.code).toBe("permission_denied");
  await page.close();
});

test("it works at phone width, by keyboard, and serves nothing it should not", async () => {
  const page = await signedIn(admin, 390, 800);
  await page.goto(`${s.httpUrl}/console/#/b/${B}/jobs`);
  await page.locator("tbody tr").first().waitFor();
  // Nothing wider than the screen but the table, which scrolls inside itself.
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(391);
  // The skip link is the first stop of the keyboard on a fresh load.
  await page.reload();
  await page.locator("tbody tr").first().waitFor();
  await page.keyboard.press("Tab");
  expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");
  await page.close();
  const res = await fetch(`${s.httpUrl}/console/../admin-token`);
  expect(res.status).not.toBe(200);
  const index = await fetch(`${s.httpUrl}/console/`);
  expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
  expect(await index.text()).toContain('type="module"');
});
