/**
 * Search what was ingested, as a K3 client runs it over plain HTTP with a bearer token:
 * create bucket → AddVectorPipeline → rule on its embedPipelineId → upload (text,
 * Markdown, HTML, PDF) → search. The document holding the words comes first; top_k and
 * min_score hold; deleting or changing an object changes the results at once; another
 * organization sees nothing; hybrid search puts a rare exact term above a dense near
 * match; bad queries are refused by name. Every door answers the same search.
 */
import { Client } from "pg";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { newToken } from "../src/domain/auth";
import { VectorService } from "../gen/dodil/k3/vector/v1/vector_pb";
import { DOORS, connectClients } from "./helpers/clients";
import { makePdf } from "./helpers/fixtures";
import { VectorIndex } from "../src/search/vector-index";
import { jsonClient, type J } from "./helpers/http";
import { startEmbedderServer, type EmbedderServer } from "./helpers/embedder-server";
import { startServers, type TestServers } from "./helpers/servers";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);

const TOPICS: Array<[string, string]> = [
  ["biology", "photosynthesis turns light into chemical energy in the chlorophyll of green leaves"],
  ["astronomy", "a neutron star is the collapsed core of a massive supergiant star"],
  ["cooking", "knead the bread dough and let the yeast rise before baking"],
  ["sailing", "trim the mainsail and tack upwind when the breeze shifts"],
  ["finance", "the central bank raised interest rates to curb inflation"],
  ["music", "the violin sonata modulates from minor to major in the finale"],
  ["geology", "basalt forms when lava cools quickly at the surface"],
  ["medicine", "antibiotics treat bacterial infections but not viral ones"],
  ["chess", "the sicilian defence answers the king pawn opening"],
  ["gardening", "prune roses in late winter and mulch the beds"],
  ["law", "the contract terminates upon material breach and written notice"],
  ["football", "the striker scored a header from the corner kick"],
];

let s: TestServers;
let http: ReturnType<typeof jsonClient>;
let token = "";
const B = "kb-search";
const upload = (key: string, body: string | Buffer, type: string) =>
  fetch(`${s.httpUrl}/${B}/${key}`, { method: "PUT", headers: { authorization: `Bearer ${token}`, "content-type": type }, body });

async function settled(): Promise<void> {
  await waitFor("every job to end", async () => {
    const jobs = (await http("GET", `/${B}/ingest/jobs?page_size=1000`)).json.jobs as J[];
    return jobs.every((j) => j.status !== "INGEST_STATUS_PENDING" && j.status !== "INGEST_STATUS_PROCESSING") ? true : undefined;
  }, { timeoutMs: 60_000, intervalMs: 100 });
}

const search = (body: J) => http("POST", `/${B}/vector/search`, body);

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "50" });
  token = readFileSync(join(s.dataDir, "admin-token"), "utf8").trim();
  http = jsonClient(() => s.httpUrl, { authorization: `Bearer ${token}` });
});
afterAll(() => s.stop());

