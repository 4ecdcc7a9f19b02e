/**
 * One tenant's rule, options or file must not stall, crash or starve the server: each
 * finding of the hardening issue, replayed on a real server with its worker. While the
 * hostile work runs, a probe keeps calling /healthz and a neighbour keeps being served.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, type App } from "../src/app";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { compileGlob } from "../src/domain/rules";
import { flateBomb } from "./helpers/fixtures";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

let s: TestServers;
const B = "kb-hostile";
const http = jsonClient(() => s.httpUrl);
const TERMINAL = ["INGEST_STATUS_COMPLETED", "INGEST_STATUS_FAILED", "INGEST_STATUS_PARTIAL", "INGEST_STATUS_CANCELLED"];
let embed: string;
let rows: string;
let noop: string;

/** Calls /healthz every 25 ms while `work` runs; returns the slowest answer (ms). */
async function slowestHealthz<T>(work: () => Promise<T>): Promise<{ result: T; slowestMs: number }> {
  let slowest = 0;
  let running = true;
  const probe = (async () => {
    while (running) {
      const t = performance.now();
      const res = await fetch(`${s.httpUrl}/healthz`);
      await res.text();
      slowest = Math.max(slowest, performance.now() - t);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  try {
    return { result: await work(), slowestMs: slowest };
  } finally {
    running = false;
    await probe;
  }
}

async function finished(jobId: string, timeoutMs = 60_000): Promise<J> {
  return waitFor(`job ${jobId} to finish`, async () => {
    const g = await http("GET", `/${B}/ingest/jobs/${jobId}`);
    return TERMINAL.includes(g.json.job.status) ? g.json.job : undefined;
  }, { timeoutMs, intervalMs: 50 });
}

async function ingest(key: string, pipelineId: string, options: Record<string, string> = {}): Promise<J> {
  const t = await http("POST", `/${B}/ingest`, { object: { key }, pipelineId, options });
  expect(t.status).toBe(200);
  return finished(t.json.job.jobId);
}

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_POLL_MS: "100", K3_SANDBOX_MEMORY_MB: "256", K3_WORKER_CONCURRENCY: "4" });
  embed = (await http("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
  rows = (await http("POST", `/${B}/pipelines`, { name: "rows", scriptum_template: "structured_rows" })).json.pipeline.pipelineId;
  noop = (await http("POST", `/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
}, 60_000);
afterAll(() => s.stop());

describe("rule globs", () => {
  test("patterns that make a backtracking matcher explode answer at once (188 s before)", async () => {
    const key = "a".repeat(40);
    s.putObject(B, key, "x");
    const pathological = ["*a".repeat(14) + "x", "**a".repeat(10) + "b", "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c"];
    for (const p of pathological) expect(compileGlob(p).test("a".repeat(1024))).toBe(false);
    const r = await http("POST", `/${B}/rules`, { name: "evil", pipeline_id: noop, include_patterns: pathological });
    expect(r.status).toBe(200);
    const { result, slowestMs } = await slowestHealthz(async () => {
      const t0 = performance.now();
      const res = await http("POST", `/${B}/ingest`, { object: { key } });
      return { res, ms: performance.now() - t0 };
    });
    expect(result.res.status).toBe(400);
    expect(result.res.json.code).toBe("failed_precondition");
    // Generous bounds: the backtracking matcher took minutes here.
    expect(result.ms).toBeLessThan(2000);
    expect(slowestMs).toBeLessThan(1000);
    await http("DELETE", `/${B}/rules/${r.json.rule.ruleId}`);
  });

  test.each([
    ["x".repeat(257), /include_patterns\[0\] is 257 characters long; at most 256/],
    ["*a".repeat(17), /include_patterns\[0\] .* has 17 wildcards; at most 16/],
  ])("a pattern past a cap is refused naming the limit (%#)", async (pattern, message) => {
    const r = await http("POST", `/${B}/rules`, { name: "too-much", pipeline_id: noop, include_patterns: [pattern] });
    expect(r.status).toBe(400);
    expect(r.json.code).toBe("invalid_argument");
    expect(r.json.message).toMatch(message);
  });

  test("a bucket holds at most 500 rules and 65,536 glob characters", async () => {
    const bucket = "kb-many-rules";
    const p = (await http("POST", `/${bucket}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
    const pool = s.app.repo().pool;
    await pool.query(
      `INSERT INTO rules (rule_id, org, bucket, pipeline_id, name, include_patterns, created_at, updated_at)
       SELECT 'rule_bulk' || i, 'default', $1, $2, 'bulk' || i, ARRAY['docs/' || i || '/**'], i, i FROM generate_series(1, 500) AS i`,
      [bucket, p],
    );
    const refused = await http("POST", `/${bucket}/rules`, { name: "one-more", pipeline_id: p, include_patterns: ["x/**"] });
    expect(refused.status).toBe(400);
    expect(refused.json.message).toMatch(/already has 500 rules; at most 500 rules are allowed per bucket/);

    const other = "kb-long-rules";
    const q = (await http("POST", `/${other}/pipelines`, { name: "noop", scriptum_template: "noop" })).json.pipeline.pipelineId;
    const long = Array.from({ length: 100 }, (_, i) => `${String(i).padStart(3, "0")}/${"p".repeat(195)}/**`);
    for (let i = 0; i < 3; i++) {
      expect((await http("POST", `/${other}/rules`, { name: `long-${i}`, pipeline_id: q, include_patterns: long })).status).toBe(200);
    }
    const tooLong = await http("POST", `/${other}/rules`, { name: "long-3", pipeline_id: q, include_patterns: long });
    expect(tooLong.status).toBe(400);
    expect(tooLong.json.message).toMatch(/would hold \d+ characters of include\/exclude patterns; at most 65536/);
  });
});

describe("options that used to exhaust the heap", () => {
  test.each([
    [{ chunk_size: "1", chunk_overlap: "0" }, /options\["chunk_size"\] = "1" must be an integer from 32 to 100000/],
    [{ chunk_size: "1000000", chunk_overlap: "999999" }, /options\["chunk_size"\] = "1000000" must be an integer from 32 to 100000/],
    [{ chunk_size: "1000", chunk_overlap: "999" }, /options\["chunk_overlap"\] = "999" must be at most half of chunk_size \(1000\)/],
  ])("%j is refused", async (options, message) => {
    const r = await http("POST", `/${B}/pipelines`, { name: "crash", scriptum_template: "text_embedding_index", options });
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(message);
  });

  test("the in-range worst case fails its job cleanly before allocating, and the server keeps serving", async () => {
    s.putObject(B, "crash/90k.txt", "word ".repeat(18_000));
    const { result: job, slowestMs } = await slowestHealthz(() =>
      ingest("crash/90k.txt", embed, { chunk_size: "32", chunk_overlap: "0", dimensions: "8192", batch_size: "2048" }),
    );
    expect(job.status).toBe("INGEST_STATUS_FAILED");
    expect(job.attempts).toBe(1);
    expect(job.error).toMatch(/would make 2813 chunks of 8192 dimensions .* the limit is 16777216 \(K3_MAX_VECTOR_VALUES\)/);
    expect(slowestMs).toBeLessThan(1000);
    s.putObject(B, "crash/ok.txt", "fine");
    expect((await ingest("crash/ok.txt", noop)).status).toBe("INGEST_STATUS_COMPLETED");
  });
});

describe("hostile files end in a clear state while /healthz stays fast", () => {
  test("99 MB one-line CSV, 90 MB text, a 1 GiB flate bomb, [ x 10^6 and deep nesting, four at a time", async () => {
    s.putObject(B, "big/one-line.csv", Buffer.alloc(99 * 1000 * 1000, "a"));
    s.putObject(B, "big/huge.txt", Buffer.alloc(90 * 1000 * 1000, "b"));
    s.putObject(B, "big/bomb.pdf", await flateBomb(1024 * 1024 * 1024));
    s.putObject(B, "big/open.json", "[".repeat(1_000_000));
    s.putObject(B, "big/deep.json", "[".repeat(1_000_000) + "]".repeat(1_000_000));
    s.putObject(B, "big/deep-rows.jsonl", `{"a":${"[".repeat(300_000)}${"]".repeat(300_000)}}\n`);
    s.putObject(B, "big/wide.csv", Array.from({ length: 20_000 }, (_, i) => `c${i}`).join(",") + "\n");
    const cases: Array<[string, string, RegExp]> = [
      ["big/one-line.csv", rows, /is 99000000 bytes; the limit for it is 64000000/],
      ["big/huge.txt", embed, /is 90000000 bytes; the limit for it is 64000000/],
      ["big/bomb.pdf", embed, /needed more than 256 MiB of memory/],
      ["big/open.json", embed, /is not valid JSON/],
      ["big/deep.json", embed, /nests deeper than 256 levels/],
      ["big/deep-rows.jsonl", rows, /nests deeper than 256 levels/],
      ["big/wide.csv", rows, /more than 10000 fields; at most 10000 columns/],
    ];
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
    const { result: jobs, slowestMs } = await slowestHealthz(() => Promise.all(cases.map(([key, p]) => ingest(key, p))));
    clearInterval(sampler);
    jobs.forEach((job, i) => {
      expect({ key: cases[i][0], status: job.status, attempts: job.attempts }).toEqual({ key: cases[i][0], status: "INGEST_STATUS_FAILED", attempts: 1 });
      expect(job.error).toMatch(cases[i][2]);
    });
    expect(slowestMs).toBeLessThan(1000);
    // The server process (this jest worker) never holds a hostile file's expansion.
    expect(rssPeak - rssBefore).toBeLessThan(200 * 1024 * 1024);
  }, 120_000);
});

describe("files swapped under the worker", () => {
  let worker: App | undefined;
  const outside = mkdtempSync(join(tmpdir(), "k3-outside-"));
  afterAll(async () => {
    await worker?.stop();
    rmSync(outside, { recursive: true, force: true });
  });

  test("a link or FIFO renamed over a checked key is never read and never hangs anyone", async () => {
    // An API-only server accepts the triggers; the worker starts after the swap.
    const api = await startServers({ K3_ROLE: "api" });
    const h = jsonClient(() => api.httpUrl);
    try {
      const p = (await h("POST", `/${B}/pipelines`, { name: "embed", scriptum_template: "text_embedding_index" })).json.pipeline.pipelineId;
      writeFileSync(join(outside, "secret.txt"), "TOP SECRET payroll of another tenant");
      const keys = ["swap/link.txt", "swap/dir/inner.txt", "swap/fifo-1.txt", "swap/fifo-2.txt", "swap/fifo-3.txt", "swap/fifo-4.txt", "swap/ok.txt"];
      for (const k of keys) api.putObject(B, k, "innocent text");
      const ids: string[] = [];
      for (const k of keys) ids.push((await h("POST", `/${B}/ingest`, { object: { key: k }, pipelineId: p })).json.job.jobId);
      const path = (k: string) => join(api.dataDir, "buckets", B, k);
      // The swaps: a link over a file, a link over a directory, FIFOs over files.
      symlinkSync(join(outside, "secret.txt"), path("swap/link.tmp"));
      renameSync(path("swap/link.tmp"), path("swap/link.txt"));
      rmSync(path("swap/dir"), { recursive: true });
      mkdirSync(join(outside, "dir"));
      writeFileSync(join(outside, "dir", "inner.txt"), "TOP SECRET too");
      symlinkSync(join(outside, "dir"), path("swap/dir"));
      for (const n of [1, 2, 3, 4]) {
        rmSync(path(`swap/fifo-${n}.txt`));
        execFileSync("mkfifo", [path(`swap/fifo-${n}.txt`)]);
      }
      const config = loadConfig({ DATABASE_URL: api.db.url, K3_DATA_DIR: api.dataDir, K3_ROLE: "worker", K3_POLL_MS: "100", K3_AUTH: "off" });
      worker = build(config, createLogger("silent"));
      await worker.start();
      const byKey = new Map<string, J>();
      await waitFor("every swapped job to finish", async () => {
        for (const [i, id] of ids.entries()) {
          const g = await h("GET", `/${B}/ingest/jobs/${id}`);
          if (!TERMINAL.includes(g.json.job.status)) return undefined;
          byKey.set(keys[i], g.json.job);
        }
        return true;
      }, { timeoutMs: 20_000 });
      expect(byKey.get("swap/link.txt")).toMatchObject({ status: "INGEST_STATUS_FAILED", error: expect.stringMatching(/is a symbolic link; links are not read/) });
      expect(byKey.get("swap/dir/inner.txt")).toMatchObject({ status: "INGEST_STATUS_FAILED", error: expect.stringMatching(/leads outside its bucket/) });
      for (const n of [1, 2, 3, 4]) {
        expect(byKey.get(`swap/fifo-${n}.txt`)).toMatchObject({ status: "INGEST_STATUS_FAILED", error: expect.stringMatching(/is not a regular file/) });
      }
      expect(byKey.get("swap/ok.txt")).toMatchObject({ status: "INGEST_STATUS_COMPLETED" });
      for (const job of byKey.values()) expect(JSON.stringify(job)).not.toContain("SECRET");
      const { rows: leaked } = await api.app.repo().pool.query("SELECT count(*)::int AS n FROM vector_chunks WHERE content LIKE '%SECRET%'");
      expect(leaked[0].n).toBe(0);
      // Triggers of everyone else still answer at once.
      api.putObject(B, "swap/after.txt", "after");
      expect((await h("POST", `/${B}/ingest`, { object: { key: "swap/after.txt" }, pipelineId: p })).status).toBe(200);
    } finally {
      await worker?.stop();
      worker = undefined;
      await api.stop();
    }
  });
});

describe("amplification", () => {
  test("pipeline options and descriptions have the trigger's limits", async () => {
    const options = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`o${i}`, "v".repeat(15_000)]));
    const big = await http("POST", `/${B}/pipelines`, { name: "amp", scriptum_template: "noop", options });
    expect(big.status).toBe(400);
    expect(big.json.message).toMatch(/options\["o0"\] is 15002 bytes \(key plus value\); at most 4096/);
    const many = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`o${i}`, "v".repeat(4000)]));
    const total = await http("POST", `/${B}/pipelines`, { name: "amp", scriptum_template: "noop", options: many });
    expect(total.json.message).toMatch(/options holds 32016 bytes in all; at most 16384/);
    const desc = await http("POST", `/${B}/pipelines`, { name: "amp", scriptum_template: "noop", description: "d".repeat(100_000) });
    expect(desc.status).toBe(400);
    expect(desc.json.message).toMatch(/description is 100000 characters long; at most 4096/);
  });

  test("a list page is bounded in bytes as well as rows, and paging still reaches every job", async () => {
    const bucket = "kb-fat-jobs";
    const pool = s.app.repo().pool;
    const fat = JSON.stringify(Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`k${i}`, "x".repeat(4000)])));
    await pool.query(
      `INSERT INTO jobs (job_id, org, bucket, object_key, pipeline_id, options, created_at, updated_at, status, finished_at)
       SELECT 'job_fat' || lpad(i::text, 5, '0'), 'default', $1, 'k' || i, 'pipe_x', $2::jsonb, i, i, 'completed', i FROM generate_series(1, 1000) AS i`,
      [bucket, fat],
    );
    let token = "";
    let seen = 0;
    let pages = 0;
    do {
      const res = await fetch(`${s.httpUrl}/${bucket}/ingest/jobs?page_size=1000${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
      const text = await res.text();
      expect(text.length).toBeLessThan(5 * 1024 * 1024);
      const body = JSON.parse(text) as J;
      seen += body.jobs.length;
      token = body.pagination.nextPageToken;
      pages++;
    } while (token);
    expect(seen).toBe(1000);
    expect(pages).toBeGreaterThan(1);
  });
});

