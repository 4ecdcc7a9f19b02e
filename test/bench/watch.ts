/**
 * Scenario 11: push instead of poll. Wake-to-client latency — trigger a noop job, then the
 * moment a watcher sees it COMPLETED (SSE) or a long poll (wait_ms) answers — next to the
 * 100 ms poll loop a client would otherwise run; then 1,000 SSE watchers on one API
 * instance: their extra RSS, and trigger throughput with them open against without (the
 * watchers watch other buckets of the same server, so every event is read by the hub and
 * matched against them; none is written to them).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WatchEventType, WatchIngestJobsRequestSchema, WatchIngestJobsResponseSchema } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { freshDatabase, h2load, percentile, rssOf, startServer } from "./lib";

type Row = { scenario: string; metric: string; value: string; baseline?: string; ratio?: string; target?: string; met?: string };
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

export async function scenario11(adminUrl: string, seconds: number, log: (s: string) => void): Promise<{ rows: Row[]; results: Record<string, number> }> {
  log("scenario 11: watchers and long polls against the poll loop");
  const rows: Row[] = [];
  const B = "kb-watch";
  // Latency: one server with its worker.
  {
    const url = await freshDatabase(adminUrl, "k3_bench_watch");
    const s = await startServer("serve", url, { K3_POLL_MS: "1000" });
    const base = `http://127.0.0.1:${s.httpPort}`;
    const headers = { authorization: `Bearer ${s.token}`, "content-type": "application/json" };
    mkdirSync(join(s.dataDir, "buckets", B), { recursive: true });
    writeFileSync(join(s.dataDir, "buckets", B, "a.txt"), "a");
    const post = async (path: string, body: unknown) => (await (await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body) })).json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const pipe = (await post(`/${B}/pipelines`, { name: "noop", scriptum_template: "noop" })).pipeline.pipelineId as string;
    const trigger = async () => (await post(`/${B}/ingest`, { object: { key: "a.txt" }, pipeline_id: pipe })).job.jobId as string;
    // One SSE watcher of the bucket, read line by line.
    const abort = new AbortController();
    const res = await fetch(`${base}/${B}/ingest/jobs:watch`, { headers, signal: abort.signal });
    const waiting = new Map<string, () => void>();
    void (async () => {
      const dec = new TextDecoder();
      let buf = "";
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
            const data = buf.slice(0, i).split("\n").find((l) => l.startsWith("data: "));
            buf = buf.slice(i + 2);
            if (!data) continue;
            const m = JSON.parse(data.slice(6));
            if (m.job?.status === "INGEST_STATUS_COMPLETED") waiting.get(m.job.jobId)?.();
          }
        }
      } catch {
        // aborted at the end
      }
    })();
    const viaWatch: number[] = [];
    const viaLongPoll: number[] = [];
    const viaPoll: number[] = [];
    for (let i = 0; i < 60; i++) {
      const t0 = performance.now();
      let seen!: () => void;
      const done = new Promise<void>((r) => (seen = r));
      const id = await trigger();
      waiting.set(id, seen);
      await done;
      viaWatch.push(performance.now() - t0);
      const t1 = performance.now();
      const id2 = await trigger();
      await fetch(`${base}/${B}/ingest/jobs/${id2}?wait_ms=30000`, { headers });
      viaLongPoll.push(performance.now() - t1);
      const t2 = performance.now();
      const id3 = await trigger();
      for (;;) {
        const j = (await (await fetch(`${base}/${B}/ingest/jobs/${id3}`, { headers })).json()) as { job: { status: string } };
        if (j.job.status === "INGEST_STATUS_COMPLETED") break;
        await new Promise((r) => setTimeout(r, 100));
      }
      viaPoll.push(performance.now() - t2);
    }
    abort.abort();
    await s.proc.stop();
    const p = (xs: number[]) => `${fmt(percentile(xs, 50), 1)} / ${fmt(percentile(xs, 99), 1)} ms`;
    rows.push({ scenario: "11 push", metric: "trigger → watcher sees COMPLETED (SSE), p50 / p99", value: p(viaWatch), baseline: `${p(viaPoll)} poll loop (100 ms)`, ratio: fmt(percentile(viaPoll, 50) / percentile(viaWatch, 50), 2) });
    rows.push({ scenario: "11 push", metric: "trigger → long poll (wait_ms) answers COMPLETED, p50 / p99", value: p(viaLongPoll), baseline: `${p(viaPoll)} poll loop (100 ms)`, ratio: fmt(percentile(viaPoll, 50) / percentile(viaLongPoll, 50), 2) });
  }
  // 1,000 watchers: memory and trigger throughput, on an API-only server.
  const url = await freshDatabase(adminUrl, "k3_bench_watchers");
  const s = await startServer("api", url, process.env.BENCH_WATCHERS_POLL_MS ? { K3_WATCH_POLL_MS: process.env.BENCH_WATCHERS_POLL_MS } : {});
  const base = `http://127.0.0.1:${s.httpPort}`;
  const auth = { authorization: `Bearer ${s.token}` };
  mkdirSync(join(s.dataDir, "buckets", B), { recursive: true });
  writeFileSync(join(s.dataDir, "buckets", B, "a.txt"), "a");
  const pipe = ((await (await fetch(`${base}/${B}/pipelines`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ name: "noop", scriptum_template: "noop" }) })).json()) as { pipeline: { pipelineId: string } }).pipeline.pipelineId;
  const body = Buffer.from(JSON.stringify({ object: { key: "a.txt" }, pipeline_id: pipe }));
  const pid = s.proc.child.pid!;
  /** A trigger load, with the server's peak RSS while it ran. */
  const load = async () => {
    let peak = rssOf(pid);
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 200);
    try {
      return { ...(await h2load({ url: `${base}/${B}/ingest`, body, headers: { ...auth, "content-type": "application/json" }, seconds, http1: true })), peak };
    } finally {
      clearInterval(sampler);
    }
  };
  const rate = (r: { ok: number; seconds: number }) => r.ok / r.seconds;
  const results: Record<string, number> = {};
  // The same 1,000 watchers two ways: SSE (1,000 HTTP/1.1 connections, as 1,000 browsers)
  // and gRPC (1,000 streams on one HTTP/2 connection, as a service fanning out).
  const open: Record<string, () => { streams: Promise<unknown>; synced: () => number; close: () => void }> = {
    SSE: () => {
      const abort = new AbortController();
      let synced = 0;
      const streams = Promise.allSettled(Array.from({ length: 1000 }, async (_, i) => {
        const res = await fetch(`${base}/kb-watched-${i % 10}/ingest/jobs:watch`, { headers: auth, signal: abort.signal });
        let counted = false;
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          if (!counted && Buffer.from(chunk).includes("event: synced")) {
            counted = true;
            synced++;
          }
        }
      }));
      return { streams, synced: () => synced, close: () => abort.abort() };
    },
    gRPC: () => {
      const client = new grpc.Client(`127.0.0.1:${s.grpcPort}`, grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      md.set("authorization", auth.authorization);
      let synced = 0;
      const calls = Array.from({ length: 1000 }, (_, i) => {
        const call = client.makeServerStreamRequest<Uint8Array, Buffer>(
          "/dodil.k3.ingest.v1.IngestService/WatchIngestJobs",
          (m) => Buffer.from(m),
          (b) => b,
          toBinary(WatchIngestJobsRequestSchema, create(WatchIngestJobsRequestSchema, { bucket: `kb-watched-${i % 10}` })),
          md,
        );
        let counted = false;
        call.on("data", (b: Buffer) => {
          if (!counted && fromBinary(WatchIngestJobsResponseSchema, b).type === WatchEventType.SYNCED) {
            counted = true;
            synced++;
          }
        });
        return new Promise((resolve) => {
          call.on("error", resolve);
          call.on("end", resolve);
        });
      });
      return { streams: Promise.allSettled(calls), synced: () => synced, close: () => client.close() };
    },
  };
  for (const [door, start] of Object.entries(open)) {
    const without = await load();
    const idleBefore = rssOf(pid);
    const w = start();
    for (let i = 0; w.synced() < 1000 && i < 600; i++) await new Promise((r) => setTimeout(r, 50));
    const idleExtraMb = (rssOf(pid) - idleBefore) / 2 ** 20;
    const withWatchers = await load();
    const synced = w.synced();
    w.close();
    await Promise.race([w.streams, new Promise((r) => setTimeout(r, 5000))]);
    // Without again, so the order of the runs (a growing table) is not taken for the watchers' cost.
    const withoutAgain = await load();
    const baseline = (rate(without) + rate(withoutAgain)) / 2;
    // Peak RSS under the same load, with the watchers against without them (before and after).
    const extraMb = (withWatchers.peak - Math.max(without.peak, withoutAgain.peak)) / 2 ** 20;
    const cost = 1 - rate(withWatchers) / baseline;
    const worst = Math.max(extraMb, idleExtraMb);
    rows.push({ scenario: "11 push", metric: `1,000 ${door} watchers (${synced} synced): extra RSS when they open (idle) / extra peak RSS under the trigger load`, value: `${fmt(idleExtraMb)} / ${fmt(extraMb)} MB`, baseline: `peak ${fmt(Math.max(without.peak, withoutAgain.peak) / 2 ** 20)} MB without`, target: "< 100 MB", met: worst < 100 ? "yes" : "no" });
    rows.push({
      scenario: "11 push",
      metric: `TriggerIngest (REST) with 1,000 ${door} watchers open vs none`,
      value: `${fmt(rate(withWatchers))}/s`,
      baseline: `${fmt(baseline)}/s without (${fmt(rate(without))} before, ${fmt(rate(withoutAgain))} after)`,
      ratio: fmt(rate(withWatchers) / baseline, 2),
      target: "< 5 % slower",
      met: cost < 0.05 ? "yes" : "no",
    });
    results[`extraMb${door}`] = extraMb;
    results[`cost${door}`] = cost;
  }
  await s.proc.stop();
  return { rows, results };
}