test("create bucket → AddVectorPipeline → rule → upload → search, over HTTP with a bearer token", async () => {
  expect((await http("POST", "/admin/buckets", { name: B })).status).toBe(200);
  expect((await http("GET", `/${B}/vector`)).status).toBe(404);
  const added = await http("POST", `/${B}/vector/pipelines`, { name: "docs", template_id: "text_embedding_index" });
  expect(added).toMatchObject({ status: 200, json: { embedPipelineName: "text_embedding_index", collection: { name: "docs", dimensions: 384, distanceMetric: "cosine" } } });
  const pipe = added.json.embedPipelineId;
  expect((await http("POST", `/${B}/rules`, { name: "all", pipeline_id: pipe, include_patterns: ["**"] })).status).toBe(200);
  for (const [i, [topic, text]] of TOPICS.entries()) {
    const kind = i % 4;
    const res =
      kind === 0 ? await upload(`docs/${topic}.txt`, `${text}.`, "text/plain")
      : kind === 1 ? await upload(`docs/${topic}.md`, `# ${topic}\n\n${text}.`, "text/markdown")
      : kind === 2 ? await upload(`docs/${topic}.html`, `<html><body><h1>${topic}</h1><p>${text}.</p></body></html>`, "text/html")
      : await upload(`docs/${topic}.pdf`, makePdf([[text]]), "application/pdf");
    expect(res.status).toBe(200);
  }
  await settled();
  const engine = (await http("GET", `/${B}/vector`)).json.engine;
  expect(engine).toMatchObject({ engineId: expect.stringMatching(/^eng_/), status: "ENGINE_STATUS_ACTIVE", store: "postgresql", collections: ["docs"] });
  const configured = await http("POST", `/${B}/vector`, { mode: "ENGINE_MODE_AUTO" });
  expect(configured.json).toMatchObject({ created: false, engine: { engineId: engine.engineId }, message: expect.stringMatching(/configured already; nothing changed/) });
  const cols = (await http("GET", `/${B}/vector/collections`)).json.collections;
  expect(cols).toMatchObject([{ name: "docs", embedPipelineId: pipe, chunkCount: "12", objectCount: "12" }]);

  for (const [topic, query] of [["biology", "chlorophyll photosynthesis"], ["chess", "sicilian defence opening"], ["sailing", "mainsail upwind"], ["geology", "basalt lava"]]) {
    const r = await search({ text: query, top_k: 3, include_content: true });
    expect(r.status).toBe(200);
    expect(r.json.results).toHaveLength(3);
    expect(r.json.results[0]).toMatchObject({ object: { bucket: B, key: expect.stringMatching(new RegExp(`^docs/${topic}\\.`)) }, collectionName: "docs", pipelineId: pipe, chunkIndex: 0 });
    expect(r.json.results[0].content).toContain(query.split(" ")[0]);
  }
  // min_score holds; without include_content no text is sent.
  const strict = await search({ text: "chlorophyll photosynthesis", search_mode: "SEARCH_MODE_VECTOR", min_score: 0.3 });
  expect(strict.json.results.length).toBeGreaterThanOrEqual(1);
  expect(strict.json.results.every((x: J) => x.score >= 0.3 && (x.content ?? "") === "")).toBe(true);
  expect((await search({ text: "chlorophyll photosynthesis", search_mode: "SEARCH_MODE_VECTOR", min_score: 0.99 })).json.results ?? []).toEqual([]);
  // A filter on the key prefix.
  const md = await search({ text: "the", top_k: 50, filter: { key_prefix: "docs/astronomy" } });
  expect(md.json.results.map((x: J) => x.object.key)).toEqual(["docs/astronomy.md"]);
});

