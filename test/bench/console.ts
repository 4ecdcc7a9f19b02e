/**
 * Scenario 12: the console's jobs view of a 1,000,000-job bucket in Debian's Chromium —
 * a full page load, from navigation to the first page of rows on screen (the watch stream opening beside it),
 * against the time the same first page takes as one bare REST call from this process.
 */
import { Pool } from "pg";
import { launchChromium } from "../helpers/chromium";
import { migrate } from "../../src/storage/postgres/migrate";
import { freshDatabase, percentile, startServer } from "./lib";

type Row = { scenario: string; metric: string; value: string; baseline?: string; ratio?: string; target?: string; met?: string };
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

export async function scenario12(adminUrl: string, log: (s: string) => void): Promise<{ rows: Row[]; results: Record<string, number> }> {
  const N = Number(process.env.BENCH_CONSOLE_JOBS ?? 1_000_000);
  log(`scenario 12: the console's jobs view of a ${N.toLocaleString("en")}-job bucket`);
  const url = await freshDatabase(adminUrl, "k3_bench_console");
  const pool = new Pool({ connectionString: url, max: 1 });
  await migrate(pool);
  const t0 = performance.now();
  for (let from = 0; from < N; from += 200_000) {
    await pool.query(
      `INSERT INTO jobs (job_id, org, bucket, object_key, status, pipeline_id, pipeline_name, template, created_at, updated_at, finished_at)
       SELECT 'job_c' || lpad(i::text, 9, '0'), 'default', 'kb-big', 'docs/' || (i % 5000) || '.txt',
              (ARRAY['completed','failed','completed','completed','cancelled'])[1 + i % 5], 'pipe_c', 'embed', 'noop', 1000 + i, 1000 + i, 1000 + i
       FROM generate_series($1::int, $2::int - 1) AS i`,
      [from, Math.min(N, from + 200_000)],
    );
  }
  await pool.query("VACUUM ANALYZE jobs");
  await pool.end();
  log(`  ${N} jobs written in ${fmt((performance.now() - t0) / 1000, 1)} s`);
  const s = await startServer("api", url, {});
  const base = `http://127.0.0.1:${s.httpPort}`;
  const rest: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await (await fetch(`${base}/kb-big/ingest/jobs?page_size=50`, { headers: { authorization: `Bearer ${s.token}` } })).json();
    rest.push(performance.now() - t);
  }
  const browser = await launchChromium();
  const loads: number[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${base}/console/`);
    await page.getByLabel("Bearer token").fill(s.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Buckets" }).waitFor();
    for (let i = 0; i < 10; i++) {
      // A full page load each time (the token stays in the tab's session storage).
      await page.goto("about:blank");
      const t = performance.now();
      await page.goto(`${base}/console/#/b/kb-big/jobs?n=${i}`);
      await page.locator("tbody tr").nth(49).waitFor();
      loads.push(performance.now() - t);
    }
  } finally {
    await browser.close();
    await s.proc.stop();
  }
  const p50 = percentile(loads, 50);
  const worst = Math.max(...loads);
  return {
    rows: [
      {
        scenario: "12 console",
        metric: `jobs view of a ${N.toLocaleString("en")}-job bucket: navigation → 50 rows on screen, p50 / worst of 10`,
        value: `${fmt(p50)} / ${fmt(worst)} ms`,
        baseline: `${fmt(percentile(rest, 50), 1)} ms the first page as one REST call`,
        target: "< 1000 ms",
        met: worst < 1000 ? "yes" : "no",
      },
    ],
    results: { p50, worst, restP50: percentile(rest, 50) },
  };
}
