/**
 * Scenario 10: search at 100,000 and 1,000,000 chunks of dimension 384 (written straight
 * into vector_chunks, as a pipeline would have; BENCH_SEARCH_CHUNKS=100000,1000000 sets the
 * sizes). Reports the first search (the index built from PostgreSQL), VECTOR and HYBRID
 * latency, queries/s with 16 in flight, recall@10 against exact scoring done here, and the
 * server's RSS — against the baseline of an exact float scan over the same vectors in this
 * process. The vectors are uniform noise: every neighbour is barely nearer than any other
 * chunk, the hardest case for an index that quantizes.
 */
import { Client } from "pg";
import { vectorBytes, vectorOf } from "../../src/storage/postgres/vector-bytes";
import { freshDatabase, percentile, rssOf, startServer } from "./lib";

type Row = { scenario: string; metric: string; value: string; baseline?: string; ratio?: string; target?: string; met?: string };
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

export async function scenario10(adminUrl: string, log: (s: string) => void): Promise<{ rows: Row[]; results: Record<string, number> }> {
  const rows: Row[] = [];
  const results: Record<string, number> = {};
  for (const n of (process.env.BENCH_SEARCH_CHUNKS ?? "100000,1000000").split(",").map(Number)) {
    const one = await searchAt(adminUrl, log, n);
    rows.push(...one.rows);
    for (const [k, v] of Object.entries(one.results)) results[`${k}@${n}`] = v;
  }
  return { rows, results };
}

