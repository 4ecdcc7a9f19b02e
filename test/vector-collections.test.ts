/**
 * K3's external-collection recipe: a collection whose vectors the client computes and
 * pushes (AddVectorCollection, then InsertVectors / UpsertVectors / DeleteVectors), searched
 * like the pipelines' collections. Over REST as a curl user calls it, and through grpc-js
 * and Connect: the nearest vectors come back by exact cosine, a write is searchable at once
 * (on a second instance too), metadata filters and hybrid word ranking apply to pushed
 * vectors, and bad input is refused naming the field. Before, these routes answered 404.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { VectorService } from "../gen/dodil/k3/vector/v1/vector_pb";
import { connectClients, type Clients } from "./helpers/clients";
import { jsonClient, type J } from "./helpers/http";
import { startEmbedderServer } from "./helpers/embedder-server";
import { startPeer, startServers, type TestServers } from "./helpers/servers";

jest.setTimeout(120_000);

const B = "kb-vectors";
let s: TestServers;
let http: ReturnType<typeof jsonClient>;
let auth: Record<string, string>;
let clients: Clients;

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "50" });
  auth = { authorization: `Bearer ${readFileSync(join(s.dataDir, "admin-token"), "utf8").trim()}` };
  http = jsonClient(() => s.httpUrl, auth);
  expect((await http("POST", "/admin/buckets", { name: B })).status).toBe(200);
  clients = connectClients(s.httpUrl, s.grpcAddress);
});
afterAll(async () => {
  clients?.close();
  await s?.stop();
});

/** A unit-ish vector of 8 dimensions pointing mostly along axis `i`, a little along `j`. */
const along = (i: number, j = (i + 1) % 8, w = 0.2) => Array.from({ length: 8 }, (_, d) => (d === i ? 1 : d === j ? w : 0));
const cosine = (a: number[], b: number[]) => {
  let dot = 0, na = 0, nb = 0; // prettier-ignore
  for (let d = 0; d < a.length; d++) [dot, na, nb] = [dot + a[d] * b[d], na + a[d] * a[d], nb + b[d] * b[d]];
  return dot / Math.sqrt(na * nb);
};
const search = (body: J, base = s.httpUrl) => jsonClient(() => base, auth)("POST", `/${B}/vector/search`, body);
const ids = (res: { json: J }) => (res.json.results as J[]).map((r) => r.vectorId);

const FAQ = [
  { id: "faq-refunds", values: along(0), content: "Refunds are paid back within fourteen days of the return.", metadata: { lang: "en" } },
  { id: "faq-shipping", values: along(1), content: "Parcels ship from our warehouse every weekday.", metadata: { lang: "en" } },
  { id: "faq-versand", values: along(2), content: "Pakete verlassen das Lager an jedem Werktag.", metadata: { lang: "de" } },
  { id: "faq-returns", values: along(3), content: "Returns need the original receipt.", metadata: { lang: "en" } },
];

test("a collection of pushed vectors: made, filled, searched by vector with exact cosines, listed with the pipelines' collections", async () => {
  const made = await http("POST", `/${B}/vector/collections`, { name: "faq", description: "support answers", dimensions: 8, distance_metric: "DISTANCE_METRIC_COSINE", embed_model: "local-hash" });
  expect(made.status).toBe(200);
  expect(made.json.collection).toMatchObject({ name: "faq", bucket: B, dimensions: 8, distanceMetric: "cosine", embedModel: "local-hash", embeddingSource: "EXTERNAL", embedPipelineId: "", chunkCount: "0" });
  expect(made.json.collection.collectionId).toMatch(/^col_/);
  const inserted = await http("POST", `/${B}/vector/collections/faq/vectors`, { vectors: FAQ });
  expect(inserted.status).toBe(200);
  expect(inserted.json).toEqual({ insertedCount: "4" });

  const query = [0.5, 1, 0.1, 0, 0, 0, 0, 0];
  const res = await search({ vector: { values: query }, collection_name: "faq", top_k: 3, include_content: true });
  expect(res.status).toBe(200);
  const expected = FAQ.map((v) => ({ id: v.id, score: cosine(query, v.values) })).sort((a, b) => b.score - a.score).slice(0, 3);
  expect(ids(res)).toEqual(expected.map((e) => e.id));
  (res.json.results as J[]).forEach((r, i) => expect(r.score).toBeCloseTo(expected[i].score, 5));
  expect(res.json.results[0]).toMatchObject({ object: { bucket: B, key: "faq-shipping" }, vectorId: "faq-shipping", collectionName: "faq", content: FAQ[1].content });

  const listed = await http("GET", `/${B}/vector/collections`);
  expect(listed.json.collections.map((c: J) => [c.name, c.embeddingSource, c.chunkCount])).toEqual([["faq", "EXTERNAL", "4"]]);
  expect((await http("GET", `/${B}/vector`)).json.engine.collections).toEqual(["faq"]);
});