test("results say where the chunk lies: PDF page, Markdown and HTML heading paths, offsets; chunks hold whole words", async () => {
  // Page 1 is long enough that the page break ends the first chunk (default size 1,000).
  const cover = Array.from({ length: 12 }, (_, i) => `Cover line ${i} says nothing in particular about anything at all here.`);
  const pdf = makePdf([cover, ["Indemnification obligations survive termination of the agreement.", "Each party bears its own costs of enforcement and of collection.", "Notices go to the addresses written on the signature page below."]]);
  expect((await upload("guide/contract.pdf", pdf, "application/pdf")).status).toBe(200);
  const intro = Array.from({ length: 20 }, (_, i) => `Intro sentence ${i} explains the purpose.`).join(" ");
  const md = `# Guide\n\n${intro}\n\n## Install\n\nRun the installer with xylophonic flags. ${"Then wait a while. ".repeat(12)}\n\n## Usage\n\nStart it.`;
  expect((await upload("guide/readme.md", md, "text/markdown")).status).toBe(200);
  const html = `<html><head><title>t</title><style>h2{}</style></head><body><h1>Field &amp; Notes</h1><p>${intro}</p><h2>Tides</h2><p>${"Water rises twice a day. ".repeat(38)}</p><h3>Spring <em>tides</em></h3><p>Syzygy brings the highest perigean waters.</p><h2>Winds</h2><p>Calm.</p></body></html>`;
  expect((await upload("guide/field.html", html, "text/html")).status).toBe(200);
  const long = Array.from({ length: 60 }, (_, i) => `word${i} remedy liability`).join(" ");
  expect((await upload("guide/long.txt", long, "text/plain")).status).toBe(200);
  await settled();
  const hit = async (q: string) => (await search({ text: q, top_k: 1, include_content: true, filter: { key_prefix: "guide/" } })).json.results[0];
  expect(await hit("indemnification survive")).toMatchObject({ object: { key: "guide/contract.pdf" }, page: 2 });
  const mdHit = await hit("xylophonic installer");
  expect(mdHit).toMatchObject({ object: { key: "guide/readme.md" }, heading: "Guide > Install" });
  expect([...md].slice(mdHit.charStart, mdHit.charEnd).join("")).toBe(mdHit.content);
  const htmlHit = await hit("syzygy perigean");
  expect(htmlHit).toMatchObject({ object: { key: "guide/field.html" }, heading: "Field & Notes > Tides > Spring tides" });
  expect(htmlHit.content).toContain("Syzygy brings the highest perigean waters.");
  expect(htmlHit.content).not.toMatch(/[\u0001\u0002<]/);
  // Chunks of the default size (1,000) begin and end with whole words.
  const pieces = ((await search({ text: "remedy liability", top_k: 10, include_content: true, filter: { key_prefix: "guide/long" } })).json.results as J[]).map((r) => r.content as string);
  expect(pieces.length).toBeGreaterThan(0);
  for (const p of pieces) expect(p).toMatch(/^word\d+ .* liability$/s);
});

test("deleting or changing an object changes the results at once", async () => {
  const first = async (q: string) => (await search({ text: q, top_k: 1, search_mode: "SEARCH_MODE_VECTOR" })).json.results?.[0]?.object.key;
  expect(await first("antibiotics bacterial infections")).toBe("docs/medicine.pdf");
  expect((await fetch(`${s.httpUrl}/${B}/docs/medicine.pdf`, { method: "DELETE", headers: { authorization: `Bearer ${token}` } })).status).toBe(204);
  expect(await first("antibiotics bacterial infections")).not.toBe("docs/medicine.pdf");
  expect((await upload("docs/football.txt", "quantum entanglement links distant particles", "text/plain")).status).toBe(200);
  await settled();
  expect(await first("quantum entanglement")).toBe("docs/football.txt");
  expect(await first("striker header corner")).not.toBe("docs/football.txt");
});

test("writes of one collection do not wait for each other's commits; its version moves with each, and a fold leaves it as it was", async () => {
  const a = new Client({ connectionString: s.db.url });
  const b = new Client({ connectionString: s.db.url });
  await a.connect();
  await b.connect();
  try {
    const keys = (await a.query("SELECT DISTINCT pipeline_id, object_key FROM vector_chunks WHERE bucket = $1 ORDER BY object_key LIMIT 2", [B])).rows;
    expect(keys).toHaveLength(2);
    expect(keys[0].pipeline_id).toBe(keys[1].pipeline_id);
    const version = async () => Number((await b.query("SELECT coalesce(sum(version), 0) AS v FROM (SELECT version FROM collection_versions WHERE bucket = $1 AND pipeline_id = $2 UNION ALL SELECT version FROM collection_version_deltas WHERE bucket = $1 AND pipeline_id = $2) AS x", [B, keys[0].pipeline_id])).rows[0].v);
    const before = await version();
    // Two writers of the collection, neither committed: the second does not wait for the first
    // (it did, for the collection's one version row, until the first committed).
    await a.query("BEGIN");
    await a.query("DELETE FROM vector_chunks WHERE bucket = $1 AND object_key = $2", [B, keys[0].object_key]);
    await b.query("BEGIN");
    await b.query("SET LOCAL lock_timeout = '1s'");
    await b.query("DELETE FROM vector_chunks WHERE bucket = $1 AND object_key = $2", [B, keys[1].object_key]);
    await b.query("ROLLBACK");
    await a.query("ROLLBACK");
    expect(await version()).toBe(before);
    // A committed write moves it (an upload's job writes its chunks); the fold (every second) does not.
    expect((await upload("docs/versioned.txt", "the version moves with every committed write", "text/plain")).status).toBe(200);
    await settled();
    const moved = await version();
    expect(moved).toBeGreaterThan(before);
    await waitFor("the fold", async () => ((await b.query("SELECT count(*)::int AS n FROM collection_version_deltas WHERE bucket = $1", [B])).rows[0].n === 0 ? true : undefined), { timeoutMs: 10_000, intervalMs: 200 });
    expect(await version()).toBe(moved);
  } finally {
    await a.end();
    await b.end();
  }
});