async function searchAt(adminUrl: string, log: (s: string) => void, n: number): Promise<{ rows: Row[]; results: Record<string, number> }> {
  log(`scenario 10: search at ${n.toLocaleString("en")} chunks of dimension 384`);
  const DIMS = 384;
  const url = await freshDatabase(adminUrl, "k3_bench_search");
  const server = await startServer("api", url, {});
  const base = `http://127.0.0.1:${server.httpPort}`;
  const headers = { authorization: `Bearer ${server.token}`, "content-type": "application/json" };
  const call = async (path: string, body: unknown) => {
    const res = await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body) });
    const json = (await res.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(json)}`);
    return json;
  };
  const bucket = "kb-vec";
  await call("/admin/buckets", { name: bucket });
  const pipe = (await call(`/${bucket}/vector/pipelines`, { name: "docs", template_id: "text_embedding_index" })).embedPipelineId as string;
  const db = new Client({ connectionString: url });
  await db.connect();
  const t0 = performance.now();
  for (let from = 0; from < n; from += 100_000) {
    await db.query(
      `INSERT INTO vector_chunks (org, bucket, pipeline_id, object_key, chunk_index, content, embedding, job_id, created_at)
       SELECT 'default', $1, $2, 'obj/' || (i / 10), i % 10, 'chunk ' || i || ' about ' || md5(i::text),
              (SELECT string_agg(float4send((random() - 0.5)::real), ''::bytea) FROM generate_series(1, $3) AS d WHERE i >= 0), 'job_bench', 0
       FROM generate_series($4::int, $5::int - 1) AS i`,
      [bucket, pipe, DIMS, from, Math.min(n, from + 100_000)],
    );
  }
  await db.query(`INSERT INTO object_outputs (org, bucket, pipeline_id, object_key, job_id, updated_at) SELECT DISTINCT 'default', $1, $2, object_key, 'job_bench', 0 FROM vector_chunks WHERE pipeline_id = $2`, [bucket, pipe]);
  // Settle what autovacuum would otherwise do on both cores during the measurement, and
  // what the checkpointer would (writing the 1.7 GB just loaded, spread over minutes): a
  // collection searched in production was written long before.
  await db.query("VACUUM ANALYZE vector_chunks");
  await db.query("CHECKPOINT");
  log(`  ${n} chunks written (and vacuumed) in ${fmt((performance.now() - t0) / 1000, 1)} s`);
  // The baseline's copy of the same vectors.
  const keys: string[] = [];
  const idx: number[] = [];
  const all = new Float32Array(n * DIMS);
  let at = 0;
  for (let last = ["", -1]; ; ) {
    const rows = (
      await db.query(
        `SELECT object_key, chunk_index, embedding AS e FROM vector_chunks
         WHERE org = 'default' AND bucket = $1 AND pipeline_id = $2 AND (object_key, chunk_index) > ($3, $4)
         ORDER BY object_key, chunk_index LIMIT 50000`,
        [bucket, pipe, ...last],
      )
    ).rows;
    if (rows.length === 0) break;
    for (const r of rows) {
      keys.push(r.object_key);
      idx.push(r.chunk_index);
      all.set(vectorOf(r.e as Buffer), at++ * DIMS);
    }
    last = [rows[rows.length - 1].object_key, rows[rows.length - 1].chunk_index];
  }
  await db.end();
  const norms = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < DIMS; d++) s += all[i * DIMS + d] ** 2;
    norms[i] = Math.sqrt(s);
  }
  const exactTop = (q: number[], k: number): string[] => {
    let qn = 0;
    for (const x of q) qn += x * x;
    qn = Math.sqrt(qn);
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let d = 0; d < DIMS; d++) dot += all[i * DIMS + d] * q[d];
      scores[i] = dot / (norms[i] * qn);
    }
    return [...scores.keys()].sort((a, b) => scores[b] - scores[a]).slice(0, k).map((i) => `${keys[i]}#${idx[i]}`);
  };
  const randomQuery = () => Array.from({ length: DIMS }, () => Math.random() - 0.5);

  const pid = server.proc.child.pid!;
  const rssBefore = rssOf(pid);
  const tBuild = performance.now();
  await call(`/${bucket}/vector/search`, { vector: { values: randomQuery() }, top_k: 10 });
  const buildMs = performance.now() - tBuild;
  const rssAfterBuild = rssOf(pid);

  const timeOne = async (body: unknown) => {
    const t = performance.now();
    const r = await call(`/${bucket}/vector/search`, body);
    return { ms: performance.now() - t, r };
  };
  // Warm-up: the first searches after a build meet its garbage and cold code paths.
  for (let i = 0; i < 20; i++) await timeOne({ vector: { values: randomQuery() }, top_k: 10, search_mode: "SEARCH_MODE_VECTOR" });
  // Latency: 100 searches back to back, nothing else running on the machine between them.
  const vectorMs: number[] = [];
  for (let i = 0; i < 100; i++) vectorMs.push((await timeOne({ vector: { values: randomQuery() }, top_k: 10, search_mode: "SEARCH_MODE_VECTOR" })).ms);
  // Recall, and the baseline: the bench process's own exact float scan of the same queries.
  let recallHits = 0;
  let recallTotal = 0;
  const baselineMs: number[] = [];
  for (let i = 0; i < 10; i++) {
    const q = randomQuery();
    const { r } = await timeOne({ vector: { values: q }, top_k: 10, search_mode: "SEARCH_MODE_VECTOR" });
    const tb = performance.now();
    const truth = new Set(exactTop(q, 10));
    baselineMs.push(performance.now() - tb);
    recallTotal += 10;
    recallHits += (r.results as Array<{ object: { key: string }; chunkIndex?: number }>).filter((x) => truth.has(`${x.object.key}#${x.chunkIndex ?? 0}`)).length;
  }
  const hybridMs: number[] = [];
  for (let i = 0; i < 50; i++) hybridMs.push((await timeOne({ text: `chunk about ${i} ${(i * 7919).toString(16)}`, top_k: 10, search_mode: "SEARCH_MODE_HYBRID" })).ms);
  let next = 0;
  const total = 200;
  const tq = performance.now();
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next++ < total) await call(`/${bucket}/vector/search`, { vector: { values: randomQuery() }, top_k: 10 });
  }));
  const qps = total / ((performance.now() - tq) / 1000);
  const rssPeak = rssOf(pid);
  const pushed = await pushVectors(call, bucket, url, DIMS);
  await server.proc.stop();

  const p99v = percentile(vectorMs, 99);
  const p99h = percentile(hybridMs, 99);
  const base50 = percentile(baselineMs, 50);
  const size = n.toLocaleString("en");
  const out: Row[] = [
    { scenario: "10 search", metric: `first search at ${size} chunks (index built from PostgreSQL)`, value: `${fmt(buildMs)} ms`, baseline: `RSS ${fmt(rssBefore / 2 ** 20)} → ${fmt(rssAfterBuild / 2 ** 20)} MB` },
    { scenario: "10 search", metric: `VECTOR p50 / p99 at ${size} (4-bit scan, exact rerank)`, value: `${fmt(percentile(vectorMs, 50), 1)} / ${fmt(p99v, 1)} ms`, baseline: `${fmt(base50, 1)} ms exact scan in the bench process`, ratio: fmt(base50 / percentile(vectorMs, 50), 2), target: "p99 ≤ 50 ms (at 1M)", met: p99v <= 50 ? `yes at ${size}` : "no" },
    { scenario: "10 search", metric: `HYBRID p50 / p99 at ${size}`, value: `${fmt(percentile(hybridMs, 50), 1)} / ${fmt(p99h, 1)} ms`, target: "p99 ≤ 100 ms (at 1M)", met: p99h <= 100 ? `yes at ${size}` : "no" },
    { scenario: "10 search", metric: `recall@10 against exact scoring at ${size} (10 queries)`, value: fmt(recallHits / recallTotal, 3), target: "≥ 0.95", met: recallHits / recallTotal >= 0.95 ? "yes" : "no" },
    { scenario: "10 search", metric: `VECTOR queries/s at ${size}, 16 in flight`, value: `${fmt(qps)} q/s` },
    { scenario: "10 search", metric: `InsertVectors over REST: ${PUSH_CALLS} calls of ${PUSH_BATCH.toLocaleString("en")} dense vectors of ${DIMS}, one after another`, value: `${fmt(pushed.perSecond)} vectors/s`, baseline: `raw INSERT of the same rows ${fmt(pushed.rawPerSecond)}/s`, ratio: `${(pushed.perSecond / pushed.rawPerSecond).toFixed(2)}×` },
    { scenario: "10 search", metric: `server RSS after, ${size}`, value: `${fmt(rssPeak / 2 ** 20)} MB`, target: "≤ 1 GB (at 1M)", met: rssPeak <= 2 ** 30 ? `yes at ${size}` : "no" },
  ];
  return { rows: out, results: { buildMs, vectorP50: percentile(vectorMs, 50), vectorP99: p99v, hybridP50: percentile(hybridMs, 50), hybridP99: p99h, recall: recallHits / recallTotal, qps, rssPeak, baselineP50: base50, pushedPerSecond: pushed.perSecond, pushedRatio: pushed.perSecond / pushed.rawPerSecond } };
}