test("InsertVectors refuses an id already there and writes nothing; UpsertVectors replaces it, searchable at once on another instance too", async () => {
  const again = await http("POST", `/${B}/vector/collections/faq/vectors`, { vectors: [{ id: "faq-new", values: along(4) }, { id: "faq-refunds", values: along(5) }] });
  expect(again.status).toBe(409);
  expect(again.json.message).toContain('ids "faq-refunds" are in the collection already; nothing was inserted (UpsertVectors replaces them)');
  expect((await http("GET", `/${B}/vector/collections/faq`)).json.collection.chunkCount).toBe("4");

  const peer = await startPeer(s, { K3_AUTH: "on" });
  try {
    // The peer loads the collection now, so the upsert below is a change it must catch up on.
    expect((await search({ vector: { values: along(5) }, collection_name: "faq", top_k: 1 }, peer.httpUrl)).json.results[0].score).toBeLessThan(0.5);
    const up = await http("PUT", `/${B}/vector/collections/faq/vectors`, { vectors: [{ id: "faq-refunds", values: along(5), content: "Refunds: fourteen days.", metadata: { lang: "en" } }] });
    expect(up.json).toEqual({ upsertedCount: "1" });
    for (const base of [s.httpUrl, peer.httpUrl]) {
      const res = await search({ vector: { values: along(5) }, collection_name: "faq", top_k: 1, include_content: true }, base);
      expect(res.json.results[0]).toMatchObject({ vectorId: "faq-refunds", content: "Refunds: fourteen days." });
      expect(res.json.results[0].score).toBeCloseTo(1, 5);
    }
  } finally {
    await peer.stop();
  }
  expect((await http("GET", `/${B}/vector/collections/faq`)).json.collection.chunkCount).toBe("4");
});

test("metadata filters and hybrid word ranking apply to pushed vectors; a text query needs the collection's embed model", async () => {
  const de = await search({ vector: { values: along(1) }, collection_name: "faq", top_k: 10, filter: { metadata: { lang: "de" } } });
  expect(ids(de)).toEqual(["faq-versand"]);
  const prefixed = await search({ vector: { values: along(1) }, collection_name: "faq", top_k: 10, filter: { key_prefix: "faq-re" } });
  expect(ids(prefixed).sort()).toEqual(["faq-refunds", "faq-returns"]);
  // Hybrid: the vector whose content holds the rare word comes first.
  const hybrid = await search({ text: "original receipt", collection_name: "faq", top_k: 2, search_mode: "SEARCH_MODE_HYBRID" });
  expect(hybrid.status).toBe(200);
  expect(ids(hybrid)[0]).toBe("faq-returns");

  // A collection without an embed model answers vector queries only.
  expect((await http("POST", `/${B}/vector/collections`, { name: "raw", dimensions: 8 })).status).toBe(200);
  expect((await http("POST", `/${B}/vector/collections/raw/vectors`, { vectors: [{ id: "r1", values: along(6) }] })).status).toBe(200);
  const named = await search({ text: "anything", collection_name: "raw" });
  expect(named.status).toBe(400);
  expect(named.json).toMatchObject({ code: "failed_precondition" });
  expect(named.json.message).toContain('collection "raw" has no embed_model, so it answers vector queries only');
  const fanOut = await search({ text: "original receipt", top_k: 1 });
  expect(fanOut.status).toBe(200);
  expect(fanOut.json.collectionStatuses).toEqual(expect.arrayContaining([{ collectionName: "raw", status: "skipped", error: "no embed_model: vector queries only" }, { collectionName: "faq", status: "ok", error: "" }]));
  expect(ids(await search({ vector: { values: along(6) }, top_k: 1 }))).toEqual(["r1"]);
});

