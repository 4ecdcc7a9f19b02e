/**
 * Scenario 9: discovery of a bucket's internal source at 100,000 files (BENCH_DISCOVERY_OBJECTS) dropped into its
 * folder by hand — all new (each dispatched to a no-op pipeline through a rule), then again
 * with nothing changed — against the baseline of the same folder simply walked (readdir
 * + lstat of every file) in this process, with the server's peak RSS meanwhile.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { freshDatabase, rssOf, startServer } from "./lib";

type Row = { scenario: string; metric: string; value: string; baseline?: string; ratio?: string; target?: string; met?: string };

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

async function walk(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) n += await walk(join(dir, e.name));
    else if ((await lstat(join(dir, e.name))).isFile()) n++;
  }
  return n;
}

export async function scenario9(adminUrl: string, log: (s: string) => void): Promise<{ rows: Row[]; results: Record<string, number> }> {
  const N = Number(process.env.BENCH_DISCOVERY_OBJECTS ?? 100_000);
  log(`scenario 9: discovery of ${N.toLocaleString("en")} files`);
  const url = await freshDatabase(adminUrl, "k3_bench_discovery");
  const server = await startServer("serve", url, { K3_WORKER_CONCURRENCY: "8", K3_POLL_MS: "100" });
  const base = `http://127.0.0.1:${server.httpPort}`;
  const headers = { authorization: `Bearer ${server.token}`, "content-type": "application/json" };
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return (await res.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  const bucket = "kb-discover";
  const internal = (await call("POST", "/admin/buckets", { name: bucket })).bucket.internalSourceId as string;
  const pipe = (await call("POST", `/${bucket}/pipelines`, { name: "noop", scriptum_template: "noop" })).pipeline.pipelineId;
  await call("POST", `/${bucket}/rules`, { name: "all", pipeline_id: pipe, include_patterns: ["**"] });
  const root = join(server.dataDir, "buckets", bucket);
  for (let d = 0; d < 100; d++) {
    mkdirSync(join(root, `d${d}`), { recursive: true });
    for (let f = 0; f < N / 100; f++) writeFileSync(join(root, `d${d}`, `f${f}.txt`), `file ${d}/${f}`);
  }
  const t0 = performance.now();
  const walked = await walk(root);
  const walkSeconds = (performance.now() - t0) / 1000;

  const pid = server.proc.child.pid!;
  let peak = rssOf(pid);
  const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 100);
  const discover = async () => {
    const id = (await call("POST", `/${bucket}/sources/${internal}/discover`, {})).jobId;
    for (;;) {
      const st = await call("GET", `/${bucket}/sources/${internal}/sync`);
      if (!st.syncing && st.last?.discoveryId === id) return st.last as { scanned: string; dispatched: string; startedAt: string; finishedAt: string; state: string };
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const fresh = await discover();
  const freshSeconds = (Number(fresh.finishedAt) - Number(fresh.startedAt)) / 1000;
  const again = await discover();
  const againSeconds = (Number(again.finishedAt) - Number(again.startedAt)) / 1000;
  clearInterval(sampler);
  await server.proc.stop();

  const walkRate = walked / walkSeconds;
  const rows: Row[] = [
    {
      scenario: "9 discovery",
      metric: `${N.toLocaleString("en")} files, all new (${fresh.dispatched} jobs dispatched, ${fresh.state})`,
      value: `${fmt(Number(fresh.scanned) / freshSeconds)} objects/s`,
      baseline: `${fmt(walkRate)} files/s (readdir + lstat)`,
      ratio: fmt(Number(fresh.scanned) / freshSeconds / walkRate, 2),
    },
    {
      scenario: "9 discovery",
      metric: `${N.toLocaleString("en")} files, none changed (${again.dispatched} dispatched)`,
      value: `${fmt(Number(again.scanned) / againSeconds)} objects/s`,
      baseline: `${fmt(walkRate)} files/s (readdir + lstat)`,
      ratio: fmt(Number(again.scanned) / againSeconds / walkRate, 2),
    },
    { scenario: "9 discovery", metric: "server RSS peak during both", value: `${fmt(peak / 2 ** 20)} MB`, target: "flat (≤ 250 MB)", met: peak <= 250 * 2 ** 20 ? "yes" : "no" },
  ];
  return { rows, results: { freshPerSecond: Number(fresh.scanned) / freshSeconds, unchangedPerSecond: Number(again.scanned) / againSeconds, walkPerSecond: walkRate, rssPeak: peak } };
}