test("one organization never sees another's chunks; every door answers the same", async () => {
  const { token: other, tokenId, secretHash } = newToken();
  await s.app.repo().tokens.tokenInsert({ tokenId, org: "acme", secretHash, name: "acme", grants: [{ bucket: "*", role: "admin" }], createdAt: Date.now(), expiresAt: 0, revokedAt: 0 });
  const theirs = jsonClient(() => s.httpUrl, { authorization: `Bearer ${other}` });
  const r = await theirs("POST", `/${B}/vector/search`, { text: "chlorophyll photosynthesis" });
  expect(r.status).toBe(404);
  expect(JSON.stringify(r.json)).not.toContain("chlorophyll");

  const clients = connectClients(s.httpUrl, s.grpcAddress);
  try {
    const answers = [];
    for (const door of DOORS) {
      const res = await clients.call(door, VectorService, "Search", { bucket: B, text: "neutron star supergiant", topK: 2 }, { authorization: `Bearer ${token}` });
      expect({ door, ok: res.ok }).toEqual({ door, ok: true });
      answers.push(JSON.stringify(((res as { ok: true; body: J }).body.results as J[]).map((x) => [x.object.key, x.chunkIndex])));
    }
    expect(new Set(answers).size).toBe(1);
    expect(answers[0]).toContain("docs/astronomy.md");
  } finally {
    clients.close();
  }
});

test("bad queries are refused by name", async () => {
  const cases: Array<[J, number, RegExp]> = [
    [{}, 400, /exactly one of text or vector is required/],
    [{ text: "x", top_k: 1001 }, 400, /top_k 1001 must be from 1 to 1000/],
    [{ vector: { values: [1, 2, 3] } }, 400, /the query vector has 3 dimensions; collection "docs" has 384/],
    [{ vector: { values: [1, "NaN", 3] } }, 400, /vector\.values\[1\] is NaN; only finite numbers are accepted/],
    [{ text: "x", collection_name: "nope" }, 404, /collection_name "nope": no collection of bucket "kb-search"/],
    [{ vector: { values: new Array(384).fill(0.1) }, search_mode: "SEARCH_MODE_HYBRID" }, 400, /SEARCH_MODE_HYBRID needs a text query/],
    [{ text: "x".repeat(16_385) }, 400, /text is 16385 characters long; at most 16384 are allowed/],
  ];
  for (const [body, status, message] of cases) {
    const r = await search(body);
    expect({ body: JSON.stringify(body).slice(0, 60), status: r.status, message: r.json.message }).toEqual({ body: JSON.stringify(body).slice(0, 60), status, message: expect.stringMatching(message) });
  }
  // The fix for one: the collection named, and a vector of its dimension.
  expect((await search({ vector: { values: new Array(384).fill(0.1) }, collection_name: "docs" })).status).toBe(200);
});