test("bad collections and bad vectors are refused naming the field, the value and what is accepted; nothing is written", async () => {
  const bad: Array<[J, number, RegExp]> = [
    [{ name: "x", dimensions: 0 }, 400, /^dimensions 0 must be from 1 to 8192/],
    [{ name: "x", dimensions: 8, distance_metric: "L2" }, 501, /distance_metric "L2" is not served here; accepted: COSINE/],
    [{ name: "x", dimensions: 8, distance_metric: "manhattan" }, 400, /distance_metric "manhattan" is not one of COSINE, L2, IP/],
    [{ name: "x", dimensions: 8, embedding_type: "INT8" }, 501, /embedding_type "INT8" is not served here/],
    [{ name: "x", dimensions: 8, sparse_mode: "EXTERNAL" }, 501, /sparse_mode "EXTERNAL" is not served here/],
    [{ name: "x", dimensions: 8, embed_model: "openai/text-embedding-3-small" }, 400, /embed_model "openai\/text-embedding-3-small": this server embeds text queries with its built-in "local-hash" model only/],
    [{ name: "faq", dimensions: 8 }, 409, /name "faq": bucket "kb-vectors" has a collection of that name already/],
    [{ dimensions: 8 }, 400, /name/],
  ];
  for (const [body, status, message] of bad) {
    const res = await http("POST", `/${B}/vector/collections`, body);
    expect([res.status, res.json.message]).toEqual([status, expect.stringMatching(message)]);
  }
  const write = (vectors: J[]) => http("POST", `/${B}/vector/collections/faq/vectors`, { vectors });
  const refusals: Array<[J[], RegExp]> = [
    [[{ id: "a", values: along(0) }, { id: "b", values: [1, 2, 3] }], /^vectors\[1\]\.values has 3 values; collection "faq" has 8 dimensions/],
    [[{ id: "a", values: [0, 0, "NaN", 0, 0, 0, 0, 0] }], /^vectors\[0\]\.values\[2\] is NaN; only finite numbers are accepted/],
    // Beyond a 32-bit float: refused as the request is read, naming the value.
    [[{ id: "a", values: [0, 0, 0, 1e39, 0, 0, 0, 0] }], /values: list item #4: expected number \(float32\): 1e\+39 out of range/],
    [[{ id: "a", values: along(0) }, { id: "a", values: along(1) }], /^vectors\[1\]\.id "a" is vectors\[0\]\.id again/],
    [[{ id: "", values: along(0) }], /^vectors\[0\]\.id "" must be 1 to 1024 bytes/],
    [[], /^vectors: 0 given; one write takes 1 to 1000/],
  ];
  for (const [vectors, message] of refusals) {
    const res = await write(vectors);
    expect([res.status, res.json.code, res.json.message]).toEqual([400, "invalid_argument", expect.stringMatching(message)]);
  }
  expect((await http("GET", `/${B}/vector/collections/faq`)).json.collection.chunkCount).toBe("4");
  // A pipeline's collection is filled from objects, not pushed into.
  const pipe = await http("POST", `/${B}/vector/pipelines`, { name: "docs", template_id: "text_embedding_index" });
  expect(pipe.status).toBe(200);
  const into = await http("POST", `/${B}/vector/collections/docs/vectors`, { vectors: [{ id: "a", values: along(0) }] });
  expect([into.status, into.json.code]).toEqual([400, "failed_precondition"]);
  expect((await http("POST", `/${B}/vector/pipelines`, { name: "raw", template_id: "text_embedding_index" })).status).toBe(409);
});

test("grpc-js and Connect push and delete vectors; deleting an object of the same key leaves a vector alone; DeleteCollection removes the collection", async () => {
  const record = { id: "k1", values: along(7), content: "pushed over gRPC", metadata: {} };
  expect(await clients.call("grpc", VectorService, "InsertVectors", { bucket: B, collectionId: "raw", vectors: [record] }, auth)).toMatchObject({ ok: true, body: { insertedCount: "1" } });
  expect(await clients.call("connect", VectorService, "UpsertVectors", { bucket: B, collectionId: "raw", vectors: [{ ...record, id: "k2" }] }, auth)).toMatchObject({ ok: true, body: { upsertedCount: "1" } });
  // An object named like a vector id, uploaded and deleted: the vector stays.
  expect((await fetch(`${s.httpUrl}/${B}/k1`, { method: "PUT", headers: auth, body: "an object" })).status).toBe(200);
  expect((await fetch(`${s.httpUrl}/${B}/k1`, { method: "DELETE", headers: auth })).status).toBe(204);
  expect(ids(await search({ vector: { values: along(7) }, collection_name: "raw", top_k: 2 })).sort()).toEqual(["k1", "k2"]);

  const del = await http("POST", `/${B}/vector/collections/raw/vectors:delete`, { ids: ["k1", "not-there"] });
  expect([del.status, del.json]).toEqual([200, { deletedCount: "1" }]);
  expect(await clients.call("grpc", VectorService, "DeleteVectors", { bucket: B, collectionId: "raw", ids: ["k2"] }, auth)).toMatchObject({ ok: true, body: { deletedCount: "1" } });
  expect(ids(await search({ vector: { values: along(7) }, collection_name: "raw", top_k: 3 }))).toEqual(["r1"]);

  const gone = await http("DELETE", `/${B}/vector/collections/raw`);
  expect([gone.status, gone.json]).toEqual([200, { deletedChunks: "1" }]);
  expect((await http("GET", `/${B}/vector/collections/raw`)).status).toBe(404);
  expect((await http("POST", `/${B}/vector/collections/raw/vectors`, { vectors: [record] })).status).toBe(404);
});

test("ListTemplates names the embedding templates, the one served marked so; search narrows them", async () => {
  const all = await http("GET", `/${B}/vector/_templates`);
  expect(all.status).toBe(200);
  expect(all.json.templates.map((t: J) => [t.id, t.served ?? false])).toEqual([
    ["text_embedding_index", true], ["code_embedding_index", false], ["visual_embedding_index", false], ["face_embedding_index", false], ["object_embedding_index", false],
  ]);
  expect(all.json.templates[0].acceptedExtensions).toEqual(expect.arrayContaining([".txt", ".md", ".pdf", ".html"]));
  expect((await http("GET", `/${B}/vector/_templates?search=IMAGE`)).json.templates.map((t: J) => t.id)).toEqual(["visual_embedding_index", "face_embedding_index", "object_embedding_index"]);
});

test("DeleteEngine is refused while the engine holds collections, then removes it; ListVBaseInstances says there are none here", async () => {
  const held = await http("DELETE", `/${B}/vector`);
  expect([held.status, held.json.code]).toEqual([400, "failed_precondition"]);
  expect(held.json.message).toMatch(/holds collections "faq", "docs"|holds collections "docs", "faq"/);
  expect((await http("DELETE", `/${B}/vector/collections/faq`)).status).toBe(200);
  const pipes = (await http("GET", `/${B}/pipelines`)).json.pipelines as J[];
  for (const p of pipes) expect((await http("DELETE", `/${B}/pipelines/${p.pipelineId}`)).status).toBe(200);
  expect(await clients.call("grpc", VectorService, "DeleteEngine", { bucket: B }, auth)).toMatchObject({ ok: true });
  expect((await http("GET", `/${B}/vector`)).status).toBe(404);
  expect((await http("DELETE", `/${B}/vector`)).status).toBe(404);
  const instances = await http("GET", "/admin/vbase-instances");
  expect(instances.status).toBe(200);
  expect(instances.json.message).toContain("this server's vector engine is its own PostgreSQL store");
  expect(instances.json.instances ?? []).toEqual([]);
});

test("deleting a bucket takes its collections of pushed vectors with it", async () => {
  expect((await http("POST", "/admin/buckets", { name: "kb-vectors-gone" })).status).toBe(200);
  expect((await http("POST", "/kb-vectors-gone/vector/collections", { name: "faq", dimensions: 2 })).status).toBe(200);
  expect((await http("POST", "/kb-vectors-gone/vector/collections/faq/vectors", { vectors: [{ id: "a", values: [1, 0] }] })).status).toBe(200);
  expect((await http("DELETE", "/admin/buckets/kb-vectors-gone?force=true")).status).toBe(200);
  expect((await http("POST", "/admin/buckets", { name: "kb-vectors-gone" })).status).toBe(200);
  expect((await http("GET", "/kb-vectors-gone/vector/collections")).json.collections ?? []).toEqual([]);
  expect((await http("POST", "/kb-vectors-gone/vector/collections", { name: "faq", dimensions: 2 })).status).toBe(200);
  expect((await http("GET", "/kb-vectors-gone/vector/collections/faq")).json.collection.chunkCount).toBe("0");
});

test("beside a remote embedder, a collection's text queries go to it with the collection's own model; one naming local-hash stays with the built-in one", async () => {
  const e = await startEmbedderServer(8);
  const h = await startServers({ K3_POLL_MS: "50", K3_EMBEDDINGS_URL: e.url });
  try {
    const api = jsonClient(() => h.httpUrl);
    expect((await api("POST", "/admin/buckets", { name: "kb-remote" })).status).toBe(200);
    expect((await api("POST", "/kb-remote/vector/collections", { name: "remote", dimensions: 8, embed_model: "acme/embed-small" })).status).toBe(200);
    expect((await api("POST", "/kb-remote/vector/collections", { name: "local", dimensions: 8, embed_model: "local-hash" })).status).toBe(200);
    for (const c of ["remote", "local"]) expect((await api("POST", `/kb-remote/vector/collections/${c}/vectors`, { vectors: [{ id: `${c}-1`, values: along(0), content: "the quarterly numbers" }] })).status).toBe(200);
    const named = async (collection: string) => (await api("POST", "/kb-remote/vector/search", { text: "quarterly numbers", collection_name: collection, search_mode: "SEARCH_MODE_VECTOR" })).status;
    expect(await named("remote")).toBe(200);
    expect(e.calls.map((c) => c.model)).toEqual(["acme/embed-small"]);
    expect(await named("local")).toBe(200);
    expect(e.calls).toHaveLength(1);
  } finally {
    await h.stop();
    await e.close();
  }
});