// 100 dense vectors of 384 are ~780 KB of JSON: a call within the default body limit (1 MiB).
const PUSH_CALLS = 50;
const PUSH_BATCH = 100;

/**
 * Vectors a client pushes (InsertVectors over REST, into a collection of their own), dense
 * as a real model's are — the pipelines' local embedder leaves most components 0 — against
 * the database alone writing the same rows: one multi-row INSERT of the ids, texts and
 * float4 bytes per call, from this process.
 */
async function pushVectors(call: (path: string, body: unknown) => Promise<Record<string, unknown>>, bucket: string, url: string, dims: number) {
  const batches = Array.from({ length: PUSH_CALLS }, (_, b) =>
    Array.from({ length: PUSH_BATCH }, (_, i) => ({ id: `v${b}-${i}`, content: `pushed ${b} ${i}`, values: Array.from({ length: dims }, () => Math.fround(Math.random() - 0.5)) })),
  );
  await call(`/${bucket}/vector/collections`, { name: "pushed", dimensions: dims });
  const t0 = performance.now();
  for (const vectors of batches) {
    const r = await call(`/${bucket}/vector/collections/pushed/vectors`, { vectors });
    if (String(r.insertedCount) !== String(PUSH_BATCH)) throw new Error(`InsertVectors answered ${JSON.stringify(r).slice(0, 200)}`);
  }
  const perSecond = (PUSH_CALLS * PUSH_BATCH) / ((performance.now() - t0) / 1000);
  const db = new Client({ connectionString: url });
  await db.connect();
  try {
    await db.query("CREATE TABLE bench_pushed (id text PRIMARY KEY, content text NOT NULL, embedding bytea NOT NULL)");
    const t1 = performance.now();
    for (const vectors of batches) {
      await db.query("INSERT INTO bench_pushed SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])", [
        vectors.map((v) => v.id),
        vectors.map((v) => v.content),
        vectors.map((v) => vectorBytes(v.values)),
      ]);
    }
    return { perSecond, rawPerSecond: (PUSH_CALLS * PUSH_BATCH) / ((performance.now() - t1) / 1000) };
  } finally {
    await db.end();
  }
}