test("the in-memory index stays within its byte budget: least recently searched collections go, and come back intact", async () => {
  const notes = (await http("POST", `/${B}/vector/pipelines`, { name: "notes", template_id: "text_embedding_index" })).json.embedPipelineId;
  await http("POST", `/${B}/rules`, { name: "notes", pipeline_id: notes, include_patterns: ["extra/**"] });
  expect((await upload("extra/one.txt", "an extra note about tide tables", "text/plain")).status).toBe(200);
  await settled();
  const docs = ((await http("GET", `/${B}/vector/collections`)).json.collections as J[]).find((c) => c.name === "docs")!.collectionId;
  const index = new VectorIndex(s.app.repo().vector, 1); // one byte: only the collection just searched stays
  const scope = { org: "default", bucket: B };
  const q = new Float32Array(384).fill(0.05);
  const first = await index.search(scope, [docs], q, 5, () => true);
  const docsBytes = index.heldBytes();
  expect(docsBytes).toBeGreaterThan(0);
  await index.search(scope, [notes], q, 5, () => true);
  expect(index.heldBytes()).toBeLessThan(docsBytes); // docs dropped, notes (one chunk) held
  expect(await index.search(scope, [docs], q, 5, () => true)).toEqual(first);
  await index.close();
});

describe("hybrid search with a dense embedder that likes the wrong document", () => {
  let e: EmbedderServer;
  let h: TestServers;
  beforeAll(async () => {
    e = await startEmbedderServer(8);
    h = await startServers({ K3_ROLE: "all", K3_POLL_MS: "50", K3_EMBEDDINGS_URL: e.url });
  });
  afterAll(async () => {
    await h.stop();
    await e.close();
  });

  test("a rare exact term outranks a dense near match in HYBRID; VECTOR alone prefers the near match; a down embedder is UNAVAILABLE without its URL", async () => {
    const api = jsonClient(() => h.httpUrl);
    await api("POST", "/admin/buckets", { name: "kb-hybrid" });
    const pipe = (await api("POST", "/kb-hybrid/vector/pipelines", { name: "notes", template_id: "text_embedding_index" })).json.embedPipelineId;
    await api("POST", "/kb-hybrid/rules", { name: "all", pipeline_id: pipe, include_patterns: ["**"] });
    // The fake embedder maps a text to [characters, words, 1, 0 …]: a text shaped like the
    // query is its nearest neighbour, whatever its words.
    const query = "zyxquorum minutes";
    const docs: Record<string, string> = {
      "near.txt": "board agendas", // same shape as the query, none of its words
      "exact.txt": "the zyxquorum was reached after a long debate about the budget and the schedule",
      "other.txt": "lunch menus for the whole of the coming month in the canteen on floor two",
    };
    for (const [key, text] of Object.entries(docs)) expect((await fetch(`${h.httpUrl}/kb-hybrid/${key}`, { method: "PUT", body: text })).status).toBe(200);
    await waitFor("the jobs", async () => {
      const jobs = (await api("GET", "/kb-hybrid/ingest/jobs")).json.jobs as J[];
      return jobs.length === 3 && jobs.every((j) => j.status === "INGEST_STATUS_COMPLETED") ? true : undefined;
    }, { timeoutMs: 30_000 });
    const keys = async (mode: string) => ((await api("POST", "/kb-hybrid/vector/search", { text: query, search_mode: mode })).json.results as J[]).map((r) => r.object.key);
    expect((await keys("SEARCH_MODE_VECTOR"))[0]).toBe("near.txt");
    expect((await keys("SEARCH_MODE_HYBRID"))[0]).toBe("exact.txt");
    expect((await keys("SEARCH_MODE_AUTO"))[0]).toBe("exact.txt");
    e.failNext(5, 503);
    const down = await api("POST", "/kb-hybrid/vector/search", { text: query });
    expect(down).toMatchObject({ status: 503, json: { code: "unavailable", message: expect.stringMatching(/the embedder of collection "notes" could not embed the query; retry later/) } });
    expect(down.json.message).not.toContain(e.url);
  });
});
